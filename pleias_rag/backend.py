"""``Backend``: the one core over every engine — settings, sources, prompt encoding and its
context budget, the six public operations, parsing and filling the answer.

Data flows one way: ``(query, sources)`` → checked settings and sources → an
:class:`~pleias_rag.tokens.EncodedPrompt` → the :class:`~pleias_rag.engine.Engine` (I/O only)
→ text → :class:`~pleias_rag.parser.StreamParser` → :class:`~pleias_rag.answer.PleiasAnswer`.
:class:`~pleias_rag.local.PleiasModel` and :class:`~pleias_rag.remote.RemoteBackend` are this
class over their engines; any engine gets every operation (see ``docs/api.md``).
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import logging
import os
import threading
from collections.abc import AsyncGenerator, Generator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from .answer import PleiasAnswer
from .checks import check_int, check_query
from .dialects import EOS, HASH, NUMBERED, NUMBERED_MAX_SOURCES, Dialect
from .engine import Completion, Engine, StreamItem
from .errors import BatchError, InvalidArgument, InvalidType
from .generation import (
    BatchItem,
    GenerationSettings,
    SourceLike,
    batch_items,
    settings_from,
    sources_arg,
)
from .parser import Event, Finished, StreamParser, feed_off_loop, parse_response
from .prompt import render_prompt
from .sources import Source, group_sources
from .tokens import EncodedPrompt, PromptEncoder

__all__ = ["Backend", "resolve_backend"]

_log = logging.getLogger("pleias_rag")

# What an engine may leave at the end of the text: EOS as Pleias and older Llama tokenizers
# write it. The parser stops there anyway; it is cut from ``PleiasAnswer.raw``.
_EOS_TEXTS = (EOS, "</s>")


@dataclass(frozen=True)
class _Call:
    """One prepared question: its prompt and settings."""

    encoded: EncodedPrompt
    settings: GenerationSettings


# What came of one input of a batch: its completion, its exception, or None (never run).
_Outcome = Completion | BaseException | None


class Backend:
    """A Pleias RAG model you ask questions over sources: answers with checked citations.

    It prepares prompts (sources packed into the context window token by token when the
    engine has a tokenizer), runs them on its :class:`~pleias_rag.engine.Engine`, and parses
    the output. The LangChain and LlamaIndex adapters take any ``Backend`` as their model.

    Args:
        engine: the generation I/O (local transformers, a remote server, or your own).
        generation: default :class:`~pleias_rag.GenerationSettings` (or a dict of them).
        context_window: overrides the engine's context window.
        max_sources: most sources per prompt (default 10 for the numbered dialect).
    """

    def __init__(
        self,
        engine: Engine,
        *,
        generation: GenerationSettings | Mapping[str, Any] | None = None,
        context_window: int | None = None,
        max_sources: int | None = None,
    ) -> None:
        if not isinstance(engine, Engine):
            raise InvalidArgument(
                f"engine must be a pleias_rag.engine.Engine, got {type(engine).__name__}"
            )
        self._engine = engine
        self._settings = settings_from(generation)
        self._window = check_int("context_window", context_window, 2, optional=True)
        self._max_sources = check_int("max_sources", max_sources, 0, optional=True)
        self._encoder_lock = threading.Lock()
        self._encoder: PromptEncoder | None = None

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self._engine!r})"

    # -- properties --------------------------------------------------------------------

    @property
    def engine(self) -> Engine:
        """The generation I/O under this backend."""
        return self._engine

    @property
    def dialect(self) -> Dialect:
        """``hash`` or ``numbered``: the prompt and output format of the model."""
        return self._engine.dialect

    @property
    def model_name(self) -> str:
        """The model's name or path."""
        return self._engine.model_name

    @property
    def context_window(self) -> int:
        """Prompt plus output tokens: the explicit value, else the engine's."""
        return self._window if self._window is not None else self._engine.context_window

    @property
    def settings(self) -> GenerationSettings:
        """The default generation settings of this object."""
        return self._settings

    # -- tokens ------------------------------------------------------------------------

    def count_tokens(self, text: str) -> int:
        """Tokens ``text`` takes in a prompt (the tokenizer's count, else the engine's)."""
        if not isinstance(text, str):
            raise InvalidArgument(f"count_tokens takes a str, got {type(text).__name__}")
        if not text:
            return 0
        codec = self._engine.codec
        return len(codec.encode(text)) if codec is not None else self._engine.count_tokens(text)

    def token_ids(self, text: str) -> list[int]:
        """The token ids of ``text`` (needs the model's tokenizer)."""
        if not isinstance(text, str):
            raise InvalidArgument(f"token_ids takes a str, got {type(text).__name__}")
        codec = self._engine.codec
        if codec is None:
            raise InvalidArgument(
                f"{type(self).__name__} has no tokenizer to give token ids: give it "
                "tokenizer= (the model's tokenizer folder)"
            )
        return list(codec.encode(text)) if text else []

    def encode(
        self, query: str, sources: Sequence[SourceLike] | None = (), **gen: Any
    ) -> EncodedPrompt:
        """The prompt that would be sent (ids, or the string prompt without a tokenizer),
        and the sources kept, dropped and truncated."""
        query, settings = check_query(query), self._settings.merged(**gen)
        return self._prepare(query, sources_arg(sources), settings, report=False).encoded

    def prompt_tokens(
        self, query: str, sources: Sequence[SourceLike] | None = (), **gen: Any
    ) -> int:
        """Tokens of the prompt that would be sent for ``query`` and ``sources``."""
        prompt = self.encode(query, sources, **gen).prompt
        return self.count_tokens(prompt) if isinstance(prompt, str) else len(prompt)

    # -- preparing ---------------------------------------------------------------------

    def _prepare(
        self,
        query: str,
        sources: list[Source],
        settings: GenerationSettings,
        *,
        report: bool = True,
    ) -> _Call:
        self._engine.prepare()
        call = _Call(self._encode(query, sources, settings), settings)
        if report:
            self._report(call)
        return call

    async def _aprepare(
        self, query: str, sources: list[Source], settings: GenerationSettings
    ) -> _Call:
        await self._engine.aprepare()  # tokenizing (and loading the tokenizer): off the loop
        encoded = await asyncio.to_thread(self._encode, query, sources, settings)
        call = _Call(encoded, settings)
        self._report(call)
        return call

    def _report(self, call: _Call) -> None:
        """A warning when the prompt leaves sources out or cuts them: the answer's
        ``dropped_source_ids``/``truncated_source_ids`` say which, but not to one who does
        not look."""
        enc = call.encoded
        if not (enc.dropped_ids or enc.truncated_ids):
            return
        limit = self._max_sources
        if limit is None and self.dialect == NUMBERED:
            limit = NUMBERED_MAX_SOURCES
        _log.warning(
            "the prompt left out %d source(s) %s and cut %d %s to fit the context window of "
            "%d tokens with max_new_tokens=%d%s: give fewer or shorter sources, or lower "
            "max_new_tokens",
            len(enc.dropped_ids),
            list(enc.dropped_ids),
            len(enc.truncated_ids),
            list(enc.truncated_ids),
            self.context_window,
            call.settings.max_new_tokens,
            "" if limit is None else f" and the limit of {limit} sources",
        )

    def _encode(
        self, query: str, sources: list[Source], settings: GenerationSettings
    ) -> EncodedPrompt:
        if self._engine.codec is None:
            return self._encode_string(query, sources)
        return self._prompt_encoder().encode(query, sources, max_new_tokens=settings.max_new_tokens)

    def _prompt_encoder(self) -> PromptEncoder:
        codec, window = self._engine.codec, self.context_window
        assert codec is not None
        with self._encoder_lock:
            encoder = self._encoder
            if encoder is None or encoder.context_window != window or encoder.codec is not codec:
                encoder = PromptEncoder(
                    codec, self.dialect, context_window=window, max_sources=self._max_sources
                )
                self._encoder = encoder
        return encoder

    def _encode_string(self, query: str, sources: list[Source]) -> EncodedPrompt:
        """The escaped string prompt: no context budget, only the source limit."""
        groups = group_sources(sources)
        limit = self._max_sources
        if limit is None and self.dialect == NUMBERED:
            limit = NUMBERED_MAX_SOURCES
        limit = len(groups) if limit is None else limit
        kept = [s for g in groups[:limit] for s in g.members]
        return EncodedPrompt(
            render_prompt(query, kept, self.dialect),
            sources=tuple(kept),
            dropped_ids=tuple(g.id for g in groups[limit:]),
            query=query,
        )

    # -- parsing -----------------------------------------------------------------------

    def _start(self) -> str | None:
        # With the markers kept the output starts in a known section; when they may be
        # stripped the parser must guess (marker-free text is the answer).
        if not self._engine.keeps_markers:
            return None
        return "source_analysis" if self.dialect == HASH else "language"

    def _parser(self, call: _Call) -> StreamParser:
        return StreamParser(
            call.encoded.sources, self.dialect, start=self._start(), query=call.encoded.query
        )

    def _fill(self, answer: PleiasAnswer, call: _Call, done: Completion) -> PleiasAnswer:
        prompt = call.encoded.prompt
        return dataclasses.replace(
            answer,
            raw=_cut_eos(answer.raw),
            dropped_source_ids=call.encoded.dropped_ids,
            truncated_source_ids=call.encoded.truncated_ids,
            prompt_tokens=done.prompt_tokens or (None if isinstance(prompt, str) else len(prompt)),
            completion_tokens=done.completion_tokens,
        )

    def _result(self, call: _Call, done: Completion) -> PleiasAnswer:
        answer = parse_response(
            _cut_eos(done.text),
            call.encoded.sources,
            self.dialect,
            start=self._start(),
            finish_reason=done.finish_reason,
            query=call.encoded.query,
        )
        return self._fill(answer, call, done)

    def _close(self, parser: StreamParser, call: _Call, done: Completion | None) -> list[Event]:
        if done is None:
            raise RuntimeError("the engine's stream ended without a Completion")
        events = parser.close(done.finish_reason)
        final = events.pop()
        assert isinstance(final, Finished)
        events.append(Finished(self._fill(final.answer, call, done)))
        return events

    # -- sync API ----------------------------------------------------------------------

    def answer(
        self, query: str, sources: Sequence[SourceLike] | None = (), **gen: Any
    ) -> PleiasAnswer:
        """Generate and parse one answer (see :class:`~pleias_rag.GenerationSettings`)."""
        query, settings = check_query(query), self._settings.merged(**gen)
        call = self._prepare(query, sources_arg(sources), settings)
        (done,) = self._engine.complete([call.encoded], call.settings)
        return self._result(call, done)

    def stream(
        self, query: str, sources: Sequence[SourceLike] | None = (), **gen: Any
    ) -> Generator[Event, None, None]:
        """Parser events as the answer is generated, ending with ``Finished``.

        Arguments are checked now; generation starts on the first ``next()``. Stopping the
        iteration (``break``, ``close()``) stops the generation.
        """
        query, settings = check_query(query), self._settings.merged(**gen)
        call = self._prepare(query, sources_arg(sources), settings)
        return self._stream(call)

    def _stream(self, call: _Call) -> Generator[Event, None, None]:
        parser = self._parser(call)
        done: Completion | None = None
        with contextlib.closing(self._engine.stream(call.encoded, call.settings)) as items:
            for item in items:
                if isinstance(item, Completion):
                    done = item
                elif item:
                    yield from parser.feed(item)
        yield from self._close(parser, call, done)

    def answer_batch(self, items: Sequence[BatchItem], **gen: Any) -> list[PleiasAnswer]:
        """Answers to several ``(query, sources)`` pairs (or bare queries), in order,
        generated together (greedy answers equal what :meth:`answer` gives one by one).

        A failure stays with its input: when some fail, :class:`~pleias_rag.BatchError` (a
        ``RemoteBatchError`` for a server) is raised, its ``results`` holding every answer
        that finished, and the exception of each input that failed (``__cause__``: the
        first). When none finished, the first failure is raised as it is (a server's: as a
        ``RemoteBatchError`` of its kind). A bad argument is raised at once, as itself."""
        settings = self._settings.merged(**gen)
        calls = [self._prepare(q, s, settings) for q, s in batch_items(items)]
        if not calls:
            return []
        prompts = [c.encoded for c in calls]
        plan = _isolate(len(prompts))
        span = next(plan)
        while True:  # the I/O of the plan: run each span it asks for, send back the outcome
            got: list[Completion] | Exception
            try:
                got = self._engine.complete(prompts[span[0] : span[1]], settings)
            except Exception as exc:  # the plan decides what it means
                got = exc
            try:
                span = plan.send(got)
            except StopIteration as end:
                return self._answers(calls, end.value)

    def _answers(self, calls: list[_Call], outcomes: list[_Outcome]) -> list[PleiasAnswer]:
        """The answers of a batch, or its error with the answers that finished."""
        results = [
            self._result(c, o) if isinstance(o, Completion) else o
            for c, o in zip(calls, outcomes, strict=True)
        ]
        if any(isinstance(r, BaseException) for r in results):
            raise self._engine.batch_error(results)
        if any(r is None for r in results):  # pragma: no cover - an engine's bug
            raise RuntimeError("the engine's batch error left inputs without an outcome")
        return [r for r in results if isinstance(r, PleiasAnswer)]

    # -- async API ---------------------------------------------------------------------

    async def aanswer(
        self, query: str, sources: Sequence[SourceLike] | None = (), **gen: Any
    ) -> PleiasAnswer:
        """:meth:`answer` without blocking the event loop (loading included)."""
        query, settings = check_query(query), self._settings.merged(**gen)
        checked = sources_arg(sources)
        call = await self._aprepare(query, checked, settings)
        (done,) = await self._engine.acomplete([call.encoded], call.settings)
        return await asyncio.to_thread(self._result, call, done)  # quote checks: off the loop

    def astream(
        self, query: str, sources: Sequence[SourceLike] | None = (), **gen: Any
    ) -> AsyncGenerator[Event, None]:
        """:meth:`stream` as an async iterator; the query, settings and sources are checked
        now. Cancelling the consumer or closing the iterator stops the generation."""
        query, settings = check_query(query), self._settings.merged(**gen)
        checked = sources_arg(sources)
        return self._astream(query, checked, settings)

    async def _astream(
        self, query: str, sources: list[Source], settings: GenerationSettings
    ) -> AsyncGenerator[Event, None]:
        call = await self._aprepare(query, sources, settings)
        parser = self._parser(call)
        done: Completion | None = None
        items: AsyncGenerator[StreamItem, None] = self._engine.astream(call.encoded, call.settings)
        async with contextlib.aclosing(items):
            async for item in items:
                if isinstance(item, Completion):
                    done = item
                elif item:
                    for event in await feed_off_loop(parser.feed, item):
                        yield event
        # The end: the last quote checks and the answer, off the event loop.
        for event in await asyncio.to_thread(self._close, parser, call, done):
            yield event

    async def aanswer_batch(self, items: Sequence[BatchItem], **gen: Any) -> list[PleiasAnswer]:
        """:meth:`answer_batch` without blocking the event loop (failures as there)."""
        settings = self._settings.merged(**gen)
        pairs = batch_items(items)
        if not pairs:
            return []
        calls = [await self._aprepare(q, s, settings) for q, s in pairs]
        prompts = [c.encoded for c in calls]
        plan = _isolate(len(prompts))
        span = next(plan)
        while True:  # :meth:`answer_batch`'s loop, awaiting the engine
            got: list[Completion] | Exception
            try:
                got = await self._engine.acomplete(prompts[span[0] : span[1]], settings)
            except Exception as exc:  # the plan decides what it means
                got = exc
            try:
                span = plan.send(got)
            except StopIteration as end:
                outcomes: list[_Outcome] = end.value
                break
        return await asyncio.to_thread(self._answers, calls, outcomes)  # quote checks


