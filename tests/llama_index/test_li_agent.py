"""A Pleias query engine as a tool of an agent workflow; the agent's brain is another LLM.

The brain is a scripted function-calling LLM (core's ``MockFunctionCallingLLM``): it calls the
Pleias tool once, then answers with the tool's text. A Pleias model can not be the brain.
The tool is either the plain ``QueryEngineTool`` recipe or ``PleiasQueryEngine.as_tool()``,
whose content adds the numbered sources.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import pytest
from li_support import ScriptedBackend, hash_output, ref
from llama_index.core.agent.workflow import AgentWorkflow, FunctionAgent, ToolCallResult
from llama_index.core.base.llms.types import ChatMessage, MessageRole, ToolCallBlock
from llama_index.core.base.response.schema import Response
from llama_index.core.llms.mock import MockFunctionCallingLLM
from llama_index.core.retrievers import BaseRetriever
from llama_index.core.schema import NodeWithScore, QueryBundle, TextNode
from llama_index.core.tools import QueryEngineTool

from llama_index_pleias import (
    PLEIAS_METADATA_KEY,
    PleiasLLM,
    PleiasQueryEngine,
    PleiasQueryEngineTool,
)
from pleias_rag import Source

# The workflows package inspects the (pydantic) agent with inspect.getmembers: not ours.
pytestmark = pytest.mark.filterwarnings("ignore::pydantic.warnings.PydanticDeprecationWarning")


class FixedRetriever(BaseRetriever):
    """Returns the same nodes for any query."""

    def __init__(self, nodes: list[NodeWithScore]) -> None:
        super().__init__()
        self._nodes = nodes

    def _retrieve(self, query_bundle: QueryBundle) -> list[NodeWithScore]:
        return list(self._nodes)


def scripted_brain(query: str, tool_name: str = "pleias_search") -> MockFunctionCallingLLM:
    def brain(messages: Sequence[ChatMessage], **kwargs: Any) -> ChatMessage:
        results = [m for m in messages if m.role == MessageRole.TOOL]
        if not results:
            call = ToolCallBlock(
                tool_call_id="call-1", tool_name=tool_name, tool_kwargs={"input": query}
            )
            return ChatMessage(role=MessageRole.ASSISTANT, blocks=[call])
        return ChatMessage(role=MessageRole.ASSISTANT, content=f"Found: {results[-1].content}")

    return MockFunctionCallingLLM(response_generator=brain)


@pytest.fixture
def pleias_tool(hash_llm: PleiasLLM, hash_examples: dict[str, Any]) -> QueryEngineTool:
    ex = hash_examples["cited"]
    nodes = [
        NodeWithScore(node=TextNode(text=t, id_=f"node-{i}"), score=1.0)
        for i, t in enumerate(ex.sources)
    ]
    engine = PleiasQueryEngine.from_retriever(FixedRetriever(nodes), model=hash_llm)
    return QueryEngineTool.from_defaults(
        engine, name="pleias_search", description="Answers from the documents, with citations."
    )


async def test_tool_output_keeps_the_cited_response(
    pleias_tool: QueryEngineTool, hash_examples: dict[str, Any]
) -> None:
    ex = hash_examples["cited"]
    agent = FunctionAgent(tools=[pleias_tool], llm=scripted_brain(ex.query))
    workflow = AgentWorkflow(agents=[agent])
    handler = workflow.run(user_msg="When was the Eiffel Tower done? Check the documents.")
    results = [e async for e in handler.stream_events() if isinstance(e, ToolCallResult)]
    final = await handler

    (result,) = results
    assert result.tool_name == "pleias_search"
    assert result.tool_kwargs == {"input": ex.query}
    response = result.tool_output.raw_output
    assert isinstance(response, Response)
    assert response.response == "The Eiffel Tower was completed in 1889[1]."
    (node,) = response.source_nodes
    assert node.node_id == "node-0"
    (c,) = node.node.metadata[PLEIAS_METADATA_KEY]["citations"]
    assert node.node.get_content()[c["node_start"] : c["node_end"]] == c["quote"]
    assert result.tool_output.content == response.response
    assert str(final.response.content) == "Found: The Eiffel Tower was completed in 1889[1]."


async def test_a_pleias_model_is_not_an_agent_brain(
    pleias_tool: QueryEngineTool, hash_llm: PleiasLLM
) -> None:
    assert not hash_llm.metadata.is_function_calling_model
    agent = FunctionAgent(tools=[pleias_tool], llm=hash_llm)
    with pytest.raises(Exception, match="FunctionCallingLLM"):
        await agent.run(user_msg="When was the Eiffel Tower completed?")


# --------------------------------------------------------------------------- as_tool


EIFFEL_CONTENT = (
    "The Eiffel Tower was completed in 1889[1].\n\n"
    "Sources:\n"
    "[1] Eiffel Tower — https://example.org/eiffel: "
    '"It was completed in 1889 for the World\'s Fair."'
)


async def test_as_tool_gives_the_agent_the_sources_and_keeps_the_response(
    hash_llm: PleiasLLM, hash_examples: dict[str, Any]
) -> None:
    ex = hash_examples["cited"]
    meta = [{"title": "Eiffel Tower", "url": "https://example.org/eiffel"}, {"title": "Louvre"}]
    nodes = [
        NodeWithScore(
            node=TextNode(
                text=t, id_=f"node-{i}", metadata=meta[i], excluded_llm_metadata_keys=list(meta[i])
            ),
            score=1.0,
        )
        for i, t in enumerate(ex.sources)
    ]
    engine = PleiasQueryEngine.from_retriever(FixedRetriever(nodes), model=hash_llm)
    tool = engine.as_tool()
    assert isinstance(tool, PleiasQueryEngineTool)
    assert tool.metadata.name == "answer_from_documents"
    assert "standalone question" in tool.metadata.description
    assert tool.metadata.get_parameters_dict()["required"] == ["input"]

    agent = FunctionAgent(tools=[tool], llm=scripted_brain(ex.query, "answer_from_documents"))
    handler = AgentWorkflow(agents=[agent]).run(user_msg="When was the tower in Paris done?")
    results = [e async for e in handler.stream_events() if isinstance(e, ToolCallResult)]
    final = await handler

    (result,) = results
    assert result.tool_output.content == EIFFEL_CONTENT
    response = result.tool_output.raw_output
    assert isinstance(response, Response)
    assert response.response == "The Eiffel Tower was completed in 1889[1]."
    assert [n.node_id for n in response.source_nodes] == ["node-0"]
    assert response.metadata is not None and response.metadata["cited_node_ids"] == ["node-0"]
    assert str(final.response.content) == f"Found: {EIFFEL_CONTENT}"


async def test_as_tool_reads_a_streaming_engine_to_the_end() -> None:
    text = "Honey bees dance to show where flowers are."

    def script(query: str, sources: Sequence[Source]) -> str:
        return hash_output("x", "Bees dance" + ref(sources[0], text) + ".")

    nodes = [NodeWithScore(node=TextNode(text=text, id_="bees"), score=1.0)]
    engine = PleiasQueryEngine.from_retriever(
        FixedRetriever(nodes), model=ScriptedBackend(script), streaming=True
    )
    tool = engine.as_tool(name="bees", description="About bees.", return_direct=True)
    assert tool.metadata.return_direct
    expected = f'Bees dance[1].\n\nSources:\n[1] {text}: "{text}"'
    for output in (tool.call(input="q"), await tool.acall(input="q")):
        assert output.content == expected
        assert isinstance(output.raw_output, Response)
        assert [n.node_id for n in output.raw_output.source_nodes] == ["bees"]
        assert output.raw_input == {"input": "q"}


def test_as_tool_without_citations() -> None:
    nodes = [NodeWithScore(node=TextNode(text="Some text.", id_="n"), score=1.0)]
    engine = PleiasQueryEngine.from_retriever(
        FixedRetriever(nodes), model=ScriptedBackend(lambda q, s: hash_output("x", "Paris."))
    )
    assert engine.as_tool().call(input="q").content == "Paris.\n\nSources: none cited."
    empty = PleiasQueryEngine.from_retriever(
        FixedRetriever([]), model=ScriptedBackend(lambda q, s: "")
    )
    assert empty.as_tool().call(input="q").content == "Empty Response\n\nSources: none cited."
