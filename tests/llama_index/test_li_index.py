"""A real VectorStoreIndex (SentenceSplitter, local MiniLM embedding) answered by the tiny model.

The tiny trained model answers its fixed training prompts exactly, so each index holds one
Document per source of a training example, small enough to stay one node, and retrieval must
return them in the example's order (checked first: MiniLM ranks them so, by wide margins).
"""

from __future__ import annotations

from typing import Any

import pytest
from li_support import MiniLMEmbedding
from llama_index.core import Document, VectorStoreIndex
from llama_index.core.base.response.schema import (
    AsyncStreamingResponse,
    Response,
    StreamingResponse,
)
from llama_index.core.node_parser import SentenceSplitter
from llama_index.core.query_engine import RetrieverQueryEngine
from llama_index.core.schema import NodeWithScore, TextNode

from llama_index_pleias import (
    PLEIAS_METADATA_KEY,
    CitationGroundingEvaluator,
    PleiasLLM,
    PleiasQueryEngine,
    PleiasReranker,
    PleiasSynthesizer,
)
from pleias_rag.testing import Example


def build_index(ex: Example, embed: MiniLMEmbedding) -> tuple[VectorStoreIndex, dict[str, str]]:
    # the tiny model answers its training prompts: the title stays out of the model's text
    docs = [
        Document(text=t, metadata={"title": f"doc {i}"}, excluded_llm_metadata_keys=["title"])
        for i, t in enumerate(ex.sources)
    ]
    index = VectorStoreIndex.from_documents(
        docs, embed_model=embed, transformations=[SentenceSplitter(chunk_size=512)]
    )
    node_ids = {}
    for node in index.docstore.docs.values():
        assert node.get_content() in ex.sources, "each source must stay one node"
        node_ids[node.get_content()] = node.node_id
    assert len(node_ids) == len(ex.sources)
    retrieved = index.as_retriever(similarity_top_k=len(ex.sources)).retrieve(ex.query)
    assert [n.node.get_content() for n in retrieved] == list(ex.sources), "retrieval order"
    return index, node_ids


@pytest.fixture(scope="module")
def cited_index(
    hash_examples: dict[str, Any], minilm_embedding: MiniLMEmbedding
) -> tuple[Example, VectorStoreIndex, dict[str, str]]:
    ex = hash_examples["cited"]
    return (ex, *build_index(ex, minilm_embedding))


def check_cited(response: Any, ex: Example, node_ids: dict[str, str]) -> None:
    """The Eiffel example: one citation of the first source, offsets right in the node."""
    assert str(response) == "The Eiffel Tower was completed in 1889[1]."
    (node,) = response.source_nodes
    assert node.node_id == node_ids[ex.sources[0]]
    (c,) = node.node.metadata[PLEIAS_METADATA_KEY]["citations"]
    assert c["status"] == "verified"
    assert node.node.get_content()[c["node_start"] : c["node_end"]] == c["quote"]
    assert c["quote"] == "It was completed in 1889 for the World's Fair."
    assert response.metadata["cited_node_ids"] == [node.node_id]


def test_retriever_query_engine(cited_index: Any, hash_llm: PleiasLLM) -> None:
    ex, index, node_ids = cited_index
    engine = RetrieverQueryEngine(
        index.as_retriever(similarity_top_k=2), response_synthesizer=PleiasSynthesizer(hash_llm)
    )
    response = engine.query(ex.query)
    assert isinstance(response, Response)
    check_cited(response, ex, node_ids)
    grounding = CitationGroundingEvaluator().evaluate_response(query=ex.query, response=response)
    assert grounding.passing and grounding.score == 1.0


def test_as_query_engine_never_reaches_for_openai(cited_index: Any, hash_llm: PleiasLLM) -> None:
    ex, index, node_ids = cited_index
    engine = index.as_query_engine(
        llm=hash_llm, response_synthesizer=PleiasSynthesizer(hash_llm), similarity_top_k=2
    )
    check_cited(engine.query(ex.query), ex, node_ids)


async def test_pleias_query_engine_sync_async_streaming(
    cited_index: Any, hash_llm: PleiasLLM
) -> None:
    ex, index, node_ids = cited_index
    engine = PleiasQueryEngine.from_index(index, model=hash_llm, similarity_top_k=2)
    check_cited(engine.query(ex.query), ex, node_ids)
    check_cited(await engine.aquery(ex.query), ex, node_ids)

    streaming = PleiasQueryEngine.from_index(
        index, model=hash_llm, similarity_top_k=2, streaming=True
    )
    stream = streaming.query(ex.query)
    assert isinstance(stream, StreamingResponse)
    pieces = list(stream.response_gen)
    assert "<" not in "".join(pieces) and len(pieces) > 3
    check_cited(Response("".join(pieces), stream.source_nodes, stream.metadata), ex, node_ids)

    astream = await streaming.aquery(ex.query)
    assert isinstance(astream, AsyncStreamingResponse)
    check_cited(await astream.get_response(), ex, node_ids)


