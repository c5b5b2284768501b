"""Issue #15, evaluator and reranker rows: responses of query engines, analysis-only ranking."""

from __future__ import annotations

import copy
from typing import Any

import pytest
from li_support import ScriptedBackend, hash_output, ref
from llama_index.core.base.response.schema import Response
from llama_index.core.bridge.pydantic import Field
from llama_index.core.callbacks import CallbackManager, CBEventType, EventPayload
from llama_index.core.callbacks.base_handler import BaseCallbackHandler
from llama_index.core.evaluation import BatchEvalRunner
from llama_index.core.instrumentation import get_dispatcher
from llama_index.core.instrumentation.event_handlers import BaseEventHandler
from llama_index.core.instrumentation.events import BaseEvent
from llama_index.core.instrumentation.events.rerank import ReRankEndEvent, ReRankStartEvent
from llama_index.core.query_engine import CustomQueryEngine
from llama_index.core.schema import NodeWithScore, QueryBundle, TextNode

from llama_index_pleias import (
    PLEIAS_METADATA_KEY,
    CitationGroundingEvaluator,
    PleiasLLM,
    PleiasReranker,
    PleiasSynthesizer,
)
from llama_index_pleias.postprocessor import ANALYSIS_STOP

TEXTS = ("This is the first source.", "And the second source.", "A third one.")


def _nodes() -> list[NodeWithScore]:
    return [NodeWithScore(node=TextNode(text=t, id_=f"n{i}")) for i, t in enumerate(TEXTS)]


def _script(query: str, sources: Any) -> str:
    a, b, c = sources
    return hash_output(
        f"**{c.id}** first, then **{b.id}**, then **{a.id}**.",
        "One" + ref(a, "first source") + ". Two" + ref(b, "second source") + ". Three.",
    )


def _response() -> Response:
    synthesizer = PleiasSynthesizer(PleiasLLM(ScriptedBackend(_script)))
    response = synthesizer.synthesize("q", _nodes())
    assert isinstance(response, Response)
    return response


# -- CitationGroundingEvaluator --


def test_reports_the_share_of_uncited_sentences() -> None:
    result = CitationGroundingEvaluator().evaluate_response(query="q", response=_response())
    assert (result.passing, result.score) == (True, 1.0)
    assert (result.sentences, result.uncited_sentences) == (3, 1)
    assert result.uncited_share == pytest.approx(1 / 3)
    assert "uncited sentences: 1 of 3 (33%)" in (result.feedback or "")
    # A marker after the full stop belongs to the sentence it ends.
    raw = hash_output("", "One." + ref(_sid(TEXTS[0]), "first source") + " Two.")
    raw_result = CitationGroundingEvaluator().evaluate(response=raw, contexts=list(TEXTS))
    assert (raw_result.sentences, raw_result.uncited_sentences) == (2, 1)


def test_citations_from_source_nodes_or_ref_tags() -> None:
    response = _response()
    evaluator = CitationGroundingEvaluator()
    # The metadata dropped (a wrapper engine, a serialization round trip): the nodes keep them.
    bare = Response(response.response, source_nodes=copy.deepcopy(response.source_nodes))
    result = evaluator.evaluate_response(response=bare)
    assert not result.invalid_result
    assert (result.passing, result.score, len(result.checks)) == (True, 1.0, 2)
    assert [c["cited"] for c in result.checks] == [["n0"], ["n1"]]
    # A generic engine that kept the raw ``<ref>`` tags in its text.
    raw = _script("q", [_src(t) for t in TEXTS])
    tagged = Response(raw, source_nodes=_nodes())
    result = evaluator.evaluate_response(response=tagged)
    assert (result.passing, result.score, len(result.checks)) == (True, 1.0, 2)
    plain = evaluator.evaluate_response(response=Response("No citation.", source_nodes=_nodes()))
    assert plain.invalid_result


async def test_batch_eval_runner_and_streaming() -> None:
    llm = PleiasLLM(ScriptedBackend(_script))

    class Engine(CustomQueryEngine):
        def custom_query(self, query_str: str) -> Response:
            out = PleiasSynthesizer(llm).synthesize(query_str, _nodes())
            assert isinstance(out, Response)
            return out

    runner = BatchEvalRunner({"grounding": CitationGroundingEvaluator()})
    results = await runner.aevaluate_queries(Engine(), queries=["q1", "q2"])
    assert [r.passing for r in results["grounding"]] == [True, True]
    assert all(r.uncited_share == pytest.approx(1 / 3) for r in results["grounding"])

    streaming = PleiasSynthesizer(llm, streaming=True).synthesize("q", _nodes())
    assert CitationGroundingEvaluator().evaluate_response(response=streaming).passing  # type: ignore[arg-type]


