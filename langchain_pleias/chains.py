"""``create_pleias_rag_chain``: retrieve, answer with a Pleias model, map citations back."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator, Iterator, Mapping, Sequence
from contextvars import ContextVar
from dataclasses import dataclass
from typing import Any, cast

from langchain_core.callbacks import (
    AsyncCallbackManagerForChainRun,
    CallbackManagerForChainRun,
)
from langchain_core.documents import Document
from langchain_core.language_models import BaseLLM
from langchain_core.messages import AIMessage, AIMessageChunk, BaseMessage, HumanMessage
from langchain_core.prompts import BasePromptTemplate
from langchain_core.runnables import Runnable, RunnableConfig, RunnableSerializable
from langchain_core.runnables.config import patch_config
from langchain_core.runnables.utils import AddableDict
from langchain_core.tools import ToolException
from pydantic import ConfigDict

from pleias_rag.backend import Backend
from pleias_rag.errors import InvalidArgument
from pleias_rag.views.ranking import cited_uses

from ._condense import STANDALONE_KEY, CondenseSettings, Rewrite, history_messages
from ._convert import annotated_copy, blank_count, documents_to_sources, rebuild_answer
from .chat_models import ChatPleias

_RunManager = CallbackManagerForChainRun | AsyncCallbackManagerForChainRun

#: Set while the chain runs as a tool (:class:`~langchain_pleias.PleiasRAGTool`): a retrieval
#: whose documents are ALL blank is then a ``ToolException`` the agent's model reads and acts
#: on (another query), not an answer from nothing.
BLANK_RETRIEVAL_FAILS: ContextVar[bool] = ContextVar("pleias_blank_retrieval_fails", default=False)


@contextlib.contextmanager
def blank_retrieval_fails() -> Iterator[None]:
    """While open, chain runs treat a retrieval of only blank documents as a tool error."""
    token = BLANK_RETRIEVAL_FAILS.set(True)
    try:
        yield
    finally:
        BLANK_RETRIEVAL_FAILS.reset(token)


@dataclass(frozen=True)
class _Turn:
    """One run's question, the question retrieved and answered with, and the documents."""

    question: str
    standalone: str
    docs: list[Document]


