"""Incremental decoding, stop strings, result channels and the per-row stopping criterion.

Each generated token is decoded once, within a small window of previous ids: the text it adds
is the difference between the window decoded with and without it, held back while it ends in
an incomplete UTF-8 character. The criterion runs after every decoding step, decodes the new
token of every row, sends text to streaming consumers, and tells ``generate`` which rows are
done: they hit a stop token or string, their own ``max_new_tokens``, or their consumer left.
"""

from __future__ import annotations

import asyncio
import queue
import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Literal, Protocol

import torch
from transformers import StoppingCriteria

if TYPE_CHECKING:
    from ..generation import GenerationSettings
    from ..tokens import TokenCodec

FinishReason = Literal["stop", "length"]
_REPLACEMENT = "\ufffd"


class IncrementalDecoder:
    """Decodes a growing list of token ids, returning only the new text each step.

    Joined, the returned pieces equal ``decode(all ids)`` for byte-level and SentencePiece
    tokenizers; each step costs two decodes of a few tokens (no O(n^2) re-decoding).
    """

    def __init__(self, decode: Callable[[Sequence[int]], str]) -> None:
        self._decode = decode
        self._ids: list[int] = []
        self._prefix = 0  # start of the context window
        self._read = 0  # ids up to here are already returned as text

    def step(self, token_id: int) -> str:
        self._ids.append(token_id)
        before = self._decode(self._ids[self._prefix : self._read])
        after = self._decode(self._ids[self._prefix :])
        if len(after) > len(before) and not after.endswith(_REPLACEMENT):
            self._prefix, self._read = self._read, len(self._ids)
            return after[len(before) :]
        return ""

    def flush(self) -> str:
        """Whatever is held back (an incomplete character at the very end)."""
        if self._read == len(self._ids):
            return ""
        before = self._decode(self._ids[self._prefix : self._read])
        after = self._decode(self._ids[self._prefix :])
        self._prefix = self._read = len(self._ids)
        return after[len(before) :]


class StopMatcher:
    """Finds stop strings across chunk boundaries, holding back a possible partial match."""

    def __init__(self, stops: Sequence[str]) -> None:
        self._stops = tuple(stops)
        self._longest = max((len(s) for s in self._stops), default=0)
        self._held = ""

    def feed(self, text: str) -> tuple[str, bool]:
        """Text safe to emit and whether a stop string ended it (the stop string is cut)."""
        if not self._stops:
            return text, False
        buf = self._held + text
        hits = [i for i in (buf.find(s) for s in self._stops) if i >= 0]
        if hits:
            self._held = ""
            return buf[: min(hits)], True
        keep = 0
        for k in range(min(len(buf), self._longest - 1), 0, -1):
            tail = buf[-k:]
            if any(s.startswith(tail) for s in self._stops):
                keep = k
                break
        self._held = buf[len(buf) - keep :]
        return buf[: len(buf) - keep], False

    def flush(self) -> str:
        held, self._held = self._held, ""
        return held


# --- channels -------------------------------------------------------------------------------


@dataclass(frozen=True)
class Output:
    """A finished row: all its text, tokens generated, and why it ended."""

    text: str
    completion_tokens: int
    finish_reason: FinishReason


Item = str | Output | BaseException


class Sink(Protocol):
    """Where the worker sends a request's text chunks, then its Output or an exception."""

    def put(self, item: Item) -> bool:
        """Deliver ``item``; False when nobody can receive it any more."""
        ...


class ThreadSink:
    """A sink read by a blocking thread."""

    def __init__(self) -> None:
        self._queue: queue.SimpleQueue[Item] = queue.SimpleQueue()

    def put(self, item: Item) -> bool:
        self._queue.put(item)
        return True

    def get(self) -> Item:
        return self._queue.get()


class LoopSink:
    """A sink read by an asyncio task; the worker thread never blocks on it."""

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self._loop = loop
        self._queue: asyncio.Queue[Item] = asyncio.Queue()

    def put(self, item: Item) -> bool:
        try:
            self._loop.call_soon_threadsafe(self._queue.put_nowait, item)
        except RuntimeError:  # the loop is closed: the consumer is gone
            return False
        return True

    async def get(self) -> Item:
        return await self._queue.get()


@dataclass(eq=False)
class Request:
    """One generation: prompt ids, settings, where to send results, and a cancel flag.

    Tokenizer-derived values travel with the request, so one worker can serve every model
    object sharing its weights.
    """

    ids: tuple[int, ...]
    settings: GenerationSettings
    sink: Sink
    codec: TokenCodec
    stop_ids: tuple[int, ...]
    pad_id: int
    stream: bool = False
    max_batch_size: int = 8
    batch_window: float = 0.0
    # Join a running batch at the next step (continuous scheduling), or run in one generate.
    continuous: bool = True
    # Seed of this request's private sampling generator (unused when greedy).
    seed: int = 0
    _cancelled: threading.Event = field(default_factory=threading.Event)

    def cancel(self) -> None:
        """Stop this generation: its row is finished at the next decoding step."""
        self._cancelled.set()

    @property
    def cancelled(self) -> bool:
        return self._cancelled.is_set()