def test_two_citations_in_order_and_the_unused_node_left_out(
    hash_examples: dict[str, Any], minilm_embedding: MiniLMEmbedding, hash_llm: PleiasLLM
) -> None:
    ex = hash_examples["two_citations"]
    index, node_ids = build_index(ex, minilm_embedding)
    engine = PleiasQueryEngine.from_index(index, model=hash_llm, similarity_top_k=3)
    response = engine.query(ex.query)
    assert [n.node_id for n in response.source_nodes] == [node_ids[t] for t in ex.sources[:2]]
    for node in response.source_nodes:
        (c,) = node.node.metadata[PLEIAS_METADATA_KEY]["citations"]
        assert node.node.get_content()[c["node_start"] : c["node_end"]] == c["quote"]
    assert CitationGroundingEvaluator().evaluate_response(response=response).passing


def test_misattributed_quote_is_flagged_and_fails_grounding(
    hash_examples: dict[str, Any], minilm_embedding: MiniLMEmbedding, hash_llm: PleiasLLM
) -> None:
    ex = hash_examples["misattributed"]
    index, node_ids = build_index(ex, minilm_embedding)
    engine = PleiasQueryEngine.from_index(index, model=hash_llm, similarity_top_k=2)
    response = engine.query(ex.query)
    water, moon = (node_ids[t] for t in ex.sources)
    (node,) = response.source_nodes
    assert node.node_id == water  # the node that holds the quote, not the one named
    (c,) = response.metadata["citations"]
    assert (c["status"], c["node_ids"], c["found_in_node_ids"]) == (
        "misattributed",
        [moon],
        [water],
    )
    result = CitationGroundingEvaluator().evaluate_response(response=response)
    assert not result.passing and result.score == 0.0
    assert "misattributed" in (result.feedback or "")


def test_nodes_that_do_not_fit_are_reported(hash_llm: PleiasLLM) -> None:
    long = NodeWithScore(node=TextNode(text="word " * 4000, id_="long"))
    short = NodeWithScore(node=TextNode(text="A short one.", id_="short"))
    synthesizer = PleiasSynthesizer(hash_llm, max_new_tokens=4)
    response = synthesizer.synthesize("Anything?", [long, short])
    meta = response.metadata
    assert meta is not None
    assert (meta["truncated_node_ids"], meta["dropped_node_ids"]) == (["long"], ["short"])
    ranked = PleiasReranker(hash_llm, keep="all", max_new_tokens=4).postprocess_nodes(
        [long, short], query_str="Anything?"
    )
    assert {n.node_id for n in ranked} == {"long", "short"}


def test_numbered_dialect_maps_positions_to_nodes(
    numbered_llm: PleiasLLM, numbered_examples: dict[str, Any]
) -> None:
    synthesizer = PleiasSynthesizer(numbered_llm)
    ex = numbered_examples["two_citations"]
    nodes = [NodeWithScore(node=TextNode(text=t, id_=f"n{i}")) for i, t in enumerate(ex.sources)]
    response = synthesizer.synthesize(ex.query, nodes)
    assert [n.node_id for n in response.source_nodes] == ["n0", "n1"]
    for node in response.source_nodes:
        (c,) = node.node.metadata[PLEIAS_METADATA_KEY]["citations"]
        assert node.node.get_content()[c["node_start"] : c["node_end"]] == c["quote"]

    ex = numbered_examples["unknown_id"]  # cites source 7 of 1
    nodes = [NodeWithScore(node=TextNode(text=ex.sources[0], id_="bees"))]
    response = synthesizer.synthesize(ex.query, nodes)
    # [1] names no node (a placeholder); the node the model saw follows, flagged uncited.
    placeholder, bees = response.source_nodes
    assert placeholder.node.metadata[PLEIAS_METADATA_KEY]["unknown_source"]
    assert bees.node_id == "bees" and not bees.node.metadata[PLEIAS_METADATA_KEY]["cited"]
    assert response.metadata["citations"][0]["status"] == "unknown_source"
    assert not CitationGroundingEvaluator().evaluate_response(response=response).passing
