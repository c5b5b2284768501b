"""The parsed answer: sections, citations and their verification."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Literal

from .sources import Source

MatchKind = Literal["exact", "normalized", "fuzzy", "none"]
CitationStatus = Literal["verified", "unverified", "misattributed", "unknown_source"]
FinishReason = Literal["stop", "length"]


@dataclass(frozen=True)
class Citation:
    """One ``<ref>`` of the answer, resolved and checked against the sources.

    Attributes:
        number: the marker number ``n`` of ``[n]`` (one number per distinct cited id).
        source_id: the id the model wrote, normalized (``**``, spaces, ``<|source_id|>`` removed).
        quote: the quoted text, one layer of wrapping quotes removed.
        start: start of the ``[n]`` marker in ``PleiasAnswer.answer``.
        end: end of that marker.
        sources: every source with that id (identical texts share one id); empty if unknown.
        source_start: start of the quote in the source text, or None when not found there.
        source_end: end of the quote in the source text, or None.
        match: how the quote was found: ``exact``, ``normalized``, ``fuzzy`` or ``none``.
        score: similarity of the quote to the matched text, 0..1.
        status: ``verified`` (found in the named source), ``misattributed`` (found in another
            source, see ``found_in``), ``unknown_source`` (no source has this id) or
            ``unverified`` (the source exists but the quote is not in it).
        found_in: for a misattributed (or unknown-id) quote, the sources where it was found.
        truncated: the ref was cut off by the end of the output.
    """

    number: int
    source_id: str
    quote: str
    start: int
    end: int
    sources: tuple[Source, ...] = ()
    source_start: int | None = None
    source_end: int | None = None
    match: MatchKind = "none"
    score: float = 0.0
    status: CitationStatus = "unverified"
    found_in: tuple[Source, ...] = ()
    truncated: bool = False

    @property
    def source(self) -> Source | None:
        """The cited source (the first one when several share the id), or None if unknown."""
        return self.sources[0] if self.sources else None

    @property
    def marker(self) -> str:
        return f"[{self.number}]"

    @property
    def verified(self) -> bool:
        return self.status == "verified"

    def to_dict(self) -> dict[str, Any]:
        src = self.source
        return {
            "number": self.number,
            "source_id": self.source_id,
            "quote": self.quote,
            "start": self.start,
            "end": self.end,
            "source_start": self.source_start,
            "source_end": self.source_end,
            "match": self.match,
            "score": self.score,
            "status": self.status,
            "truncated": self.truncated,
            "source": None if src is None else {"id": src.id, "metadata": dict(src.metadata)},
            "found_in": [s.id for s in self.found_in],
        }


@dataclass(frozen=True)
class PleiasAnswer:
    """A Pleias model output, parsed.

    Attributes:
        raw: the generated text as given to the parser.
        dialect: ``hash``, ``numbered`` or ``markdown``.
        answer: the clean answer, each ``<ref>`` replaced by a ``[n]`` marker.
        source_analysis: the model's analysis of the sources ("" when absent).
        sections: the raw text of every section found (``language``, ``query_report``...).
        citations: the answer's citations, in order.
        mentioned_ids: source ids the model named in its reasoning and answer, in order of
            first mention: the model's own ranking of what is relevant.
        finish_reason: ``stop`` when the model finished, ``length`` when the output was cut.
        sources: the sources the answer was checked against, in prompt order.
        dropped_source_ids: sources left out of the prompt (context budget, source limit).
        truncated_source_ids: sources shortened to fit the context.
        prompt_tokens: prompt length in tokens when a backend reports it.
        completion_tokens: output length in tokens when a backend reports it.
    """

    raw: str
    dialect: str
    answer: str
    source_analysis: str = ""
    sections: Mapping[str, str] = field(default_factory=dict)
    citations: tuple[Citation, ...] = ()
    mentioned_ids: tuple[str, ...] = ()
    finish_reason: FinishReason = "stop"
    sources: tuple[Source, ...] = ()
    dropped_source_ids: tuple[str, ...] = ()
    truncated_source_ids: tuple[str, ...] = ()
    prompt_tokens: int | None = None
    completion_tokens: int | None = None

    @property
    def truncated(self) -> bool:
        return self.finish_reason == "length"

    @property
    def language(self) -> str | None:
        lang = self.sections.get("language", "").strip()
        return lang or None

    @property
    def query_report(self) -> str | None:
        report = self.sections.get("query_report", "").strip()
        return report or None

    @property
    def cited_sources(self) -> list[Source]:
        """Every source cited by a resolvable citation, in order of first citation."""
        seen: dict[int, Source] = {}
        for c in self.citations:
            for s in c.sources:
                seen.setdefault(id(s), s)
        return list(seen.values())

    @property
    def mentioned_sources(self) -> list[Source]:
        """Sources the model mentioned (analysis, refs), in order: its relevance ranking."""
        by_id = {s.id: s for s in reversed(self.sources)}
        return [by_id[i] for i in self.mentioned_ids if i in by_id]

    def to_markdown(self) -> str:
        """The answer with Markdown footnotes ``[^n]`` listing each source and its quotes."""
        body = self.answer
        for c in sorted(first_per_number(self.citations), key=lambda c: -c.number):
            body = body.replace(c.marker, f"[^{c.number}]")
        notes = []
        for number, cites in by_number(self.citations).items():
            head = label(cites[0])
            quotes = "; ".join(f'"{c.quote}"' + _flag(c) for c in cites)
            notes.append(f"[^{number}]: {head}: {quotes}")
        return body + ("\n\n" + "\n".join(notes) if notes else "")

    def to_html(self) -> str:
        """The answer as an HTML fragment: linked markers, and each source with its quotes."""
        from .html import answer_fragment

        return answer_fragment(self)


def by_number(citations: tuple[Citation, ...]) -> dict[int, list[Citation]]:
    out: dict[int, list[Citation]] = {}
    for c in citations:
        out.setdefault(c.number, []).append(c)
    return dict(sorted(out.items()))


def first_per_number(citations: tuple[Citation, ...]) -> list[Citation]:
    return [cites[0] for cites in by_number(citations).values()]


def label(c: Citation) -> str:
    src = c.source
    if src is None:
        return f"{c.source_id} (unknown source)"
    bits = [src.id]
    if src.title:
        bits.append(src.title)
    if src.url:
        bits.append(src.url)
    return " — ".join(bits)


def _flag(c: Citation) -> str:
    return "" if c.status == "verified" else f" ({c.status})"
