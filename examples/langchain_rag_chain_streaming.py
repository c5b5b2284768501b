"""LangChain: a RAG chain over a vector store, streamed, its citations mapped to the documents.

    python examples/langchain_rag_chain_streaming.py [--model PleIAs/Pleias-RAG-350M]

Runs offline on the tiny test model unless ``--model`` names a real one (see ``_offline.py``).
"""

from __future__ import annotations

from _offline import langchain_embeddings, model_from_args, training_example
from langchain_core.documents import Document
from langchain_core.runnables.utils import AddableDict
from langchain_core.vectorstores import InMemoryVectorStore

from langchain_pleias import ChatPleias, create_pleias_rag_chain


def main() -> None:
    model = model_from_args(__doc__)
    example = training_example("two_citations")  # a question and three short texts

    store = InMemoryVectorStore(langchain_embeddings())  # any vector store and embedding
    store.add_documents(
        [
            Document(text, metadata={"title": f"document {i}"})
            for i, text in enumerate(example.sources, 1)
        ]
    )
    chat = ChatPleias(model=model, max_tokens=512)  # weights load on first use
    chain = create_pleias_rag_chain(store.as_retriever(search_kwargs={"k": 3}), chat)

    print("Q:", example.query)
    print("A: ", end="")
    result = AddableDict()  # the chunks add up to what chain.invoke(question) returns
    for chunk in chain.stream(example.query):
        print(chunk.get("answer", ""), end="", flush=True)  # answer text, as it is written
        result += chunk  # the last chunk: context, citations and cited documents
    print()

    print("Citations (standard LangChain annotations):")
    for c in result["citations"]:
        x = c["extras"]
        print(f"  [{x['number']}] {c['title']}: {c['cited_text']!r} ({x['status']}, {x['match']})")

    print("Cited documents (copies of the retrieved ones; the uncited one is left out):")
    for doc in result["cited_documents"]:
        for quote in doc.metadata["pleias_citations"]:
            start, end = quote["source_start"], quote["source_end"]  # offsets in page_content
            print(f"  {doc.metadata['title']} [{start}:{end}]: {doc.page_content[start:end]!r}")


if __name__ == "__main__":
    main()
