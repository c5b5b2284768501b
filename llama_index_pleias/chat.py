"""Conversations over a Pleias query engine: follow-up questions made standalone first.

A Pleias model answers one question from sources; it does not read a conversation, and it does
not rewrite questions. :func:`condense_chat_engine` builds a ``CondenseQuestionChatEngine``
whose condense LLM is another model: it rewrites each follow-up ("When was it completed?")
with the conversation into a standalone question ("When was the Eiffel Tower completed?"),
which is what the query engine retrieves with and the Pleias model answers.
"""

from __future__ import annotations

from typing import Any, TypeAlias

from llama_index.core.base.base_query_engine import BaseQueryEngine
from llama_index.core.base.llms.types import ChatMessage
from llama_index.core.base.response.schema import AsyncStreamingResponse, StreamingResponse
from llama_index.core.callbacks import CallbackManager
from llama_index.core.chat_engine import CondenseQuestionChatEngine
from llama_index.core.chat_engine.condense_question import DEFAULT_PROMPT
from llama_index.core.chat_engine.types import AgentChatResponse, StreamingAgentChatResponse
from llama_index.core.llms.llm import LLM
from llama_index.core.memory import BaseMemory, Memory
from llama_index.core.prompts.base import BasePromptTemplate
from llama_index.core.settings import Settings

from pleias_rag.errors import InvalidArgument, InvalidType

from .llms import PleiasLLM

#: Key of the rewritten question in a chat response's ``metadata``.
STANDALONE_KEY = "standalone_question"

#: The ``chat_history`` argument of the chat methods (None or empty: the engine's memory).
ChatHistory: TypeAlias = list[ChatMessage] | None


