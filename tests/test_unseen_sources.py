"""Sources the prompt could not hold: logged, and never ranked as unused by the rerankers."""

from __future__ import annotations

import logging

import pytest

from pleias_rag import Backend, ScriptedEngine, Source
from pleias_rag.views.ranking import source_uses

TEXTS = [
    "The Eiffel Tower was completed in 1889.",
    "Green tea comes from the leaves of Camellia sinensis.",
    "The Louvre houses the Mona Lisa.",
]
SOURCES = [Source(t) for t in TEXTS]


def cites_first(query: str, sources: object) -> str:
    sid = SOURCES[0].id
    return (
        "Only the first source helps.<|source_analysis_end|>\n<|answer_start|>In 1889"
        f'<ref name="{sid}">"The Eiffel Tower was completed in 1889"</ref>.<|answer_end|>'
    )


def two_sources() -> Backend:
    return Backend(ScriptedEngine(cites_first), max_sources=2)


def test_dropped_sources_are_logged_by_the_core(caplog: pytest.LogCaptureFixture) -> None:
    backend = two_sources()
    with caplog.at_level(logging.WARNING, logger="pleias_rag"):
        answer = backend.answer("When?", SOURCES)
    assert answer.dropped_source_ids == (SOURCES[2].id,)
    (record,) = [r for r in caplog.records if r.name == "pleias_rag"]
    assert SOURCES[2].id in record.getMessage() and "limit of 2 sources" in record.getMessage()
    caplog.clear()
    with caplog.at_level(logging.WARNING, logger="pleias_rag"):
        backend.answer("When?", SOURCES[:2])
        backend.encode("When?", SOURCES)  # looking at the prompt is not generating it
    assert not caplog.records


def test_unseen_sources_rank_after_mentioned_with_no_score() -> None:
    answer = two_sources().answer("When?", SOURCES)
    uses = {u.source.text: u for u in source_uses(answer, SOURCES)}
    cited, unused, unseen = (uses[t] for t in TEXTS)
    assert (cited.score, cited.seen, cited.rank) == (1.0, True, 0)
    assert (unseen.score, unseen.seen, unseen.rank) == (None, False, 1)
    assert (unused.score, unused.seen, unused.rank) == (0.0, True, 2)
    assert unseen.annotations()["seen"] is False


def test_langchain_reranker_returns_unseen_documents_flagged() -> None:
    from langchain_core.documents import Document

    from langchain_pleias import PleiasReranker

    docs = [Document(t, metadata={"n": i}) for i, t in enumerate(TEXTS)]
    ranked = PleiasReranker(model=two_sources()).compress_documents(docs, "When?")
    got = [
        (d.metadata["n"], d.metadata["relevance_score"], d.metadata["pleias_seen"]) for d in ranked
    ]
    assert got == [(0, 1.0, True), (2, None, False)]  # the unused one is filtered, not the unseen


def test_llama_index_reranker_keeps_unseen_nodes_whatever_keep_says() -> None:
    from llama_index.core.schema import NodeWithScore, TextNode

    from llama_index_pleias import PLEIAS_METADATA_KEY, PleiasReranker

    nodes = [
        NodeWithScore(node=TextNode(text=t, id_=f"n{i}"), score=0.9) for i, t in enumerate(TEXTS)
    ]
    ranked = PleiasReranker(model=two_sources(), keep="cited").postprocess_nodes(
        nodes, query_str="When?"
    )
    got = [(n.node.node_id, n.score, n.node.metadata[PLEIAS_METADATA_KEY]["seen"]) for n in ranked]
    assert got == [("n0", 1.0, True), ("n2", None, False)]


def test_a_source_cut_to_fit_the_window_is_logged(
    caplog: pytest.LogCaptureFixture, tiny_random_model_hash: object
) -> None:
    from pleias_rag import PleiasModel

    model = PleiasModel(tiny_random_model_hash, device="cpu", context_window=160)  # type: ignore[arg-type]
    long = Source("The tower is tall. " * 200)
    with caplog.at_level(logging.WARNING, logger="pleias_rag"):
        answer = model.answer("How tall?", [long], max_new_tokens=8)
    assert answer.truncated_source_ids == (long.id,)
    (record,) = [r for r in caplog.records if r.name == "pleias_rag"]
    assert "cut 1" in record.getMessage() and long.id in record.getMessage()
    assert "context window of 160 tokens with max_new_tokens=8" in record.getMessage()
