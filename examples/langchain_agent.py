"""LangChain: a Pleias RAG tool in an agent (create_agent, on LangGraph); its citations kept,
and put on the agent's final answer by PleiasCitationsMiddleware.

    python examples/langchain_agent.py [--model PleIAs/Pleias-RAG-350M]

Runs offline on the tiny test model unless ``--model`` names a real one (see ``_offline.py``).
A Pleias model does not call tools, so it is the agent's tool, not its brain. The brain here is
scripted (it calls the tool once, then answers); use any tool-calling chat model instead, e.g.
``init_chat_model("openai:gpt-4.1-mini")``.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

from _offline import langchain_embeddings, model_from_args, training_example
from langchain.agents import create_agent
from langchain_core.documents import Document
from langchain_core.language_models import LanguageModelInput
from langchain_core.language_models.fake_chat_models import GenericFakeChatModel
from langchain_core.messages import AIMessage, HumanMessage, ToolMessage
from langchain_core.runnables import Runnable
from langchain_core.tools import BaseTool
from langchain_core.vectorstores import InMemoryVectorStore
from langgraph.checkpoint.memory import InMemorySaver

from langchain_pleias import (
    ChatPleias,
    PleiasCitationsMiddleware,
    PleiasRAGTool,
    create_pleias_rag_tool,
)


class ScriptedBrain(GenericFakeChatModel):
    """langchain-core's fake chat model, accepting tools: its replies are given in advance."""

    def bind_tools(
        self,
        tools: Sequence[dict[str, Any] | type | Callable[..., Any] | BaseTool],
        **kwargs: Any,
    ) -> Runnable[LanguageModelInput, AIMessage]:
        return self


def main() -> None:
    model = model_from_args(__doc__)
    example = training_example("cited")  # the Eiffel Tower question and two short texts

    store = InMemoryVectorStore(langchain_embeddings())  # any vector store and embedding
    store.add_documents(
        [
            Document(text, metadata={"title": title, "source": f"https://example.org/{i}"})
            for i, (text, title) in enumerate(
                zip(example.sources, ["Eiffel Tower", "Louvre"], strict=True)
            )
        ]
    )
    # The RAG chain as a tool: the brain gives it a question, it answers with quotes.
    tool = create_pleias_rag_tool(
        store.as_retriever(search_kwargs={"k": 2}), ChatPleias(model=model, max_tokens=512)
    )
    call = {"name": tool.name, "args": {"query": example.query}, "id": "call-1"}
    brain = ScriptedBrain(
        messages=iter(
            [
                AIMessage("", tool_calls=[call]),
                AIMessage("According to the documents, it was completed in 1889 [1]."),
            ]
        )
    )
    agent = create_agent(
        brain,
        [tool],
        system_prompt="Answer from the documents with the answer_from_documents tool; "
        "keep its [n] markers.",
        # Maps the [n] markers of the final answer back to the tool calls' documents.
        middleware=[PleiasCitationsMiddleware()],
        checkpointer=InMemorySaver(),  # keeps the conversation, artifacts included
    )
    config: Any = {"configurable": {"thread_id": "example"}}
    question = "When was the Eiffel Tower completed? Check the documents."
    state = agent.invoke({"messages": [HumanMessage(question)]}, config)

    print("User:", question)
    for message in state["messages"]:
        if isinstance(message, AIMessage) and message.tool_calls:
            for c in message.tool_calls:
                print(f"Agent calls {c['name']}({c['args']})")
        elif isinstance(message, ToolMessage):
            print("Tool content (what the agent reads):")
            print("  " + message.text.replace("\n", "\n  "))
    print("Agent:", state["messages"][-1].text)

    # The artifact never reaches the brain; the application reads it from the agent's state
    # (here as the checkpointer saved it: load_artifact turns the documents back into objects).
    saved = agent.get_state(config).values["messages"]
    artifact = PleiasRAGTool.load_artifact(next(m for m in saved if isinstance(m, ToolMessage)))
    print("Citations in the tool's artifact:")
    for c in artifact["citations"]:
        x = c["extras"]
        n = x["number"] + artifact["number_offset"]  # the number the tool content shows
        print(f"  [{n}] {c['title']}: {c['cited_text']!r} ({x['status']}, {x['match']})")
    print("Cited documents:")
    for doc in artifact["cited_documents"]:
        print(f"  {doc.metadata['title']} <{doc.metadata['source']}>")

    # The middleware put the citations on the agent's final answer: each [n] the brain
    # copied, with the tool call that showed it and that call's documents...
    final = state["messages"][-1]
    print("Citations of the agent's answer:")
    for entry in final.response_metadata["pleias_citations"]:
        where = ", ".join(
            f"{d.metadata['title']} <{d.metadata['source']}>" for d in entry["documents"]
        )
        print(f"  {entry['marker']} from {entry['tool_call_id']}: {where or 'no document'}")
    # ...and as standard LangChain citation annotations of its text block.
    for block in final.content_blocks:
        for ann in block.get("annotations", []):
            marker = ann["extras"]["pleias_marker"]
            print(f"  annotation {marker}: {ann['title']}, {ann['cited_text']!r}")


if __name__ == "__main__":
    main()
