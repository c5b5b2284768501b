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
MENTIONED_SCORE = 0.5
UNUSED_SCORE = 0.0


@dataclass(frozen=True)
class SourceUse:
    """One input source and how the answer used it.

    ``citations`` are the citations whose quote it holds (:attr:`Citation.credited`): the
    verified and approximate ones naming it, and misattributed ones naming another source;
    unverified quotes credit nothing. ``rank`` is its place in the model's own ordering
    (cited in order of first citation, then mentioned in order of mention, then the rest in
    input order).
    """

    source: Source
    citations: tuple[Citation, ...]
    mentioned: bool
    score: float
    rank: int

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
            "citations": [c.to_dict() for c in self.citations],
        }


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
    uses = []
    for pos, s in enumerate(sources):
        cites = tuple(by_obj.get(id(s), ()))
        mentioned = s.id in mention_rank
        score = CITED_SCORE if cites else MENTIONED_SCORE if mentioned else UNUSED_SCORE
        key = (
            0 if cites else 1 if mentioned else 2,
            first_cited.get(id(s), 0) if cites else mention_rank.get(s.id, pos),
            pos,
        )
        uses.append((key, SourceUse(s, cites, mentioned, score, 0)))
    uses.sort(key=lambda item: item[0])
    return [
        SourceUse(u.source, u.citations, u.mentioned, u.score, rank)
        for rank, (_, u) in enumerate(uses)
    ]


def cited_uses(answer: PleiasAnswer) -> list[SourceUse]:
    """Only the cited sources, in order of first citation."""
    return [u for u in source_uses(answer) if u.cited]
