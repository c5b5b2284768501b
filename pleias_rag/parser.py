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
from enum import Enum
from typing import TypeVar

from ._answer_builder import FINAL_PUNCT, AnswerBuilder, Output
from ._answer_builder import normalize_source_id as normalize_source_id
from ._answer_builder import strip_quote as strip_quote
from .answer import Citation, FinishReason, PleiasAnswer
from .citing import Resolver
from .dialects import HASH, MARKDOWN, NUMBERED, NUMBERED_MAX_SOURCES, NUMBERED_SECTIONS
from .errors import InvalidArgument, InvalidType
from .lexer import Lexer, Token
from .sources import Source

SECTIONS = frozenset(NUMBERED_SECTIONS)
_NUMBERED_EVIDENCE = SECTIONS - {"source_analysis", "answer"} | {"source_id"}
_OUTPUT_DIALECTS = (HASH, NUMBERED, MARKDOWN)
_HEX_ID = re.compile(r"[0-9a-fA-F]{16}")
_POSITION = re.compile(r"[0-9]{1,6}")
_TRAILING_CLOSERS = re.compile(r"(?:\[\d+\]|[\s\"'”’»)\]*_])+$")
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
class SectionText:
    """Raw text of a section other than the answer (the source analysis...), as it comes;
    joined and stripped, a section's pieces equal ``PleiasAnswer.sections[section]``."""

    section: str
    text: str


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


Event = SectionStarted | SectionText | SectionEnded | AnswerDelta | CitationCompleted | Finished


# --- the state machine --------------------------------------------------------------------
#
# Theory of operation (the way h11 does it). The lexer cuts the text into tokens. Each token
# is read as a symbol (:class:`_Symbol`: what it means where the parser stands: the end of
# the open section, the end of another one...) and ``_TRANSITIONS`` maps (phase, symbol) to
# an action and the next phase. The end of the output is a symbol too: EOF, or STOP when the
# backend says the model stopped (as ``<|end_of_text|>`` would have).
#
#   BEGIN            nothing fed yet; the first feed() goes to IN_SECTION(start) when the
#                    caller named the start section, else to LEAD.
#   LEAD             text before the first structural token, held: only that token says
#                    whose it is (``<|answer_end|>``: the answer's, ``<|answer_start|>``: the
#                    analysis's). With none at all, the end of output makes it the answer.
#   IN_SECTION(s)    inside section ``s``: its text is kept, the answer's built.
#   BETWEEN          no section open: text is dropped.
#   IN_LATE_SECTION(s), AFTER_ANALYSIS: the same two once ``<|source_analysis_end|>`` was
#                    read; from then on text that is not blank outside any section opens the
#                    answer (a hash output whose ``<|answer_start|>`` was lost).
#   DONE             the model stopped (``<|end_of_text|>``, ``<|answer_end|>``, ``</s>`` or
#                    ``#END#`` in markdown): what follows is not its answer, and is ignored.
#
# A pair missing from the table is a token out of place (the end of a section that is not
# open, the start of the one that is, text between sections): it changes nothing, as it
# never did. DONE has no transitions at all. Actions in ``_AGAIN`` read the same input once
# more in the new phase (the held lead is replayed, then the token that placed it is read).


class _Phase(Enum):
    BEGIN = "begin"
    LEAD = "lead"
    IN_SECTION = "in_section"
    BETWEEN = "between"
    IN_LATE_SECTION = "in_late_section"
    AFTER_ANALYSIS = "after_analysis"
    DONE = "done"


