"""The answer section of a Pleias output made clean text: ``[n]`` markers where the refs
were, and a checked :class:`~pleias_rag.answer.Citation` for each ref.

:class:`~pleias_rag.parser.StreamParser` feeds the answer's tokens to an
:class:`AnswerBuilder`; what comes out is the answer text (``str``) and citations, in order.
"""

from __future__ import annotations

import re

from . import meaning
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
# A sentence ends: final punctuation (and closing marks) before a space or the end, or a line.
_SENTENCE_END = re.compile(r"[.!?…。！？]+[\"'”’»)\]]*(?=\s|$)|[ \t]*\n")
_SENTENCE_STOP = re.compile(r"[ \t]*(?:[.!?…。！？]+[\"'”’»)\]]*(?:\s|$)|\n)")
_ENDS_SENTENCE = re.compile(r"[.!?…。！？]+[\"'”’»)\]]*$")
#: An unclosed bare quote with no sentence end after the words a source holds ends after
#: them only when they are this many words: a claim, not a fragment ("The Eiffel Tower was").
UNCLOSED_MIN_WORDS = 6


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
        if (truncated or unclosed) and quote[:1] in _QUOTE_PAIRS:
            quote = quote[1:].lstrip()  # its closing quote was cut off, or never written
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

    A wrapped quote ends at its closing quote mark. A bare one (or a wrapped one whose closing
    mark never comes) ends where the longest run of its whole words that a source holds (the
    cited one, or any other: a misattributed quote or an unknown id) ends a sentence; else at
    the first sentence end after that run, so that words no source holds stay in the quote
    and never verify a prefix; else, with no sentence end at all, after that run when it is a
    claim's length (:data:`UNCLOSED_MIN_WORDS` words). Only when none of these applies is all
    of it the quote.
    """
    body = content.lstrip()
    lead = len(content) - len(body)
    closer = _QUOTE_PAIRS.get(body[:1])
    opened = 0
    if closer is not None:
        for m in re.finditer(re.escape(closer), body[1:]):
            k = m.end() + 1
            if k >= len(body) or not body[k].isalnum():
                return content[: lead + k], content[lead + k :]
        opened = 1  # no closing mark: read on as a bare quote
    end = _bare_end(body[opened:], resolver, group)
    if end is None:
        return content, ""
    k = lead + opened + end
    return content[:k], content[k:]


def _bare_end(body: str, resolver: Resolver, group: SourceGroup | None) -> int | None:
    """Where a bare unclosed quote ends in ``body`` (see :func:`_split_unclosed`), None when
    all of it is the quote."""
    cuts = sorted({m.start() for m in _CUT.finditer(body)} - {0} | {len(body)})
    found = -1
    others = [g for g in resolver.groups if g is not group]
    for g in ([group] if group is not None else []) + others:
        found = max(found, _longest_held(body, cuts, resolver, g))
    held = cuts[found] if found >= 0 else 0
    if held == len(body):
        return None
    if held and (_SENTENCE_STOP.match(body, held) or _ENDS_SENTENCE.search(body, 0, held)):
        return _trim(body, held)
    stop = _SENTENCE_END.search(body, held)
    if stop is not None:
        return _trim(body, stop.start())
    if meaning.word_count(body[:held]) >= UNCLOSED_MIN_WORDS:
        return _trim(body, held)
    return None


def _longest_held(body: str, cuts: list[int], resolver: Resolver, group: SourceGroup) -> int:
    """The index in ``cuts`` of the longest prefix of ``body`` the group's text holds, -1
    when none."""
    source = resolver.text(group)
    lo, hi, best = 0, len(cuts) - 1, -1
    while lo <= hi:  # found prefixes are nested: the longest one by bisection
        mid = (lo + hi) // 2
        if source.find_close(body[: cuts[mid]]).found:
            best, lo = mid, mid + 1
        else:
            hi = mid - 1
    return best


def _trim(body: str, end: int) -> int:
    """``end`` moved back before spaces and the punctuation that ends the answer's sentence
    too: it stays in the answer."""
    while end > 0 and (body[end - 1].isspace() or body[end - 1] in FINAL_PUNCT + ",;:"):
        end -= 1
    return end