class PleiasRAGChain(CondenseSettings, RunnableSerializable[Any, dict[str, Any]]):
    """Retrieve documents for a question, answer it with ``ChatPleias``, and return the
    answer with its citations mapped back to the retrieved documents.

    Build it with :func:`create_pleias_rag_chain`.
    """

    retriever: Runnable[str, list[Document]]
    llm: Runnable[Any, BaseMessage]
    input_key: str = "input"
    history_key: str = "chat_history"

    model_config = ConfigDict(arbitrary_types_allowed=True)

    # -- input and output --

    def _question(self, value: Any) -> str:
        if isinstance(value, Mapping):
            if self.input_key not in value:
                raise InvalidArgument(
                    f"the chain input has no {self.input_key!r} key: give a question string "
                    f"or {{{self.input_key!r}: question}} (got keys {sorted(value)})"
                )
            value = value[self.input_key]
        if not isinstance(value, str):
            raise InvalidArgument(f"the question must be a str, got {type(value).__name__}")
        if not value.strip():
            raise InvalidArgument("the question is empty")
        return value

    def _history(self, value: Any) -> list[BaseMessage]:
        """The conversation before the question (``history_key`` of a dict input)."""
        history = (
            history_messages(value.get(self.history_key), key=self.history_key)
            if isinstance(value, Mapping)
            else []
        )
        if history and self.condense_llm is None:
            raise InvalidArgument(
                f"the chain input has a {self.history_key!r} but the chain has no "
                "condense_llm: a follow-up question cannot be answered without its "
                "conversation; give create_pleias_rag_chain(..., condense_llm=chat_model)"
            )
        return history

    def _start(self, value: Any) -> tuple[str, Rewrite | None]:
        """The question, and its rewrite when there is history (and a ``condense_llm``)."""
        question = self._question(value)
        return question, self._rewrite(self._history(value), question)

    def _documents(self, value: Any) -> list[Document]:
        """The retrieved documents, checked; blank ones left out here (warned about once).

        Raises:
            ToolException: run as a tool, the retriever gave documents, all blank.
        """
        docs = list(value) if isinstance(value, (list, tuple)) else value
        blank = blank_count(docs)
        if blank and blank == len(docs) and BLANK_RETRIEVAL_FAILS.get():
            raise ToolException(
                f"the retriever found {blank} document(s) for this query, all of them blank "
                "(no text): there is nothing to answer from; try another query, or tell "
                "the user that the documents hold no text on this"
            )
        sources = documents_to_sources(docs, argument="retrieved documents")
        return [cast("Document", s.ref) for s in sources]

    def _outcome(self, message: BaseMessage, docs: list[Document]) -> dict[str, Any]:
        """``citations`` and ``cited_documents`` of a reply."""
        citations = [
            dict(ann)
            for block in message.content_blocks
            if block["type"] == "text"
            for ann in block.get("annotations", ())
            if ann.get("type") == "citation"
        ]
        meta = message.response_metadata
        answer = rebuild_answer(
            message.text,
            citations,
            meta.get("mentioned_source_ids", ()),
            documents_to_sources(docs),
            meta.get("dialect", "hash"),
        )
        cited = [annotated_copy(use.source.ref, use) for use in cited_uses(answer)]
        return {"citations": citations, "cited_documents": cited}

    def _ask(
        self, turn: _Turn, run_manager: _RunManager, config: RunnableConfig
    ) -> tuple[list[BaseMessage], RunnableConfig]:
        """The messages and config to call the ``llm`` with (and ``documents=turn.docs``)."""
        return [HumanMessage(turn.standalone)], _child(config, run_manager, "answer")

    def _head(self, turn: _Turn) -> dict[str, Any]:
        """The output's ``input`` (and ``standalone_question`` with a condense_llm)."""
        head: dict[str, Any] = {"input": turn.question}
        if self.condense_llm is not None:
            head[STANDALONE_KEY] = turn.standalone
        return head

    def _result(self, turn: _Turn, message: BaseMessage) -> dict[str, Any]:
        return {
            **self._head(turn),
            "context": turn.docs,
            "answer": message.text,
            **self._outcome(message, turn.docs),
        }

    def _last(self, turn: _Turn, full: AIMessageChunk | None) -> AddableDict:
        """The last streamed part: all but the answer (``""`` when nothing was streamed)."""
        message = full if full is not None else AIMessage("")
        last = AddableDict(
            **self._head(turn), context=turn.docs, **self._outcome(message, turn.docs)
        )
        if full is None or not full.text:
            last["answer"] = ""
        return last

    # -- retrieve and answer: the I/O, in sync and async --

    def _retrieve(
        self, value: Any, run_manager: CallbackManagerForChainRun, config: RunnableConfig
    ) -> _Turn:
        question, rewrite = self._start(value)
        standalone = (
            question if rewrite is None else rewrite.run(_child(config, run_manager, "condense"))
        )
        docs = self.retriever.invoke(standalone, _child(config, run_manager, "retrieve"))
        return _Turn(question, standalone, self._documents(docs))

    async def _aretrieve(
        self, value: Any, run_manager: AsyncCallbackManagerForChainRun, config: RunnableConfig
    ) -> _Turn:
        question, rewrite = self._start(value)
        standalone = (
            question
            if rewrite is None
            else await rewrite.arun(_child(config, run_manager, "condense"))
        )
        docs = await self.retriever.ainvoke(standalone, _child(config, run_manager, "retrieve"))
        return _Turn(question, standalone, self._documents(docs))

    def invoke(
        self, input: Any, config: RunnableConfig | None = None, **kwargs: Any
    ) -> dict[str, Any]:
        """The answer, its cited documents and the question, for one input."""
        return self._call_with_config(self._invoke, input, config, **kwargs)

    def _invoke(
        self, value: Any, run_manager: CallbackManagerForChainRun, config: RunnableConfig
    ) -> dict[str, Any]:
        turn = self._retrieve(value, run_manager, config)
        message = self.llm.invoke(*self._ask(turn, run_manager, config), documents=turn.docs)
        return self._result(turn, message)

    async def ainvoke(
        self, input: Any, config: RunnableConfig | None = None, **kwargs: Any
    ) -> dict[str, Any]:
        """:meth:`invoke` without blocking the event loop."""
        return await self._acall_with_config(self._ainvoke, input, config, **kwargs)

    async def _ainvoke(
        self, value: Any, run_manager: AsyncCallbackManagerForChainRun, config: RunnableConfig
    ) -> dict[str, Any]:
        turn = await self._aretrieve(value, run_manager, config)
        message = await self.llm.ainvoke(*self._ask(turn, run_manager, config), documents=turn.docs)
        return self._result(turn, message)

    # -- stream: answer deltas, then the rest; the chunks add up to the invoke result --

    def stream(
        self, input: Any, config: RunnableConfig | None = None, **kwargs: Any
    ) -> Iterator[AddableDict]:
        """The answer as it is generated, then the question, documents and citations; the
        chunks add up to the :meth:`invoke` result."""
        parts = self._transform_stream_with_config(iter([input]), self._stream, config)
        yield from cast("Iterator[AddableDict]", parts)

    def _stream(
        self,
        values: Iterator[Any],
        run_manager: CallbackManagerForChainRun,
        config: RunnableConfig,
    ) -> Iterator[AddableDict]:
        turn = self._retrieve(_single(list(values)), run_manager, config)
        reply = _Reply()
        for chunk in self.llm.stream(*self._ask(turn, run_manager, config), documents=turn.docs):
            if (part := reply.add(chunk)) is not None:
                yield part
        yield self._last(turn, reply.full)

    async def astream(
        self, input: Any, config: RunnableConfig | None = None, **kwargs: Any
    ) -> AsyncIterator[AddableDict]:
        """:meth:`stream` as an async iterator."""

        async def one() -> AsyncIterator[Any]:
            yield input

        parts = self._atransform_stream_with_config(one(), self._astream, config)
        async for part in cast("AsyncIterator[AddableDict]", parts):
            yield part

    async def _astream(
        self,
        values: AsyncIterator[Any],
        run_manager: AsyncCallbackManagerForChainRun,
        config: RunnableConfig,
    ) -> AsyncIterator[AddableDict]:
        turn = await self._aretrieve(_single([v async for v in values]), run_manager, config)
        reply = _Reply()
        async for chunk in self.llm.astream(
            *self._ask(turn, run_manager, config), documents=turn.docs
        ):
            if (part := reply.add(chunk)) is not None:
                yield part
        yield self._last(turn, reply.full)