class _Symbol(Enum):
    BEGIN = "begin"  # the first feed, no start section given
    BEGIN_IN = "begin_in"  # the first feed, start section given
    TEXT = "text"  # text, refs, markers that are not structural
    BLANK = "blank"  # whitespace only
    OPEN = "open"  # a section's start marker or markdown heading
    REOPEN = "reopen"  # the start marker of the open section
    END = "end"  # the end marker of the open section
    END_ANALYSIS = "end_analysis"  # ... when it is the source analysis
    END_ANSWER = "end_answer"  # ... when it is the answer
    STRAY_END = "stray_end"  # the end marker of a section not open
    STOP = "stop"  # end of text: <|end_of_text|>, </s>, #END#, or close("stop")
    EOF = "eof"  # close() otherwise
    LEAD_OWNED = "lead_owned"  # in LEAD, a structural token that says whose the lead is
    LEAD_ORPHAN = "lead_orphan"  # ... one that does not, or a lead that is blank


class _Action(Enum):
    NONE = "none"
    HOLD = "hold"  # keep the token in the lead
    REPLAY = "replay"  # enter the lead's section, read the lead into it
    DROP_LEAD = "drop_lead"
    ENTER = "enter"
    SWITCH = "switch"  # leave the open section, enter another
    KEEP = "keep"  # the token is the open section's text
    LEAVE = "leave"  # an open ref in the answer is unclosed
    TRUNCATE = "truncate"  # leave at the end of output: an open ref was cut off
    OPEN_ANSWER = "open_answer"


