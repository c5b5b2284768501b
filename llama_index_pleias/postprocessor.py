"""``PleiasReranker``: reorder and filter nodes by how a Pleias model used them."""

from __future__ import annotations

import os
from typing import TYPE_CHECKING, Any, Literal

from llama_index.core.bridge.pydantic import Field, PrivateAttr
from llama_index.core.postprocessor.types import BaseNodePostprocessor
from llama_index.core.schema import NodeWithScore, QueryBundle

from pleias_rag import PleiasAnswer
from pleias_rag.errors import InvalidArgument
from pleias_rag.views.ranking import SourceUse, source_uses

from ._convert import (
    DEFAULT_MODEL,
    PLEIAS_METADATA_KEY,
    Call,
    NodeRef,
    annotated_copy,
    nodes_to_sources,
)
from .llms import PleiasLLM

if TYPE_CHECKING:
    from pleias_rag.backend import Backend

Keep = Literal["cited", "mentioned", "all"]


class PleiasReranker(BaseNodePostprocessor):
    """Rerank nodes by the model's own analysis of them: cited first, then mentioned, then the
    rest; filter out what it did not use.

    The model answers the query from the nodes; each node then gets the relevance score of
    :mod:`pleias_rag.views.ranking` (1.0 cited, 0.5 mentioned in the source analysis, 0.0
    unused) and the nodes are ordered by the model's ranking (cited in order of first citation,
    mentioned in order of mention, the rest in input order). Nodes the model never saw (the
    context window could not hold them) are kept by every ``keep`` setting, after the
    mentioned ones, with score None and ``metadata["pleias_citations"]["seen"]`` False: their
    relevance is unknown, not zero. Returned nodes are deep copies
    (same ids) whose score is the relevance and whose ``metadata["pleias_citations"]`` holds
    the citations, the rank and the original ``retrieval_score``.

    Nodes without text are dropped (they can not be judged). A cited-only filter on a
    truncated output keeps what was cited before the cut.

    Args:
        model: a :class:`PleiasLLM`, a model id or folder, or a pleias_rag backend (also
            accepted as ``llm=``).
        keep: ``"mentioned"`` (default: cited or mentioned), ``"cited"`` or ``"all"``.
        top_n: keep at most this many nodes after reordering.
        max_new_tokens: output limit of the ranking call (the source analysis comes first in
            the output, so a short budget still ranks).

    Examples:
        >>> from llama_index.core.schema import NodeWithScore, TextNode
        >>> from llama_index_pleias import PleiasReranker
        >>> reranker = PleiasReranker(model="PleIAs/Pleias-RAG-350M", top_n=3)
        >>> nodes = [NodeWithScore(node=TextNode(text="The Eiffel Tower is in Paris."))]
        >>> ranked = reranker.postprocess_nodes(  # doctest: +SKIP
        ...     nodes, query_str="Where is the Eiffel Tower?"
        ... )
        >>> [(n.score, n.metadata["pleias_citations"]["rank"]) for n in ranked]  # doctest: +SKIP
        [(1.0, 0)]
    """

    model: str = Field(default=DEFAULT_MODEL, description="Model id, folder or backend name.")
    keep: Keep = Field(default="mentioned", description="Which nodes to keep.")
    top_n: int | None = Field(default=None, ge=1, description="Keep at most this many nodes.")
    max_new_tokens: int | None = Field(default=None, ge=1, description="Output limit.")

    _llm: PleiasLLM = PrivateAttr()

    def __init__(
        self, model: PleiasLLM | str | os.PathLike[str] | Backend = DEFAULT_MODEL, **kwargs: Any
    ) -> None:
        if "llm" in kwargs:  # LlamaIndex's usual spelling: PleiasReranker(llm=PleiasLLM(...))
            given = kwargs.pop("llm")
            if model is not DEFAULT_MODEL and model != given:
                raise InvalidArgument("give the model as model= or llm=, not both")
            model = given
        llm = model if isinstance(model, PleiasLLM) else PleiasLLM(model)
        kwargs["model"] = llm.model
        super().__init__(**kwargs)
        self._llm = llm

    @classmethod
    def class_name(cls) -> str:
        """The serialization name of this class."""
        return "PleiasReranker"

    @property
    def llm(self) -> PleiasLLM:
        """The Pleias LLM that ranks the nodes."""
        return self._llm

    def _prepare(self, nodes: list[NodeWithScore], query_bundle: QueryBundle | None) -> Call | None:
        """What to ask the model with (None: no node has text, nothing to rank)."""
        if query_bundle is None:
            raise InvalidArgument("PleiasReranker needs the query: pass query_bundle or query_str")
        converted = nodes_to_sources(nodes)
        if not converted.sources:
            return None
        gen = self._llm.generation_kwargs(max_new_tokens=self.max_new_tokens)
        return Call(query_bundle.query_str, converted.sources, gen)

    def _postprocess_nodes(
        self, nodes: list[NodeWithScore], query_bundle: QueryBundle | None = None
    ) -> list[NodeWithScore]:
        if (call := self._prepare(nodes, query_bundle)) is None:
            return []
        return self._rank(self._llm.backend.answer(call.query, call.sources, **call.gen), call)

    async def _apostprocess_nodes(
        self, nodes: list[NodeWithScore], query_bundle: QueryBundle | None = None
    ) -> list[NodeWithScore]:
        if (call := self._prepare(nodes, query_bundle)) is None:
            return []
        answer = await self._llm.backend.aanswer(call.query, call.sources, **call.gen)
        return self._rank(answer, call)

    def _rank(self, answer: PleiasAnswer, call: Call) -> list[NodeWithScore]:
        out: list[NodeWithScore] = []
        for use in source_uses(answer, call.sources):
            if not _kept(use, self.keep):
                continue
            out.append(_ranked_copy(use))
            if self.top_n is not None and len(out) >= self.top_n:
                break
        return out


def _kept(use: SourceUse, keep: Keep) -> bool:
    if not use.seen:
        return True  # not judged: dropping it would lose a node nobody looked at
    if keep == "cited":
        return use.cited
    if keep == "mentioned":
        return use.cited or use.mentioned
    return True


def _ranked_copy(use: SourceUse) -> NodeWithScore:
    ref = use.source.ref
    assert isinstance(ref, NodeRef)
    copy = annotated_copy(use)
    copy.node.metadata[PLEIAS_METADATA_KEY]["retrieval_score"] = ref.node.score
    copy.score = use.score
    return copy