class PleiasCondenseChatEngine(CondenseQuestionChatEngine):
    """A ``CondenseQuestionChatEngine`` over a Pleias query engine, with a separate
    condense LLM. Build it with :func:`condense_chat_engine`.

    Each message is first rewritten with the conversation into a standalone question by the
    condense LLM (not with no history yet); the query engine answers that question. On top
    of the core engine:

    - ``chat``/``achat`` responses report the rewritten question in
      ``metadata["standalone_question"]``; for every response (streaming ones included)
      :meth:`standalone_question` reads it from ``sources[0].raw_input["query"]``;
    - streaming responses get their ``source_nodes`` (the cited nodes) once the stream is
      read to the end, ``astream_chat`` included;
    - ``sources[0].raw_output`` is the query engine's cited ``Response``.

    Examples:
        A streamed follow-up over three documents (see :func:`condense_chat_engine` for
        ``chat``):

        >>> from llama_index.core import Document, SummaryIndex
        >>> from llama_index.core.base.llms.types import ChatMessage
        >>> from llama_index.core.llms.mock import MockFunctionCallingLLM
        >>> from llama_index_pleias import PleiasCondenseChatEngine, PleiasQueryEngine
        >>> from pleias_rag.testing import cached_trained_model
        >>> texts = [
        ...     "The Moon orbits the Earth about once every 27 days. Its gravity causes the tides.",
        ...     "The Louvre is the most visited museum in the world. It houses the Mona Lisa.",
        ...     "Green tea comes from the leaves of Camellia sinensis.",
        ... ]
        >>> index = SummaryIndex.from_documents([Document(text=t) for t in texts])
        >>> model = str(cached_trained_model("hash"))
        >>> engine = PleiasQueryEngine.from_retriever(index.as_retriever(), model=model)
        >>> standalone = "What causes the tides, and what is in the Louvre?"
        >>> rewrite = ChatMessage(role="assistant", content=standalone)
        >>> rewriter = MockFunctionCallingLLM(  # a scripted LLM: use a real one
        ...     is_chat_model=True, response_generator=lambda messages, **kwargs: rewrite
        ... )
        >>> history = [ChatMessage(role="user", content="Tell me about the Moon.")]
        >>> chat = PleiasCondenseChatEngine.from_query_engine(
        ...     engine, rewriter, chat_history=history
        ... )
        >>> response = chat.stream_chat("What does it cause? And what is in the Louvre?")
        >>> "".join(response.response_gen)
        "The Moon's gravity causes the tides[1]. The Louvre houses the Mona Lisa[2]."
        >>> chat.standalone_question(response) == standalone, len(response.source_nodes)
        (True, 2)
    """

    @classmethod
    def from_query_engine(
        cls,
        query_engine: BaseQueryEngine,
        condense_llm: LLM,
        *,
        chat_history: list[ChatMessage] | None = None,
        memory: BaseMemory | None = None,
        condense_prompt: BasePromptTemplate | None = None,
        verbose: bool = False,
        callback_manager: CallbackManager | None = None,
    ) -> PleiasCondenseChatEngine:
        """See :func:`condense_chat_engine`."""
        if not isinstance(query_engine, BaseQueryEngine):
            raise InvalidType(
                f"query_engine must be a LlamaIndex query engine (a PleiasQueryEngine), "
                f"got {type(query_engine).__name__}"
            )
        if isinstance(condense_llm, PleiasLLM):
            raise InvalidType(
                "condense_llm must be a general LLM: a Pleias model answers from sources and "
                "does not rewrite questions"
            )
        if not isinstance(condense_llm, LLM):
            raise InvalidType(
                f"condense_llm must be a LlamaIndex LLM, got {type(condense_llm).__name__} "
                "(it is never taken from Settings.llm)"
            )
        if memory is None:
            memory = Memory.from_defaults(
                chat_history=list(chat_history or []),
                token_limit=max(256, condense_llm.metadata.context_window - 256),
            )
        elif chat_history:
            raise InvalidArgument("give chat_history or memory, not both")
        return cls(
            query_engine,
            condense_prompt or DEFAULT_PROMPT,
            memory,
            condense_llm,
            verbose=verbose,
            callback_manager=callback_manager or Settings.callback_manager,
        )

    @staticmethod
    def standalone_question(
        response: AgentChatResponse | StreamingAgentChatResponse,
    ) -> str | None:
        """The question the query engine answered (the rewrite, or the message itself when
        there was no history), or None when the response did not come from a query."""
        for source in response.sources:
            query = (source.raw_input or {}).get("query")
            if isinstance(query, str):
                return query
        return None

    def chat(self, message: str, chat_history: ChatHistory = None) -> AgentChatResponse:
        """Answer ``message`` (rewritten as a standalone question) with cited source nodes."""
        return _with_question(super().chat(message, chat_history))

    async def achat(self, message: str, chat_history: ChatHistory = None) -> AgentChatResponse:
        """:meth:`chat` without blocking the event loop."""
        return _with_question(await super().achat(message, chat_history))

    def stream_chat(
        self, message: str, chat_history: ChatHistory = None
    ) -> StreamingAgentChatResponse:
        """:meth:`chat`, the answer streamed."""
        return _linked(super().stream_chat(message, chat_history))

    async def astream_chat(
        self, message: str, chat_history: ChatHistory = None
    ) -> StreamingAgentChatResponse:
        """:meth:`stream_chat` without blocking the event loop."""
        return _linked(await super().astream_chat(message, chat_history))


