"""``ChatPleias``: a LangChain chat model over a Pleias RAG model, with verified citations."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator, Callable, Iterator, Mapping, Sequence
from contextvars import ContextVar
from dataclasses import dataclass, replace
from typing import Any, Literal, cast, overload

from langchain_core.callbacks import AsyncCallbackManagerForLLMRun, CallbackManagerForLLMRun
from langchain_core.language_models import BaseChatModel, LanguageModelInput
from langchain_core.messages import AIMessage, AIMessageChunk, BaseMessage
from langchain_core.outputs import ChatGeneration, ChatGenerationChunk, ChatResult
from langchain_core.runnables import Runnable, RunnableConfig
from langchain_core.runnables.config import get_config_list
from langchain_core.tools import BaseTool
from pydantic import BaseModel, ConfigDict

from pleias_rag.answer import PleiasAnswer
from pleias_rag.backend import Backend
from pleias_rag.errors import InvalidArgument
from pleias_rag.parser import AnswerDelta, Event, Finished, SectionStarted, SectionText
from pleias_rag.sources import Source

from ._compat import (
    REASONING_SECTIONS,
    ReasoningStream,
    answer_message,
    delta_chunk,
    final_chunk,
    reasoning_chunk,
    usage,
)
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
    blank_count,
    documents_per_input,
    documents_to_sources,
    logger,
    prompt_tokens,
    source_keys,
    split_messages,
    unexpected_kwargs,
    warn_if_stuffed,
)


@dataclass(frozen=True)
class _Plan:
    """A batch to generate ahead: the backend, each call's key, the items, the settings."""

    backend: Backend
    keys: list[tuple[Any, ...]]
    items: list[tuple[str, list[Source]]]
    gen: dict[str, Any]


#: Answers generated ahead by ``batch``/``abatch`` in one engine batch, by call (see
#: :func:`_call_key`); each input's run reads its own.
_PREFETCHED: ContextVar[dict[tuple[Any, ...], PleiasAnswer] | None] = ContextVar(
    "pleias_chat_prefetched", default=None
)


#: ``response_metadata`` key: how many documents of ``documents=`` had no text (left out).
SKIPPED_KEY = "skipped_documents"

