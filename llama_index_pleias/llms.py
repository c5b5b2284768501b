"""``PleiasLLM``: a Pleias RAG model as a LlamaIndex LLM."""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from typing import Any

from llama_index.core.base.llms.types import (
    ChatMessage,
    ChatResponse,
    ChatResponseAsyncGen,
    ChatResponseGen,
    CompletionResponse,
    CompletionResponseAsyncGen,
    CompletionResponseGen,
    LLMMetadata,
    MessageRole,
    TextBlock,
)
from llama_index.core.bridge.pydantic import Field, PrivateAttr
from llama_index.core.instrumentation.events.llm import LLMPredictEndEvent, LLMPredictStartEvent
from llama_index.core.llms.callbacks import llm_chat_callback, llm_completion_callback
from llama_index.core.llms.custom import CustomLLM
from llama_index.core.llms.llm import (
    astream_completion_response_to_tokens,
    stream_completion_response_to_tokens,
)
from llama_index.core.prompts.base import BasePromptTemplate
from llama_index.core.types import TokenAsyncGen, TokenGen
from llama_index_instrumentation import get_dispatcher

from pleias_rag import AnswerDelta, Event, Finished, PleiasAnswer
from pleias_rag.backend import Backend, resolve_backend
from pleias_rag.errors import InvalidArgument, InvalidType
from pleias_rag.fallback import VisibleText, visible_text
from pleias_rag.generation import GENERATION_OPTIONS, generation_kwargs

from ._convert import (
    DEFAULT_MODEL,
    Call,
    achunks,
    answer_kwargs,
    chat_inputs,
    chunks,
    citation_blocks,
    source_numbering,
    to_sources,
)
from ._prompts import (
    AGENT_ERROR,
    CONDENSE_ERROR,
    RagPrompt,
    context_window,
    is_agent_prompt,
    is_condense_prompt,
    rag_prompt,
    watch_synthesizers,
)

dispatcher = get_dispatcher(__name__)