def condense_chat_engine(
    query_engine: BaseQueryEngine,
    condense_llm: LLM,
    *,
    chat_history: list[ChatMessage] | None = None,
    memory: BaseMemory | None = None,
    condense_prompt: BasePromptTemplate | None = None,
    verbose: bool = False,
    callback_manager: CallbackManager | None = None,
) -> PleiasCondenseChatEngine:
    """A chat engine that answers follow-up questions with a Pleias query engine.

    ``index.as_chat_engine()`` would talk to the Pleias model in a chat format it does not
    speak; here a separate ``condense_llm`` rewrites each message and the conversation into
    a standalone question, and ``query_engine`` (a :class:`~llama_index_pleias.PleiasQueryEngine`)
    retrieves with it and answers it with citations.

    Args:
        query_engine: the engine answering the standalone questions.
        condense_llm: the LLM that rewrites follow-ups (any LlamaIndex LLM but a Pleias
            one); it is never taken from ``Settings.llm``.
        chat_history: the conversation so far (ignored when ``memory`` is given).
        memory: the chat memory (default: a ``Memory`` holding ``chat_history``, sized to
            the condense LLM's context window).
        condense_prompt: the rewriting prompt, with ``{chat_history}`` and ``{question}``
            (default: LlamaIndex's).
        verbose: print each standalone question.
        callback_manager: LlamaIndex callback manager (default: ``Settings.callback_manager``).

    Returns:
        A :class:`PleiasCondenseChatEngine` (a ``CondenseQuestionChatEngine``).

    Raises:
        TypeError: ``condense_llm`` is a Pleias model or not a LlamaIndex LLM, or
            ``query_engine`` is not a query engine.
        ValueError: both ``chat_history`` and ``memory`` are given.

    Examples:
        >>> from llama_index.core import Document, SummaryIndex
        >>> from llama_index.core.base.llms.types import ChatMessage
        >>> from llama_index.core.llms.mock import MockFunctionCallingLLM
        >>> from llama_index_pleias import PleiasQueryEngine, condense_chat_engine
        >>> from pleias_rag.testing import cached_trained_model
        >>> index = SummaryIndex.from_documents(
        ...     [
        ...         Document(
        ...             text="The Eiffel Tower is a wrought-iron lattice tower in Paris. "
        ...             "It was completed in 1889 for the World's Fair."
        ...         ),
        ...         Document(
        ...             text="The Louvre is the most visited museum in the world. "
        ...             "It houses the Mona Lisa."
        ...         ),
        ...     ]
        ... )
        >>> engine = PleiasQueryEngine.from_retriever(
        ...     index.as_retriever(), model=str(cached_trained_model("hash"))
        ... )
        >>> rewriter = MockFunctionCallingLLM(  # a scripted LLM: use a real one
        ...     is_chat_model=True,
        ...     response_generator=lambda messages, **kwargs: ChatMessage(
        ...         role="assistant", content="When was the Eiffel Tower completed?"
        ...     ),
        ... )
        >>> history = [
        ...     ChatMessage(role="user", content="Tell me about the Eiffel Tower."),
        ...     ChatMessage(role="assistant", content="It is a lattice tower in Paris."),
        ... ]
        >>> chat = condense_chat_engine(engine, rewriter, chat_history=history)
        >>> response = chat.chat("When was it completed?")
        >>> response.metadata["standalone_question"]
        'When was the Eiffel Tower completed?'
        >>> str(response)
        'The Eiffel Tower was completed in 1889[1].'
        >>> [n.node.metadata["pleias_citations"]["citations"][0]["status"]
        ...  for n in response.source_nodes]
        ['verified']
    """
    return PleiasCondenseChatEngine.from_query_engine(
        query_engine,
        condense_llm,
        chat_history=chat_history,
        memory=memory,
        condense_prompt=condense_prompt,
        verbose=verbose,
        callback_manager=callback_manager,
    )


def _with_question(response: AgentChatResponse) -> AgentChatResponse:
    question = PleiasCondenseChatEngine.standalone_question(response)
    if question is not None:
        response.metadata = {**(response.metadata or {}), STANDALONE_KEY: question}
    return response


def _linked(response: StreamingAgentChatResponse) -> StreamingAgentChatResponse:
    """Make the chat response's source nodes those of the query response, which a Pleias
    stream fills in place once it ends (the core copies them before: still empty)."""
    for source in response.sources:
        raw: Any = source.raw_output
        if isinstance(raw, (StreamingResponse, AsyncStreamingResponse)):
            response.source_nodes = raw.source_nodes
            break
    return response
