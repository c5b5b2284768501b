"""LlamaIndex: rerank retrieved nodes by how a Pleias model used them to answer.

    python examples/llama_index_reranker.py [--model PleIAs/Pleias-RAG-350M]

Runs offline on the tiny test model unless ``--model`` names a real one (see ``_offline.py``).
"""

from __future__ import annotations

from _offline import llama_index_embedding, model_from_args, training_example
from llama_index.core import Document, VectorStoreIndex

from llama_index_pleias import PLEIAS_METADATA_KEY, PleiasReranker


def main() -> None:
    model = model_from_args(__doc__)
    example = training_example("two_citations")
    index = VectorStoreIndex.from_documents(
        [Document(text=text) for text in example.sources], embed_model=llama_index_embedding()
    )
    retrieved = index.as_retriever(similarity_top_k=3).retrieve(example.query)

    # The model stops after its source analysis: nodes score by order of mention (the first
    # 1.0, later ones above 0.5), unused ones 0.0. keep="mentioned" (the default) drops those;
    # keep="cited" writes the answer too and keeps cited nodes only (1.0 cited, 0.5 mentioned).
    # As a node postprocessor it also fits any query engine: node_postprocessors=[reranker].
    reranker = PleiasReranker(model, keep="all", max_new_tokens=512)
    print("Q:", example.query)
    for n in reranker.postprocess_nodes(retrieved, query_str=example.query):
        notes = n.node.metadata[PLEIAS_METADATA_KEY]
        print(
            f"  score {n.score:.1f} (retrieval {notes['retrieval_score']:.2f}) "
            f"{n.node.get_content()[:50]!r}"
        )


if __name__ == "__main__":
    main()
