"""Parsing Pleias output: a sans-I/O stream parser, and ``parse_response`` on top of it.

Feed :class:`StreamParser` the generated text in chunks of any size; it returns events as soon
as they are certain (a section starts or ends, answer text, a finished citation). Closing it
gives the :class:`~pleias_rag.answer.PleiasAnswer`. ``parse_response`` is the same machine fed
the whole text at once, so streaming and one-shot parsing cannot disagree.
"""

from __future__ import annotations

import asyncio
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import TypeVar

from .answer import Citation, FinishReason, PleiasAnswer
from .citing import Resolver
from .dialects import HASH, MARKDOWN, NUMBERED, NUMBERED_SECTIONS
from .lexer import Lexer, Token
from .sources import Source, SourceGroup

SECTIONS = frozenset(NUMBERED_SECTIONS)
_NUMBERED_EVIDENCE = SECTIONS - {"source_analysis", "answer"} | {"source_id"}
_OUTPUT_DIALECTS = (HASH, NUMBERED, MARKDOWN)
_ID_JUNK = re.compile(r"<\|source_id(?:_start|_end)?\|>|\*\*|^[\s\"'“”«»]+|[\s\"'“”«»]+$")
_QUOTE_PAIRS = {'"': '"', "“": "”", "«": "»", "„": "“", "'": "'"}
_FINAL_PUNCT = ".!?…。！？"
_TRAILING_CLOSERS = re.compile(r"(?:\[\d+\]|[\s\"'”’»)\]*_])+$")
# Where a bare quote may end: before a space, or before punctuation that ends a word.
_CUT = re.compile(r"\s+|[^\w\s]+(?=\s|$)")
_MENTION = re.compile(
    r"<\|source_id\|>\s*(?P<num>[0-9]+)"
    r"|<ref\s+name\s*=\s*(?P<ref>(?:<\|[A-Za-z_]+\|>|[^<>])*?)\s*>"
    r"|\*\*(?P<bold>[^*\n]{1,200}?)\*\*"
    r"|\b(?P<hex>[0-9a-f]{16})\b"
)


T = TypeVar("T")

# --- events -------------------------------------------------------------------------------


@dataclass(frozen=True)
class SectionStarted:
    section: str


@dataclass(frozen=True)
class SectionEnded:
    section: str


@dataclass(frozen=True)
class AnswerDelta:
    """Clean answer text, ``[n]`` markers included; all deltas joined equal ``answer``."""

    text: str


@dataclass(frozen=True)
class CitationCompleted:
    citation: Citation


@dataclass(frozen=True)
class Finished:
    """Always the last event: the whole parsed answer."""

    answer: PleiasAnswer


Event = SectionStarted | SectionEnded | AnswerDelta | CitationCompleted | Finished


# --- helpers ------------------------------------------------------------------------------


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


class _AnswerBuilder:
    """Turns answer-section tokens into clean text with ``[n]`` markers and citations."""

    def __init__(self, parser: StreamParser) -> None:
        self._parser = parser
        self.parts: list[str] = []
        self.length = 0
        self.started = False
        self.pending_ws = ""
        self.ref_name: str | None = None
        self.quote_parts: list[str] = []
        self.numbers: dict[str, int] = {}
        self.last_marker: tuple[int, int, int] | None = None
        self.citations: list[Citation] = []

    def _emit(self, text: str, events: list[Event]) -> None:
        self.parts.append(text)
        self.length += len(text)
        events.append(AnswerDelta(text))

    def token(self, tok: Token, events: list[Event]) -> None:
        if tok.kind == "ref_open":
            if self.ref_name is not None:
                self.finish_ref(events, unclosed=True)
            self.ref_name = tok.value
            self.quote_parts = []
        elif tok.kind == "ref_close":
            if self.ref_name is not None:
                self.finish_ref(events)
        elif self.ref_name is not None:
            self.quote_parts.append(tok.raw)
        elif tok.kind == "text":
            self.text(tok.raw, events)

    def text(self, text: str, events: list[Event]) -> None:
        if not self.started:
            text = text.lstrip()
            if not text:
                return
            self.started = True
        core = text.rstrip()
        if core:
            self._emit(self.pending_ws + core, events)
            self.pending_ws = text[len(core) :]
            self.last_marker = None
        else:
            self.pending_ws += text

    def finish_ref(
        self, events: list[Event], *, unclosed: bool = False, truncated: bool = False
    ) -> None:
        """End the open ref: at its ``</ref>``, or, ``unclosed``, where the quote ends
        when the output went on without one (the rest is answer text again), or
        ``truncated`` by the end of the output."""
        assert self.ref_name is not None
        p = self._parser
        sid = normalize_source_id(self.ref_name)
        numbered = p.dialect == NUMBERED
        group = p._resolver.resolve(sid, numbered=numbered)
        content, rest = "".join(self.quote_parts), ""
        if unclosed:
            content, rest = _split_unclosed(content, p._resolver, group)
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
            self._emit(self.pending_ws + marker, events)
            self.pending_ws = ""
            end = start + len(marker)
            self.last_marker = (number, start, end)
        v = p._resolver.check(quote, group, open_end=truncated)
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
        events.append(CitationCompleted(citation))
        if rest.strip():
            self.text(rest, events)


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
    while end > 0 and body[end - 1] in _FINAL_PUNCT + ",;:":
        end -= 1
    return content[: lead + end], content[lead + end :]


