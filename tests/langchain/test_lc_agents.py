"""create_pleias_rag_tool inside a real LangChain 1.x agent (create_agent, on LangGraph).

The agent's brain is a scripted tool-calling chat model (langchain-core's GenericFakeChatModel
that accepts tools): it calls the Pleias tool once, then answers. A Pleias model cannot be the
brain: it does not call tools.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any
from uuid import UUID

import pytest
from langchain.agents import create_agent
from langchain_core.callbacks import BaseCallbackHandler
from langchain_core.documents import Document
from langchain_core.language_models import LanguageModelInput
from langchain_core.language_models.fake_chat_models import GenericFakeChatModel
from langchain_core.messages import AIMessage, BaseMessage, HumanMessage, ToolMessage
from langchain_core.outputs import ChatResult
from langchain_core.runnables import Runnable, RunnableLambda
from langchain_core.tools import BaseTool
from langchain_core.utils.function_calling import convert_to_openai_tool
from langgraph.checkpoint.memory import InMemorySaver
from lc_support import ScriptedBackend, example, hash_output, ref
from pydantic import Field

from langchain_pleias import ChatPleias, PleiasRAGTool, create_pleias_rag_tool
from pleias_rag.sources import source_id

EIFFEL_CONTENT = (
    "The Eiffel Tower was completed in 1889[1].\n\n"
    "Sources:\n"
    "[1] Eiffel Tower — https://example.org/eiffel: "
    '"It was completed in 1889 for the World\'s Fair."'
)


class ScriptedBrain(GenericFakeChatModel):
    """GenericFakeChatModel that accepts tools and records what it is shown."""

    seen: list[list[BaseMessage]] = Field(default_factory=list)
    tools: list[dict[str, Any]] = Field(default_factory=list)

    def bind_tools(
        self,
        tools: Sequence[dict[str, Any] | type | Callable[..., Any] | BaseTool],
        **kwargs: Any,
    ) -> Runnable[LanguageModelInput, AIMessage]:
        self.tools = [convert_to_openai_tool(t) for t in tools]
        return self

    def _generate(self, messages: list[BaseMessage], *args: Any, **kwargs: Any) -> ChatResult:
        self.seen.append(list(messages))
        return super()._generate(messages, *args, **kwargs)


def tool_call(query: str, call_id: str = "call-1") -> AIMessage:
    return AIMessage(
        "",
        tool_calls=[{"name": "answer_from_documents", "args": {"query": query}, "id": call_id}],
    )


def eiffel_docs() -> list[Document]:
    eiffel, louvre = example("cited").sources
    return [
        Document(
            eiffel, metadata={"title": "Eiffel Tower", "source": "https://example.org/eiffel"}
        ),
        Document(louvre, metadata={"title": "Louvre"}),
    ]


def recording_retriever(docs: list[Document]) -> tuple[Runnable[str, list[Document]], list[str]]:
    queries: list[str] = []

    def retrieve(query: str) -> list[Document]:
        queries.append(query)
        return docs

    return RunnableLambda(retrieve), queries


# --------------------------------------------------------------------------- the agent


def test_agent_calls_the_tool_and_keeps_the_citations(hash_model: str) -> None:
    question = example("cited").query
    docs = eiffel_docs()
    retriever, queries = recording_retriever(docs)
    tool = create_pleias_rag_tool(retriever, ChatPleias(model=hash_model, max_tokens=96))
    brain = ScriptedBrain(
        messages=iter([tool_call(question), AIMessage("It was completed in 1889 [1].")])
    )
    agent = create_agent(brain, [tool], checkpointer=InMemorySaver())
    config: Any = {"configurable": {"thread_id": "eiffel"}}

    state = agent.invoke(
        {"messages": [HumanMessage("When was the tower in Paris done? Check the documents.")]},
        config,
    )

    assert [m.type for m in state["messages"]] == ["human", "ai", "tool", "ai"]
    assert queries == [question]  # the brain's query went to retrieval
    message = state["messages"][2]
    assert isinstance(message, ToolMessage)
    assert (message.name, message.tool_call_id, message.status) == (
        "answer_from_documents",
        "call-1",
        "success",
    )
    assert message.content == EIFFEL_CONTENT
    # The brain read the content; the artifact never reached it.
    shown = brain.seen[1][-1]
    assert isinstance(shown, ToolMessage) and shown.content == EIFFEL_CONTENT

    artifact = message.artifact
    assert set(artifact) == {
        "input",
        "context",
        "answer",
        "citations",
        "cited_documents",
        "number_offset",
    }
    assert artifact["number_offset"] == 0  # the first call of the conversation
    assert artifact["input"] == question
    assert artifact["answer"] == "The Eiffel Tower was completed in 1889[1]."
    assert artifact["context"] == docs
    (cite,) = artifact["citations"]
    assert cite["type"] == "citation"
    assert cite["extras"]["cited_id"] == source_id(docs[0].page_content)
    assert cite["cited_text"] == "It was completed in 1889 for the World's Fair."
    assert (cite["title"], cite["url"]) == ("Eiffel Tower", "https://example.org/eiffel")
    assert cite["extras"]["status"] == "verified"
    (cited,) = artifact["cited_documents"]
    assert cited.page_content == docs[0].page_content
    (quote,) = cited.metadata["pleias_citations"]
    assert cited.page_content[quote["source_start"] : quote["source_end"]] == cite["cited_text"]
    assert state["messages"][3].content == "It was completed in 1889 [1]."

    # The final state, as the checkpointer saved it, still holds the citations.
    saved = agent.get_state(config).values["messages"][2]
    assert isinstance(saved, ToolMessage) and saved.content == EIFFEL_CONTENT
    assert PleiasRAGTool.load_artifact(saved) == artifact


async def test_agent_runs_the_tool_asynchronously(hash_model: str) -> None:
    question = example("cited").query
    retriever, queries = recording_retriever(eiffel_docs())
    tool = create_pleias_rag_tool(retriever, ChatPleias(model=hash_model, max_tokens=96))
    brain = ScriptedBrain(messages=iter([tool_call(question), AIMessage("1889 [1].")]))
    agent = create_agent(brain, [tool])

    state = await agent.ainvoke({"messages": [HumanMessage("When was the tower done?")]})

    message = state["messages"][2]
    assert isinstance(message, ToolMessage)
    assert message.content == EIFFEL_CONTENT
    assert [c["extras"]["status"] for c in message.artifact["citations"]] == ["verified"]
    assert [d.metadata["title"] for d in message.artifact["cited_documents"]] == ["Eiffel Tower"]
    assert queries == [question]


def test_the_brain_sees_a_query_schema() -> None:
    tool = create_pleias_rag_tool(
        RunnableLambda(lambda q: []), ScriptedBackend({}, default="x"), name="search_docs"
    )
    brain = ScriptedBrain(messages=iter([AIMessage("No need.")]))
    create_agent(brain, [tool]).invoke({"messages": [HumanMessage("Hi")]})
    (spec,) = brain.tools
    function = spec["function"]
    assert function["name"] == "search_docs"
    assert "standalone question" in function["description"]
    assert function["parameters"]["required"] == ["query"]
    assert function["parameters"]["properties"]["query"]["type"] == "string"


def test_tool_runs_are_traced_inside_the_tool_run() -> None:
    class Runs(BaseCallbackHandler):
        def __init__(self) -> None:
            self.tool: UUID | None = None
            self.parents: dict[str, UUID | None] = {}

        def on_tool_start(self, serialized: Any, input_str: str, **kwargs: Any) -> None:
            self.tool = kwargs["run_id"]

        def on_chain_start(self, serialized: Any, inputs: Any, **kwargs: Any) -> None:
            self.parents.setdefault(kwargs.get("name") or "", kwargs.get("parent_run_id"))

    doc = Document("Honey bees dance.")
    raw = hash_output(
        "x", "Bees dance" + ref(source_id(doc.page_content), "Honey bees dance.") + "."
    )
    tool = create_pleias_rag_tool(RunnableLambda(lambda q: [doc]), ScriptedBackend({"q": raw}))
    runs = Runs()
    tool.invoke({"query": "q"}, {"callbacks": [runs]})
    assert runs.tool is not None
    assert runs.parents["PleiasRAGChain"] == runs.tool


# --------------------------------------------------------------------------- content


def test_content_lists_each_marker_with_its_quotes_and_flags() -> None:
    bees = Document(
        "Honey bees dance to show where flowers are. They live in hives.",
        metadata={"source": "bees.txt"},
    )
    moon = Document("The Moon causes the tides.")
    long_doc = Document("word " * 80, metadata={"title": "Long"})
    b, m, w = (source_id(d.page_content) for d in (bees, moon, long_doc))
    answer = (
        "Bees dance"
        + ref(b, "Honey bees dance to show where flowers are.")
        + " in hives"
        + ref(b, "They live in hives.")
        + ". The Moon"
        + ref(m, "They live in hives.")
        + " makes cheese"
        + ref(m, "Cheese is made of milk.")
        + ". Words"
        + ref(w, ("word " * 60).strip())
        + ". Unknown"
        + ref("ffffffffffffffff", "x")
        + "."
    )
    backend = ScriptedBackend({"q": hash_output("x", answer)})
    tool = create_pleias_rag_tool(RunnableLambda(lambda q: [bees, moon, long_doc]), backend)
    content = tool.invoke({"query": "q"})
    body, sources = content.split("\n\n")
    assert body == "Bees dance[1] in hives[1]. The Moon[2] makes cheese[2]. Words[3]. Unknown[4]."
    lines = sources.splitlines()
    assert lines[0] == "Sources:"
    assert lines[1] == '[1] bees.txt: "Honey bees dance to show where flowers are."; ' + (
        '"They live in hives."'
    )
    assert lines[2] == (
        '[2] The Moon causes the tides.: "They live in hives." (found in another source); '
        '"Cheese is made of milk." (not found in the source)'
    )
    assert lines[3].startswith('[3] Long: "word word') and lines[3].endswith('…"')
    assert len(lines[3]) < 220
    assert lines[4] == "[4] unknown source 'ffffffffffffffff' (not among the documents): \"x\""
    assert len(lines) == 5


def test_an_answer_without_citations_says_so() -> None:
    backend = ScriptedBackend({"q": hash_output("x", "Paris.")})
    tool = create_pleias_rag_tool(RunnableLambda(lambda q: []), backend)
    message = tool.invoke(
        {"type": "tool_call", "id": "c", "name": tool.name, "args": {"query": "q"}}
    )
    assert message.content == "Paris.\n\nSources: none cited."
    assert message.artifact["citations"] == [] and message.artifact["cited_documents"] == []


def test_content_only_and_artifact_loading() -> None:
    backend = ScriptedBackend({"q": hash_output("x", "Paris.")})
    chain = create_pleias_rag_tool(RunnableLambda(lambda q: []), backend).chain
    plain = PleiasRAGTool(chain=chain, response_format="content")
    assert plain.invoke({"query": "q"}) == "Paris.\n\nSources: none cited."
    with pytest.raises(ValueError, match="not the artifact"):
        PleiasRAGTool.load_artifact(ToolMessage("x", tool_call_id="c"))
    doc = {"page_content": "t", "metadata": {"a": 1}, "type": "Document"}
    loaded = PleiasRAGTool.load_artifact({"citations": [], "cited_documents": [doc]})
    assert loaded["cited_documents"] == [Document("t", metadata={"a": 1})]


def test_the_tool_needs_a_pleias_chat_model() -> None:
    from langchain_pleias import PleiasLLM

    with pytest.raises(ValueError, match="use ChatPleias"):
        create_pleias_rag_tool(RunnableLambda(lambda q: []), PleiasLLM(model="x"))
