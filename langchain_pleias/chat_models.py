"""``ChatPleias``: a LangChain chat model over a Pleias RAG model, with verified citations."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator, Iterator, Sequence
from dataclasses import dataclass, replace
from typing import Any

from langchain_core.callbacks import AsyncCallbackManagerForLLMRun, CallbackManagerForLLMRun
from langchain_core.language_models import BaseChatModel
from langchain_core.messages import BaseMessage
from langchain_core.outputs import ChatGeneration, ChatGenerationChunk, ChatResult
from langchain_core.tools import BaseTool
from pydantic import ConfigDict

from pleias_rag.answer import PleiasAnswer
from pleias_rag.backend import Backend
from pleias_rag.errors import InvalidArgument
from pleias_rag.parser import AnswerDelta, Event, Finished
from pleias_rag.sources import Source

from ._compat import answer_message, delta_chunk, final_chunk, usage
from ._condense import (
    STANDALONE_KEY,
    CondenseSettings,
    Rewrite,
    child_config,
    llm_label,
    split_conversation,
)
from ._convert import (
    PleiasLanguageModel,
    documents_to_sources,
    prompt_tokens,
    source_keys,
    split_messages,
    unexpected_kwargs,
)


@dataclass(frozen=True)
class _Call:
    backend: Backend
    query: str
    sources: list[Source]
    gen: dict[str, Any]
    rewrite: Rewrite | None
    """The rewrite the query awaits (a follow-up question, with a ``condense_llm``)."""
    standalone: str | None = None
    """The rewritten question, when a ``condense_llm`` rewrote ``query``."""

    def rewritten(self, query: str) -> _Call:
        """The call with ``query``, the rewritten question, as its query."""
        return replace(self, query=query, standalone=query, rewrite=None)


class ChatPleias(PleiasLanguageModel, CondenseSettings, BaseChatModel):
    """Chat model over a Pleias RAG model (local, or any ``pleias_rag`` backend).

    The query is the last human message's text. Sources come from the ``documents=`` call
    argument (a list of ``Document``, also through ``.bind(documents=...)``) and from
    standard ``text-plain`` content blocks of the human messages; with no sources the model
    still answers. Other messages are not shown to the model (Pleias models answer one query
    from sources): given a conversation, it answers the LAST human message as it stands.

    Follow-up questions ("When was it completed?") need the conversation to make sense: with
    a ``condense_llm`` (any LangChain chat model), the conversation and the last question are
    first rewritten into a standalone question, which is what the Pleias model answers;
    ``response_metadata["standalone_question"]`` reports it. A single question is never
    rewritten.

    The reply's ``content`` is the answer with ``[n]`` markers. Its ``content_blocks`` hold
    the source analysis as a ``reasoning`` block and the answer as a ``text`` block whose
    ``annotations`` are standard citations (``id`` = source id, ``cited_text`` = the quote,
    ``start_index``/``end_index`` = the marker in the answer, ``title``/``url`` from the
    document metadata, the verification in ``extras``). ``response_metadata`` has
    ``model_name``, ``finish_reason``, ``cited_source_ids``, ``dropped_source_ids``...;
    ``usage_metadata`` the real token counts. Streaming yields answer text only; the
    citations come with the last chunk.

    When the model wrote no answer section (cut off by ``max_tokens`` or a stop sequence
    before answering), ``content`` is its whole output with the Pleias markup removed,
    without citations, and ``response_metadata["has_answer"]`` is False.

    Constructing the model is cheap: a model name or folder is loaded on first use, and its
    weights are shared by every instance naming it.

    Examples:
        >>> from langchain_core.documents import Document
        >>> from langchain_pleias import ChatPleias
        >>> from pleias_rag.testing import cached_trained_model
        >>> path = str(cached_trained_model("hash"))  # or "PleIAs/Pleias-RAG-1B"
        >>> chat = ChatPleias(model=path, max_tokens=96)
        >>> docs = [
        ...     Document(
        ...         "The Eiffel Tower is a wrought-iron lattice tower in Paris. "
        ...         "It was completed in 1889 for the World's Fair.",
        ...         metadata={"title": "Eiffel Tower"},
        ...     ),
        ...     Document(
        ...         "The Louvre is the most visited museum in the world. It houses the Mona Lisa."
        ...     ),
        ... ]
        >>> reply = chat.invoke("When was the Eiffel Tower completed?", documents=docs)
        >>> reply.content
        'The Eiffel Tower was completed in 1889[1].'
        >>> citation = reply.content_blocks[-1]["annotations"][0]
        >>> citation["title"], citation["cited_text"], citation["extras"]["status"]
        ('Eiffel Tower', "It was completed in 1889 for the World's Fair.", 'verified')

        A follow-up question, rewritten by another chat model (here a scripted one):

        >>> from langchain_core.language_models import FakeListChatModel
        >>> from langchain_core.messages import AIMessage, HumanMessage
        >>> rewriter = FakeListChatModel(responses=["When was the Eiffel Tower completed?"])
        >>> chat = ChatPleias(model=path, max_tokens=96, condense_llm=rewriter)
        >>> conversation = [
        ...     HumanMessage("Tell me about the Eiffel Tower."),
        ...     AIMessage("It is a wrought-iron lattice tower in Paris[1]."),
        ...     HumanMessage("When was it completed?"),
        ... ]
        >>> reply = chat.invoke(conversation, documents=docs)
        >>> reply.response_metadata["standalone_question"]
        'When was the Eiffel Tower completed?'
        >>> reply.content
        'The Eiffel Tower was completed in 1889[1].'
    """

    streaming: bool = False
    """Whether ``invoke`` generates through the streaming path (LangChain convention)."""

    model_config = ConfigDict(arbitrary_types_allowed=True, extra="forbid")
    _ls_model_type = "chat"

    @property
    def _llm_type(self) -> str:
        return "pleias-chat"

    @property
    def _identifying_params(self) -> dict[str, Any]:
        params = super()._identifying_params
        if self.condense_llm is not None:  # the same history gives another answer
            params["condense_llm"] = llm_label(self.condense_llm)
            if self.condense_prompt is not None:
                params["condense_prompt"] = repr(self.condense_prompt)
        return params

    def _get_invocation_params(
        self, stop: list[str] | None = None, **kwargs: Any
    ) -> dict[str, Any]:
        return super()._get_invocation_params(stop=stop, **_traceable(kwargs))

    def _get_llm_string(self, stop: list[str] | None = None, **kwargs: Any) -> str:
        return super()._get_llm_string(stop=stop, **_traceable(kwargs))

    # -- generation --

    def _prepare(
        self, messages: Sequence[BaseMessage], stop: list[str] | None, kwargs: dict[str, Any]
    ) -> _Call:
        kwargs = dict(kwargs)
        kwargs.pop("stream", None)
        documents = kwargs.pop("documents", None)
        backend = self._get_backend(kwargs.pop("model", None))
        gen = self._generation(stop, kwargs)
        unexpected_kwargs("ChatPleias", kwargs)
        query, block_sources = split_messages(messages)
        history = split_conversation(messages) if self.condense_llm is not None else []
        sources = documents_to_sources(documents) + block_sources
        return _Call(backend, query, sources, gen, self._rewrite(history, query))

    def _condensed(self, call: _Call, run_manager: CallbackManagerForLLMRun | None) -> _Call:
        """The call with its query rewritten by the ``condense_llm`` (when there is history)."""
        if call.rewrite is None:
            return call
        return call.rewritten(call.rewrite.run(child_config(run_manager)))

    async def _acondensed(
        self, call: _Call, run_manager: AsyncCallbackManagerForLLMRun | None
    ) -> _Call:
        if call.rewrite is None:
            return call
        return call.rewritten(await call.rewrite.arun(child_config(run_manager)))

    def _result(self, call: _Call, answer: PleiasAnswer) -> ChatResult:
        name = call.backend.model_name
        message = answer_message(answer, name, usage(answer, call.backend, call.query))
        if call.standalone is not None:
            message.response_metadata[STANDALONE_KEY] = call.standalone
        return ChatResult(
            generations=[ChatGeneration(message=message)],
            llm_output={"model_name": name},
        )

    def _chunk(self, call: _Call, event: Event) -> ChatGenerationChunk | None:
        if isinstance(event, AnswerDelta) and event.text:
            return ChatGenerationChunk(message=delta_chunk(event.text))
        if isinstance(event, Finished):
            answer = event.answer
            name = call.backend.model_name
            message = final_chunk(answer, name, usage(answer, call.backend, call.query))
            if call.standalone is not None:  # on the last chunk only: merged strings add up
                message.response_metadata[STANDALONE_KEY] = call.standalone
            return ChatGenerationChunk(message=message)
        return None

    def _generate(
        self,
        messages: list[BaseMessage],
        stop: list[str] | None = None,
        run_manager: CallbackManagerForLLMRun | None = None,
        **kwargs: Any,
    ) -> ChatResult:
        call = self._condensed(self._prepare(messages, stop, kwargs), run_manager)
        return self._result(call, call.backend.answer(call.query, call.sources, **call.gen))

    async def _agenerate(
        self,
        messages: list[BaseMessage],
        stop: list[str] | None = None,
        run_manager: AsyncCallbackManagerForLLMRun | None = None,
        **kwargs: Any,
    ) -> ChatResult:
        call = await self._acondensed(self._prepare(messages, stop, kwargs), run_manager)
        answer = await call.backend.aanswer(call.query, call.sources, **call.gen)
        return self._result(call, answer)

    def _stream(
        self,
        messages: list[BaseMessage],
        stop: list[str] | None = None,
        run_manager: CallbackManagerForLLMRun | None = None,
        **kwargs: Any,
    ) -> Iterator[ChatGenerationChunk]:
        call = self._condensed(self._prepare(messages, stop, kwargs), run_manager)
        # Closing the events stops the generation when the caller stops reading.
        with contextlib.closing(
            call.backend.stream(call.query, call.sources, **call.gen)
        ) as events:
            for event in events:
                chunk = self._chunk(call, event)
                if chunk is not None:
                    yield chunk

    async def _astream(
        self,
        messages: list[BaseMessage],
        stop: list[str] | None = None,
        run_manager: AsyncCallbackManagerForLLMRun | None = None,
        **kwargs: Any,
    ) -> AsyncIterator[ChatGenerationChunk]:
        call = await self._acondensed(self._prepare(messages, stop, kwargs), run_manager)
        events = call.backend.astream(call.query, call.sources, **call.gen)
        async with contextlib.aclosing(events):
            async for event in events:
                chunk = self._chunk(call, event)
                if chunk is not None:
                    yield chunk

    # -- tokens --

    def get_num_tokens(self, text: str) -> int:
        """Tokens in ``text`` with the model's own tokenizer (loads it on first use)."""
        return int(self._get_backend().count_tokens(text))

    def get_token_ids(self, text: str) -> list[int]:
        """Token ids of ``text`` with the model's own tokenizer.

        Raises:
            InvalidArgument: the backend has no tokenizer (a ``RemoteBackend`` without
                ``tokenizer=``); ``get_num_tokens`` still counts with the server.
        """
        return self._get_backend().token_ids(text)

    def get_num_tokens_from_messages(
        self,
        messages: list[BaseMessage],
        tools: Sequence[dict[str, Any] | type | Any | BaseTool] | None = None,
    ) -> int:
        """Tokens of the prompt these messages make (query and ``text-plain`` sources, as
        packed into the context window).

        Raises:
            ValueError: ``tools`` are given (Pleias models do not call tools), or the messages
                have no query.
        """
        if tools:
            raise InvalidArgument("Pleias models do not call tools")
        query, sources = split_messages(messages)
        return prompt_tokens(self._get_backend(), query, sources, self._generation(None, {}))


class _SourceKeys(list[str]):
    """Documents already replaced by their keys (the base class calls back into us)."""


def _traceable(kwargs: dict[str, Any]) -> dict[str, Any]:
    """Call arguments for traces and cache keys: source ids instead of whole documents."""
    out = dict(kwargs)
    if "documents" in out and not isinstance(out["documents"], _SourceKeys):
        out["documents"] = _SourceKeys(source_keys(documents_to_sources(out["documents"])))
    model = out.get("model")
    if model is not None and not isinstance(model, str):
        out["model"] = model.model_name if isinstance(model, Backend) else type(model).__name__
    return out
