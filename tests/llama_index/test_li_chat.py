"""Follow-up questions in LlamaIndex: a CondenseQuestionChatEngine over the Pleias query engine,
with a separate condense LLM (a scripted one that rewrites into a training question)."""

from __future__ import annotations

import doctest
from collections.abc import Sequence
from typing import Any

import pytest
from li_support import ScriptedBackend, hash_output, ref
from llama_index.core.base.llms.types import (
    ChatMessage,
    CompletionResponse,
    CompletionResponseGen,
    LLMMetadata,
    MessageRole,
)
from llama_index.core.base.response.schema import Response
from llama_index.core.bridge.pydantic import Field
from llama_index.core.chat_engine import CondenseQuestionChatEngine
from llama_index.core.llms.callbacks import llm_completion_callback
from llama_index.core.llms.custom import CustomLLM
from llama_index.core.memory import Memory
from llama_index.core.retrievers import BaseRetriever
from llama_index.core.schema import NodeWithScore, QueryBundle, TextNode

import llama_index_pleias.chat
from llama_index_pleias import (
    PLEIAS_METADATA_KEY,
    PleiasCondenseChatEngine,
    PleiasLLM,
    PleiasQueryEngine,
    condense_chat_engine,
)
from pleias_rag import Source

HISTORY = [
    ChatMessage(role=MessageRole.USER, content="Tell me about the Eiffel Tower."),
    ChatMessage(role=MessageRole.ASSISTANT, content="It is a wrought-iron lattice tower in Paris."),
]
FOLLOW_UP = "When was it completed?"


class Rewriter(CustomLLM):
    """Rewrites every prompt into ``rewrite``; records the prompts."""

    rewrite: str
    prompts: list[str] = Field(default_factory=list)

    @property
    def metadata(self) -> LLMMetadata:
        return LLMMetadata(context_window=4096, num_output=64, model_name="rewriter")

    @llm_completion_callback()
    def complete(self, prompt: str, formatted: bool = False, **kwargs: Any) -> CompletionResponse:
        self.prompts.append(prompt)
        return CompletionResponse(text=self.rewrite)

    @llm_completion_callback()
    def stream_complete(
        self, prompt: str, formatted: bool = False, **kwargs: Any
    ) -> CompletionResponseGen:
        self.prompts.append(prompt)
        yield CompletionResponse(text=self.rewrite, delta=self.rewrite)


class RecordingRetriever(BaseRetriever):
    """Returns the same nodes for any query, and records the queries."""

    def __init__(self, nodes: list[NodeWithScore]) -> None:
        super().__init__()
        self._nodes = nodes
        self.queries: list[str] = []

    def _retrieve(self, query_bundle: QueryBundle) -> list[NodeWithScore]:
        self.queries.append(query_bundle.query_str)
        return list(self._nodes)


def nodes_of(texts: Sequence[str]) -> list[NodeWithScore]:
    return [
        NodeWithScore(node=TextNode(text=t, id_=f"node-{i}"), score=1.0)
        for i, t in enumerate(texts)
    ]


@pytest.fixture
def eiffel(hash_examples: dict[str, Any]) -> Any:
    return hash_examples["cited"]


def scripted_engine(eiffel: Any) -> tuple[PleiasQueryEngine, RecordingRetriever]:
    """An engine whose scripted model answers the standalone Eiffel question only."""

    def script(query: str, sources: Sequence[Source]) -> str:
        if query != eiffel.query:
            return hash_output("?", "I do not know.")
        return hash_output("ok", "Completed in 1889" + ref(sources[0], "completed in 1889") + ".")

    retriever = RecordingRetriever(nodes_of(eiffel.sources))
    return PleiasQueryEngine.from_retriever(retriever, model=ScriptedBackend(script)), retriever


# --------------------------------------------------------------------------- the tiny model


