"""Follow-up questions: ChatPleias and the RAG chain rewrite them with a ``condense_llm``.

The condense model is langchain-core's FakeListChatModel, rewriting the follow-up into one of
the tiny model's training questions, so the Pleias answer is the trained one.
"""

from __future__ import annotations

from typing import Any
from uuid import UUID

import pytest
from langchain_core.callbacks import BaseCallbackHandler
from langchain_core.documents import Document
from langchain_core.language_models.fake_chat_models import FakeListChatModel
from langchain_core.messages import (
    AIMessage,
    AIMessageChunk,
    BaseMessage,
    HumanMessage,
    SystemMessage,
)
from langchain_core.messages.content import create_plaintext_block
from langchain_core.prompts import PromptTemplate
from langchain_core.runnables import RunnableLambda
from lc_support import ScriptedBackend, docs_of, example, hash_output, ref
from pydantic import Field, ValidationError

from langchain_pleias import ChatPleias, create_pleias_rag_chain
from pleias_rag.sources import source_id

EIFFEL = example("cited")
EIFFEL_ANSWER = "The Eiffel Tower was completed in 1889[1]."
HISTORY: list[BaseMessage] = [
    HumanMessage("Tell me about the Eiffel Tower."),
    AIMessage("It is a wrought-iron lattice tower in Paris[1]."),
]
FOLLOW_UP = "When was it completed?"


class Rewriter(FakeListChatModel):
    """FakeListChatModel that records the prompts it is given."""

    prompts: list[list[BaseMessage]] = Field(default_factory=list)

    def _call(self, messages: list[BaseMessage], *args: Any, **kwargs: Any) -> str:
        self.prompts.append(list(messages))
        return super()._call(messages, *args, **kwargs)


def rewriter(text: str = EIFFEL.query) -> Rewriter:
    return Rewriter(responses=[text])


def merged(chunks: list[AIMessageChunk]) -> AIMessageChunk:
    full = chunks[0]
    for chunk in chunks[1:]:
        full = full + chunk
    return full


def scripted() -> ScriptedBackend:
    """Answers the standalone Eiffel question only (anything else: no answer section)."""
    eiffel = EIFFEL.sources[0]
    raw = hash_output(
        "ok", "Completed in 1889" + ref(source_id(eiffel), "It was completed in 1889") + "."
    )
    return ScriptedBackend({EIFFEL.query: raw}, default="not rewritten")


# --------------------------------------------------------------------------- ChatPleias


def test_a_conversation_answers_its_last_question(hash_model: str) -> None:
    chat = ChatPleias(model=hash_model, max_tokens=96)
    tides = example("two_citations")
    conversation = [
        HumanMessage(tides.query),
        AIMessage("The Moon's gravity causes the tides[1]. The Louvre houses the Mona Lisa[2]."),
        HumanMessage(EIFFEL.query),
    ]
    reply = chat.invoke(conversation, documents=docs_of(EIFFEL))
    assert reply.text == EIFFEL_ANSWER
    assert "standalone_question" not in reply.response_metadata


def test_a_follow_up_is_rewritten_then_answered(hash_model: str) -> None:
    condense = rewriter()
    chat = ChatPleias(model=hash_model, max_tokens=96, condense_llm=condense)
    reply = chat.invoke([*HISTORY, HumanMessage(FOLLOW_UP)], documents=docs_of(EIFFEL))

    assert reply.text == EIFFEL_ANSWER
    assert reply.response_metadata["standalone_question"] == EIFFEL.query
    citations = reply.content_blocks[-1]["annotations"]
    assert [c["extras"]["status"] for c in citations] == ["verified"]  # type: ignore[index]
    (prompt,) = condense.prompts
    assert [m.type for m in prompt] == ["system", "human"]
    assert prompt[1].text == (
        "Conversation:\n"
        "Human: Tell me about the Eiffel Tower.\n"
        "Assistant: It is a wrought-iron lattice tower in Paris[1].\n\n"
        "Follow-up message: When was it completed?\n\n"
        "Standalone question:"
    )


