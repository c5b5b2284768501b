"""LangChain: follow-up questions, rewritten into standalone ones before retrieval and answer.

    python examples/langchain_followup.py [--model PleIAs/Pleias-RAG-350M]

Runs offline on the tiny test model unless ``--model`` names a real one (see ``_offline.py``).
A Pleias model answers one question; it does not read the conversation. A ``condense_llm``
rewrites the follow-up with the conversation first. Here it is scripted (langchain-core's
``FakeListChatModel``); use any chat model, e.g. ``init_chat_model("openai:gpt-4.1-mini")``.
"""

from __future__ import annotations

from _offline import langchain_embeddings, model_from_args, training_example
from langchain_core.documents import Document
from langchain_core.language_models import FakeListChatModel
from langchain_core.messages import AIMessage, HumanMessage
from langchain_core.vectorstores import InMemoryVectorStore

from langchain_pleias import ChatPleias, create_pleias_rag_chain


def main() -> None:
    model = model_from_args(__doc__)
    example = training_example("cited")  # the Eiffel Tower question and two short texts

    store = InMemoryVectorStore(langchain_embeddings())  # any vector store and embedding
    store.add_documents(
        [
            Document(text, metadata={"title": title})
            for text, title in zip(example.sources, ["Eiffel Tower", "Louvre"], strict=True)
        ]
    )
    retriever = store.as_retriever(search_kwargs={"k": 2})
    condense_llm = FakeListChatModel(responses=[example.query])  # always this rewrite
    chat = ChatPleias(model=model, max_tokens=512)

    # The conversation so far (kept by the application), and a follow-up question.
    history = [
        ("human", "Tell me about the Eiffel Tower."),
        ("ai", "The Eiffel Tower is a wrought-iron lattice tower in Paris."),
    ]
    follow_up = "When was it completed?"

    # 1. The RAG chain: the rewrite is what the retriever and the Pleias model get.
    chain = create_pleias_rag_chain(retriever, chat, condense_llm=condense_llm)
    result = chain.invoke({"input": follow_up, "chat_history": history})
    print("User:", follow_up)
    print("  standalone question:", result["standalone_question"])
    print("Assistant:", result["answer"])
    for c in result["citations"]:
        print(f"  [{c['extras']['number']}] {c['title']}: {c['cited_text']!r}")
    history += [("human", follow_up), ("ai", result["answer"])]  # the next turn's history

    # 2. ChatPleias alone: it answers the last human message, rewritten with a condense_llm.
    follow_up_chat = ChatPleias(model=model, max_tokens=512, condense_llm=condense_llm)
    messages = [
        HumanMessage("Tell me about the Eiffel Tower."),
        AIMessage("The Eiffel Tower is a wrought-iron lattice tower in Paris."),
        HumanMessage(follow_up),
    ]
    reply = follow_up_chat.invoke(messages, documents=result["context"])
    print("ChatPleias, same conversation:")
    print("  standalone question:", reply.response_metadata["standalone_question"])
    print("  answer:", reply.text)


if __name__ == "__main__":
    main()