class PleiasLLM(CustomLLM):
    """A Pleias RAG model (local weights or any pleias_rag backend) as a LlamaIndex LLM.

    The prompt of ``complete`` is the query; sources are given with ``sources=[...]`` (strings,
    ``pleias_rag.Source``, nodes, ``NodeWithScore`` or ``CitableBlock`` objects). The response
    text is the clean answer with ``[n]`` markers; ``additional_kwargs`` carries the checked
    citations and the source analysis, and ``raw`` the :class:`pleias_rag.PleiasAnswer`.

    ``chat`` answers the last user message, using every ``CitableBlock`` of the conversation as
    a source; the answer message holds one ``TextBlock`` and one ``CitationBlock`` per citation.

    A Pleias model is neither a chat model nor a function-calling model: use it as a
    synthesizer (:class:`~llama_index_pleias.PleiasSynthesizer`) or behind a
    ``QueryEngineTool``, never as an agent's brain: a ReAct prompt raises an error that
    names the fix (``PleiasQueryEngine(...).as_tool()`` under another LLM).

    As ``Settings.llm``, LlamaIndex's own response synthesizers (``index.as_query_engine()``,
    ``compact``, ``refine``, ``tree_summarize``, ``simple_summarize``, ``accumulate``...) reach
    ``predict``/``apredict``/``stream``/``astream`` with their template and its variables:
    the context (``context_str``, or the refine template's ``context_msg``), one source per
    node, becomes the sources and ``query_str`` the query, so the answer keeps
    ``[n]`` markers checked against that context: ``[n]`` is the response's
    ``source_nodes[n-1]`` (the nodes are told by the synthesizer's instrumentation span; a
    call outside a synthesizer numbers the context's passages in order).
    A refine step (a template with ``existing_answer``) answers the query from the new context
    alone, and that answer replaces the existing one: a Pleias model does not edit a draft.
    A template without context and query variables is formatted and completed as usual.

    ``metadata`` loads nothing: the context window comes from a local folder's
    ``config.json``, else from the dialect (given, or known from the model name), else
    LlamaIndex's default. ``to_dict``/``from_dict`` round-trip a model id or folder; an LLM
    built on a ``Backend`` object (a remote server...) serializes its settings and the
    backend's class name, and ``from_dict`` then needs the backend again:
    ``PleiasLLM.from_dict(data, model=backend)`` (without it, a clear error).

    Weights load on first use and are shared between instances of the same model.

    Args:
        model: a Hugging Face model id, a local folder, or a
            ``pleias_rag.backend.Backend`` (used as is).
        dialect: ``hash`` or ``numbered``; detected from the model when None.
        device: torch device for local weights (``cpu``, ``cuda``...).
        dtype: torch dtype name for local weights (``float32``, ``bfloat16``...).
        max_new_tokens: output token limit (per call: ``max_new_tokens=`` or ``max_tokens=``).
        temperature: 0 is greedy decoding, as Pleias recommends.
        top_p: nucleus sampling when temperature > 0.
        seed: random seed for sampling.
        stop: extra stop strings.
        min_new_tokens: generate at least this many tokens (benchmarks). Every other option
            of ``pleias_rag.GenerationSettings`` is taken too, by name, in the constructor
            and per call; those without a field of their own are kept in ``generation``.
        generation: a dict of such options (``to_dict`` writes them there).

    Examples:
        >>> from llama_index_pleias import PleiasLLM
        >>> llm = PleiasLLM("PleIAs/Pleias-RAG-350M", max_new_tokens=512)  # nothing loads yet
        >>> response = llm.complete(  # doctest: +SKIP
        ...     "When was the Eiffel Tower completed?",
        ...     sources=["The Eiffel Tower was completed in 1889."],
        ... )
        >>> response.text  # doctest: +SKIP
        'The Eiffel Tower was completed in 1889[1].'
    """

    model: str = Field(default=DEFAULT_MODEL, description="Model id, folder or backend name.")
    dialect: str | None = Field(default=None, description="Prompt dialect (hash/numbered).")
    device: str | None = Field(default=None, description="Torch device for local weights.")
    dtype: str | None = Field(default=None, description="Torch dtype for local weights.")
    max_new_tokens: int = Field(default=1024, gt=0, description="Output token limit.")
    temperature: float = Field(default=0.0, ge=0.0, description="0 means greedy decoding.")
    top_p: float | None = Field(default=None, gt=0.0, le=1.0, description="Nucleus sampling.")
    seed: int | None = Field(default=None, description="Sampling seed.")
    stop: list[str] | None = Field(default=None, description="Extra stop strings.")
    generation: dict[str, Any] = Field(
        default_factory=dict,
        description="The core's other generation options (min_new_tokens...), by name.",
    )

    _backend: Backend | None = PrivateAttr(default=None)
    _given_backend: bool = PrivateAttr(default=False)

    def __init__(self, model: str | os.PathLike[str] | Backend = DEFAULT_MODEL, **kwargs: Any):
        kwargs = _fold_generation(type(self).model_fields, kwargs)
        unknown = sorted(set(kwargs) - set(type(self).model_fields))
        if unknown:  # pydantic would ignore them: a typo must not pass silently
            raise InvalidType(
                f"PleiasLLM got unexpected keyword argument(s) {unknown}: it takes model, "
                f"dialect, device, dtype, {', '.join(GENERATION_OPTIONS)}, generation (and "
                "LlamaIndex's LLM fields such as callback_manager)"
            )
        backend = None
        if isinstance(model, Backend):
            backend, name = model, model.model_name
        elif isinstance(model, (str, os.PathLike)):
            name = os.fspath(model)
        else:
            resolve_backend(model)  # raises the error that names what to give
        super().__init__(model=name, **kwargs)
        self.generation_kwargs()  # a bad value fails here, with the core's message
        watch_synthesizers()
        self._backend = backend
        self._given_backend = backend is not None

    @classmethod
    def class_name(cls) -> str:
        """The serialization name of this class."""
        return "PleiasLLM"

    @property
    def backend(self) -> Backend:
        """The generation backend (resolved on first use; local weights are shared)."""
        if self._backend is None:
            self._backend = resolve_backend(
                self.model, dialect=self.dialect, device=self.device, dtype=self.dtype
            )
        return self._backend

    @property
    def known_dialect(self) -> str | None:
        """The dialect of this LLM's outputs when known without loading anything: the one
        given, or that of the backend it was built on; else None."""
        if self.dialect is not None:
            return self.dialect
        if self._given_backend and self._backend is not None:
            return self._backend.dialect
        return None

    @property
    def metadata(self) -> LLMMetadata:
        """Context window, output budget and model name, as LlamaIndex reads them.

        Nothing loads: a given backend tells its window; otherwise a local folder's
        ``config.json`` (``max_position_embeddings``), the dialect's window
        (``pleias_rag.CONTEXT_WINDOW``) or LlamaIndex's default.
        """
        if self._given_backend and self._backend is not None:
            window = self._backend.context_window
        else:
            window = context_window(self.model, self.dialect)
        return LLMMetadata(
            context_window=window,
            num_output=self.max_new_tokens,
            is_chat_model=False,
            is_function_calling_model=False,
            model_name=self.model,
        )

    def to_dict(self, **kwargs: Any) -> dict[str, Any]:
        """The settings as a dict; a given backend is named by its class under ``backend``."""
        data = super().to_dict(**kwargs)
        if self._given_backend and self._backend is not None:
            data["backend"] = type(self._backend).__qualname__
        return data

    @classmethod
    def from_dict(cls, data: dict[str, Any], **kwargs: Any) -> PleiasLLM:
        """Rebuild from :meth:`to_dict`; one built on a backend needs ``model=backend``."""
        data = {**data, **kwargs}
        data.pop("class_name", None)
        backend_class = data.pop("backend", None)
        if backend_class is not None and not isinstance(data.get("model"), Backend):
            raise InvalidType(
                f"this PleiasLLM was built on a {backend_class} backend object, which cannot "
                "be serialized: pass it again, PleiasLLM.from_dict(data, model=backend)"
            )
        return cls(**data)

    def with_settings(self, **settings: Any) -> PleiasLLM:
        """A copy with other settings (validated), sharing this one's backend when resolved."""
        settings = _fold_generation(type(self).model_fields, settings, self.generation)
        unknown = set(settings) - set(type(self).model_fields)
        if unknown:
            raise InvalidType(f"unknown PleiasLLM settings: {sorted(unknown)}")
        current = {
            name: getattr(self, name)
            for name in type(self).model_fields
            if name not in ("model", "messages_to_prompt", "completion_to_prompt", "output_parser")
        }
        same_model = all(settings.get(k, current[k]) == current[k] for k in _LOAD_SETTINGS)
        model = self._backend if self._backend is not None and same_model else self.model
        copy = type(self)(model, **{**current, **settings})
        copy._given_backend = self._given_backend and model is self._backend
        return copy

    def generation_kwargs(self, **overrides: Any) -> dict[str, Any]:
        """This LLM's generation settings, updated with per-call ones, checked by the core.

        The names are the core's (``pleias_rag.generation.GENERATION_OPTIONS``), plus
        ``max_tokens`` for ``max_new_tokens``; None leaves a setting as it is.
        """
        fields = type(self).model_fields
        defaults = {name: getattr(self, name) for name in GENERATION_OPTIONS if name in fields}
        return generation_kwargs(
            defaults, self.generation, overrides, aliases=_ALIASES, also=("sources",)
        )

    def _prepare(self, prompt: str, formatted: bool, kwargs: dict[str, Any]) -> Call:
        sources = to_sources(kwargs.pop("sources", None))
        numbering = source_numbering(sources, kwargs.pop("source_numbers", None))
        to_prompt = self.completion_to_prompt
        query = prompt if formatted or to_prompt is None else to_prompt(prompt)
        if is_agent_prompt(query):
            raise InvalidType(AGENT_ERROR)
        if not sources and is_condense_prompt(query):
            raise InvalidType(CONDENSE_ERROR)
        return Call(query, sources, self.generation_kwargs(**kwargs), numbering)

    def _prepare_chat(self, messages: Sequence[ChatMessage], kwargs: dict[str, Any]) -> Call:
        if any(is_agent_prompt(m.content or "") for m in messages if m.role != MessageRole.USER):
            raise InvalidType(AGENT_ERROR)
        query, sources = chat_inputs(messages)
        sources += to_sources(kwargs.pop("sources", None))
        return Call(query, sources, self.generation_kwargs(**kwargs))

    # -- LlamaIndex prompt templates (response synthesizers) --

    def _rag(self, prompt: BasePromptTemplate, prompt_args: dict[str, Any]) -> RagPrompt | None:
        dispatcher.event(LLMPredictStartEvent(template=prompt, template_args=prompt_args))
        self._log_template_data(prompt, **prompt_args)
        return rag_prompt(prompt, prompt_args)

    def predict(self, prompt: BasePromptTemplate, **prompt_args: Any) -> str:
        """Answer a LlamaIndex prompt; a RAG template's context becomes the sources."""
        rag = self._rag(prompt, prompt_args)
        if rag is None:
            output = self.complete(self._get_prompt(prompt, **prompt_args), formatted=True).text
        else:
            output = self.complete(rag.query, formatted=True, **rag.sources()).text
        parsed = self._parse_output(output)
        dispatcher.event(LLMPredictEndEvent(output=parsed))
        return parsed

    async def apredict(self, prompt: BasePromptTemplate, **prompt_args: Any) -> str:
        """:meth:`predict` without blocking the event loop."""
        rag = self._rag(prompt, prompt_args)
        if rag is None:
            formatted = self._get_prompt(prompt, **prompt_args)
            output = (await self.acomplete(formatted, formatted=True)).text
        else:
            output = (await self.acomplete(rag.query, formatted=True, **rag.sources())).text
        parsed = self._parse_output(output)
        dispatcher.event(LLMPredictEndEvent(output=parsed))
        return parsed

    def stream(self, prompt: BasePromptTemplate, **prompt_args: Any) -> TokenGen:
        """:meth:`predict`, the answer streamed token by token."""
        if prompt.output_parser is not None or self.output_parser is not None:
            raise NotImplementedError("Output parser is not supported for streaming.")
        rag = self._rag(prompt, prompt_args)
        if rag is None:
            formatted = self._get_prompt(prompt, **prompt_args)
            gen = self.stream_complete(formatted, formatted=True)
        else:
            gen = self.stream_complete(rag.query, formatted=True, **rag.sources())
        return stream_completion_response_to_tokens(gen)

    async def astream(self, prompt: BasePromptTemplate, **prompt_args: Any) -> TokenAsyncGen:
        """:meth:`stream` without blocking the event loop."""
        if prompt.output_parser is not None or self.output_parser is not None:
            raise NotImplementedError("Output parser is not supported for streaming.")
        rag = self._rag(prompt, prompt_args)
        if rag is None:
            formatted = self._get_prompt(prompt, **prompt_args)
            gen = await self.astream_complete(formatted, formatted=True)
        else:
            gen = await self.astream_complete(rag.query, formatted=True, **rag.sources())
        return await astream_completion_response_to_tokens(gen)

    # -- completion --

    @llm_completion_callback()
    def complete(self, prompt: str, formatted: bool = False, **kwargs: Any) -> CompletionResponse:
        """Answer ``prompt`` (sources from ``sources=``); citations in ``additional_kwargs``.

        ``source_numbers=[...]`` (one positive int per source) numbers the markers: ``[k]``
        for the source given number k, instead of the order of first citation.
        """
        call = self._prepare(prompt, formatted, kwargs)
        return _completion(call.answer(self.backend.answer(call.query, call.sources, **call.gen)))

    @llm_completion_callback()
    async def acomplete(
        self, prompt: str, formatted: bool = False, **kwargs: Any
    ) -> CompletionResponse:
        """:meth:`complete` without blocking the event loop."""
        call = self._prepare(prompt, formatted, kwargs)
        answer = await self.backend.aanswer(call.query, call.sources, **call.gen)
        return _completion(call.answer(answer))

    @llm_completion_callback()
    def stream_complete(
        self, prompt: str, formatted: bool = False, **kwargs: Any
    ) -> CompletionResponseGen:
        """:meth:`complete`, the answer streamed; the last chunk carries the citations."""
        call = self._prepare(prompt, formatted, kwargs)
        events = call.events(self.backend.stream(call.query, call.sources, **call.gen))
        return chunks(events, _completion_chunk)

    @llm_completion_callback()
    async def astream_complete(
        self, prompt: str, formatted: bool = False, **kwargs: Any
    ) -> CompletionResponseAsyncGen:
        """:meth:`stream_complete` without blocking the event loop."""
        call = self._prepare(prompt, formatted, kwargs)
        events = call.aevents(self.backend.astream(call.query, call.sources, **call.gen))
        return achunks(events, _completion_chunk)

    # -- chat --

    @llm_chat_callback()
    def chat(self, messages: Sequence[ChatMessage], **kwargs: Any) -> ChatResponse:
        """Answer the last user message from the conversation's ``CitableBlock`` sources."""
        call = self._prepare_chat(messages, kwargs)
        return _chat(self.backend.answer(call.query, call.sources, **call.gen))

    @llm_chat_callback()
    async def achat(self, messages: Sequence[ChatMessage], **kwargs: Any) -> ChatResponse:
        """:meth:`chat` without blocking the event loop."""
        call = self._prepare_chat(messages, kwargs)
        return _chat(await self.backend.aanswer(call.query, call.sources, **call.gen))

    @llm_chat_callback()
    def stream_chat(self, messages: Sequence[ChatMessage], **kwargs: Any) -> ChatResponseGen:
        """:meth:`chat`, the answer streamed; the last chunk carries the citations."""
        call = self._prepare_chat(messages, kwargs)
        return chunks(self.backend.stream(call.query, call.sources, **call.gen), _chat_chunk)

    @llm_chat_callback()
    async def astream_chat(
        self, messages: Sequence[ChatMessage], **kwargs: Any
    ) -> ChatResponseAsyncGen:
        """:meth:`stream_chat` without blocking the event loop."""
        call = self._prepare_chat(messages, kwargs)
        return achunks(self.backend.astream(call.query, call.sources, **call.gen), _chat_chunk)