def test_streaming_and_async_report_the_rewrite_once() -> None:
    backend = scripted()
    chat = ChatPleias(model=backend, condense_llm=rewriter())
    conversation = [*HISTORY, HumanMessage(FOLLOW_UP)]
    chunks = list(chat.stream(conversation, documents=docs_of(EIFFEL)))
    full = merged(chunks)
    assert full.text == "Completed in 1889[1]."
    assert full.response_metadata["standalone_question"] == EIFFEL.query
    assert [c.response_metadata.get("standalone_question") for c in chunks].count(EIFFEL.query) == 1
    assert backend.calls[0][1][0] == EIFFEL.query  # what the Pleias model was given

    async def run() -> tuple[AIMessage, AIMessageChunk]:
        reply = await chat.ainvoke(conversation, documents=docs_of(EIFFEL))
        parts = [c async for c in chat.astream(conversation, documents=docs_of(EIFFEL))]
        return reply, merged(parts)

    import asyncio

    reply, streamed = asyncio.run(run())
    for message in (reply, streamed):
        assert message.text == "Completed in 1889[1]."
        assert message.response_metadata["standalone_question"] == EIFFEL.query


def test_a_single_question_is_not_rewritten() -> None:
    condense = rewriter()
    chat = ChatPleias(model=scripted(), condense_llm=condense)
    for messages in (
        [HumanMessage(EIFFEL.query)],
        [SystemMessage("Be brief."), HumanMessage(EIFFEL.query)],
        # An AI message after the question is not history of it.
        [HumanMessage(EIFFEL.query), AIMessage("Thinking...")],
    ):
        reply = chat.invoke(messages, documents=docs_of(EIFFEL))
        assert reply.text == "Completed in 1889[1]."
        assert "standalone_question" not in reply.response_metadata
    assert condense.prompts == []


def test_only_what_was_said_goes_to_the_rewriter() -> None:
    condense = rewriter()
    chat = ChatPleias(model=scripted(), condense_llm=condense)
    eiffel = EIFFEL.sources[0]
    messages = [
        SystemMessage("You answer from sources."),
        HumanMessage(
            content_blocks=[
                {"type": "text", "text": "Tell me about the tower."},
                create_plaintext_block(eiffel, title="Eiffel"),
            ]
        ),
        AIMessage("", tool_calls=[{"name": "search", "args": {}, "id": "c1"}]),
        AIMessage("It is in Paris."),
        HumanMessage(FOLLOW_UP),
    ]
    reply = chat.invoke(messages)
    assert reply.text == "Completed in 1889[1]."  # the text-plain block is still a source
    (prompt,) = condense.prompts
    assert "Human: Tell me about the tower.\nAssistant: It is in Paris.\n\n" in prompt[1].text
    assert eiffel not in prompt[1].text


def test_an_empty_rewrite_keeps_the_question() -> None:
    backend = scripted()
    chat = ChatPleias(model=backend, condense_llm=rewriter("  "))
    reply = chat.invoke([*HISTORY, HumanMessage(FOLLOW_UP)], documents=docs_of(EIFFEL))
    assert reply.response_metadata["standalone_question"] == FOLLOW_UP
    assert backend.calls[0][1][0] == FOLLOW_UP


def test_a_custom_prompt_and_bad_settings() -> None:
    condense = rewriter()
    prompt = PromptTemplate.from_template("History:\n{chat_history}\nRewrite: {question}")
    chat = ChatPleias(model=scripted(), condense_llm=condense, condense_prompt=prompt)
    chat.invoke([*HISTORY, HumanMessage(FOLLOW_UP)], documents=docs_of(EIFFEL))
    ((message,),) = condense.prompts
    assert message.text == (
        "History:\nHuman: Tell me about the Eiffel Tower.\n"
        "Assistant: It is a wrought-iron lattice tower in Paris[1].\n"
        "Rewrite: When was it completed?"
    )

    with pytest.raises(ValidationError, match="'question'"):
        ChatPleias(
            model="m", condense_llm=condense, condense_prompt=PromptTemplate.from_template("{x}")
        )
    with pytest.raises(ValidationError, match="general chat model"):
        ChatPleias(model="m", condense_llm=ChatPleias(model="m"))
    with pytest.raises(ValidationError, match="must be a LangChain chat model"):
        ChatPleias(model="m", condense_llm="gpt-4")  # type: ignore[arg-type]