def _isolate(
    count: int,
) -> Generator[tuple[int, int], list[Completion] | Exception, list[_Outcome]]:
    """Which inputs of a batch to run, as ``(start, stop)`` spans, until each has its
    outcome: all together first; a span that fails as a whole (an exception that is not a
    :class:`BatchError` with one result per input) is run again as two halves, down to
    single inputs, so that one input's failure is not its neighbours'. A bad argument
    (``InvalidArgument``, ``InvalidType``) concerns the call: it is raised at once. The sync
    and async loops only run the spans and send back what came of them."""
    outcomes: list[_Outcome] = [None] * count
    spans = [(0, count)]
    while spans:
        start, stop = spans.pop(0)
        got = yield start, stop
        if isinstance(got, BatchError) and len(got.results) == stop - start:
            outcomes[start:stop] = got.results
        elif isinstance(got, (InvalidArgument, InvalidType)):
            raise got
        elif isinstance(got, Exception):
            if stop - start == 1:
                outcomes[start] = got
            else:
                middle = (start + stop) // 2
                spans[:0] = [(start, middle), (middle, stop)]
        else:
            outcomes[start:stop] = got
    return outcomes


def _cut_eos(text: str) -> str:
    """``text`` up to the first EOS an engine left in it."""
    for eos in _EOS_TEXTS:
        at = text.find(eos)
        if at >= 0:
            text = text[:at]
    return text


def resolve_backend(
    model: object,
    *,
    dialect: str | None = None,
    device: str | None = None,
    dtype: str | None = None,
) -> Backend:
    """The backend for ``model``: a :class:`Backend` is itself; a hub id or folder is the
    shared, lazily loaded :class:`~pleias_rag.local.PleiasModel` of it."""
    if isinstance(model, Backend):
        return model
    if isinstance(model, (str, os.PathLike)) and os.fspath(model).strip():
        from .local import PleiasModel

        return PleiasModel.from_pretrained(
            os.fspath(model), dialect=dialect, device=device, dtype=dtype
        )
    raise InvalidType(
        "model must be a Hugging Face id, a folder or a pleias_rag Backend (PleiasModel, "
        f"RemoteBackend, or Backend(engine) over your own engine), got {type(model).__name__}"
    )