# -- PleiasReranker --


def test_analysis_only_stops_and_scores_by_mention() -> None:
    backend = ScriptedBackend(_script)
    reranker = PleiasReranker(PleiasLLM(backend), analysis_only=True)
    ranked = reranker.postprocess_nodes(_nodes(), query_str="q")
    assert backend.calls[-1][3]["stop"] == [ANALYSIS_STOP]
    scores = [(n.node_id, n.score) for n in ranked]
    assert scores == [("n2", 1.0), ("n1", pytest.approx(5 / 6)), ("n0", pytest.approx(2 / 3))]
    assert all(0.5 < (n.score or 0) <= 1 for n in ranked)
    assert ranked[1].node.metadata[PLEIAS_METADATA_KEY]["relevance_score"] == ranked[1].score
    assert all(n.node.metadata[PLEIAS_METADATA_KEY]["citations"] == [] for n in ranked)


def test_analysis_only_with_real_models(
    hash_llm: PleiasLLM, numbered_llm: PleiasLLM, hash_examples: Any, numbered_examples: Any
) -> None:
    for llm, examples in ((hash_llm, hash_examples), (numbered_llm, numbered_examples)):
        ex = examples["two_citations"]  # the analysis names sources 0 then 1, never 2
        nodes = [
            NodeWithScore(node=TextNode(text=t, id_=f"n{i}")) for i, t in enumerate(ex.sources)
        ]
        reranker = PleiasReranker(llm, analysis_only=True, keep="all")
        ranked = reranker.postprocess_nodes(nodes, query_str=ex.query)
        assert [(n.node_id, n.score) for n in ranked] == [("n0", 1.0), ("n1", 0.75), ("n2", 0.0)]
        info = ranked[0].node.metadata[PLEIAS_METADATA_KEY]
        assert info["citations"] == [] and info["seen"] is True


class _Recorder(BaseCallbackHandler):
    def __init__(self) -> None:
        super().__init__([], [])
        self.starts: list[tuple[CBEventType, dict[str, Any]]] = []
        self.ends: list[tuple[CBEventType, dict[str, Any]]] = []

    def on_event_start(
        self,
        event_type: CBEventType,
        payload: dict[str, Any] | None = None,
        event_id: str = "",
        parent_id: str = "",
        **kwargs: Any,
    ) -> str:
        self.starts.append((event_type, payload or {}))
        return event_id

    def on_event_end(
        self,
        event_type: CBEventType,
        payload: dict[str, Any] | None = None,
        event_id: str = "",
        **kwargs: Any,
    ) -> None:
        self.ends.append((event_type, payload or {}))

    def start_trace(self, trace_id: str | None = None) -> None:
        pass

    def end_trace(
        self, trace_id: str | None = None, trace_map: dict[str, list[str]] | None = None
    ) -> None:
        pass


class _Events(BaseEventHandler):
    events: list[BaseEvent] = Field(default_factory=list)

    @classmethod
    def class_name(cls) -> str:
        return "_Events"

    def handle(self, event: BaseEvent, **kwargs: Any) -> None:
        self.events.append(event)


async def test_reranking_events() -> None:
    recorder = _Recorder()
    handler = _Events()
    root = get_dispatcher()
    root.add_event_handler(handler)
    try:
        reranker = PleiasReranker(
            PleiasLLM(ScriptedBackend(_script)),
            top_n=2,
            callback_manager=CallbackManager([recorder]),
        )
        nodes = _nodes()
        ranked = reranker.postprocess_nodes(nodes, query_str="q")
        aranked = await reranker.apostprocess_nodes(nodes, query_bundle=QueryBundle("q"))
    finally:
        root.event_handlers.remove(handler)
    assert [t for t, _ in recorder.starts] == [CBEventType.RERANKING] * 2
    start = recorder.starts[0][1]
    assert start[EventPayload.NODES] == nodes and start[EventPayload.QUERY_STR] == "q"
    assert start[EventPayload.TOP_K] == 2
    assert [p[EventPayload.NODES] for _, p in recorder.ends] == [ranked, aranked]
    mine = [e for e in handler.events if isinstance(e, (ReRankStartEvent, ReRankEndEvent))]
    assert [type(e) for e in mine] == [ReRankStartEvent, ReRankEndEvent] * 2
    assert isinstance(mine[0], ReRankStartEvent) and mine[0].top_n == 2
    assert isinstance(mine[1], ReRankEndEvent) and mine[1].nodes == ranked


def _sid(text: str) -> str:
    from pleias_rag import source_id

    return source_id(text)


def _src(text: str) -> Any:
    from pleias_rag import Source

    return Source(text)