_P, _S, _A = _Phase, _Symbol, _Action
_TRANSITIONS: dict[tuple[_Phase, _Symbol], tuple[_Action, _Phase]] = {
    (_P.BEGIN, _S.BEGIN): (_A.NONE, _P.LEAD),
    (_P.BEGIN, _S.BEGIN_IN): (_A.ENTER, _P.IN_SECTION),
    (_P.LEAD, _S.TEXT): (_A.HOLD, _P.LEAD),
    (_P.LEAD, _S.BLANK): (_A.HOLD, _P.LEAD),
    (_P.LEAD, _S.LEAD_OWNED): (_A.REPLAY, _P.IN_SECTION),
    (_P.LEAD, _S.LEAD_ORPHAN): (_A.DROP_LEAD, _P.BETWEEN),
    (_P.IN_SECTION, _S.TEXT): (_A.KEEP, _P.IN_SECTION),
    (_P.IN_SECTION, _S.BLANK): (_A.KEEP, _P.IN_SECTION),
    (_P.IN_SECTION, _S.OPEN): (_A.SWITCH, _P.IN_SECTION),
    (_P.IN_SECTION, _S.END): (_A.LEAVE, _P.BETWEEN),
    (_P.IN_SECTION, _S.END_ANALYSIS): (_A.LEAVE, _P.AFTER_ANALYSIS),
    (_P.IN_SECTION, _S.END_ANSWER): (_A.LEAVE, _P.DONE),
    (_P.IN_SECTION, _S.STOP): (_A.LEAVE, _P.DONE),
    (_P.IN_SECTION, _S.EOF): (_A.TRUNCATE, _P.BETWEEN),
    (_P.BETWEEN, _S.OPEN): (_A.ENTER, _P.IN_SECTION),
    (_P.BETWEEN, _S.STOP): (_A.NONE, _P.DONE),
    (_P.IN_LATE_SECTION, _S.TEXT): (_A.KEEP, _P.IN_LATE_SECTION),
    (_P.IN_LATE_SECTION, _S.BLANK): (_A.KEEP, _P.IN_LATE_SECTION),
    (_P.IN_LATE_SECTION, _S.OPEN): (_A.SWITCH, _P.IN_LATE_SECTION),
    (_P.IN_LATE_SECTION, _S.END): (_A.LEAVE, _P.AFTER_ANALYSIS),
    (_P.IN_LATE_SECTION, _S.END_ANALYSIS): (_A.LEAVE, _P.AFTER_ANALYSIS),
    (_P.IN_LATE_SECTION, _S.END_ANSWER): (_A.LEAVE, _P.DONE),
    (_P.IN_LATE_SECTION, _S.STOP): (_A.LEAVE, _P.DONE),
    (_P.IN_LATE_SECTION, _S.EOF): (_A.TRUNCATE, _P.AFTER_ANALYSIS),
    (_P.AFTER_ANALYSIS, _S.TEXT): (_A.OPEN_ANSWER, _P.IN_LATE_SECTION),
    (_P.AFTER_ANALYSIS, _S.OPEN): (_A.ENTER, _P.IN_LATE_SECTION),
    (_P.AFTER_ANALYSIS, _S.STOP): (_A.NONE, _P.DONE),
}
_AGAIN = frozenset({_A.REPLAY, _A.DROP_LEAD, _A.OPEN_ANSWER})


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
            raise InvalidArgument(
                f"unknown dialect {dialect!r}: use one of {_OUTPUT_DIALECTS} or None"
            )
        if start is not None and start not in SECTIONS:
            raise InvalidArgument(f"unknown section {start!r}: use one of {sorted(SECTIONS)}")
        self._given = dialect
        # None until the text shows it. A <|...|> section marker makes it hash, presumed only:
        # not markdown, and numbered if numbered-only evidence follows. With no evidence at
        # all the text is read as numbered (the current models; servers that strip special
        # tokens).
        self._detected: str | None = None
        self._hash_ids = False  # a ref named a source by its own id
        self._line_start = True  # the next token starts a line (a heading must)
        self._read = False  # something other than blank text was read
        if not isinstance(query, str):
            raise InvalidType(f"query must be the question (str), got {type(query).__name__}")
        self._sources = tuple(sources)
        self._resolver = Resolver(self._sources, query)
        self._lexer = Lexer()
        self._answer = AnswerBuilder(self._resolver)
        self._texts: dict[str, list[str]] = {}
        self._phase = _Phase.BEGIN
        self._section: str | None = None  # set in the IN_*SECTION phases only
        self._lead: list[Token] = []  # the tokens held in LEAD
        self._start = start
        self._result: PleiasAnswer | None = None
        self._raw: list[str] = []

    @property
    def dialect(self) -> str:
        return self._given or self._detected or NUMBERED

    @property
    def section(self) -> str | None:
        """The section the text being read belongs to (None before it is known)."""
        return self._section

    def feed(self, chunk: str) -> list[Event]:
        if self._result is not None:
            raise RuntimeError("this StreamParser is closed; make a new one per output")
        if not isinstance(chunk, str):
            raise InvalidType(f"feed() takes str chunks, got {type(chunk).__name__}")
        events: list[Event] = []
        self._raw.append(chunk)
        if self._phase is _Phase.BEGIN:
            self._step(_Symbol.BEGIN, events)
        for tok in self._lexer.feed(chunk):
            self._token(tok, events)
        return events

    def close(self, finish_reason: FinishReason | None = None) -> list[Event]:
        """End of output: flush, finish the sections, and build :attr:`result`.

        ``finish_reason`` overrides the reason read from the text (a backend knows whether it
        hit its token limit).
        """
        _check_finish_reason(finish_reason)
        events = self.feed("") if self._result is None else []
        for tok in self._lexer.close():
            self._token(tok, events)
        # "stop": the backend saw the model stop (its stop string cut off).
        self._step(_Symbol.STOP if finish_reason == "stop" else _Symbol.EOF, events)
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
        return self._detected == MARKDOWN

    def _detect(self, dialect: str) -> None:
        if self._detected in (None, HASH):  # hash is only ever presumed
            self._detected = dialect

    def _heading(self, tok: Token) -> bool:
        """Whether a ``### Analysis ###`` / ``### Answer ###`` heading is one: on a line of
        its own, in the markdown dialect (given, or no other dialect's marker read), for a
        section not entered yet, and the analysis one only as the first thing written."""
        section = "answer" if tok.value == "answer" else "source_analysis"
        if not self._line_start or section in self._texts:
            return False
        if self._given is None and self._detected not in (None, MARKDOWN):
            return False
        return section == "answer" or not self._read

    def _ref_evidence(self, name: str) -> None:
        """What a ref's id says of the dialect: ``<|source_id|>``, or a source's position
        that is no source's id, is numbered; a source's own id, a 16-hex id or, without
        sources, a number above the numbered models' source limit is hash."""
        if "<|source_id|>" in name:
            self._detect(NUMBERED)
            return
        if self._detected not in (None, HASH) or self._hash_ids:
            return
        sid = normalize_source_id(name)
        groups = self._resolver.groups
        if self._resolver.resolve(sid, numbered=False) is not None or _HEX_ID.fullmatch(sid):
            self._hash_ids = True
            self._detected = self._detected or HASH
        elif _POSITION.fullmatch(sid):
            if groups and int(sid) <= len(groups):
                self._detect(NUMBERED)
            elif not groups and int(sid) > NUMBERED_MAX_SOURCES:
                self._detected = self._detected or HASH

    def _token(self, tok: Token, events: list[Event]) -> None:
        if self._phase is _Phase.DONE:
            return  # not even evidence of the dialect
        if self._given is None and tok.kind == "heading" and self._heading(tok):
            self._detect(MARKDOWN)
        if tok.kind == "heading" and not (self._markdown() and self._heading(tok)):
            tok = Token("text", tok.raw)  # copied from a document, or a section gone back to
        elif tok.kind == "eos" and not self._markdown():
            tok = Token("text", tok.raw)  # "#END#" and "</s>" stop the markdown dialect only
        elif tok.kind == "marker" and _structural(tok.value):
            if self._detected is None:
                self._detected = HASH
            if tok.value.rpartition("_")[0] in _NUMBERED_EVIDENCE:
                self._detect(NUMBERED)
        elif tok.kind == "marker" and tok.value == "source_id":
            self._detect(NUMBERED)
        elif tok.kind == "ref_open" and self._given is None:
            self._ref_evidence(tok.value)
        self._follow(tok)
        self._step(tok, events)

    def _follow(self, tok: Token) -> None:
        """Keep track of where a line starts, and whether anything but blank text was read."""
        if tok.kind == "text":
            line = tok.raw.rstrip(" \t")
            if line:
                self._line_start = line.endswith(("\n", "\r"))
            self._read = self._read or bool(tok.raw.strip())
        else:
            self._line_start = tok.kind in ("marker", "heading")
            self._read = True

    def _step(self, item: Token | _Symbol, events: list[Event]) -> None:
        """Run one input through the transition table."""
        while True:
            symbol, name = self._symbol(item)
            action, phase = _TRANSITIONS.get((self._phase, symbol), (_Action.NONE, self._phase))
            self._act(action, name, item, events)
            self._phase = phase
            if action not in _AGAIN:
                return

    def _symbol(self, item: Token | _Symbol) -> tuple[_Symbol, str]:
        """What ``item`` means in the current phase, and the section it names."""
        if item is _Symbol.BEGIN and self._start is not None:
            return _Symbol.BEGIN_IN, self._start
        symbol, name = (item, "") if isinstance(item, _Symbol) else _meaning(item)
        if self._phase is _Phase.LEAD and symbol not in (_Symbol.TEXT, _Symbol.BLANK):
            held = any(t.kind != "text" or t.raw.strip() for t in self._lead)
            owner = _lead_section(item if isinstance(item, Token) else None) if held else None
            return (_Symbol.LEAD_ORPHAN, "") if owner is None else (_Symbol.LEAD_OWNED, owner)
        if symbol is _Symbol.OPEN and name == self._section:
            return _Symbol.REOPEN, name
        if symbol is _Symbol.END:
            if name != self._section:
                return _Symbol.STRAY_END, name
            if name == "answer":
                return _Symbol.END_ANSWER, name
            if name == "source_analysis":
                return _Symbol.END_ANALYSIS, name
        return symbol, name

    def _act(self, action: _Action, name: str, item: Token | _Symbol, events: list[Event]) -> None:
        if action is _Action.HOLD:
            assert isinstance(item, Token)
            self._lead.append(item)
        elif action is _Action.REPLAY:
            lead, self._lead = self._lead, []
            self._enter(name, events)
            for tok in lead:
                self._keep(tok, events)
        elif action is _Action.DROP_LEAD:
            self._lead = []
        elif action is _Action.ENTER:
            self._enter(name, events)
        elif action is _Action.SWITCH:
            self._leave(events)
            self._enter(name, events)
        elif action is _Action.KEEP:
            assert isinstance(item, Token)
            self._keep(item, events)
        elif action in (_Action.LEAVE, _Action.TRUNCATE):
            self._leave(events, truncated=action is _Action.TRUNCATE)
        elif action is _Action.OPEN_ANSWER:
            self._enter("answer", events)

    def _keep(self, tok: Token, events: list[Event]) -> None:
        section = self._section
        assert section is not None
        self._texts[section].append(tok.raw)
        if section != "answer":
            events.append(SectionText(section, tok.raw))
        elif tok.kind != "marker":
            out: list[Output] = []
            self._answer.token(tok, out, numbered=self.dialect == NUMBERED)
            events += map(_answer_event, out)

    def _enter(self, section: str, events: list[Event]) -> None:
        self._section = section
        self._texts.setdefault(section, [])
        events.append(SectionStarted(section))

    def _leave(self, events: list[Event], *, truncated: bool = False) -> None:
        section = self._section
        assert section is not None
        if section == "answer":
            out: list[Output] = []
            self._answer.end(out, numbered=self.dialect == NUMBERED, truncated=truncated)
            events += map(_answer_event, out)
        self._section = None
        events.append(SectionEnded(section))

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
        if self._phase is _Phase.DONE:
            return "stop"
        if "answer" not in self._texts:
            return "length"
        tail = _TRAILING_CLOSERS.sub("", answer)
        return "stop" if tail and tail[-1] in FINAL_PUNCT else "length"

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


