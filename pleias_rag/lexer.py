"""Incremental lexer for Pleias output text: special markers, ``<ref>`` tags and plain text.

Sans-I/O: feed it text chunks of any size, get tokens back. A chunk that ends in what may be
the beginning of a marker is held back until the next chunk (or :meth:`Lexer.close`) decides.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Literal

TokenKind = Literal["text", "marker", "ref_open", "ref_close", "eos", "heading"]


@dataclass(frozen=True)
class Token:
    """``kind`` and the exact source text; ``value`` is the marker name, the ref's raw name
    attribute, or the heading word (lowercase)."""

    kind: TokenKind
    raw: str
    value: str = ""


# Longest plausible partial token held back; beyond it the text is plain text.
_MAX_PENDING = 512

# Markers are case-sensitive: "<|ANSWER_END|>" is text a model copied, not a marker.
_TOKEN = re.compile(
    r"(?-i:<\|(?P<marker>[a-z_]{1,40})\|>)"
    r"|<ref\b(?P<attrs>(?:<\|[A-Za-z_]{1,40}\|>|[^<>]){0,480})>"
    r"|(?P<ref_close></ref\s*>)"
    r"|(?P<eos></s>|#END#)"
    r"|(?P<heading>\#\#\#[ \t]*(?P<word>Analysis|Answer)[ \t]*\#\#\#)",
    re.IGNORECASE,
)
# Text that a token may still grow from.
_PARTIAL = re.compile(
    r"<(?:\|[A-Za-z_]{0,40}\|?"
    r"|r(?:e(?:f(?:\b(?:<\|[A-Za-z_]{1,40}\|>|[^<>])*(?:<(?:\|[A-Za-z_]{0,40}\|?)?)?)?)?)?"
    r"|/(?:r(?:e(?:f\s*)?)?|s)?)?"
    r"|\#(?:E(?:N(?:D)?)?)?"
    r"|\#\#(?:\#[ \t]*(?:[A-Za-z]{0,8}[ \t]*\#{0,2})?)?",
    re.IGNORECASE,
)
_STARTS = re.compile(r"[<#]")
_NAME = re.compile(r"""^\s*name\s*=\s*(?P<v>.*?)\s*/?\s*$""", re.IGNORECASE | re.DOTALL)


def ref_name(attrs: str) -> str:
    """The raw ``name`` attribute of ``<ref name="...">``, quotes included."""
    m = _NAME.match(attrs)
    return m.group("v") if m else attrs.strip()


class Lexer:
    """Turns a stream of text chunks into :class:`Token` s."""

    def __init__(self) -> None:
        self._pending = ""
        self.dropped_partial = ""

    def feed(self, chunk: str) -> list[Token]:
        return self._scan(self._pending + chunk, final=False)

    def close(self) -> list[Token]:
        """Flush what was held back. An unfinished ``<|...`` or ``<ref ...`` at the very end is
        dropped (kept in :attr:`dropped_partial`): it is the output cut off mid-marker."""
        return self._scan(self._pending, final=True)

    def _scan(self, buf: str, *, final: bool) -> list[Token]:
        tokens: list[Token] = []
        pos = 0
        text_start = 0
        self._pending = ""
        while True:
            m = _STARTS.search(buf, pos)
            if m is None:
                break
            i = m.start()
            tok = _TOKEN.match(buf, i)
            if tok is not None and tok.end() - i > _MAX_PENDING:
                tok = None  # longer than what a stream may hold back: text in both cases
            if tok is not None:
                if i > text_start:
                    tokens.append(Token("text", buf[text_start:i]))
                tokens.append(_make_token(tok))
                pos = text_start = tok.end()
                continue
            part = _PARTIAL.fullmatch(buf, i, min(len(buf), i + _MAX_PENDING))
            if part is not None and part.end() == len(buf):
                tail = buf[i:]
                if not final:
                    if i > text_start:
                        tokens.append(Token("text", buf[text_start:i]))
                    self._pending = tail
                    return tokens
                if tail[0] == "<" and tail[1:2] in ("", "|", "r", "R", "/"):
                    if i > text_start:
                        tokens.append(Token("text", buf[text_start:i]))
                    self.dropped_partial = tail
                    return tokens
            pos = i + 1
        if len(buf) > text_start:
            tokens.append(Token("text", buf[text_start:]))
        return tokens


def _make_token(m: re.Match[str]) -> Token:
    raw = m.group(0)
    if m.group("marker") is not None:
        return Token("marker", raw, m.group("marker"))
    if m.group("attrs") is not None:
        return Token("ref_open", raw, ref_name(m.group("attrs")))
    if m.group("ref_close") is not None:
        return Token("ref_close", raw)
    if m.group("eos") is not None:
        return Token("eos", raw)
    return Token("heading", raw, m.group("word").lower())