class Row:
    """Decoding state of one request inside a running batch.

    Args:
        request: what to generate.
        replay: for a streamed request run again after its batch failed, the tokens it had
            already generated: their text was sent, so it is not sent again; the rerun must
            generate the same tokens first, or it fails (``cause`` chained).
        cause: why the request is run again.
    """

    def __init__(
        self,
        request: Request,
        *,
        replay: Sequence[int] = (),
        cause: BaseException | None = None,
    ) -> None:
        self.request = request
        self.decoder = IncrementalDecoder(request.codec.decode)
        self.matcher = StopMatcher(request.settings.stop)
        self.parts: list[str] = []
        self.ids: list[int] = []  # the tokens generated
        self.tokens = 0
        self.done = False
        self.replay = tuple(replay)
        self._cause = cause
        # Nobody reads its text before the end and no stop string is sought: the tokens are
        # decoded once when it finishes, not one by one (per-step Python work).
        self._plain = not request.stream and not request.settings.stop
        self._generator: torch.Generator | None = None

    def generator(self, device: torch.device) -> torch.Generator | None:
        """This row's sampling generator, seeded once (None when greedy): it lives with the
        row, so its draws continue whatever batch the row is in."""
        if self.request.settings.greedy:
            return None
        if self._generator is None:
            gen = torch.Generator(device=device)
            gen.manual_seed(self.request.seed)
            self._generator = gen
        return self._generator

    def again(self, cause: BaseException) -> Row:
        """A fresh row of this request, to run it again after its batch failed with ``cause``;
        this one is done (it sends nothing more)."""
        self.done = True
        sent = self.ids if self.request.stream and self.parts else ()
        return Row(self.request, replay=sent, cause=cause)

    def _emit(self, text: str) -> None:
        if text:
            self.parts.append(text)
            if self.tokens <= len(self.replay):
                return  # sent by the run that failed (the same tokens give the same text)
            if self.request.stream and not self.request.sink.put(text):
                self.request.cancel()

    def step(self, token_id: int) -> None:
        """Take one generated token; may finish the row."""
        if self.tokens < len(self.replay) and token_id != self.replay[self.tokens]:
            error = RuntimeError(
                f"generation failed in its batch ({self._cause!r}), and running it again "
                "did not give the text already streamed; ask again"
            )
            error.__cause__ = self._cause
            self.fail(error)
            return
        self.tokens += 1
        self.ids.append(token_id)
        if self._plain:
            if token_id in self.request.stop_ids:
                self.finish("stop")
            elif self.tokens >= self.request.settings.max_new_tokens:
                self.finish("length")
            return
        text, stopped = self.matcher.feed(self.decoder.step(token_id))
        self._emit(text)
        if stopped:
            self.finish("stop")
        elif token_id in self.request.stop_ids:
            self.finish("stop", flush=True)
        elif self.tokens >= self.request.settings.max_new_tokens:
            self.finish("length", flush=True)

    def finish(self, reason: FinishReason, *, flush: bool = False) -> None:
        """Mark the row done and send its Output (once)."""
        if self.done:
            return
        self.done = True
        if self._plain:
            self.parts = [self.request.codec.decode(self.ids)]
        elif flush:
            text, stopped = self.matcher.feed(self.decoder.flush())
            self._emit(text)
            if not stopped:
                self._emit(self.matcher.flush())
            reason = "stop" if stopped else reason
        output = Output("".join(self.parts), self.tokens, reason)
        self.request.sink.put(output)

    def fail(self, exc: BaseException) -> None:
        """Mark the row done and send ``exc`` to its consumer (once)."""
        if not self.done:
            self.done = True
            self.request.sink.put(exc)


class RowStopper(StoppingCriteria):
    """The stopping criterion of a batch: decodes each new token and finishes rows.

    A cancelled row (its consumer stopped iterating) is finished at once; ``generate`` stops
    when every row is, so an abandoned stream frees the model for the next call.
    """

    def __init__(self, rows: Sequence[Row], on_step: Callable[[], None] | None = None) -> None:
        self.rows = list(rows)
        self._on_step = on_step
        # The flags go to the device only when they change (rarely), not at every step.
        self._flags: tuple[bool, ...] = ()
        self._flags_device: torch.Tensor | None = None

    def __call__(self, input_ids: torch.LongTensor, scores: Any, **kwargs: Any) -> torch.BoolTensor:
        new = input_ids[:, -1].tolist()
        for row, token_id in zip(self.rows, new, strict=True):
            if row.done:
                continue
            if row.request.cancelled:
                row.done = True
                continue
            try:
                row.step(int(token_id))
            except Exception as exc:  # this row's own decoding: it alone fails
                row.fail(exc)
        if self._on_step is not None:
            self._on_step()
        flags = tuple(r.done for r in self.rows)
        if flags != self._flags or self._flags_device is None:
            self._flags = flags
            self._flags_device = torch.tensor(flags, dtype=torch.bool, device=input_ids.device)
        return self._flags_device  # type: ignore[return-value]