# --- the state machine --------------------------------------------------------------------


class StreamParser:
    """Incremental parser of one Pleias output.

    Args:
        sources: the sources of the prompt, in prompt order (ids are resolved and quotes
            checked against them).
        dialect: ``hash``, ``numbered`` or ``markdown``; detected from the text when None.
        start: the section the text starts in, when the caller knows it (a backend that sent
            a prompt ending in ``<|source_analysis_start|>`` passes ``"source_analysis"``).
            When None, text before the first marker is held until a marker says what it was;
            text with no marker at all is the answer (servers that strip special tokens).
        query: the question of the prompt: a quote copied from it rather than from a source
            gets the status ``from_query``.

    Markers are read case-sensitively (``<|ANSWER_END|>`` is text). ``### Answer ###``
    headings and the ``#END#`` / ``</s>`` stops belong to the markdown dialect only: in the
    other two they are text a model copied from a document.
    """

    def __init__(
        self,
        sources: Sequence[Source] = (),
        dialect: str | None = None,
        *,
        start: str | None = None,
        query: str = "",
    ) -> None:
        if dialect is not None and dialect not in _OUTPUT_DIALECTS:
            raise ValueError(f"unknown dialect {dialect!r}: use one of {_OUTPUT_DIALECTS} or None")
        if start is not None and start not in SECTIONS:
            raise ValueError(f"unknown section {start!r}: use one of {sorted(SECTIONS)}")
        self._given = dialect
        self._detected: str | None = None
        if not isinstance(query, str):
            raise TypeError(f"query must be the question (str), got {type(query).__name__}")
        self._sources = tuple(sources)
        self._resolver = Resolver(self._sources, query)
        self._lexer = Lexer()
        self._answer = _AnswerBuilder(self)
        self._texts: dict[str, list[str]] = {}
        self._section: str | None = None
        self._lead: list[Token] | None = None if start else []
        self._after_analysis = False
        self._ended = False
        self._stopped = False
        self._result: PleiasAnswer | None = None
        self._start = start
        self._raw: list[str] = []
        self._saw_marker = False  # a <|...|> section marker: not the markdown dialect
        self._closing = False

    @property
    def dialect(self) -> str:
        return self._given or self._detected or HASH

    @property
    def section(self) -> str | None:
        """The section the text being read belongs to (None before it is known)."""
        return self._section

    def feed(self, chunk: str) -> list[Event]:
        if self._result is not None:
            raise RuntimeError("this StreamParser is closed; make a new one per output")
        if not isinstance(chunk, str):
            raise TypeError(f"feed() takes str chunks, got {type(chunk).__name__}")
        events: list[Event] = []
        self._raw.append(chunk)
        if self._start is not None:
            self._enter(self._start, events)
            self._start = None
        for tok in self._lexer.feed(chunk):
            self._token(tok, events)
        return events

    def close(self, finish_reason: FinishReason | None = None) -> list[Event]:
        """End of output: flush, finish the sections, and build :attr:`result`.

        ``finish_reason`` overrides the reason read from the text (a backend knows whether it
        hit its token limit).
        """
        events = self.feed("") if self._result is None else []
        self._closing = True
        if finish_reason == "stop":
            self._stopped = True  # the backend saw the model stop (its stop string cut off)
        for tok in self._lexer.close():
            self._token(tok, events)
        if self._lead is not None:
            self._resolve_lead(None, events)
        if self._section is not None:
            self._leave(events)
        self._result = self._build(finish_reason)
        events.append(Finished(self._result))
        return events

    @staticmethod
    def may_verify(chunk: str) -> bool:
        """Whether feeding ``chunk`` may finish a citation and so check its quote (CPU work
        an async caller keeps off its event loop). Every token that ends a ref ends in
        ``>`` or ``#``; text alone never does."""
        return ">" in chunk or "#" in chunk

    @property
    def result(self) -> PleiasAnswer:
        if self._result is None:
            raise RuntimeError("call close() first: the answer is known once the output ends")
        return self._result

    # -- tokens --

    def _markdown(self) -> bool:
        if self._given is not None:
            return self._given == MARKDOWN
        return self._detected == MARKDOWN or (self._detected is None and not self._saw_marker)

    def _token(self, tok: Token, events: list[Event]) -> None:
        if self._ended:
            return
        if tok.kind in ("heading", "eos") and (
            not self._markdown() or (tok.value == "analysis" and "answer" in self._texts)
        ):
            tok = Token("text", tok.raw)  # copied from a document, or a section gone back to
        elif tok.kind == "marker" and _structural(tok.value):
            self._saw_marker = True
        if tok.kind == "ref_open" and "<|source_id|>" in tok.value:
            self._detect(NUMBERED)
        if self._lead is not None:
            if tok.kind in ("text", "ref_open", "ref_close") or (
                tok.kind == "marker" and not _structural(tok.value)
            ):
                self._lead.append(tok)
                return
            self._resolve_lead(tok, events)
        if tok.kind == "eos" or (tok.kind == "marker" and tok.value == "end_of_text"):
            self._stopped = self._ended = True
            if self._section is not None:
                self._leave(events)
        elif tok.kind == "heading":
            self._detect(MARKDOWN)
            self._enter("answer" if tok.value == "answer" else "source_analysis", events)
        elif tok.kind == "marker" and _structural(tok.value):
            self._marker(tok.value, events)
        else:
            self._content(tok, events)

    def _marker(self, name: str, events: list[Event]) -> None:
        base, _, edge = name.rpartition("_")
        if base in _NUMBERED_EVIDENCE:
            self._detect(NUMBERED)
        if edge == "start":
            self._enter(base, events)
        elif self._section == base:
            self._leave(events)
            if base == "answer":
                self._stopped = self._ended = True  # what follows is not the model's answer
            elif base == "source_analysis":
                self._after_analysis = True

    def _content(self, tok: Token, events: list[Event]) -> None:
        if self._section is None:
            if self._after_analysis and (tok.kind != "text" or tok.raw.strip()):
                # Hash outputs whose <|answer_start|> was lost: what follows the analysis.
                self._enter("answer", events)
            else:
                return
        section = self._section
        assert section is not None
        self._texts[section].append(tok.raw)
        if section == "answer" and tok.kind != "marker":
            self._answer.token(tok, events)

    def _enter(self, section: str, events: list[Event]) -> None:
        if self._section == section:
            return
        if self._section is not None:
            self._leave(events)
        self._section = section
        self._texts.setdefault(section, [])
        events.append(SectionStarted(section))

    def _leave(self, events: list[Event]) -> None:
        section = self._section
        assert section is not None
        if section == "answer" and self._answer.ref_name is not None:
            if self._closing and not self._stopped:
                self._answer.finish_ref(events, truncated=True)
            else:
                self._answer.finish_ref(events, unclosed=True)
        self._section = None
        events.append(SectionEnded(section))

    def _resolve_lead(self, tok: Token | None, events: list[Event]) -> None:
        lead, self._lead = self._lead or [], None
        if not any(t.kind != "text" or t.raw.strip() for t in lead):
            return
        section = _lead_section(tok)
        if section is None:
            return
        self._enter(section, events)
        for t in lead:
            self._content(t, events)

    def _detect(self, dialect: str) -> None:
        if self._detected is None:
            self._detected = dialect

    # -- result --

    def _build(self, finish_reason: FinishReason | None) -> PleiasAnswer:
        sections = {k: "".join(v).strip() for k, v in self._texts.items()}
        answer = "".join(self._answer.parts)
        citations = tuple(self._answer.citations)
        if finish_reason is None:
            finish_reason = self._finish_reason(answer, citations)
        return PleiasAnswer(
            raw="".join(self._raw),
            dialect=self.dialect,
            answer=answer,
            source_analysis=sections.get("source_analysis", ""),
            sections=sections,
            citations=citations,
            mentioned_ids=self._mentions(sections),
            finish_reason=finish_reason,
            sources=self._sources,
        )

    def _finish_reason(self, answer: str, citations: tuple[Citation, ...]) -> FinishReason:
        if self._lexer.dropped_partial or any(c.truncated for c in citations):
            return "length"
        if self._stopped:
            return "stop"
        if "answer" not in self._texts:
            return "length"
        tail = _TRAILING_CLOSERS.sub("", answer)
        return "stop" if tail and tail[-1] in _FINAL_PUNCT else "length"

    def _mentions(self, sections: dict[str, str]) -> tuple[str, ...]:
        numbered = self.dialect == NUMBERED
        found: dict[str, None] = {}
        for name, text in sections.items():
            if name == "answer":
                continue
            for m in _MENTION.finditer(text):
                raw = next(g for g in m.groups() if g is not None)
                sid = normalize_source_id(raw)
                group = self._resolver.resolve(sid, numbered=numbered or m.group("num") is not None)
                if group is not None:
                    found.setdefault(group.id)
                elif not self._resolver.groups and (m.group("bold") is None or _looks_like_id(sid)):
                    found.setdefault(sid)
        for c in self._answer.citations:
            key = c.source.id if c.source is not None else c.source_id
            if c.source is not None or not self._resolver.groups:
                found.setdefault(key)
        return tuple(found)


