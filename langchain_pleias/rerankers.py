"""``PleiasReranker``: documents ranked by what a Pleias model made of them."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from langchain_core.callbacks import Callbacks
from langchain_core.documents import BaseDocumentCompressor, Document
from pydantic import ConfigDict, Field

from pleias_rag.answer import PleiasAnswer
from pleias_rag.sources import Source
from pleias_rag.views.ranking import SourceUse, source_uses

from ._convert import PleiasParams, annotated_copy, documents_to_sources

#: Where ``analysis_only`` stops generating: the model has judged the sources by then.
ANALYSIS_STOP = "<|answer_start|>"


class PleiasReranker(PleiasParams, BaseDocumentCompressor):
    """Reorder and filter documents by how a Pleias model used them for a query.

    The model reads the query and the documents and writes its source analysis and answer.
    Documents cited in the answer come first (in order of first citation, relevance score
    1.0), then those mentioned in the analysis (in order of mention, 0.5), then the ones the
    model never saw (the context window could not hold them: always returned, relevance
    ``None``, ``pleias_seen`` False, and a warning is logged), then the rest (0.0, left out
    unless ``keep_unused``). Each returned document is a copy whose metadata adds
    ``relevance_score``, ``pleias_seen``, ``pleias_source_id`` and ``pleias_citations``.

    With ``analysis_only=True`` generation stops where the answer would start: faster, and
    the ranking rests on the analysis alone (no document is "cited").

    Examples:
        >>> from langchain_core.documents import Document
        >>> from langchain_pleias import PleiasReranker
        >>> from pleias_rag.testing import cached_trained_model
        >>> reranker = PleiasReranker(model=str(cached_trained_model("hash")), max_tokens=96)
        >>> docs = [
        ...     Document("The Moon orbits the Earth about once every 27 days. "
        ...              "Its gravity causes the tides."),
        ...     Document("The Louvre is the most visited museum in the world. "
        ...              "It houses the Mona Lisa."),
        ...     Document("Green tea comes from the leaves of Camellia sinensis."),
        ... ]
        >>> ranked = reranker.compress_documents(
        ...     docs, "What causes the tides, and what is in the Louvre?"
        ... )
        >>> [(d.page_content[:10], d.metadata["relevance_score"]) for d in ranked]
        [('The Moon o', 1.0), ('The Louvre', 1.0)]
    """

    top_n: int | None = Field(default=None, ge=1)
    """Return at most this many documents (None: all that are kept)."""
    keep_unused: bool = False
    """Also return documents the model neither cited nor mentioned (last, score 0.0)."""
    analysis_only: bool = False
    """Stop generating once the analysis is written (rank by mentions only)."""

    model_config = ConfigDict(arbitrary_types_allowed=True, extra="forbid")

    def _gen(self) -> dict[str, Any]:
        gen = self._generation(None, {})
        if self.analysis_only:
            gen["stop"] = [*gen.get("stop", ()), ANALYSIS_STOP]
        return gen

    def _ranked(self, answer: PleiasAnswer, sources: Sequence[Source]) -> list[Document]:
        uses: list[SourceUse] = source_uses(answer, sources)
        kept = [u for u in uses if self.keep_unused or not u.seen or u.cited or u.mentioned]
        docs = [annotated_copy(u.source.ref, u) for u in kept]
        return docs if self.top_n is None else docs[: self.top_n]

    def compress_documents(
        self,
        documents: Sequence[Document],
        query: str,
        callbacks: Callbacks | None = None,
    ) -> Sequence[Document]:
        """Rank ``documents`` for ``query`` (see the class description).

        Raises:
            ValueError: a document is not a ``Document`` or has no text, or the query is empty.
        """
        sources = documents_to_sources(list(documents))
        if not sources:
            return []
        answer = self._get_backend().answer(query, sources, **self._gen())
        return self._ranked(answer, sources)

    async def acompress_documents(
        self,
        documents: Sequence[Document],
        query: str,
        callbacks: Callbacks | None = None,
    ) -> Sequence[Document]:
        """:meth:`compress_documents` without blocking the event loop."""
        sources = documents_to_sources(list(documents))
        if not sources:
            return []
        answer = await self._get_backend().aanswer(query, sources, **self._gen())
        return self._ranked(answer, sources)