_LOAD_SETTINGS = ("dialect", "device", "dtype")
#: LlamaIndex's usual name for the output limit.
_ALIASES = {"max_tokens": "max_new_tokens"}


def _fold_generation(
    fields: Mapping[str, Any], kwargs: Mapping[str, Any], current: Mapping[str, Any] | None = None
) -> dict[str, Any]:
    """``kwargs`` with the core's generation options that are no field of their own (such as
    ``min_new_tokens``) moved into ``generation``, over ``current``: so that an option added
    to ``GenerationSettings`` is taken here with no edit."""
    kwargs = dict(kwargs)
    given = kwargs.pop("generation", None)
    if given is not None and not isinstance(given, Mapping):
        raise InvalidType(f"generation must be a dict of options, got {type(given).__name__}")
    generation = {**(current or {}), **(given or {})}
    for name in generation:
        if name in fields:  # one place per setting: to_dict must not hold it twice
            raise InvalidType(f"give {name}= itself, not inside generation=")
    for name in GENERATION_OPTIONS:
        if name in kwargs and name not in fields:
            generation[name] = kwargs.pop(name)
    if generation or given is not None:
        kwargs["generation"] = {k: v for k, v in generation.items() if v is not None}
    return kwargs


def as_pleias_llm(
    model: PleiasLLM | str | os.PathLike[str] | Backend, settings: dict[str, Any]
) -> PleiasLLM:
    """The PleiasLLM a component answers with: ``model``, or ``settings``' ``llm=`` (popped:
    LlamaIndex's usual spelling, ``PleiasSynthesizer(llm=PleiasLLM(...))``), with the other
    ``settings`` applied (a given PleiasLLM is copied only when there are some)."""
    if "llm" in settings:
        llm = settings.pop("llm")
        if model is not DEFAULT_MODEL and model != llm:
            raise InvalidArgument("give the model as model= or llm=, not both")
        model = llm
    if isinstance(model, PleiasLLM):
        return model.with_settings(**settings) if settings else model
    return PleiasLLM(model, **settings)


