"""What the answer says about each source: the shared logic behind cited documents/nodes and
rerankers in both framework adapters."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from ..answer import Citation, PleiasAnswer
from ..sources import Source

#: Relevance given to a source by how the model used it (higher is more relevant).
CITED_SCORE = 1.0
#: A source whose only quotes are approximate: it holds words close to them, not them.
APPROXIMATE_SCORE = 0.75
MENTIONED_SCORE = 0.5
UNUSED_SCORE = 0.0


@dataclass(frozen=True)
class SourceUse:
    """One input source and how the answer used it.

    ``citations`` are the citations whose quote it holds (:attr:`Citation.credited`): the
    verified and approximate ones naming it, and misattributed ones naming another source;
    unverified quotes credit nothing. A source credited by approximate quotes only scores
    :data:`APPROXIMATE_SCORE` and ranks after those holding a quote word for word. ``rank``
    is its place in the model's own ordering: cited in order of first citation, then
    mentioned in order of mention, then the sources the model never saw (left out of the
    prompt by the context budget or the source limit:
    ``seen`` is False and ``score`` None, their relevance is unknown), then the rest, seen and
    unused, in input order.
    """

    source: Source
    citations: tuple[Citation, ...]
    mentioned: bool
    score: float | None
    rank: int
    seen: bool = True

    @property
    def cited(self) -> bool:
        return bool(self.citations)

    def annotations(self) -> dict[str, Any]:
        """JSON-ready description of how the answer used this source, for a framework
        object's metadata: ``source_id``, ``relevance_score`` and ``citations``, the
        :meth:`~pleias_rag.answer.Citation.to_dict` of each citation it holds.

        This source holds each of those quotes, so their ``source_start``/``source_end`` are
        offsets in THIS source's text (for a misattributed quote: where it really is, the
        source it was cited as being ``cited_id``).
        """
        return {
            "source_id": self.source.id,
            "relevance_score": self.score,
            "seen": self.seen,
            "citations": [c.to_dict() for c in self.citations],
        }


def cited_score(citations: Sequence[Citation]) -> float:
    """The score of a source credited by ``citations``: :data:`CITED_SCORE` when one of them
    is in it word for word (verified, or misattributed to another), else
    :data:`APPROXIMATE_SCORE`."""
    if any(c.status != "approximate" for c in citations):
        return CITED_SCORE
    return APPROXIMATE_SCORE


def source_uses(answer: PleiasAnswer, sources: Sequence[Source] | None = None) -> list[SourceUse]:
    """Every source (the answer's own by default), ranked by the model's use of it."""
    sources = list(answer.sources if sources is None else sources)
    by_obj: dict[int, list[Citation]] = {}
    first_cited: dict[int, int] = {}
    for i, c in enumerate(answer.citations):
        for s in c.credited:
            by_obj.setdefault(id(s), []).append(c)
            first_cited.setdefault(id(s), i)
    mention_rank = {sid: i for i, sid in enumerate(answer.mentioned_ids)}
    unseen = set(answer.dropped_source_ids)
    uses = []
    for pos, s in enumerate(sources):
        cites = tuple(by_obj.get(id(s), ()))
        mentioned = s.id in mention_rank
        seen = bool(cites or mentioned) or s.id not in unseen
        score: float | None = (
            cited_score(cites) if cites else MENTIONED_SCORE if mentioned else UNUSED_SCORE
        )
        exact = score == CITED_SCORE
        group = 0 if exact else 1 if cites else 2 if mentioned else 4 if seen else 3
        key = (
            group,
            first_cited.get(id(s), 0) if cites else mention_rank.get(s.id, pos),
            pos,
        )
        uses.append((key, SourceUse(s, cites, mentioned, score if seen else None, 0, seen)))
    uses.sort(key=lambda item: item[0])
    return [
        SourceUse(u.source, u.citations, u.mentioned, u.score, rank, u.seen)
        for rank, (_, u) in enumerate(uses)
    ]


def cited_uses(answer: PleiasAnswer) -> list[SourceUse]:
    """Only the cited sources, in order of first citation."""
    return [u for u in source_uses(answer) if u.cited]
