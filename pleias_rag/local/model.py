"""``PleiasModel``: Pleias RAG models run in-process with transformers."""

from __future__ import annotations

import asyncio
import dataclasses
import importlib.util
import os
from collections.abc import AsyncGenerator, Generator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import torch

from ..answer import PleiasAnswer
from ..dialects import HASH, Dialect, check_dialect
from ..generation import (
    BatchItem,
    GenerationSettings,
    SourceLike,
    batch_items,
    settings_from,
    sources_arg,
)
from ..parser import Event, Finished, StreamParser, feed_off_loop, parse_response
from ..sources import Source
from ..tokens import EncodedPrompt
from ._args import check_int, check_seconds, request_seed
from ._batching import Worker
from ._loading import resolve_device, resolve_dtype
from ._resources import Resources
from ._streaming import LoopSink, Output, Request, Sink, ThreadSink


@dataclass(frozen=True)
class _Prepared:
    encoded: EncodedPrompt
    settings: GenerationSettings
    query: str = ""


class PleiasModel:
    """A Pleias RAG model run in-process: batched, streaming, thread- and async-safe.

    Loading is lazy (the tokenizer on first need, the weights on first generation) and
    shared: every ``PleiasModel`` of the same model, device and dtype uses one copy of the
    weights and one generation thread, which coalesces concurrent calls into batched
    ``generate`` calls. Generation follows the Pleias recommendations (greedy, no repetition
    penalty, special tokens kept, stop on ``<|answer_end|>`` or EOS).

    Args:
        name_or_path: a hub id (``PleIAs/Pleias-RAG-350M``...) or a local model folder.
        dialect: ``hash`` or ``numbered``; detected from the tokenizer when None.
        device: ``cpu``, ``cuda``, ``cuda:1``...; None picks CUDA when available.
        dtype: ``auto`` (default: bf16 on CUDA and on CPUs with native bf16, fp32 elsewhere),
            ``bfloat16``, ``float16``, ``float32`` or a ``torch.dtype``.
        device_map: passed to transformers to spread the model (``"auto"``...), instead of
            ``device``.
        revision: the hub revision.
        context_window: overrides the config's ``max_position_embeddings``.
        max_sources: most sources per prompt (default 10 for the numbered dialect).
        max_batch_size: most questions per ``generate`` call.
        batch_window: seconds the worker waits for concurrent calls to join a batch.
        generation: default :class:`~pleias_rag.GenerationSettings` (or a dict of them).
        model_kwargs: more ``from_pretrained`` arguments for the model (``attn_implementation``...).
        tokenizer_kwargs: more ``from_pretrained`` arguments for the tokenizer.
    """

    def __init__(
        self,
        name_or_path: str | os.PathLike[str],
        *,
        dialect: str | None = None,
        device: str | torch.device | None = None,
        dtype: str | torch.dtype | None = None,
        device_map: str | Mapping[str, Any] | None = None,
        revision: str | None = None,
        context_window: int | None = None,
        max_sources: int | None = None,
        max_batch_size: int = 8,
        batch_window: float = 0.003,
        generation: GenerationSettings | Mapping[str, Any] | None = None,
        model_kwargs: Mapping[str, Any] | None = None,
        tokenizer_kwargs: Mapping[str, Any] | None = None,
    ) -> None:
        if not isinstance(name_or_path, (str, os.PathLike)) or not os.fspath(name_or_path):
            raise ValueError(
                f"name_or_path must be a hub id or a folder path, got {name_or_path!r}"
            )
        if device is not None and device_map is not None:
            raise ValueError("give device or device_map, not both")
        if device_map is not None and importlib.util.find_spec("accelerate") is None:
            raise ValueError(
                "device_map needs the accelerate package: pip install accelerate, "
                "or pass device= instead"
            )
        self._settings = settings_from(generation)
        self._max_batch_size = check_int("max_batch_size", max_batch_size, 1) or 1
        self._batch_window = check_seconds("batch_window", batch_window, 1.0)
        dev = resolve_device(device)
        self._res = Resources(
            os.fspath(name_or_path),
            dialect=check_dialect(dialect) if dialect is not None else None,
            device=dev,
            dtype=resolve_dtype(dtype, dev),
            device_map=device_map,
            revision=revision,
            context_window=check_int("context_window", context_window, 2, optional=True),
            max_sources=check_int("max_sources", max_sources, 0, optional=True),
            model_kwargs=model_kwargs or {},
            tokenizer_kwargs=tokenizer_kwargs or {},
        )

    @classmethod
    def from_pretrained(cls, name_or_path: str | os.PathLike[str], **kwargs: Any) -> PleiasModel:
        """A lazily loaded model (see :class:`PleiasModel` for the arguments)."""
        return cls(name_or_path, **kwargs)

    def __repr__(self) -> str:
        r = self._res
        return (
            f"PleiasModel({r.name!r}, dialect={r.dialect!r}, device={str(r.device)!r}, "
            f"dtype={str(r.dtype).removeprefix('torch.')!r})"
        )

    def load(self) -> PleiasModel:
        """Load the tokenizer and weights now instead of on first use; returns self."""
        self._res.bundle()
        self._res.worker()
        return self

    # -- properties --------------------------------------------------------------------

    @property
    def model_name(self) -> str:
        return self._res.name

    @property
    def dialect(self) -> Dialect:
        return self._res.bundle().dialect

    @property
    def context_window(self) -> int:
        return self._res.context_window or self._res.bundle().context_window

    @property
    def device(self) -> torch.device:
        """Where the inputs go (the first device of a ``device_map``)."""
        if self._res.device_map is not None:
            return torch.device(self._res.worker().model.device)
        return self._res.device

    @property
    def dtype(self) -> torch.dtype:
        return self._res.dtype

    @property
    def settings(self) -> GenerationSettings:
        """The default generation settings of this object."""
        return self._settings

    @property
    def tokenizer(self) -> Any:
        return self._res.bundle().tokenizer

    @property
    def model(self) -> Any:
        """The loaded transformers model (loads it); shared, do not modify it."""
        return self._res.worker().model

    @property
    def worker(self) -> Worker:
        """The generation thread of these weights (loads them)."""
        return self._res.worker()

    def count_tokens(self, text: str) -> int:
        return self._res.encoder().count_tokens(text)

    def encode(self, query: str, sources: Sequence[SourceLike] = (), **gen: Any) -> EncodedPrompt:
        """The prompt that would be sent: token ids, sources kept, dropped and truncated."""
        return self._prepare(query, sources, self._settings.merged(**gen)).encoded

    # -- internals ---------------------------------------------------------------------

    def _prepare(
        self, query: str, sources: Sequence[SourceLike] | None, settings: GenerationSettings
    ) -> _Prepared:
        encoded = self._res.encoder().encode(
            query, sources_arg(sources), max_new_tokens=settings.max_new_tokens
        )
        return _Prepared(encoded, settings, query)

    def _request(self, prep: _Prepared, sink: Sink, *, stream: bool = False) -> Request:
        bundle = self._res.bundle()
        return Request(
            ids=prep.encoded.ids,
            settings=prep.settings,
            sink=sink,
            codec=bundle.codec,
            stop_ids=bundle.stop_ids,
            pad_id=bundle.pad_id,
            stream=stream,
            max_batch_size=self._max_batch_size,
            batch_window=self._batch_window,
            seed=request_seed(prep.settings),
        )

    def _start(self) -> str:
        return "source_analysis" if self.dialect == HASH else "language"

    def _fill(self, answer: PleiasAnswer, prep: _Prepared, out: Output) -> PleiasAnswer:
        return dataclasses.replace(
            answer,
            dropped_source_ids=prep.encoded.dropped_ids,
            truncated_source_ids=prep.encoded.truncated_ids,
            prompt_tokens=len(prep.encoded.ids),
            completion_tokens=out.completion_tokens,
            finish_reason=out.finish_reason,
        )

    def _result(self, prep: _Prepared, item: object) -> PleiasAnswer:
        if isinstance(item, BaseException):
            raise item
        assert isinstance(item, Output)
        answer = parse_response(
            item.text,
            prep.encoded.sources,
            self.dialect,
            start=self._start(),
            finish_reason=item.finish_reason,
            query=prep.query,
        )
        return self._fill(answer, prep, item)

    def _parser(self, prep: _Prepared) -> StreamParser:
        return StreamParser(
            prep.encoded.sources, self.dialect, start=self._start(), query=prep.query
        )

    def _events(self, parser: StreamParser, prep: _Prepared, item: object) -> list[Event]:
        """Events for one item from the worker; the last list ends with ``Finished``."""
        if isinstance(item, str):
            return parser.feed(item)
        if isinstance(item, BaseException):
            raise item
        assert isinstance(item, Output)
        events = parser.close(item.finish_reason)
        final = events.pop()
        assert isinstance(final, Finished)
        events.append(Finished(self._fill(final.answer, prep, item)))
        return events

    # -- sync API ----------------------------------------------------------------------

    def answer(
        self, query: str, sources: Sequence[SourceLike] | None = (), **gen: Any
    ) -> PleiasAnswer:
        """Generate and parse one answer (see :class:`~pleias_rag.GenerationSettings`)."""
        prep = self._prepare(query, sources, self._settings.merged(**gen))
        worker = self._res.worker()
        sink = ThreadSink()
        req = self._request(prep, sink)
        worker.submit([req])
        try:
            return self._result(prep, sink.get())
        finally:
            req.cancel()  # a no-op once finished; stops the row if we were interrupted

    def stream(
        self, query: str, sources: Sequence[SourceLike] | None = (), **gen: Any
    ) -> Generator[Event, None, None]:
        """Parser events as the answer is generated, ending with ``Finished``.

        Arguments are checked now; generation starts on the first ``next()``. Stopping the
        iteration (``break``, ``close()``) stops the generation.
        """
        prep = self._prepare(query, sources, self._settings.merged(**gen))
        return self._stream(prep)

    def _stream(self, prep: _Prepared) -> Generator[Event, None, None]:
        worker = self._res.worker()
        sink = ThreadSink()
        req = self._request(prep, sink, stream=True)
        parser = self._parser(prep)
        worker.submit([req])
        try:
            while True:
                events = self._events(parser, prep, sink.get())
                yield from events
                if events and isinstance(events[-1], Finished):
                    return
        finally:
            req.cancel()

    def answer_batch(self, items: Sequence[BatchItem], **gen: Any) -> list[PleiasAnswer]:
        """Answers to several ``(query, sources)`` pairs, generated as padded batches.

        Greedy answers equal what :meth:`answer` gives one by one.
        """
        settings = self._settings.merged(**gen)
        preps = [self._prepare(q, s, settings) for q, s in batch_items(items)]
        if not preps:
            return []
        worker = self._res.worker()
        sinks = [ThreadSink() for _ in preps]
        reqs = [self._request(p, s) for p, s in zip(preps, sinks, strict=True)]
        worker.submit(reqs)
        try:
            return [self._result(p, s.get()) for p, s in zip(preps, sinks, strict=True)]
        finally:
            for req in reqs:
                req.cancel()

    # -- async API ---------------------------------------------------------------------

    def _prepare_loaded(
        self, query: str, sources: Sequence[SourceLike] | None, settings: GenerationSettings
    ) -> _Prepared:
        prep = self._prepare(query, sources, settings)
        self._res.worker()
        return prep

    async def aanswer(
        self, query: str, sources: Sequence[SourceLike] | None = (), **gen: Any
    ) -> PleiasAnswer:
        """:meth:`answer` without blocking the event loop (loading included)."""
        settings = self._settings.merged(**gen)
        prep = await asyncio.to_thread(self._prepare_loaded, query, sources, settings)
        sink = LoopSink(asyncio.get_running_loop())
        req = self._request(prep, sink)
        self._res.worker().submit([req])
        try:
            item = await sink.get()
        finally:
            req.cancel()
        return await asyncio.to_thread(self._result, prep, item)

    def astream(
        self, query: str, sources: Sequence[SourceLike] | None = (), **gen: Any
    ) -> AsyncGenerator[Event, None]:
        """:meth:`stream` as an async iterator; settings and sources are checked now."""
        settings = self._settings.merged(**gen)
        checked = sources_arg(sources)
        return self._astream(query, checked, settings)

    async def _astream(
        self, query: str, sources: list[Source], settings: GenerationSettings
    ) -> AsyncGenerator[Event, None]:
        prep = await asyncio.to_thread(self._prepare_loaded, query, sources, settings)
        sink = LoopSink(asyncio.get_running_loop())
        req = self._request(prep, sink, stream=True)
        parser = self._parser(prep)
        self._res.worker().submit([req])
        try:
            while True:
                item = await sink.get()
                if isinstance(item, str):
                    events = await feed_off_loop(parser.feed, item)
                else:  # the end: the last quote checks and the answer, off the event loop
                    events = await asyncio.to_thread(self._events, parser, prep, item)
                for event in events:
                    yield event
                if events and isinstance(events[-1], Finished):
                    return
        finally:
            req.cancel()

    async def aanswer_batch(self, items: Sequence[BatchItem], **gen: Any) -> list[PleiasAnswer]:
        """:meth:`answer_batch` without blocking the event loop."""
        settings = self._settings.merged(**gen)
        pairs = batch_items(items)
        if not pairs:
            return []

        def prepare() -> list[_Prepared]:
            preps = [self._prepare(q, s, settings) for q, s in pairs]
            self._res.worker()
            return preps

        preps = await asyncio.to_thread(prepare)
        loop = asyncio.get_running_loop()
        sinks = [LoopSink(loop) for _ in preps]
        reqs = [self._request(p, s) for p, s in zip(preps, sinks, strict=True)]
        self._res.worker().submit(reqs)
        try:
            got = [await s.get() for s in sinks]
        finally:
            for req in reqs:
                req.cancel()
        return await asyncio.to_thread(
            lambda: [self._result(p, i) for p, i in zip(preps, got, strict=True)]
        )