def raw_of(answer: PleiasAnswer) -> dict[str, Any]:
    """A response's ``raw``: a dict, as LlamaIndex's handlers read it (``TokenCountingHandler``
    takes ``usage``), with the parsed answer as ``pleias_answer``."""
    prompt, completion = answer.prompt_tokens or 0, answer.completion_tokens or 0
    usage = {
        "prompt_tokens": prompt,
        "completion_tokens": completion,
        "total_tokens": prompt + completion,
    }
    return {"usage": usage, "pleias_answer": answer}


def _completion(answer: PleiasAnswer) -> CompletionResponse:
    return CompletionResponse(
        text=visible_text(answer), additional_kwargs=answer_kwargs(answer), raw=raw_of(answer)
    )


def _completion_chunk(event: Event, fold: VisibleText) -> CompletionResponse | None:
    """Answer text as it comes; the last chunk carries citations and the parsed answer."""
    if not isinstance(event, (AnswerDelta, Finished)):
        return None
    delta = fold.step(event)
    if isinstance(event, AnswerDelta):
        return CompletionResponse(text=fold.text, delta=delta)
    answer = event.answer
    return CompletionResponse(
        text=fold.text, delta=delta, additional_kwargs=answer_kwargs(answer), raw=raw_of(answer)
    )


def _message(answer: PleiasAnswer) -> ChatMessage:
    return ChatMessage(
        role=MessageRole.ASSISTANT,
        blocks=[TextBlock(text=visible_text(answer)), *citation_blocks(answer)],
    )


def _chat(answer: PleiasAnswer) -> ChatResponse:
    return ChatResponse(
        message=_message(answer), raw=raw_of(answer), additional_kwargs=answer_kwargs(answer)
    )


def _chat_chunk(event: Event, fold: VisibleText) -> ChatResponse | None:
    if not isinstance(event, (AnswerDelta, Finished)):
        return None
    delta = fold.step(event)
    if isinstance(event, AnswerDelta):
        message = ChatMessage(role=MessageRole.ASSISTANT, content=fold.text)
        return ChatResponse(message=message, delta=delta)
    answer = event.answer
    return ChatResponse(
        message=_message(answer),
        delta=delta,
        raw=raw_of(answer),
        additional_kwargs=answer_kwargs(answer),
    )
