"""LlamaIndex: a Pleias query engine as the tool of an agent; its cited Response kept.

    python examples/llama_index_agent.py [--model PleIAs/Pleias-RAG-350M]

Runs offline on the tiny test model unless ``--model`` names a real one (see ``_offline.py``).
A Pleias model does not call functions, so it is the agent's tool, not its brain. The brain here
is LlamaIndex's scripted ``MockFunctionCallingLLM`` (it calls the tool once, then answers); use
any function-calling LLM instead, e.g. ``OpenAI(model="gpt-4.1-mini")``.
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from typing import Any

from _offline import llama_index_embedding, model_from_args, training_example
from llama_index.core import Document, VectorStoreIndex
from llama_index.core.agent.workflow import AgentWorkflow, FunctionAgent, ToolCallResult
from llama_index.core.base.llms.types import ChatMessage, MessageRole, ToolCallBlock
from llama_index.core.llms.mock import MockFunctionCallingLLM

from llama_index_pleias import PLEIAS_METADATA_KEY, PleiasQueryEngine


def scripted_brain(question: str) -> MockFunctionCallingLLM:
    """Calls the tool with ``question``, then answers."""

    def reply(messages: Sequence[ChatMessage], **kwargs: Any) -> ChatMessage:
        if not any(m.role == MessageRole.TOOL for m in messages):
            call = ToolCallBlock(
                tool_call_id="call-1",
                tool_name="answer_from_documents",
                tool_kwargs={"input": question},
            )
            return ChatMessage(role=MessageRole.ASSISTANT, blocks=[call])
        text = "According to the documents, it was completed in 1889 [1]."
        return ChatMessage(role=MessageRole.ASSISTANT, content=text)

    return MockFunctionCallingLLM(response_generator=reply)


async def main() -> None:
    model = model_from_args(__doc__)
    example = training_example("cited")  # the Eiffel Tower question and two short texts

    documents = [
        Document(
            text=text,
            metadata={"title": title, "url": f"https://example.org/{i}"},
            excluded_llm_metadata_keys=["title", "url"],  # for the reader, not the model
        )
        for i, (text, title) in enumerate(
            zip(example.sources, ["Eiffel Tower", "Louvre"], strict=True)
        )
    ]
    index = VectorStoreIndex.from_documents(documents, embed_model=llama_index_embedding())
    engine = PleiasQueryEngine.from_index(
        index, model=model, similarity_top_k=2, max_new_tokens=512
    )
    agent = FunctionAgent(
        tools=[engine.as_tool()],  # named "answer_from_documents"
        llm=scripted_brain(example.query),
        system_prompt="Answer from the documents with the answer_from_documents tool; "
        "keep its [n] markers.",
    )
    question = "When was the Eiffel Tower completed? Check the documents."
    handler = AgentWorkflow(agents=[agent]).run(user_msg=question)
    results = [e async for e in handler.stream_events() if isinstance(e, ToolCallResult)]
    final = await handler

    print("User:", question)
    for result in results:
        print(f"Agent calls {result.tool_name}({result.tool_kwargs})")
        print("Tool content (what the agent reads):")
        print("  " + result.tool_output.content.replace("\n", "\n  "))
    print("Agent:", final.response.content)

    # The tool output's raw_output is the cited Response: for the application, not the brain.
    print("Cited nodes in the tool's raw_output:")
    for result in results:
        for n in result.tool_output.raw_output.source_nodes:
            text = n.node.get_content()
            for c in n.node.metadata[PLEIAS_METADATA_KEY]["citations"]:
                start, end = c["node_start"], c["node_end"]  # offsets in the node body
                where = text[start:end] if start is not None else None
                print(
                    f"  [{c['number']}] {n.node.metadata['title']} <{n.node.metadata['url']}>: "
                    f"{where!r} ({c['status']}, {c['match']})"
                )


if __name__ == "__main__":
    asyncio.run(main())
