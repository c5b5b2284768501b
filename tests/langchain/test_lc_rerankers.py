"""PleiasReranker: cited > mentioned > unused, on annotated copies."""

from __future__ import annotations

import pytest
from langchain_core.documents import Document
from lc_support import ScriptedBackend, docs_of, example, hash_output, ref

from langchain_pleias import PleiasReranker
from langchain_pleias.rerankers import ANALYSIS_STOP
from pleias_rag.sources import source_id

QUERY = example("two_citations").query


def summary(docs: list[Document]) -> list[tuple[str, float]]:
    return [(d.metadata["title"], d.metadata["relevance_score"]) for d in docs]


def test_cited_documents_first_unused_dropped(hash_model: str) -> None:
    moon, louvre, tea = docs_of(example("two_citations"))
    reranker = PleiasReranker(model=hash_model, max_tokens=128)
    # The tiny model knows this prompt (sources in this order) by heart.
    ranked = list(reranker.compress_documents([moon, louvre, tea], QUERY))
    assert summary(ranked) == [("Doc 0", 1.0), ("Doc 1", 1.0)]
    assert ranked[0].metadata["pleias_source_id"] == source_id(moon.page_content)
    (quote,) = ranked[0].metadata["pleias_citations"]
    assert quote["quote"] == "Its gravity causes the tides." and quote["status"] == "verified"
    assert "relevance_score" not in moon.metadata  # originals untouched

    keep = PleiasReranker(model=hash_model, max_tokens=128, keep_unused=True, top_n=3)
    assert summary(list(keep.compress_documents([moon, louvre, tea], QUERY)))[-1] == (
        "Doc 2",
        0.0,
    )
    top = PleiasReranker(model=hash_model, max_tokens=128, top_n=1)
    assert summary(list(top.compress_documents([moon, louvre, tea], QUERY))) == [("Doc 0", 1.0)]


async def test_analysis_only_ranks_by_mentions(hash_model: str) -> None:
    docs = docs_of(example("two_citations"))
    reranker = PleiasReranker(model=hash_model, max_tokens=128, analysis_only=True)
    ranked = list(await reranker.acompress_documents(docs, QUERY))
    assert summary(ranked) == [("Doc 0", 0.5), ("Doc 1", 0.5)]
    assert all(d.metadata["pleias_citations"] == [] for d in ranked)


def test_order_and_stop_with_a_scripted_backend() -> None:
    a, b, c = Document("Alpha text."), Document("Beta text."), Document("Gamma text.")
    idb, idc = (source_id(d.page_content) for d in (b, c))
    raw = hash_output(f"**{idc}** and **{idb}** matter.", "Yes" + ref(idb, "Beta text") + ".")
    backend = ScriptedBackend({"q": raw})
    ranked = PleiasReranker(model=backend, keep_unused=True).compress_documents([a, b, c], "q")
    assert [(d.page_content, d.metadata["relevance_score"]) for d in ranked] == [
        ("Beta text.", 1.0),
        ("Gamma text.", 0.5),
        ("Alpha text.", 0.0),
    ]
    PleiasReranker(model=backend, analysis_only=True, stop=["X"]).compress_documents([a], "q")
    assert backend.calls[-1][1][2]["stop"] == ["X", ANALYSIS_STOP]
    assert PleiasReranker(model=backend).compress_documents([], "q") == []
    with pytest.raises(ValueError, match=r"documents\[1\] is a str"):
        PleiasReranker(model=backend).compress_documents([a, "b"], "q")  # type: ignore[list-item]