#: Why ``bind_tools`` fails, and what to do instead.
NO_TOOLS = (
    "ChatPleias cannot call tools: a Pleias RAG model answers one question from the sources "
    "it is given, citing them. To use it in an agent (create_agent, a LangGraph agent), give "
    "the agent a tool-calling chat model as its brain and the Pleias model as one of its "
    "tools: create_pleias_rag_tool(retriever, ChatPleias(...)) from langchain_pleias."
)
#: Why ``with_structured_output`` fails, and what to do instead.
NO_STRUCTURED_OUTPUT = (
    "ChatPleias cannot write structured output: a Pleias RAG model writes an answer with [n] "
    "citations to the sources it is given. The citations are structured already (the "
    "annotations of the reply's text block in reply.content_blocks, or the 'citations' of "
    "create_pleias_rag_chain). To fill a schema, give the Pleias answer to another chat "
    "model's with_structured_output, or put the Pleias model under a tool-calling chat model "
    "with create_pleias_rag_tool(retriever, ChatPleias(...))."
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
    skipped: int = 0
    """Documents of ``documents=`` left out for having no text."""

    def rewritten(self, query: str) -> _Call:
        """The call with ``query``, the rewritten question, as its query."""
        return replace(self, query=query, standalone=query, rewrite=None)


class ChatPleias(PleiasLanguageModel, CondenseSettings, BaseChatModel):
    """Chat model over a Pleias RAG model (local, or any ``pleias_rag`` backend).

    The query is the last human message's text. Sources come from the ``documents=`` call
    argument (a list of ``Document``, also through ``.bind(documents=...)`` or
    ``config={"configurable": {"documents": [...]}}``; a blank document is skipped with a
    warning and counted in ``response_metadata["skipped_documents"]``; all blank: the
    model answers without sources), from standard ``text-plain`` content blocks of the
    human and system messages (their ``title`` kept), and from the text of system
    messages, where a prompt template puts the retrieved context: it is split into
    passages at blank lines, only the template's own instructions left out (see
    :func:`langchain_pleias._convert.system_passages`).
    With no sources the model still answers (with a warning, once, when the query looks
    like a prompt with the context pasted in). AI and tool messages are not shown to the
    model (Pleias models answer one query from sources): given a conversation, it answers
    the LAST human message as it stands.

    ``batch``/``abatch`` generate every input in one engine batch; ``documents=`` is then one
    list for all inputs or one list per input.

    Follow-up questions ("When was it completed?") need the conversation to make sense: with
    a ``condense_llm`` (any LangChain chat model), the conversation and the last question are
    first rewritten into a standalone question, which is what the Pleias model answers;
    ``response_metadata["standalone_question"]`` reports it. A single question is never
    rewritten.

    The reply's ``text`` is the answer with ``[n]`` markers. Its ``content`` is a list of
    standard content blocks, kept wherever the message goes (serialized, checkpointed, read
    without this package): a ``reasoning`` block, the source analysis with the sources it
    names written as their labels (the title, else the url or file, else the first words:
    never a number, which could differ from the answer's ``[n]``), then a ``text`` block,
    the answer, whose ``annotations`` are standard citations (a unique ``id`` per citation,
    ``cited_text`` = the source's words, ``start_index``/``end_index`` = the claim the
    citation supports in the answer, ``title``/``url`` from the document metadata, the
    verification in ``extras``, with the ``[n]`` marker at ``answer_start``/
    ``answer_end``). ``response_metadata`` has ``model_name``, ``finish_reason``,
    ``cited_source_ids``, ``dropped_source_ids``...; ``usage_metadata`` the real token
    counts, the analysis as ``output_token_details["reasoning"]``. Streaming yields the
    same blocks by ``index`` (reasoning 0, text 1): the analysis streams as it is written,
    then the answer text, and the citations and the usage come with the last chunk; the
    chunks add up to the ``invoke`` reply. Pleias models do not call tools nor write
    structured output: ``bind_tools`` and ``with_structured_output`` raise
    ``NotImplementedError`` saying what to use instead.

    When the model wrote no answer section (cut off by ``max_tokens`` or a stop sequence
    before answering), ``text`` is its whole output with the Pleias markup removed,
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
        >>> reply.text
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
        >>> reply.text
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

    # -- runnable methods: documents from the config, batches in one engine batch --

    def invoke(
        self,
        input: LanguageModelInput,
        config: RunnableConfig | None = None,
        *,
        stop: list[str] | None = None,
        **kwargs: Any,
    ) -> AIMessage:
        """Answer ``input``; documents from ``documents=`` or ``config["configurable"]``."""
        return super().invoke(input, config, stop=stop, **_config_documents(config, kwargs))

    async def ainvoke(
        self,
        input: LanguageModelInput,
        config: RunnableConfig | None = None,
        *,
        stop: list[str] | None = None,
        **kwargs: Any,
    ) -> AIMessage:
        """:meth:`invoke` without blocking the event loop."""
        kwargs = _config_documents(config, kwargs)
        return await super().ainvoke(input, config, stop=stop, **kwargs)

    def stream(
        self,
        input: LanguageModelInput,
        config: RunnableConfig | None = None,
        *,
        stop: list[str] | None = None,
        **kwargs: Any,
    ) -> Iterator[AIMessageChunk]:
        """Stream the answer; documents as for :meth:`invoke`."""
        yield from super().stream(input, config, stop=stop, **_config_documents(config, kwargs))

    async def astream(
        self,
        input: LanguageModelInput,
        config: RunnableConfig | None = None,
        *,
        stop: list[str] | None = None,
        **kwargs: Any,
    ) -> AsyncIterator[AIMessageChunk]:
        """:meth:`stream` without blocking the event loop."""
        kwargs = _config_documents(config, kwargs)
        async for chunk in super().astream(input, config, stop=stop, **kwargs):
            yield chunk

    def batch(
        self,
        inputs: list[LanguageModelInput],
        config: RunnableConfig | list[RunnableConfig] | None = None,
        *,
        return_exceptions: bool = False,
        **kwargs: Any,
    ) -> list[AIMessage]:
        """Answers to ``inputs``, generated in ONE engine batch (``Backend.answer_batch``).

        ``documents=`` is one list of documents for every input, or one list per input
        (``chat.batch([q1, q2], documents=[docs1, docs2])``); a config (one per input, or
        one for all) may give them as ``configurable["documents"]`` too. Each input is still
        its own run (callbacks, cache); a follow-up question that a ``condense_llm``
        rewrites is answered on its own.
        """
        if not inputs:
            return []
        configs, kwargs = _batch_configs(inputs, config, kwargs)
        ahead = _Prefetch(self._prefetch_plan(inputs, configs, kwargs))
        ahead.generate()
        with ahead.readable():
            return super().batch(inputs, configs, return_exceptions=return_exceptions, **kwargs)

    async def abatch(
        self,
        inputs: list[LanguageModelInput],
        config: RunnableConfig | list[RunnableConfig] | None = None,
        *,
        return_exceptions: bool = False,
        **kwargs: Any,
    ) -> list[AIMessage]:
        """:meth:`batch` without blocking the event loop (``Backend.aanswer_batch``)."""
        if not inputs:
            return []
        configs, kwargs = _batch_configs(inputs, config, kwargs)
        ahead = _Prefetch(self._prefetch_plan(inputs, configs, kwargs))
        await ahead.agenerate()
        with ahead.readable():
            return await super().abatch(
                inputs, configs, return_exceptions=return_exceptions, **kwargs
            )

    @overload
    def batch_as_completed(
        self,
        inputs: Sequence[LanguageModelInput],
        config: RunnableConfig | Sequence[RunnableConfig] | None = None,
        *,
        return_exceptions: Literal[False] = False,
        **kwargs: Any,
    ) -> Iterator[tuple[int, AIMessage]]: ...

    @overload
    def batch_as_completed(
        self,
        inputs: Sequence[LanguageModelInput],
        config: RunnableConfig | Sequence[RunnableConfig] | None = None,
        *,
        return_exceptions: Literal[True],
        **kwargs: Any,
    ) -> Iterator[tuple[int, AIMessage | Exception]]: ...

    def batch_as_completed(
        self,
        inputs: Sequence[LanguageModelInput],
        config: RunnableConfig | Sequence[RunnableConfig] | None = None,
        *,
        return_exceptions: bool = False,
        **kwargs: Any,
    ) -> Iterator[tuple[int, AIMessage | Exception]]:
        """``(index, answer)`` of each input as soon as it is done; ``documents=`` as for
        :meth:`batch` (one list for all, or one per input).

        The inputs run concurrently, each its own call (answers come as they finish, which
        one engine batch would hold back to the last): a local model batches concurrent
        calls itself, a server its concurrent requests.
        """
        if not inputs:
            return
        configs, kwargs = _batch_configs(inputs, _config_list(config), kwargs)
        # cast: the base's overloads take return_exceptions as a Literal, this passes a bool
        run = cast(
            "Callable[..., Iterator[tuple[int, AIMessage | Exception]]]", super().batch_as_completed
        )
        yield from run(inputs, configs, return_exceptions=return_exceptions, **kwargs)

    @overload
    def abatch_as_completed(
        self,
        inputs: Sequence[LanguageModelInput],
        config: RunnableConfig | Sequence[RunnableConfig] | None = None,
        *,
        return_exceptions: Literal[False] = False,
        **kwargs: Any,
    ) -> AsyncIterator[tuple[int, AIMessage]]: ...

    @overload
    def abatch_as_completed(
        self,
        inputs: Sequence[LanguageModelInput],
        config: RunnableConfig | Sequence[RunnableConfig] | None = None,
        *,
        return_exceptions: Literal[True],
        **kwargs: Any,
    ) -> AsyncIterator[tuple[int, AIMessage | Exception]]: ...

    async def abatch_as_completed(
        self,
        inputs: Sequence[LanguageModelInput],
        config: RunnableConfig | Sequence[RunnableConfig] | None = None,
        *,
        return_exceptions: bool = False,
        **kwargs: Any,
    ) -> AsyncIterator[tuple[int, AIMessage | Exception]]:
        """:meth:`batch_as_completed` as an async iterator."""
        if not inputs:
            return
        configs, kwargs = _batch_configs(inputs, _config_list(config), kwargs)
        # cast: as in batch_as_completed
        run = cast(
            "Callable[..., AsyncIterator[tuple[int, AIMessage | Exception]]]",
            super().abatch_as_completed,
        )
        async for done in run(inputs, configs, return_exceptions=return_exceptions, **kwargs):
            yield done

    def _prefetch_plan(
        self,
        inputs: Sequence[LanguageModelInput],
        configs: Sequence[RunnableConfig],
        kwargs: Mapping[str, Any],
    ) -> _Plan | None:
        """What to generate in one batch: every input that needs no rewrite and whose
        arguments are valid (the others are left to their own runs, which report errors)."""
        if self.streaming:
            return None
        stop = kwargs.get("stop")
        prepared: list[_Call] = []
        for value, cfg in zip(inputs, configs, strict=True):
            try:
                messages = self._convert_input(value).to_messages()
                rest = {k: v for k, v in kwargs.items() if k != "stop"}
                call = self._prepare(messages, stop, _config_documents(cfg, rest))
            except Exception:
                continue
            if call.rewrite is None:
                prepared.append(call)
        if len(prepared) < 2 or len({id(c.backend) for c in prepared}) > 1:
            return None
        if len({_gen_key(c.gen) for c in prepared}) > 1:
            return None
        keys = [_call_key(c) for c in prepared]
        items = [(c.query, c.sources) for c in prepared]
        return _Plan(prepared[0].backend, keys, items, prepared[0].gen)

    # -- generation --

    def _prepare(
        self, messages: Sequence[BaseMessage], stop: list[str] | None, kwargs: dict[str, Any]
    ) -> _Call:
        kwargs = dict(kwargs)
        kwargs.pop("stream", None)
        documents = kwargs.pop("documents", None)
        backend = self._get_backend(kwargs.pop("model", None))
        gen = self._generation(stop, kwargs, backend)
        unexpected_kwargs("ChatPleias", kwargs)
        query, block_sources = split_messages(messages)
        history = split_conversation(messages) if self.condense_llm is not None else []
        sources = documents_to_sources(documents) + block_sources
        warn_if_stuffed(query, sources)
        rewrite = self._rewrite(history, query)
        return _Call(backend, query, sources, gen, rewrite, skipped=blank_count(documents))

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
        _call_metadata(call, message)
        return ChatResult(
            generations=[ChatGeneration(message=message)],
            llm_output={"model_name": name},
        )

    def _chunk(
        self, call: _Call, event: Event, reasoning: ReasoningStream
    ) -> ChatGenerationChunk | None:
        if isinstance(event, SectionStarted) and event.section in REASONING_SECTIONS:
            # Opens the reasoning block before the answer text, even for an empty analysis.
            return ChatGenerationChunk(message=reasoning_chunk(""))
        if isinstance(event, SectionText):
            text = reasoning.feed(event.section, event.text)
            return ChatGenerationChunk(message=reasoning_chunk(text)) if text else None
        if isinstance(event, AnswerDelta) and event.text:
            return ChatGenerationChunk(message=delta_chunk(event.text))
        if isinstance(event, Finished):
            answer = event.answer
            name = call.backend.model_name
            message = final_chunk(answer, name, usage(answer, call.backend, call.query), reasoning)
            _call_metadata(call, message)  # on the last chunk only: merged strings add up
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
        answer = _prefetched(call)
        if answer is None:
            answer = call.backend.answer(call.query, call.sources, **call.gen)
        return self._result(call, answer)

    async def _agenerate(
        self,
        messages: list[BaseMessage],
        stop: list[str] | None = None,
        run_manager: AsyncCallbackManagerForLLMRun | None = None,
        **kwargs: Any,
    ) -> ChatResult:
        call = await self._acondensed(self._prepare(messages, stop, kwargs), run_manager)
        answer = _prefetched(call)
        if answer is None:
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
            reasoning = ReasoningStream(call.sources)
            for event in events:
                chunk = self._chunk(call, event, reasoning)
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
            reasoning = ReasoningStream(call.sources)
            async for event in events:
                chunk = self._chunk(call, event, reasoning)
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

    # -- what a Pleias model does not do --

    def bind_tools(
        self,
        tools: Sequence[dict[str, Any] | type | Callable[..., Any] | BaseTool],
        *,
        tool_choice: str | None = None,
        **kwargs: Any,
    ) -> Runnable[LanguageModelInput, AIMessage]:
        """Not supported: Pleias models do not call tools.

        Raises:
            NotImplementedError: always, saying what to use instead (the model as a tool,
                :func:`~langchain_pleias.create_pleias_rag_tool`, under a tool-calling
                chat model).
        """
        raise NotImplementedError(NO_TOOLS)

    def with_structured_output(
        self, schema: dict[str, Any] | type, *, include_raw: bool = False, **kwargs: Any
    ) -> Runnable[LanguageModelInput, dict[str, Any] | BaseModel]:
        """Not supported: Pleias models write cited answers, not structured output.

        Raises:
            NotImplementedError: always, saying where the structured citations are and
                what to use instead.
        """
        raise NotImplementedError(NO_STRUCTURED_OUTPUT)


def _call_metadata(call: _Call, message: AIMessage) -> None:
    """What the call adds to the reply's ``response_metadata``: the rewritten question, and
    how many blank documents were left out (``skipped_documents``, only when some were)."""
    if call.standalone is not None:
        message.response_metadata[STANDALONE_KEY] = call.standalone
    if call.skipped:
        message.response_metadata[SKIPPED_KEY] = call.skipped


def _config_documents(config: RunnableConfig | None, kwargs: dict[str, Any]) -> dict[str, Any]:
    """``kwargs`` with the documents of ``config["configurable"]["documents"]``, if any.

    Raises:
        ValueError: documents given both ways.
    """
    configurable = (config or {}).get("configurable") or {}
    if configurable.get("documents") is None:
        return kwargs
    if kwargs.get("documents") is not None:
        raise InvalidArgument(
            "documents are given both as documents= and in config['configurable']"
            "['documents']: give them one way"
        )
    return {**kwargs, "documents": configurable["documents"]}


def _batch_configs(
    inputs: Sequence[object],
    config: RunnableConfig | list[RunnableConfig] | None,
    kwargs: dict[str, Any],
) -> tuple[list[RunnableConfig], dict[str, Any]]:
    """One config per input, with the input's own documents in its ``configurable`` when
    ``documents=`` has one list per input; and the kwargs left for every input."""
    configs = get_config_list(config, len(inputs))
    per_input = documents_per_input(kwargs.get("documents"), len(inputs))
    if per_input is None:
        return configs, kwargs
    kwargs = {k: v for k, v in kwargs.items() if k != "documents"}
    out = []
    for i, (cfg, docs) in enumerate(zip(configs, per_input, strict=True)):
        configurable = dict(cfg.get("configurable") or {})
        if configurable.get("documents") is not None:
            raise InvalidArgument(
                f"input {i} has documents both in documents= and in its config's "
                "configurable: give them one way"
            )
        configurable["documents"] = docs
        out.append(cast("RunnableConfig", {**cfg, "configurable": configurable}))
    return out, kwargs


class _Prefetch:
    """The answers of a :class:`_Plan`, generated in one engine batch before the inputs'
    own runs (which read them, :func:`_prefetched`, while :meth:`readable`). When the batch
    fails, nothing is kept: each input's run answers on its own and reports its own error.
    """

    def __init__(self, plan: _Plan | None) -> None:
        self.plan = plan
        self.answers: dict[tuple[Any, ...], PleiasAnswer] = {}

    def generate(self) -> None:
        """Generate the plan's answers (sync)."""
        if (plan := self.plan) is not None:
            with self._kept(plan) as keep:
                keep(plan.backend.answer_batch(plan.items, **plan.gen))

    async def agenerate(self) -> None:
        """Generate the plan's answers without blocking the event loop."""
        if (plan := self.plan) is not None:
            with self._kept(plan) as keep:
                keep(await plan.backend.aanswer_batch(plan.items, **plan.gen))

    @contextlib.contextmanager
    def _kept(self, plan: _Plan) -> Iterator[Callable[[list[PleiasAnswer]], None]]:
        """``keep(answers)`` stores a batch's answers; a failure on the way is logged."""

        def keep(done: list[PleiasAnswer]) -> None:
            self.answers = dict(zip(plan.keys, done, strict=True))

        try:
            yield keep
        except Exception:  # each input's own run reports its error
            logger.debug("batched generation failed; answering one by one", exc_info=True)

    @contextlib.contextmanager
    def readable(self) -> Iterator[None]:
        """While open, the inputs' runs read the answers generated ahead."""
        token = _PREFETCHED.set(self.answers)
        try:
            yield
        finally:
            _PREFETCHED.reset(token)


def _config_list(
    config: RunnableConfig | Sequence[RunnableConfig] | None,
) -> RunnableConfig | list[RunnableConfig] | None:
    return list(config) if isinstance(config, Sequence) else config


def _gen_key(gen: Mapping[str, Any]) -> str:
    return repr(sorted(gen.items()))


def _call_key(call: _Call) -> tuple[Any, ...]:
    """What makes an answer: the backend, the query, the sources and the settings."""
    return (id(call.backend), call.query, tuple(source_keys(call.sources)), _gen_key(call.gen))


def _prefetched(call: _Call) -> PleiasAnswer | None:
    """The answer ``batch`` already generated for ``call``, if any."""
    answers = _PREFETCHED.get()
    return None if not answers else answers.get(_call_key(call))


class _SourceKeys(list[str]):
    """Documents already replaced by their keys (the base class calls back into us)."""


def _traceable(kwargs: dict[str, Any]) -> dict[str, Any]:
    """Call arguments for traces and cache keys: source ids instead of whole documents."""
    out = dict(kwargs)
    if "documents" in out and not isinstance(out["documents"], _SourceKeys):
        docs = documents_to_sources(out["documents"], warn=False)
        out["documents"] = _SourceKeys(source_keys(docs))
    model = out.get("model")
    if model is not None and not isinstance(model, str):
        out["model"] = model.model_name if isinstance(model, Backend) else type(model).__name__
    return out
