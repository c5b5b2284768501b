"""The parsed answer: sections, citations and their verification."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any, Literal

from .sources import Source
from .verify import WordChange

MatchKind = Literal["exact", "normalized", "elided", "fuzzy", "none"]
CitationStatus = Literal[
    "verified", "approximate", "from_query", "misattributed", "unknown_source", "unverified"
]
FinishReason = Literal["stop", "length"]
#: Statuses whose quote is in the cited source (word for word, or close for approximate).
IN_SOURCE_STATUSES: frozenset[str] = frozenset({"verified", "approximate"})


@dataclass(frozen=True)
class Citation:
    """One ``<ref>`` of the answer, resolved and checked against the sources.

    Attributes:
        number: the marker number ``n`` of ``[n]`` (one number per distinct cited id).
        source_id: the id the model wrote, normalized (``**``, spaces, ``<|source_id|>`` removed).
        quote: the model's quote, one layer of wrapping quotes removed.
        start: start of the ``[n]`` marker in ``PleiasAnswer.answer``.
        end: end of that marker.
        sources: every source with that id (identical texts share one id); empty if unknown.
        source_start: start of the matched words in the cited source's text (verified and
            approximate quotes only, else None).
        source_end: end of those words.
        spans: each matched piece in the cited source (several for an elided quote).
        match: how the quote was found in the cited source: ``exact``, ``normalized``,
            ``elided``, ``fuzzy`` or ``none``.
        score: similarity of the quote to the matched words, 0..1.
        status: what the quote is worth (see ``docs/citations.md``):

            - ``verified``: in the cited source word for word, or after a normalization that
              cannot change a number, a sign, a unit or a negation (spacing, case, quote
              styles); an elided quote when every piece is, in order.
            - ``approximate``: close to a passage of the cited source but not the same words
              (see ``changes``); never a change to a number, a unit or a negation.
            - ``from_query``: not in any source but in the query: the model quoted the question.
            - ``misattributed``: not in the cited source but in another (``found_in``).
            - ``unknown_source``: no source has this id.
            - ``unverified``: the source exists and the quote is not in it (``note`` says why).
        found_in: sources holding the quote word for word when it is not in the cited one
            (misattributed, or unknown id).
        found_start: start of the quote in ``found_in[0]``'s text, or None.
        found_end: end of it.
        matched_text: the source's own words for the quote: the cited source's (verified,
            approximate) or ``found_in[0]``'s (misattributed); "" when none matched.
        changes: word differences between the quote and the closest passage (approximate
            quotes, and unverified ones that came close).
        note: why the quote is not verified, in words ("" when it is).
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
    spans: tuple[tuple[int, int], ...] = ()
    found_start: int | None = None
    found_end: int | None = None
    matched_text: str = ""
    changes: tuple[WordChange, ...] = ()
    note: str = ""

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

    @property
    def credited(self) -> tuple[Source, ...]:
        """The sources that hold this quote, which rankings credit: the cited ones for a
        verified or approximate quote, the first ``found_in`` text for a misattributed one
        (with its identical copies), none otherwise."""
        if self.status in IN_SOURCE_STATUSES:
            return self.sources
        if self.status == "misattributed" and self.found_in:
            text = self.found_in[0].text
            return tuple(s for s in self.found_in if s.text == text)
        return ()

    @property
    def credited_span(self) -> tuple[int | None, int | None]:
        """Offsets of the quote in the text of :attr:`credited` sources."""
        if self.status in IN_SOURCE_STATUSES:
            return self.source_start, self.source_end
        if self.status == "misattributed":
            return self.found_start, self.found_end
        return None, None

    def to_dict(self) -> dict[str, Any]:
        """The citation as JSON-ready data: the one citation dict every view and adapter
        exposes (adapters only add their own keys, such as node ids).

        Keys:

        - ``number``: the ``n`` of the ``[n]`` marker.
        - ``answer_start``/``answer_end``: that marker in ``PleiasAnswer.answer``.
        - ``written_id``: the id the model wrote, normalized (:attr:`source_id`).
        - ``cited_id``: the id of the source it names; None when no source has that id.
        - ``quote``: the model's quote; ``matched_text``: the source's own words for it.
        - ``status``, ``match``, ``score``, ``note``, ``truncated``; ``changes`` as
          ``{"op", "quote", "source"}`` dicts.
        - ``source_start``/``source_end``: the quote's words in the text of the source that
          holds it (:attr:`credited`): the cited source for a verified or approximate quote,
          ``found_in[0]`` for a misattributed one; None when no source holds it.
        - ``spans``: each matched piece in the cited source (several for an elided quote).
        - ``found_in``: ids of the sources holding the quote word for word when the cited
          one does not (misattributed, or unknown id); ``found_start``/``found_end``: the
          quote in ``found_in[0]``.

        :meth:`from_dict` reads it back.
        """
        named = self.source
        start, end = self.credited_span
        return {
            "number": self.number,
            "answer_start": self.start,
            "answer_end": self.end,
            "written_id": self.source_id,
            "cited_id": None if named is None else named.id,
            "quote": self.quote,
            "matched_text": self.matched_text,
            "status": self.status,
            "match": self.match,
            "score": self.score,
            "note": self.note,
            "changes": [c.to_dict() for c in self.changes],
            "truncated": self.truncated,
            "source_start": start,
            "source_end": end,
            "spans": [list(s) for s in self.spans],
            "found_in": list(dict.fromkeys(s.id for s in self.found_in)),
            "found_start": self.found_start,
            "found_end": self.found_end,
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any], sources: Iterable[Source] = ()) -> Citation:
        """The citation of a :meth:`to_dict` dict, pointing at ``sources`` again (by id).

        ``cited_id`` and ``found_in`` map to every source of ``sources`` with that id; an id
        none has maps to nothing.
        """
        by_id: dict[str, list[Source]] = {}
        for s in sources:
            by_id.setdefault(s.id, []).append(s)
        status = data.get("status", "unverified")
        cited = data.get("cited_id")
        in_source = status in IN_SOURCE_STATUSES
        start, end = data.get("source_start"), data.get("source_end")
        return cls(
            number=int(data.get("number", 0)),
            source_id=str(data.get("written_id", "")),
            quote=str(data.get("quote", "")),
            start=int(data.get("answer_start", 0)),
            end=int(data.get("answer_end", 0)),
            sources=tuple(by_id.get(str(cited), ())) if cited is not None else (),
            source_start=start if in_source else None,
            source_end=end if in_source else None,
            spans=tuple((int(a), int(b)) for a, b in data.get("spans", ())),
            match=data.get("match", "none"),
            score=float(data.get("score", 0.0)),
            status=status,
            found_in=tuple(s for fid in data.get("found_in", ()) for s in by_id.get(fid, ())),
            found_start=data.get("found_start"),
            found_end=data.get("found_end"),
            matched_text=str(data.get("matched_text", "")),
            changes=tuple(
                WordChange(str(c.get("quote", "")), str(c.get("source", "")))
                for c in data.get("changes", ())
            ),
            note=str(data.get("note", "")),
            truncated=bool(data.get("truncated", False)),
        )


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
        """Every source that holds a quote of the answer (:attr:`Citation.credited`: for a
        misattributed quote the source it is really in), in order of first citation."""
        seen: dict[int, Source] = {}
        for c in self.citations:
            for s in c.credited:
                seen.setdefault(id(s), s)
        return list(seen.values())

    @property
    def mentioned_sources(self) -> list[Source]:
        """Sources the model mentioned (analysis, refs), in order: its relevance ranking."""
        by_id = {s.id: s for s in reversed(self.sources)}
        return [by_id[i] for i in self.mentioned_ids if i in by_id]

    def to_markdown(self) -> str:
        """The answer with Markdown footnotes ``[^n]`` listing each source and its quotes
        (:func:`pleias_rag.views.markdown.to_markdown`)."""
        from .views.markdown import to_markdown

        return to_markdown(self)

    def to_html(self) -> str:
        """The answer as an HTML fragment: linked markers, and each source with its quotes
        (:func:`pleias_rag.views.html.answer_fragment`)."""
        from .views.html import answer_fragment

        return answer_fragment(self)