def _child(config: RunnableConfig, run_manager: _RunManager, step: str) -> RunnableConfig:
    """``config`` for one step of the run, traced as its child tagged ``step``."""
    return patch_config(config, callbacks=run_manager.get_child(step))


class _Reply:
    """A streamed reply, gathered: each chunk's text to pass on, and the whole."""

    def __init__(self) -> None:
        self.full: AIMessageChunk | None = None

    def add(self, chunk: BaseMessage) -> AddableDict | None:
        """Take ``chunk``; the output part for its text, None when it has none."""
        piece = cast("AIMessageChunk", chunk)
        self.full = piece if self.full is None else self.full + piece
        return AddableDict(answer=piece.text) if piece.text else None


def _single(values: Sequence[Any]) -> Any:
    if len(values) != 1:
        raise InvalidArgument(f"the chain takes one question per run, got {len(values)} inputs")
    return values[0]


def create_pleias_rag_chain(
    retriever: Runnable[str, list[Document]],
    llm: Runnable[Any, BaseMessage] | str | Backend,
    *,
    input_key: str = "input",
    condense_llm: Runnable[Any, Any] | None = None,
    history_key: str = "chat_history",
    condense_prompt: BasePromptTemplate[Any] | None = None,
) -> PleiasRAGChain:
    """A retrieval chain that answers with a Pleias model and keeps its citations.

    The chain takes a question (a string, or ``{input_key: question}``) and returns
    ``{"input", "context", "answer", "citations", "cited_documents"}``: the question, the
    retrieved documents, the answer with ``[n]`` markers, its standard citation annotations
    (see ``ChatPleias``), and copies of the retrieved documents actually cited, in order of
    first citation, whose metadata adds ``pleias_source_id``, ``relevance_score`` and
    ``pleias_citations`` (the core citation dicts, :meth:`pleias_rag.Citation.to_dict`: each
    quote, its status, ``source_start``/``source_end`` in the document and
    ``answer_start``/``answer_end`` in the answer). Identical documents share one id: a
    citation maps to each of them; a citation of an unknown id maps to none.

    ``stream``/``astream`` yield ``{"answer": delta}`` chunks as the answer is written, then
    one chunk with the rest; the chunks add up to the ``invoke`` result. ``batch`` runs the
    questions concurrently.

    Follow-up questions: with a ``condense_llm`` (any LangChain chat model), a dict input may
    carry the conversation so far under ``history_key`` (messages, or ``(role, text)``
    pairs); the question and that history are first rewritten into a standalone question,
    which is what the retriever and the Pleias model get. The output then has a
    ``standalone_question`` key too (the question itself when there is no history). Without
    a ``condense_llm``, a non-empty history is an error rather than silently ignored.

    Args:
        retriever: any runnable from a question to a list of ``Document`` (a retriever).
        llm: a ``ChatPleias`` (possibly bound, e.g. ``chat.bind(max_tokens=256)``), or a model
            name, folder or backend to build one with default settings.
        input_key: the key of the question in dict inputs.
        condense_llm: a chat model that rewrites follow-up questions (not a Pleias model).
        history_key: the key of the conversation so far in dict inputs.
        condense_prompt: the rewriting prompt, with the variables ``question`` and
            ``chat_history`` (the conversation as ``Human: ...``/``Assistant: ...`` lines);
            None: a built-in prompt.

    Returns:
        The chain, a ``Runnable``.

    Raises:
        ValueError: ``llm`` is a text-completion model (use ``ChatPleias``), or
            ``condense_llm``/``condense_prompt`` is not usable.

    Examples:
        >>> from langchain_core.documents import Document
        >>> from langchain_core.runnables import RunnableLambda
        >>> from langchain_pleias import ChatPleias, create_pleias_rag_chain
        >>> from pleias_rag.testing import cached_trained_model
        >>> eiffel = (
        ...     "The Eiffel Tower is a wrought-iron lattice tower in Paris. "
        ...     "It was completed in 1889 for the World's Fair."
        ... )
        >>> louvre = "The Louvre is the most visited museum in the world. It houses the Mona Lisa."
        >>> docs = [Document(eiffel, metadata={"title": "Eiffel Tower"}), Document(louvre)]
        >>> retriever = RunnableLambda(lambda question: docs)  # e.g. store.as_retriever()
        >>> chat = ChatPleias(model=str(cached_trained_model("hash")), max_tokens=96)
        >>> chain = create_pleias_rag_chain(retriever, chat)
        >>> result = chain.invoke("When was the Eiffel Tower completed?")
        >>> result["answer"]
        'The Eiffel Tower was completed in 1889[1].'
        >>> [d.metadata["title"] for d in result["cited_documents"]]
        ['Eiffel Tower']

        A follow-up question, rewritten by another chat model (here a scripted one):

        >>> from langchain_core.language_models import FakeListChatModel
        >>> rewriter = FakeListChatModel(responses=["When was the Eiffel Tower completed?"])
        >>> chain = create_pleias_rag_chain(retriever, chat, condense_llm=rewriter)
        >>> history = [
        ...     ("human", "Tell me about the Eiffel Tower."),
        ...     ("ai", "It is a wrought-iron lattice tower in Paris[1]."),
        ... ]
        >>> result = chain.invoke({"input": "When was it completed?", "chat_history": history})
        >>> result["standalone_question"], result["answer"]
        ('When was the Eiffel Tower completed?', 'The Eiffel Tower was completed in 1889[1].')
    """
    if isinstance(llm, BaseLLM):
        raise InvalidArgument(
            "create_pleias_rag_chain needs a chat model that returns citations: "
            "use ChatPleias(model=...) rather than a text-completion LLM"
        )
    if isinstance(llm, (str, Backend)):
        llm = ChatPleias(model=llm)
    if not isinstance(llm, Runnable):
        raise InvalidArgument(f"llm must be a ChatPleias, got {type(llm).__name__}")
    return PleiasRAGChain(
        retriever=retriever,
        llm=llm,
        input_key=input_key,
        condense_llm=condense_llm,
        history_key=history_key,
        condense_prompt=condense_prompt,
    )
