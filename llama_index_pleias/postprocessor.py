"""``PleiasReranker``: reorder and filter nodes by how a Pleias model used them."""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING, Any, Literal

from llama_index.core.bridge.pydantic import Field, PrivateAttr
from llama_index.core.callbacks import CBEventType, EventPayload
from llama_index.core.instrumentation.events.rerank import ReRankEndEvent, ReRankStartEvent
from llama_index.core.postprocessor.types import BaseNodePostprocessor
from llama_index.core.schema import NodeWithScore, QueryBundle
from llama_index_instrumentation import get_dispatcher

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
from .llms import PleiasLLM, as_pleias_llm

if TYPE_CHECKING:
    from pleias_rag.backend import Backend

Keep = Literal["cited", "mentioned", "all"]

#: Where ``analysis_only`` stops generating: the end of the source analysis in both dialects
#: (the hash dialect's ``<|source_analysis_end|>`` and the numbered dialect's query report or
#: draft are followed by this token).
ANALYSIS_STOP = "<|answer_start|>"

dispatcher = get_dispatcher(__name__)


class PleiasReranker(BaseNodePostprocessor):
    """Rerank nodes by the model's own analysis of them: cited first, then mentioned, then the
    rest; filter out what it did not use.

    The model analyses the nodes for the query; each node then gets a relevance score (see
    ``analysis_only`` below) and the nodes are ordered by the model's ranking (cited in order
    of first citation, mentioned in order of mention, the rest in input order). Nodes the
    model never saw (the context window could not hold them) are kept by every ``keep``
    setting, after the mentioned ones, with score None and
    ``metadata["pleias_citations"]["seen"]`` False: their relevance is unknown, not zero.
    Returned nodes are deep copies (same ids) whose score is the relevance and whose
    ``metadata["pleias_citations"]`` holds the citations, the rank and the original
    ``retrieval_score``.

    Nodes without text are dropped (they can not be judged). A cited-only filter on a
    truncated output keeps what was cited before the cut.

    By default (``analysis_only`` True unless ``keep="cited"``) generation stops at the end
    of the source analysis (a stop string at ``<|answer_start|>``, the same token in the hash
    and the numbered dialect): no answer is written, so the call is much shorter, and the
    ranking rests on the analysis alone. The scores are then finer, by order of mention: of
    ``m`` mentioned nodes the ``i``-th (from 0) scores ``1 - 0.5 * i / m``, within (0.5, 1],
    the first 1.0; unused nodes score 0.0 and unseen ones None, as above. With
    ``analysis_only=False`` (the default for ``keep="cited"``) the model writes its answer
    too and nodes score by use: 1.0 cited, 0.75 cited by approximate quotes only, 0.5
    mentioned, 0.0 unused.

    Each call emits LlamaIndex's ``CBEventType.RERANKING`` callback event (payload: the
    nodes in, the model, the query and ``top_n``; the nodes out at its end) and the
    ``ReRankStartEvent``/``ReRankEndEvent`` instrumentation events, like LlamaIndex's own
    rerankers.

    Args:
        model: a :class:`PleiasLLM`, a model id or folder, or a pleias_rag backend (also
            accepted as ``llm=``).
        keep: ``"mentioned"`` (default: cited or mentioned), ``"cited"`` or ``"all"``.
        top_n: keep at most this many nodes after reordering.
        max_new_tokens: output limit of the ranking call (the source analysis comes first in
            the output, so a short budget still ranks).
        analysis_only: stop generating at the end of the source analysis and score by order
            of mention (see above); default True, False for ``keep="cited"``.

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
    analysis_only: bool | None = Field(
        default=None,
        description="Stop at the end of the source analysis; rank by mentions (default: "
        "yes, except with keep='cited', which needs the answer's citations).",
    )

    _llm: PleiasLLM = PrivateAttr()

    def __init__(
        self, model: PleiasLLM | str | os.PathLike[str] | Backend = DEFAULT_MODEL, **kwargs: Any
    ) -> None:
        llm = as_pleias_llm(model, {"llm": kwargs.pop("llm")} if "llm" in kwargs else {})
        kwargs["model"] = llm.model
        super().__init__(**kwargs)
        if self.analysis_only is None:
            self.analysis_only = self.keep != "cited"
        elif self.analysis_only and self.keep == "cited":
            raise InvalidArgument(
                "keep='cited' needs the answer's citations, which analysis_only=True does not "
                "generate: use keep='mentioned', or analysis_only=False"
            )
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
        if self.analysis_only:
            gen["stop"] = [*(gen.get("stop") or ()), ANALYSIS_STOP]
        return Call(query_bundle.query_str, converted.sources, gen)

    def _payload(self, nodes: list[NodeWithScore], query_bundle: QueryBundle | None) -> Any:
        return {
            EventPayload.NODES: nodes,
            EventPayload.MODEL_NAME: self.model,
            EventPayload.QUERY_STR: None if query_bundle is None else query_bundle.query_str,
            EventPayload.TOP_K: self.top_n,
        }

    def _start_event(self, nodes: list[NodeWithScore], query_bundle: QueryBundle | None) -> None:
        dispatcher.event(
            ReRankStartEvent(
                query=query_bundle,
                nodes=nodes,
                top_n=len(nodes) if self.top_n is None else self.top_n,
                model_name=self.model,
            )
        )

    def _postprocess_nodes(
        self, nodes: list[NodeWithScore], query_bundle: QueryBundle | None = None
    ) -> list[NodeWithScore]:
        with self._reranking(nodes, query_bundle) as run:
            if run.call is not None:
                call = run.call
                answer = self._llm.backend.answer(call.query, call.sources, **call.gen)
                run.out = self._rank(answer, call)
        return run.out

    async def _apostprocess_nodes(
        self, nodes: list[NodeWithScore], query_bundle: QueryBundle | None = None
    ) -> list[NodeWithScore]:
        with self._reranking(nodes, query_bundle) as run:
            if run.call is not None:
                call = run.call
                answer = await self._llm.backend.aanswer(call.query, call.sources, **call.gen)
                run.out = self._rank(answer, call)
        return run.out

    @contextmanager
    def _reranking(
        self, nodes: list[NodeWithScore], query_bundle: QueryBundle | None
    ) -> Iterator[_Ranking]:
        """One reranking inside its instrumentation and callback events (the sync and async
        entry points share it): the caller asks the model ``run.call`` (None: nothing to
        rank) and sets ``run.out``."""
        self._start_event(nodes, query_bundle)
        with self.callback_manager.event(
            CBEventType.RERANKING, payload=self._payload(nodes, query_bundle)
        ) as event:
            run = _Ranking(self._prepare(nodes, query_bundle))
            yield run
            event.on_end(payload={EventPayload.NODES: run.out})
        dispatcher.event(ReRankEndEvent(nodes=run.out))

    def _rank(self, answer: PleiasAnswer, call: Call) -> list[NodeWithScore]:
        uses = source_uses(answer, call.sources)
        scores = _mention_scores(uses) if self.analysis_only else {}
        out: list[NodeWithScore] = []
        for use in uses:
            if not _kept(use, self.keep):
                continue
            out.append(_ranked_copy(use, scores.get(id(use), use.score)))
            if self.top_n is not None and len(out) >= self.top_n:
                break
        return out


class _Ranking:
    """One reranking: the model call (None: no node to rank) and the nodes it returns."""

    __slots__ = ("call", "out")

    def __init__(self, call: Call | None) -> None:
        self.call = call
        self.out: list[NodeWithScore] = []


def _mention_scores(uses: list[SourceUse]) -> dict[int, float | None]:
    """Scores by order of mention (the ranking's order): ``1 - 0.5 * i / m`` for the ``i``-th
    of ``m`` mentioned or cited sources, in (0.5, 1]."""
    used = [u for u in uses if u.seen and (u.cited or u.mentioned)]
    return {id(u): 1.0 - 0.5 * i / len(used) for i, u in enumerate(used)}


def _kept(use: SourceUse, keep: Keep) -> bool:
    if not use.seen:
        return True  # not judged: dropping it would lose a node nobody looked at
    if keep == "cited":
        return use.cited
    if keep == "mentioned":
        return use.cited or use.mentioned
    return True


def _ranked_copy(use: SourceUse, score: float | None) -> NodeWithScore:
    ref = use.source.ref
    assert isinstance(ref, NodeRef)
    copy = annotated_copy(use)
    info = copy.node.metadata[PLEIAS_METADATA_KEY]
    info["retrieval_score"] = ref.node.score
    info["relevance_score"] = score
    copy.score = score
    return copy
