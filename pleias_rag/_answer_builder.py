"""The answer section of a Pleias output made clean text: ``[n]`` markers where the refs
were, and a checked :class:`~pleias_rag.answer.Citation` for each ref.

:class:`~pleias_rag.parser.StreamParser` feeds the answer's tokens to an
:class:`AnswerBuilder`; what comes out is the answer text (``str``) and citations, in order.
"""

from __future__ import annotations

import re

from .answer import Citation
from .citing import Resolver
from .lexer import Token
from .sources import SourceGroup

# What the builder puts out, in order: answer text, and each citation as its ref ends.
Output = str | Citation

_ID_JUNK = re.compile(r"<\|source_id(?:_start|_end)?\|>|\*\*|^[\s\"'“”«»]+|[\s\"'“”«»]+$")
_QUOTE_PAIRS = {'"': '"', "“": "”", "«": "»", "„": "“", "'": "'"}
FINAL_PUNCT = ".!?…。！？"
# Where a bare quote may end: before a space, or before punctuation that ends a word.
_CUT = re.compile(r"\s+|[^\w\s]+(?=\s|$)")


def normalize_source_id(name: str) -> str:
    """The id a ref or analysis names: ``**``, quotes, spaces and ``<|source_id|>`` removed."""
    prev = None
    while prev != name:
        prev, name = name, _ID_JUNK.sub("", name)
    return name


def strip_quote(text: str) -> str:
    """A ref's quote without surrounding space and wrapping quote marks (CSV-doubled too)."""
    text = text.strip()
    while len(text) >= 2 and _QUOTE_PAIRS.get(text[0]) == text[-1]:
        text = text[1:-1].strip()
    return text


class AnswerBuilder:
    """Turns answer-section tokens into clean text with ``[n]`` markers and citations.

    It knows the sources through ``resolver`` only; the caller says, per call, whether the
    output is in the numbered dialect (the evidence for it may come while the answer is read).
    """

    def __init__(self, resolver: Resolver) -> None:
        self._resolver = resolver
        self.parts: list[str] = []
        self.length = 0
        self.started = False
        self.pending_ws = ""
        self.ref_name: str | None = None
        self.quote_parts: list[str] = []
        self.numbers: dict[str, int] = {}
        self.last_marker: tuple[int, int, int] | None = None
        self.citations: list[Citation] = []

    def _emit(self, text: str, out: list[Output]) -> None:
        self.parts.append(text)
        self.length += len(text)
        out.append(text)

    def token(self, tok: Token, out: list[Output], *, numbered: bool) -> None:
        if tok.kind == "ref_open":
            if self.ref_name is not None:
                self.finish_ref(out, numbered=numbered, unclosed=True)
            self.ref_name = tok.value
            self.quote_parts = []
        elif tok.kind == "ref_close":
            if self.ref_name is not None:
                self.finish_ref(out, numbered=numbered)
        elif self.ref_name is not None:
            self.quote_parts.append(tok.raw)
        elif tok.kind == "text":
            self.text(tok.raw, out)

    def end(self, out: list[Output], *, numbered: bool, truncated: bool) -> None:
        """The answer section ends: a ref still open is unclosed, or ``truncated`` when the
        output was cut off."""
        if self.ref_name is not None:
            self.finish_ref(out, numbered=numbered, unclosed=not truncated, truncated=truncated)

    def text(self, text: str, out: list[Output]) -> None:
        if not self.started:
            text = text.lstrip()
            if not text:
                return
            self.started = True
        core = text.rstrip()
        if core:
            self._emit(self.pending_ws + core, out)
            self.pending_ws = text[len(core) :]
            self.last_marker = None
        else:
            self.pending_ws += text

    def finish_ref(
        self,
        out: list[Output],
        *,
        numbered: bool,
        unclosed: bool = False,
        truncated: bool = False,
    ) -> None:
        """End the open ref: at its ``</ref>``, or, ``unclosed``, where the quote ends
        when the output went on without one (the rest is answer text again), or
        ``truncated`` by the end of the output."""
        assert self.ref_name is not None
        resolver = self._resolver
        sid = normalize_source_id(self.ref_name)
        group = resolver.resolve(sid, numbered=numbered)
        content, rest = "".join(self.quote_parts), ""
        if unclosed:
            content, rest = _split_unclosed(content, resolver, group)
        quote = strip_quote(content)
        if truncated and quote[:1] in _QUOTE_PAIRS:
            quote = quote[1:].lstrip()  # its closing quote was cut off
        self.ref_name, self.quote_parts = None, []
        key = group.id if group is not None else "\0" + sid
        number = self.numbers.setdefault(key, len(self.numbers) + 1)
        if self.last_marker is not None and self.last_marker[0] == number:
            start, end = self.last_marker[1:]
        else:
            self.started = True
            start = self.length + len(self.pending_ws)
            marker = f"[{number}]"
            self._emit(self.pending_ws + marker, out)
            self.pending_ws = ""
            end = start + len(marker)
            self.last_marker = (number, start, end)
        v = resolver.check(quote, group, open_end=truncated)
        citation = Citation(
            number=number,
            source_id=sid,
            quote=quote,
            start=start,
            end=end,
            sources=group.members if group is not None else (),
            source_start=v.match.start,
            source_end=v.match.end,
            spans=v.match.spans,
            match=v.match.kind,
            score=v.match.score,
            status=v.status,
            found_in=v.found_in,
            found_start=v.found.start,
            found_end=v.found.end,
            matched_text=v.matched_text,
            changes=v.match.changes,
            note=v.note,
            truncated=truncated,
        )
        self.citations.append(citation)
        out.append(citation)
        if rest.strip():
            self.text(rest, out)


def _split_unclosed(content: str, resolver: Resolver, group: SourceGroup | None) -> tuple[str, str]:
    """Where the quote of a ref with no ``</ref>`` ends, and the answer text after it.

    A wrapped quote ends at its closing quote mark; a bare one at the longest run of whole
    words that the cited source holds. Without either, all of it is the quote.
    """
    body = content.lstrip()
    lead = len(content) - len(body)
    closer = _QUOTE_PAIRS.get(body[:1])
    if closer is not None:
        for m in re.finditer(re.escape(closer), body[1:]):
            k = m.end() + 1
            if k >= len(body) or not body[k].isalnum():
                return content[: lead + k], content[lead + k :]
        return content, ""
    if group is None:
        return content, ""
    cuts = sorted({m.start() for m in _CUT.finditer(body)} - {0} | {len(body)})
    source = resolver.text(group)
    lo, hi, best = 0, len(cuts) - 1, -1
    while lo <= hi:  # found prefixes are nested: the longest one by bisection
        mid = (lo + hi) // 2
        if source.find_close(body[: cuts[mid]]).found:
            best, lo = mid, mid + 1
        else:
            hi = mid - 1
    if best < 0 or cuts[best] == len(body):
        return content, ""
    end = cuts[best]
    # A full stop after the quote ends the answer's sentence too: it stays in the answer.
    while end > 0 and body[end - 1] in FINAL_PUNCT + ",;:":
        end -= 1
    return content[: lead + end], content[lead + end :]
