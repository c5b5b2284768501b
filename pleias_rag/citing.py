"""What a citation names and what its quote is worth: ids resolved to source groups (by
position in the numbered dialect), quotes checked against the sources and the query."""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass

from . import meaning
from .answer import CitationStatus
from .sources import Source, SourceGroup, group_sources
from .verify import NOT_FOUND, QuoteMatch, SourceText

_POSITION = re.compile(r"[0-9]{1,6}")


@dataclass(frozen=True)
class Verdict:
    """What checking one quote found (see :class:`~pleias_rag.answer.Citation`)."""

    status: CitationStatus
    match: QuoteMatch = NOT_FOUND
    matched_text: str = ""
    found_in: tuple[Source, ...] = ()
    found: QuoteMatch = NOT_FOUND
    note: str = ""


class Resolver:
    """Maps written ids to source groups and checks quotes against their texts."""

    def __init__(self, sources: Sequence[Source], query: str = "") -> None:
        self.groups = group_sources(sources)
        self.by_id = {g.id: g for g in self.groups}
        self.by_lower = {g.id.lower(): g for g in reversed(self.groups)}
        self._texts: dict[str, SourceText] = {}
        self._query = SourceText(query) if query.strip() else None

    def resolve(self, sid: str, *, numbered: bool) -> SourceGroup | None:
        # The numbered prompt labels sources by position only: a number is a position there,
        # even when some source's own id is that number.
        if numbered and _POSITION.fullmatch(sid):
            pos = int(sid)
            return self.groups[pos - 1] if 1 <= pos <= len(self.groups) else None
        return self.by_id.get(sid) or self.by_lower.get(sid.lower())

    def text(self, group: SourceGroup) -> SourceText:
        if group.id not in self._texts:
            self._texts[group.id] = SourceText(group.text)
        return self._texts[group.id]

    def check(self, quote: str, group: SourceGroup | None, *, open_end: bool) -> Verdict:
        unresolved: CitationStatus = "unknown_source" if group is None else "unverified"
        if not quote:
            return Verdict(unresolved, note="the quote is empty")
        if meaning.too_short(quote):
            return Verdict(unresolved, note="the quote is too short to carry a claim")
        # The cited source first, fuzzy included: its close match serves below when the quote
        # is in no other source.
        named = NOT_FOUND
        if group is not None:
            named = self.text(group).locate(quote, open_end=open_end)
            if named.verbatim:
                return Verdict("verified", named, named.matched_text(group.text))
        elsewhere: list[Source] = []
        first = NOT_FOUND
        for other in self.groups:
            if other is group:
                continue
            m = self.text(other).locate(quote, fuzzy=False, open_end=open_end)
            if m.verbatim:
                if not elsewhere:
                    first = m
                elsewhere.extend(other.members)
        found_text = first.matched_text(elsewhere[0].text) if elsewhere else ""
        if group is None:
            note = "no source has this id" + (" (the quote is in another one)" if elsewhere else "")
            return Verdict("unknown_source", NOT_FOUND, "", tuple(elsewhere), first, note)
        if elsewhere:
            note = "the quote is in another source than the one cited"
            return Verdict("misattributed", NOT_FOUND, found_text, tuple(elsewhere), first, note)
        if self._in_query(quote, named):
            return Verdict("from_query", note="the quote is copied from the query, not a source")
        if named.kind == "fuzzy" and not named.problem:
            return Verdict("approximate", named, named.matched_text(group.text))
        note = named.problem or "the quote is not in the cited source"
        return Verdict("unverified", _near_miss(named), "", note=note)

    def _in_query(self, quote: str, close: QuoteMatch) -> bool:
        if self._query is None:
            return False
        in_query = self._query.locate(quote)
        # Word for word in the query, or closer to it than to the source: a copied claim.
        return in_query.verbatim or (
            in_query.found and (not close.found or in_query.score > close.score)
        )


def _near_miss(close: QuoteMatch) -> QuoteMatch:
    """An unverified quote keeps the word changes of its near miss, not its offsets."""
    return QuoteMatch("none", 0.0, changes=close.changes, problem=close.problem)
