"""LangChain: rerank retrieved documents by how a Pleias model used them to answer.

    python examples/langchain_reranker.py [--model PleIAs/Pleias-RAG-350M]

Runs offline on the tiny test model unless ``--model`` names a real one (see ``_offline.py``).
"""

from __future__ import annotations

from _offline import langchain_embeddings, model_from_args, training_example
from langchain_core.documents import Document
from langchain_core.vectorstores import InMemoryVectorStore

from langchain_pleias import PleiasReranker


def main() -> None:
    model = model_from_args(__doc__)
    example = training_example("two_citations")
    store = InMemoryVectorStore.from_texts(list(example.sources), langchain_embeddings())
    retrieved: list[Document] = store.as_retriever(search_kwargs={"k": 3}).invoke(example.query)

    # Cited documents first (score 1.0), then those the analysis mentions (0.5); with
    # keep_unused the others follow (0.0) instead of being dropped.
    reranker = PleiasReranker(model=model, max_tokens=512, keep_unused=True)
    print("Q:", example.query)
    for doc in reranker.compress_documents(retrieved, example.query):
        quotes = [c["quote"] for c in doc.metadata["pleias_citations"]]
        print(f"  {doc.metadata['relevance_score']:.1f} {doc.page_content[:50]!r} quotes {quotes}")

    # analysis_only stops generating where the answer would start: faster, ranks by mentions.
    quick = PleiasReranker(model=model, max_tokens=512, analysis_only=True, top_n=2)
    print("analysis only, top 2:")
    for doc in quick.compress_documents(retrieved, example.query):
        print(f"  {doc.metadata['relevance_score']:.1f} {doc.page_content[:50]!r}")


if __name__ == "__main__":
    main()