def test_a_follow_up_is_rewritten_retrieved_and_answered(hash_llm: PleiasLLM, eiffel: Any) -> None:
    retriever = RecordingRetriever(nodes_of(eiffel.sources))
    engine = PleiasQueryEngine.from_retriever(retriever, model=hash_llm)
    rewriter = Rewriter(rewrite=eiffel.query)
    chat = condense_chat_engine(engine, rewriter, chat_history=list(HISTORY))
    assert isinstance(chat, CondenseQuestionChatEngine)

    response = chat.chat(FOLLOW_UP)

    assert str(response) == "The Eiffel Tower was completed in 1889[1]."
    assert response.metadata == {"standalone_question": eiffel.query}
    assert retriever.queries == [eiffel.query]
    (prompt,) = rewriter.prompts
    assert "user: Tell me about the Eiffel Tower.\nassistant: It is a wrought-iron" in prompt
    assert FOLLOW_UP in prompt
    (output,) = response.sources
    assert output.raw_input == {"query": eiffel.query}
    assert isinstance(output.raw_output, Response)
    (node,) = response.source_nodes
    assert node.node_id == "node-0"
    (c,) = node.node.metadata[PLEIAS_METADATA_KEY]["citations"]
    words = node.node.get_content()[c["node_start"] : c["node_end"]]
    assert (c["status"], words) == ("verified", c["quote"])
    # The memory keeps what the user said, not the rewrite.
    assert [m.content for m in chat.chat_history][-2:] == [FOLLOW_UP, str(response)]


def test_docstring_examples_run(hash_llm: PleiasLLM) -> None:
    result = doctest.testmod(llama_index_pleias.chat, optionflags=doctest.ELLIPSIS)
    assert result.attempted > 0 and result.failed == 0


# --------------------------------------------------------------------------- scripted model


def test_the_first_message_is_not_rewritten_and_the_next_one_is(eiffel: Any) -> None:
    engine, retriever = scripted_engine(eiffel)
    rewriter = Rewriter(rewrite=eiffel.query)
    chat = condense_chat_engine(engine, rewriter)
    first = chat.chat(eiffel.query)
    assert rewriter.prompts == []
    assert first.metadata == {"standalone_question": eiffel.query}
    second = chat.chat(FOLLOW_UP)
    (prompt,) = rewriter.prompts
    assert f"user: {eiffel.query}\nassistant: Completed in 1889[1]." in prompt
    assert str(second) == "Completed in 1889[1]."
    assert retriever.queries == [eiffel.query, eiffel.query]


def test_streamed_answers_get_their_cited_nodes(eiffel: Any) -> None:
    engine, _ = scripted_engine(eiffel)
    chat = condense_chat_engine(engine, Rewriter(rewrite=eiffel.query), chat_history=list(HISTORY))
    response = chat.stream_chat(FOLLOW_UP)
    assert "".join(response.response_gen) == "Completed in 1889[1]."
    assert PleiasCondenseChatEngine.standalone_question(response) == eiffel.query
    assert [n.node_id for n in response.source_nodes] == ["node-0"]
    assert not engine.synthesizer.streaming  # the engine's own setting is restored


async def test_async_chat_and_stream(eiffel: Any) -> None:
    engine, retriever = scripted_engine(eiffel)
    chat = condense_chat_engine(engine, Rewriter(rewrite=eiffel.query), chat_history=list(HISTORY))
    response = await chat.achat(FOLLOW_UP)
    assert str(response) == "Completed in 1889[1]."
    assert response.metadata == {"standalone_question": eiffel.query}
    assert [n.node_id for n in response.source_nodes] == ["node-0"]

    streamed = await chat.astream_chat("And when exactly?")
    text = "".join([t async for t in streamed.async_response_gen()])
    assert text == "Completed in 1889[1]."
    assert PleiasCondenseChatEngine.standalone_question(streamed) == eiffel.query
    assert [n.node_id for n in streamed.source_nodes] == ["node-0"]
    assert retriever.queries == [eiffel.query] * 2


def test_bad_settings(hash_llm: PleiasLLM, eiffel: Any) -> None:
    engine, _ = scripted_engine(eiffel)
    rewriter = Rewriter(rewrite="x")
    with pytest.raises(TypeError, match="does not rewrite questions"):
        condense_chat_engine(engine, hash_llm)
    with pytest.raises(TypeError, match=r"never taken from Settings\.llm"):
        condense_chat_engine(engine, None)  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="query engine"):
        condense_chat_engine(object(), rewriter)  # type: ignore[arg-type]
    memory = Memory.from_defaults(token_limit=1000)
    with pytest.raises(ValueError, match="not both"):
        condense_chat_engine(engine, rewriter, chat_history=list(HISTORY), memory=memory)
    chat = condense_chat_engine(engine, rewriter, memory=memory)
    assert chat.chat_history == []