def test_the_rewrite_is_traced_inside_the_chat_run_and_keyed_in_the_cache() -> None:
    class Runs(BaseCallbackHandler):
        def __init__(self) -> None:
            self.runs: list[tuple[str, UUID, UUID | None]] = []

        def on_chat_model_start(self, serialized: Any, messages: Any, **kwargs: Any) -> None:
            name = kwargs.get("name") or serialized.get("name", "")
            self.runs.append((name, kwargs["run_id"], kwargs.get("parent_run_id")))

    runs = Runs()
    chat = ChatPleias(model=scripted(), condense_llm=rewriter())
    chat.invoke([*HISTORY, HumanMessage(FOLLOW_UP)], {"callbacks": [runs]}, documents=[])
    (outer, outer_id, _), (inner, _, parent) = runs.runs
    assert (inner, parent) == ("condense_question", outer_id)
    assert outer != "condense_question"

    plain = ChatPleias(model="m")
    with_rewriter = ChatPleias(model="m", condense_llm=rewriter())
    assert plain._get_llm_string() != with_rewriter._get_llm_string()


# --------------------------------------------------------------------------- the chain


def recording_retriever(
    docs: list[Document],
) -> tuple[RunnableLambda[str, list[Document]], list[str]]:
    queries: list[str] = []

    def retrieve(query: str) -> list[Document]:
        queries.append(query)
        return docs

    return RunnableLambda(retrieve), queries


def test_the_chain_retrieves_and_answers_the_standalone_question(hash_model: str) -> None:
    docs = docs_of(EIFFEL)
    retriever, queries = recording_retriever(docs)
    chain = create_pleias_rag_chain(
        retriever, ChatPleias(model=hash_model, max_tokens=96), condense_llm=rewriter()
    )
    history = [("human", "Tell me about the Eiffel Tower."), ("ai", "It is in Paris[1].")]
    result = chain.invoke({"input": FOLLOW_UP, "chat_history": history})

    assert queries == [EIFFEL.query]
    assert set(result) == {
        "input",
        "standalone_question",
        "context",
        "answer",
        "citations",
        "cited_documents",
    }
    assert result["input"] == FOLLOW_UP
    assert result["standalone_question"] == EIFFEL.query
    assert result["answer"] == EIFFEL_ANSWER
    assert [d.metadata["title"] for d in result["cited_documents"]] == ["Doc 0"]


def test_the_chain_streams_and_runs_async_with_a_rewrite() -> None:
    docs = docs_of(EIFFEL)
    retriever, queries = recording_retriever(docs)
    condense = rewriter()
    chain = create_pleias_rag_chain(retriever, scripted(), condense_llm=condense)
    value = {"input": FOLLOW_UP, "chat_history": HISTORY}
    expected = chain.invoke(value)
    assert expected["answer"] == "Completed in 1889[1]."
    chunks = list(chain.stream(value))
    assert all(set(c) == {"answer"} for c in chunks[:-1])
    assert chunks[-1]["standalone_question"] == EIFFEL.query
    total = chunks[0]
    for chunk in chunks[1:]:
        total = total + chunk
    assert total == expected

    import asyncio

    async def run() -> list[Any]:
        parts = [c async for c in chain.astream(value)]
        return [await chain.ainvoke(value), parts]

    result, parts = asyncio.run(run())
    assert result == expected
    total = parts[0]
    for part in parts[1:]:
        total = total + part
    assert total == expected
    assert queries == [EIFFEL.query] * 4
    assert len(condense.prompts) == 4


def test_the_chain_without_history_or_without_a_rewriter() -> None:
    condense = rewriter()
    retriever, _ = recording_retriever(docs_of(EIFFEL))
    chain = create_pleias_rag_chain(retriever, scripted(), condense_llm=condense)
    result = chain.invoke({"input": EIFFEL.query, "chat_history": []})
    assert result["standalone_question"] == EIFFEL.query
    assert chain.invoke(EIFFEL.query)["standalone_question"] == EIFFEL.query
    assert condense.prompts == []

    plain = create_pleias_rag_chain(retriever, scripted())
    assert "standalone_question" not in plain.invoke({"input": EIFFEL.query, "chat_history": []})
    with pytest.raises(ValueError, match="no condense_llm"):
        plain.invoke({"input": FOLLOW_UP, "chat_history": HISTORY})
    with pytest.raises(ValueError, match="must be a list of messages"):
        chain.invoke({"input": FOLLOW_UP, "chat_history": "Human: hi"})
    custom = create_pleias_rag_chain(
        retriever, scripted(), condense_llm=condense, history_key="messages"
    )
    assert custom.invoke({"input": FOLLOW_UP, "messages": HISTORY})["answer"] == (
        "Completed in 1889[1]."
    )
