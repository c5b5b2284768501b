"""``PleiasLLM``: text completion (question in, answer out) over a Pleias RAG model."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator, Iterator, Sequence
from contextvars import ContextVar
from typing import Any

from langchain_core.callbacks import (
    AsyncCallbackManagerForLLMRun,
    CallbackManagerForLLMRun,
    Callbacks,
)
from langchain_core.language_models import BaseLLM
from langchain_core.outputs import Generation, GenerationChunk, LLMResult
from pydantic import ConfigDict

from pleias_rag.answer import PleiasAnswer
from pleias_rag.backend import Backend
from pleias_rag.errors import InvalidArgument
from pleias_rag.fallback import stream_rest, visible_text
from pleias_rag.parser import AnswerDelta, Finished
from pleias_rag.sources import Source

from ._compat import message_parts, usage
from ._convert import PleiasLanguageModel, documents_to_sources, source_keys, unexpected_kwargs

# Source keys of the call being made, so that cache keys depend on the documents too
# (BaseLLM builds them from the model's parameters only).
_CALL_SOURCES: ContextVar[list[Any] | None] = ContextVar("pleias_llm_sources", default=None)


class PleiasLLM(PleiasLanguageModel, BaseLLM):
    """Text-completion LLM over a Pleias RAG model: each prompt is a question.

    Sources come from the ``documents=`` call argument: one list of ``Document`` for every
    prompt, or one list per prompt (``llm.batch(questions, documents=[docs1, docs2])``).
    The text returned is the answer with ``[n]`` markers (when the model wrote no answer:
    its whole output with the Pleias markup removed); each generation's
    ``generation_info`` has the citations (standard citation annotations, as for
    ``ChatPleias``), the source analysis (``reasoning_content``), ``finish_reason``,
    ``raw_output``, and the cited and dropped source ids.

    ``batch()`` (and ``generate()``) runs every prompt in ONE batched generation.

    Examples:
        >>> from langchain_pleias import PleiasLLM
        >>> from pleias_rag.testing import cached_trained_model
        >>> llm = PleiasLLM(model=str(cached_trained_model("hash")), max_tokens=64)
        >>> llm.batch(["Hello", "What is the capital of France?"])
        ['Hello! How can I help you today?', 'The capital of France is Paris.']
    """

    model_config = ConfigDict(arbitrary_types_allowed=True, extra="forbid")
    _ls_model_type = "llm"

    @property
    def _llm_type(self) -> str:
        return "pleias"

    @property
    def _identifying_params(self) -> dict[str, Any]:
        params = super()._identifying_params
        call_sources = _CALL_SOURCES.get()
        if call_sources is not None:
            params["documents"] = call_sources
        return params

    def generate(
        self,
        prompts: list[str],
        stop: list[str] | None = None,
        callbacks: Callbacks | list[Callbacks] = None,
        **kwargs: Any,
    ) -> LLMResult:
        """Answers to ``prompts`` as one batch (cached prompts are not generated again)."""
        with _call_sources(kwargs.get("documents"), len(prompts)):
            return super().generate(prompts, stop, callbacks, **kwargs)

    async def agenerate(
        self,
        prompts: list[str],
        stop: list[str] | None = None,
        callbacks: Callbacks | list[Callbacks] = None,
        **kwargs: Any,
    ) -> LLMResult:
        """:meth:`generate` without blocking the event loop."""
        with _call_sources(kwargs.get("documents"), len(prompts)):
            return await super().agenerate(prompts, stop, callbacks, **kwargs)

    # -- generation --

    def _prepare(
        self, prompts: Sequence[str], stop: list[str] | None, kwargs: dict[str, Any]
    ) -> tuple[Backend, list[tuple[str, list[Source]]], dict[str, Any]]:
        kwargs = dict(kwargs)
        per_prompt = _per_prompt(kwargs.pop("documents", None), len(prompts))
        backend = self._get_backend(kwargs.pop("model", None))
        gen = self._generation(stop, kwargs, backend)
        unexpected_kwargs("PleiasLLM", kwargs)
        return backend, [(p, s) for p, s in zip(prompts, per_prompt, strict=True)], gen

    def _result(
        self,
        backend: Backend,
        items: Sequence[tuple[str, list[Source]]],
        answers: list[PleiasAnswer],
    ) -> LLMResult:
        generations = []
        total = {"prompt_tokens": 0, "completion_tokens": 0, "total_tokens": 0}
        for (query, _), answer in zip(items, answers, strict=True):
            info = _info(answer, backend, query)
            for key, name in (
                ("input_tokens", "prompt_tokens"),
                ("output_tokens", "completion_tokens"),
                ("total_tokens", "total_tokens"),
            ):
                total[name] += info["usage"][key]
            generations.append([Generation(text=visible_text(answer), generation_info=info)])
        return LLMResult(
            generations=generations,
            llm_output={"model_name": backend.model_name, "token_usage": total},
        )

    def _generate(
        self,
        prompts: list[str],
        stop: list[str] | None = None,
        run_manager: CallbackManagerForLLMRun | None = None,
        **kwargs: Any,
    ) -> LLMResult:
        backend, items, gen = self._prepare(prompts, stop, kwargs)
        return self._result(backend, items, backend.answer_batch(items, **gen))

    async def _agenerate(
        self,
        prompts: list[str],
        stop: list[str] | None = None,
        run_manager: AsyncCallbackManagerForLLMRun | None = None,
        **kwargs: Any,
    ) -> LLMResult:
        backend, items, gen = self._prepare(prompts, stop, kwargs)
        return self._result(backend, items, await backend.aanswer_batch(items, **gen))

    def _stream(
        self,
        prompt: str,
        stop: list[str] | None = None,
        run_manager: CallbackManagerForLLMRun | None = None,
        **kwargs: Any,
    ) -> Iterator[GenerationChunk]:
        backend, ((query, sources),), gen = self._prepare([prompt], stop, kwargs)
        with contextlib.closing(backend.stream(query, sources, **gen)) as events:
            for event in events:
                chunk = _chunk(event, backend, query)
                if chunk is not None:
                    if run_manager is not None:
                        run_manager.on_llm_new_token(chunk.text, chunk=chunk)
                    yield chunk

    async def _astream(
        self,
        prompt: str,
        stop: list[str] | None = None,
        run_manager: AsyncCallbackManagerForLLMRun | None = None,
        **kwargs: Any,
    ) -> AsyncIterator[GenerationChunk]:
        backend, ((query, sources),), gen = self._prepare([prompt], stop, kwargs)
        events = backend.astream(query, sources, **gen)
        async with contextlib.aclosing(events):
            async for event in events:
                chunk = _chunk(event, backend, query)
                if chunk is not None:
                    if run_manager is not None:
                        await run_manager.on_llm_new_token(chunk.text, chunk=chunk)
                    yield chunk


def _per_prompt(documents: object, n: int) -> list[list[Source]]:
    """Sources for each prompt: one shared list of documents, or one list per prompt."""
    if documents is None:
        return [[] for _ in range(n)]
    if (
        isinstance(documents, (list, tuple))
        and documents
        and all(isinstance(d, (list, tuple)) for d in documents)
    ):
        if len(documents) != n:
            raise InvalidArgument(
                f"documents= has {len(documents)} lists for {n} prompts: give one list of "
                "documents for all prompts, or one list per prompt"
            )
        return [
            documents_to_sources(d, argument=f"documents[{i}]") for i, d in enumerate(documents)
        ]
    shared = documents_to_sources(documents)
    return [shared for _ in range(n)]


@contextlib.contextmanager
def _call_sources(documents: object, n: int) -> Iterator[None]:
    """Sets :data:`_CALL_SOURCES` to the source keys of each prompt for the call."""
    keys = None if documents is None else [source_keys(s) for s in _per_prompt(documents, n)]
    token = _CALL_SOURCES.set(keys)
    try:
        yield
    finally:
        _CALL_SOURCES.reset(token)


def _info(answer: PleiasAnswer, backend: Backend, query: str) -> dict[str, Any]:
    extra, meta = message_parts(answer, backend.model_name)
    meta.pop("model_provider")
    return {
        **meta,
        **extra,
        "raw_output": answer.raw,
        "usage": usage(answer, backend, query),
    }


def _chunk(event: object, backend: Backend, query: str) -> GenerationChunk | None:
    if isinstance(event, AnswerDelta) and event.text:
        return GenerationChunk(text=event.text)
    if isinstance(event, Finished):
        answer = event.answer
        text = stream_rest(answer)
        return GenerationChunk(text=text, generation_info=_info(answer, backend, query))
    return None