def _answer_event(out: Output) -> Event:
    return AnswerDelta(out) if isinstance(out, str) else CitationCompleted(out)


def _structural(name: str) -> bool:
    base, _, edge = name.rpartition("_")
    return (edge in ("start", "end") and base in SECTIONS) or name == "end_of_text"


def _meaning(tok: Token) -> tuple[_Symbol, str]:
    """A token as a symbol before the phase is known: TEXT, BLANK, OPEN, END or STOP."""
    if tok.kind == "eos" or (tok.kind == "marker" and tok.value == "end_of_text"):
        return _Symbol.STOP, ""
    if tok.kind == "heading":
        return _Symbol.OPEN, "answer" if tok.value == "answer" else "source_analysis"
    if tok.kind == "marker" and _structural(tok.value):
        base, _, edge = tok.value.rpartition("_")
        return (_Symbol.OPEN if edge == "start" else _Symbol.END), base
    if tok.kind == "text" and not tok.raw.strip():
        return _Symbol.BLANK, ""
    return _Symbol.TEXT, ""


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
        raise InvalidArgument(
            f"raw must be the model's output text (str), got {type(raw).__name__}"
        )
    _check_finish_reason(finish_reason)
    parser = StreamParser(sources, dialect, start=start, query=query)
    parser.feed(raw)
    parser.close(finish_reason)
    return parser.result


def _check_finish_reason(finish_reason: object) -> None:
    if finish_reason not in (None, "stop", "length"):
        raise InvalidArgument(
            f"finish_reason must be 'stop', 'length' or None (read from the text), got "
            f"{finish_reason!r}"
        )


async def feed_off_loop(feed: Callable[[str], T], chunk: str) -> T:
    """``feed(chunk)`` for an async caller: in a worker thread when the chunk may finish a
    citation (:meth:`StreamParser.may_verify`: its quote check is CPU work), else inline."""
    if StreamParser.may_verify(chunk):
        return await asyncio.to_thread(feed, chunk)
    return feed(chunk)
