"""The local engine: prompts go to the shared generation thread of the weights, text comes
back through a sink (a queue read by a thread, or by an asyncio task)."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncGenerator, Generator, Sequence

from ..dialects import Dialect
from ..engine import Completion, Engine, StreamItem
from ..errors import BatchError
from ..generation import GenerationSettings
from ..tokens import EncodedPrompt, TokenCodec
from ._args import request_seed
from ._batching import WorkerClosed
from ._resources import Resources
from ._streaming import Item, LoopSink, Output, Request, Sink, ThreadSink


class LocalEngine(Engine):
    """Generation with transformers in this process (see :class:`~pleias_rag.PleiasModel`)."""

    def __init__(
        self, res: Resources, *, max_batch_size: int, batch_window: float, continuous: bool = True
    ) -> None:
        self.res = res
        self._max_batch_size = max_batch_size
        self._batch_window = batch_window
        self._continuous = continuous

    def __repr__(self) -> str:
        return f"LocalEngine({self.res.name!r})"

    @property
    def dialect(self) -> Dialect:
        return self.res.bundle().dialect

    @property
    def model_name(self) -> str:
        return self.res.name

    @property
    def context_window(self) -> int:
        return self.res.bundle().context_window

    @property
    def codec(self) -> TokenCodec:
        return self.res.bundle().codec

    def _request(
        self, prompt: EncodedPrompt, settings: GenerationSettings, sink: Sink, *, stream: bool
    ) -> Request:
        bundle = self.res.bundle()
        return Request(
            ids=prompt.ids,
            settings=settings,
            sink=sink,
            codec=bundle.codec,
            stop_ids=bundle.stop_ids,
            pad_id=bundle.pad_id,
            stream=stream,
            max_batch_size=self._max_batch_size,
            batch_window=self._batch_window,
            continuous=self._continuous,
            seed=request_seed(settings),
        )

    def _submit(self, requests: list[Request]) -> None:
        """Queue ``requests`` on the live worker (loading the weights if needed); a worker
        closed between getting it and queueing is replaced once."""
        try:
            self.res.worker().submit(requests)
        except WorkerClosed:
            self.res.worker().submit(requests)

    async def _asubmit(self, requests: list[Request]) -> None:
        """:meth:`_submit` with the weights loaded off the event loop (nothing is queued
        when the caller is cancelled meanwhile)."""
        worker = await asyncio.to_thread(self.res.worker)
        try:
            worker.submit(requests)
        except WorkerClosed:
            (await asyncio.to_thread(self.res.worker)).submit(requests)

    # -- sync --------------------------------------------------------------------------

    def stream(
        self, prompt: EncodedPrompt, settings: GenerationSettings
    ) -> Generator[StreamItem, None, None]:
        sink = ThreadSink()
        req = self._request(prompt, settings, sink, stream=True)
        self._submit([req])
        try:
            while not isinstance(item := _item(sink.get()), Completion):
                yield item
            yield item
        finally:
            req.cancel()  # a no-op once finished; stops the row when the consumer left

    def complete(
        self, prompts: Sequence[EncodedPrompt], settings: GenerationSettings
    ) -> list[Completion]:
        sinks = [ThreadSink() for _ in prompts]
        reqs = [
            self._request(p, settings, s, stream=False) for p, s in zip(prompts, sinks, strict=True)
        ]
        self._submit(reqs)  # together: one batch
        try:
            return _outcomes([s.get() for s in sinks])
        finally:
            for req in reqs:
                req.cancel()

    # -- async -------------------------------------------------------------------------

    async def astream(
        self, prompt: EncodedPrompt, settings: GenerationSettings
    ) -> AsyncGenerator[StreamItem, None]:
        sink = LoopSink(asyncio.get_running_loop())
        req = self._request(prompt, settings, sink, stream=True)
        await self._asubmit([req])
        try:
            while not isinstance(item := _item(await sink.get()), Completion):
                yield item
            yield item
        finally:
            req.cancel()

    async def acomplete(
        self, prompts: Sequence[EncodedPrompt], settings: GenerationSettings
    ) -> list[Completion]:
        loop = asyncio.get_running_loop()
        sinks = [LoopSink(loop) for _ in prompts]
        reqs = [
            self._request(p, settings, s, stream=False) for p, s in zip(prompts, sinks, strict=True)
        ]
        await self._asubmit(reqs)
        try:
            return _outcomes([await s.get() for s in sinks])
        finally:
            for req in reqs:
                req.cancel()


def _item(item: Item) -> StreamItem:
    """A text chunk, or the Completion of a finished row; a worker's exception raises."""
    return item if isinstance(item, str) else _done(item)


def _outcomes(items: list[Item]) -> list[Completion]:
    """Each row's Completion; when some rows failed, a BatchError holding every row's
    outcome (the core keeps the finished ones: nothing is generated twice)."""
    errors = [i for i in items if isinstance(i, BaseException)]
    if len(items) > 1 and errors:
        outcomes = [i if isinstance(i, BaseException) else _done(i) for i in items]
        error = BatchError(f"{len(errors)} of {len(items)} rows failed", results=outcomes)
        raise error from errors[0]
    return [_done(i) for i in items]


def _done(item: Item) -> Completion:
    if isinstance(item, BaseException):
        raise item
    assert isinstance(item, Output)
    return Completion(
        item.text, finish_reason=item.finish_reason, completion_tokens=item.completion_tokens
    )