def _structural(name: str) -> bool:
    base, _, edge = name.rpartition("_")
    return (edge in ("start", "end") and base in SECTIONS) or name == "end_of_text"


def _lead_section(tok: Token | None) -> str | None:
    """Which section the text before the first structural token belongs to."""
    if tok is None or tok.kind == "eos" or (tok.kind == "marker" and tok.value == "end_of_text"):
        return "answer"
    if tok.kind == "heading":
        return "source_analysis" if tok.value == "answer" else None
    base, _, edge = tok.value.rpartition("_")
    if edge == "end":
        return base
    if base == "answer":
        return "source_analysis"
    if base in NUMBERED_SECTIONS and base != "language":
        return NUMBERED_SECTIONS[NUMBERED_SECTIONS.index(base) - 1]
    return None


def _looks_like_id(sid: str) -> bool:
    return bool(re.fullmatch(r"[0-9a-fA-F]{16}|\d{1,6}", sid))


def parse_response(
    raw: str,
    sources: Sequence[Source] = (),
    dialect: str | None = None,
    *,
    start: str | None = None,
    finish_reason: FinishReason | None = None,
    query: str = "",
) -> PleiasAnswer:
    """Parse a whole Pleias output (see :class:`StreamParser` for the arguments)."""
    if not isinstance(raw, str):
        raise ValueError(f"raw must be the model's output text (str), got {type(raw).__name__}")
    parser = StreamParser(sources, dialect, start=start, query=query)
    parser.feed(raw)
    parser.close(finish_reason)
    return parser.result


async def feed_off_loop(feed: Callable[[str], T], chunk: str) -> T:
    """``feed(chunk)`` for an async caller: in a worker thread when the chunk may finish a
    citation (:meth:`StreamParser.may_verify`: its quote check is CPU work), else inline."""
    if StreamParser.may_verify(chunk):
        return await asyncio.to_thread(feed, chunk)
    return feed(chunk)
