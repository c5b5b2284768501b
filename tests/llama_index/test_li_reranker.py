"""PleiasReranker: order and filter nodes by the model's own use of them."""

from __future__ import annotations

from typing import Any

import pytest
from li_support import ScriptedBackend, hash_output, ref
from llama_index.core.postprocessor.types import BaseNodePostprocessor
from llama_index.core.schema import NodeWithScore, QueryBundle, TextNode

from llama_index_pleias import PLEIAS_METADATA_KEY, PleiasLLM, PleiasReranker
from pleias_rag.errors import InvalidArgument


def example_nodes(ex: Any) -> list[NodeWithScore]:
    return [
        NodeWithScore(node=TextNode(text=t, id_=f"n{i}"), score=1.0 - i / 10)
        for i, t in enumerate(ex.sources)
    ]


def test_analysis_only_by_default_except_for_keep_cited() -> None:
    assert PleiasReranker(model="/no/such/model").analysis_only is True
    assert PleiasReranker(model="/no/such/model", keep="cited").analysis_only is False
    with pytest.raises(InvalidArgument, match="analysis_only=False"):
        PleiasReranker(model="/no/such/model", keep="cited", analysis_only=True)


def test_is_a_node_postprocessor() -> None:
    assert isinstance(PleiasReranker(model="/no/such/model"), BaseNodePostprocessor)
    assert PleiasReranker.class_name() == "PleiasReranker"


def test_cited_nodes_first_unused_dropped(hash_llm: PleiasLLM, hash_examples: Any) -> None:
    ex = hash_examples["two_citations"]  # cites sources 0 and 1, never mentions 2
    nodes = example_nodes(ex)
    # analysis_only=False: the answer is written, nodes score by use (1.0 cited)
    ranked = PleiasReranker(hash_llm, analysis_only=False).postprocess_nodes(
        nodes, query_str=ex.query
    )
    assert [n.node_id for n in ranked] == ["n0", "n1"]
    assert [n.score for n in ranked] == [1.0, 1.0]
    info = ranked[1].node.metadata[PLEIAS_METADATA_KEY]
    assert (info["rank"], info["retrieval_score"]) == (1, 0.9)
    assert ranked[0] is not nodes[0] and nodes[0].score == 1.0

    everything = PleiasReranker(hash_llm, keep="all", analysis_only=False).postprocess_nodes(
        nodes, query_str=ex.query
    )
    assert [(n.node_id, n.score) for n in everything] == [("n0", 1.0), ("n1", 1.0), ("n2", 0.0)]
    top = PleiasReranker(hash_llm, top_n=1).postprocess_nodes(nodes, query_str=ex.query)
    assert [n.node_id for n in top] == ["n0"]


def test_mentioned_nodes_rank_after_cited(hash_llm: PleiasLLM, hash_examples: Any) -> None:
    # The analysis mentions source 0; the answer cites source 1 with a quote of source 0.
    ex = hash_examples["misattributed"]
    nodes = example_nodes(ex)
    ranked = PleiasReranker(hash_llm, analysis_only=False).postprocess_nodes(
        nodes, query_str=ex.query
    )
    # The node holding the quote is credited; the one named only counts as mentioned.
    assert [(n.node_id, n.score) for n in ranked] == [("n0", 1.0), ("n1", 0.5)]
    cited = PleiasReranker(hash_llm, keep="cited").postprocess_nodes(nodes, query_str=ex.query)
    assert [n.node_id for n in cited] == ["n0"]


async def test_async_and_bad_inputs() -> None:
    def script(query: str, sources: Any) -> str:
        return hash_output(f"**{sources[1].id}** matters.", "x" + ref(sources[0], "alpha") + ".")

    backend = ScriptedBackend(script)
    reranker = PleiasReranker(PleiasLLM(backend), max_new_tokens=16, analysis_only=False)
    nodes = [
        NodeWithScore(node=TextNode(text=t, id_=t)) for t in ("alpha text", "beta text", "gamma")
    ]
    ranked = await reranker.apostprocess_nodes(nodes, query_bundle=QueryBundle("q"))
    assert [n.node_id for n in ranked] == ["alpha text", "beta text"]
    assert backend.calls[-1][0] == "aanswer"
    assert backend.calls[-1][3]["max_new_tokens"] == 16
    with pytest.raises(ValueError, match="needs the query"):
        reranker.postprocess_nodes(nodes)
    assert reranker.postprocess_nodes([], query_str="q") == []
    empty = [NodeWithScore(node=TextNode(text=" "))]
    assert reranker.postprocess_nodes(empty, query_str="q") == []
