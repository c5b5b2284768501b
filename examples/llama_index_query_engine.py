"""LlamaIndex: a query engine over a VectorStoreIndex, answering with cited, checked nodes.

    python examples/llama_index_query_engine.py [--model PleIAs/Pleias-RAG-350M]

Runs offline on the tiny test model unless ``--model`` names a real one (see ``_offline.py``).
"""

from __future__ import annotations

from _offline import llama_index_embedding, model_from_args, training_example
from llama_index.core import Document, VectorStoreIndex

from llama_index_pleias import PLEIAS_METADATA_KEY, PleiasQueryEngine


def main() -> None:
    model = model_from_args(__doc__)
    example = training_example("two_citations")  # a question and three short texts

    # The model reads each node as LlamaIndex's LLMs do (MetadataMode.LLM): the title is for
    # display here, so it is kept out of the model's text.
    documents = [
        Document(
            text=text,
            metadata={"title": f"document {i}"},
            excluded_llm_metadata_keys=["title"],
        )
        for i, text in enumerate(example.sources, 1)
    ]
    index = VectorStoreIndex.from_documents(documents, embed_model=llama_index_embedding())
    engine = PleiasQueryEngine.from_index(
        index, model=model, similarity_top_k=3, max_new_tokens=512
    )  # no LlamaIndex LLM is needed: the Pleias model is the synthesizer

    response = engine.query(example.query)
    print("Q:", example.query)
    print("A:", response)  # the answer, with [n] markers

    print("Source nodes: only the cited ones, each with its checked quotes")
    for n in response.source_nodes:
        text = n.node.get_content()
        for c in n.node.metadata[PLEIAS_METADATA_KEY]["citations"]:
            start, end = c["node_start"], c["node_end"]  # offsets in the node body
            where = text[start:end] if start is not None else None
            print(f"  [{c['number']}] {n.node.metadata['title']}: {c['status']}, {where!r}")

    metadata = response.metadata or {}
    print("Source analysis:", metadata["source_analysis"].replace("\n", " "))
    print("Dropped to fit the context:", metadata["dropped_node_ids"])


if __name__ == "__main__":
    main()
