"""The worker: one thread owns the model and runs every generation on it.

Requests from any thread or asyncio task go into one queue. When nothing runs, the worker
takes the oldest request and every compatible one waiting (up to ``max_batch_size``),
waiting a few milliseconds for concurrent callers to arrive. Two schedulers run them:

- continuous (the default, see :mod:`._continuous`): the rows decode together one step at a
  time, requests arriving meanwhile join at the next step and finished rows leave at once;
- static (``scheduling="static"``, and models whose cache layout it cannot merge): ONE
  left-padded, attention-masked ``generate`` for the batch; requests arriving meanwhile wait
  for its longest row. Each row stops on its own (see :class:`~._streaming.RowStopper`).

Greedy rows come out as they would one by one, and each result is sent as soon as its row is
done. One request never fails its neighbours: an error raised by one row's own code (its
decoding, its sampler) fails that row only, and when the batch itself fails, the rows not
yet done are run again in halves until the failing one is alone; only its caller gets the
error. A streamed row run again sends only what it had not sent yet (see ``Row.replay``).
"""

from __future__ import annotations

import atexit
import threading
import time
import weakref
from collections import deque
from collections.abc import Hashable, Sequence
from typing import Any

import torch

from ._continuous import Scheduler, supports
from ._sampling import RowSampler
from ._streaming import Request, Row, RowStopper


class WorkerClosed(RuntimeError):
    """The worker takes no more requests (closed, or its thread died): get a new one."""


def batch_key(req: Request) -> Hashable:
    """Requests with equal keys can share one ``generate`` call.

    Decoding settings are per row (see :mod:`._sampling`), so only the tokenizer-derived
    values and the batch size limit matter.
    """
    return (id(req.codec), req.pad_id, req.stop_ids, req.max_batch_size, req.continuous)


class _Loop:
    """The worker thread's state. Holds the model, never the facade, so the facade can die."""

    def __init__(self, model: Any, name: str) -> None:
        self.model = model
        self.name = name
        self.cond = threading.Condition()
        self.pending: deque[Request] = deque()
        self.closed = False
        self.busy = False
        self.steps = 0  # decoding steps run, for tests and stats
        self.batches: list[int] = []  # rows generating together, most recent last (bounded)
        self.running: list[Request] = []  # of the static generate running
        self.continuous = supports(model)  # whether its cache layout lets rows join
        self.scheduler: Scheduler | None = None  # built on the first continuous request

    def submit(self, requests: Sequence[Request]) -> None:
        with self.cond:
            if self.closed:
                raise WorkerClosed(f"the generation worker of {self.name!r} is closed")
            self.pending.extend(requests)
            self.cond.notify_all()

    def close(self) -> None:
        with self.cond:
            self.closed = True
            self.cond.notify_all()

    def shutdown(self) -> None:
        """Close now: stop running rows, fail waiting requests (interpreter exit)."""
        with self.cond:
            self.closed = True
            stranded, self.pending = list(self.pending), deque()
            running = [*self.running, *(self.scheduler.requests if self.scheduler else ())]
            for req in running:
                req.cancel()
            self.cond.notify_all()
        for req in stranded:
            req.sink.put(RuntimeError("the Python interpreter is exiting"))

    def run(self) -> None:
        try:
            while True:
                sched = self.scheduler
                if sched is not None and not sched.idle:
                    joiners = self._joiners(sched)
                    if joiners:
                        sched.admit(joiners)
                    sched.step()
                else:
                    batch = self._next_batch()
                    if batch is None:
                        return
                    if batch and batch[0].continuous and self.continuous:
                        sched = self._scheduler()
                        sched.admit(batch)
                        sched.step()
                    elif batch:
                        self._generate(batch)
                with self.cond:
                    self.busy = self.scheduler is not None and not self.scheduler.idle
                    self.cond.notify_all()
        except BaseException as exc:  # KeyboardInterrupt, SystemExit... in generation
            # Never leave a caller waiting on a dead thread.
            if self.scheduler is not None:
                self.scheduler.fail_all(exc)
            with self.cond:
                self.closed, self.busy = True, False
                self._free()  # the shared cache builds a new worker
                stranded, self.pending = list(self.pending), deque()
                self.cond.notify_all()
            for req in stranded:
                req.sink.put(RuntimeError(f"the generation worker of {self.name!r} died: {exc!r}"))
            raise

    def _free(self) -> None:
        """Drop the weights (and the scheduler holding them)."""
        self.model = None
        self.scheduler = None

    def _scheduler(self) -> Scheduler:
        if self.scheduler is None:
            self.scheduler = Scheduler(self.model, self._on_step, self._on_batch)
        return self.scheduler

    def _joiners(self, sched: Scheduler) -> list[Request]:
        """The waiting requests that may join the running batch now (no waiting)."""
        room = sched.room()
        with self.cond:
            if room <= 0 or not self.pending:
                return []
            return self._take(batch_key(sched.requests[0]), room)

    def _take(self, key: Hashable, limit: int) -> list[Request]:
        """Out of the queue (lock held): up to ``limit`` waiting requests of ``key``, oldest
        first; cancelled ones are dropped."""
        taken: list[Request] = []
        rest: deque[Request] = deque()
        for req in self.pending:
            if req.cancelled:
                continue
            if len(taken) < limit and batch_key(req) == key:
                taken.append(req)
            else:
                rest.append(req)
        self.pending = rest
        return taken

    def _on_batch(self, rows: int) -> None:
        self.batches = [*self.batches[-99:], rows]

    def _next_batch(self) -> list[Request] | None:
        with self.cond:
            while not self.pending:
                if self.closed:
                    self._free()  # free the weights now
                    return None
                self.cond.wait()
            first = self.pending[0]
            limit = max(1, first.max_batch_size)
            # Let concurrent callers join: a few ms against a generation of seconds.
            deadline = time.monotonic() + first.batch_window
            while len(self.pending) < limit and not self.closed:
                left = deadline - time.monotonic()
                if left <= 0:
                    break
                self.cond.wait(left)
            batch = self._take(batch_key(first), limit)
            self.busy = bool(batch)
            return batch

    def _on_step(self) -> None:
        self.steps += 1

    def _generate(self, batch: list[Request]) -> None:
        """Generate ``batch`` together; when that fails, run the rows not done yet again in
        halves, so that only the row that makes its batch fail gets the error."""
        self.running = batch
        work = [[Row(r) for r in batch]]  # a stack of row groups to generate
        rows: list[Row] = []
        try:
            while work:
                rows = work.pop()
                try:
                    self._run_generate(rows)
                except Exception as exc:
                    left = [r for r in rows if not r.done and not r.request.cancelled]
                    if len(rows) == 1:
                        for row in left:
                            row.fail(exc)  # alone, it is the cause: its consumer re-raises it
                        continue
                    half = (len(left) + 1) // 2
                    for part in (left[half:], left[:half]):  # the first half runs first
                        if part:
                            work.append([row.again(exc) for row in part])
                    continue
                for row in rows:
                    if not row.done:
                        row.finish("length", flush=True)
        except BaseException as exc:
            # KeyboardInterrupt, SystemExit...: the consumers re-raise it at once.
            for group in (rows, *work):
                for row in group:
                    row.fail(exc)
            raise
        finally:
            self.running = []

    def _run_generate(self, rows: list[Row]) -> None:
        from transformers import GenerationConfig, LogitsProcessorList, StoppingCriteriaList

        make_config: Any = GenerationConfig  # untyped in transformers
        model = self.model
        batch = [row.request for row in rows]
        first = batch[0]
        device = model.device
        width = max(len(r.ids) for r in batch)
        input_ids = torch.full((len(batch), width), first.pad_id, dtype=torch.long)
        attention = torch.zeros((len(batch), width), dtype=torch.long)
        for i, req in enumerate(batch):
            input_ids[i, width - len(req.ids) :] = torch.tensor(req.ids, dtype=torch.long)
            attention[i, width - len(req.ids) :] = 1
        # Greedy for transformers: sampling rows are sampled by RowSampler, per row.
        config = make_config(
            max_new_tokens=max(r.settings.max_new_tokens for r in batch),
            do_sample=False,
            repetition_penalty=1.0,
            eos_token_id=list(first.stop_ids),
            pad_token_id=first.pad_id,
            use_cache=True,
        )
        self._on_batch(len(batch))
        with torch.inference_mode():
            model.generate(
                input_ids=input_ids.to(device),
                attention_mask=attention.to(device),
                generation_config=config,
                logits_processor=LogitsProcessorList([RowSampler(rows, device)]),
                stopping_criteria=StoppingCriteriaList([RowStopper(rows, self._on_step)]),
            )


class Worker:
    """The thread that owns a loaded model and runs every generation on it.

    Shared by every :class:`~pleias_rag.local.PleiasModel` using these weights; when the last
    one is gone the thread ends and the weights are freed.

    Args:
        model: a loaded ``PreTrainedModel`` in eval mode.
        name: the model's name, for messages and the thread name.
    """

    def __init__(self, model: Any, name: str) -> None:
        self._loop = _Loop(model, name)
        self._thread = threading.Thread(
            target=_run, args=(self._loop,), name=f"pleias-rag-generate[{name}]", daemon=True
        )
        with _LIVE_LOCK:
            _LIVE[self._loop] = self._thread
        self._thread.start()
        weakref.finalize(self, self._loop.close)

    @property
    def model(self) -> Any:
        return self._loop.model

    @property
    def alive(self) -> bool:
        """Whether it takes requests: False once closed or once its thread died."""
        return not self._loop.closed and self._thread.is_alive()

    @property
    def steps(self) -> int:
        """Decoding steps run so far (all batches)."""
        return self._loop.steps

    @property
    def batch_sizes(self) -> list[int]:
        """Rows generating together after each join (continuous) or in each ``generate``
        call (static), oldest first (at most 100)."""
        return list(self._loop.batches)

    def submit(self, requests: Sequence[Request]) -> None:
        """Queue requests (atomically: one answer_batch call lands together).

        Raises:
            WorkerClosed: the worker is closed or dead (:attr:`alive` is False).
        """
        self._loop.submit(requests)

    def wait_idle(self, timeout: float | None = None) -> bool:
        """Block until nothing runs or waits; False on timeout."""
        deadline = None if timeout is None else time.monotonic() + timeout
        with self._loop.cond:
            while self._loop.busy or self._loop.pending:
                left = None if deadline is None else deadline - time.monotonic()
                if left is not None and left <= 0:
                    return False
                self._loop.cond.wait(left)
        return True

    def close(self) -> None:
        """Stop the thread once the queue is empty (also done when garbage-collected)."""
        self._loop.close()


# Worker threads still alive. At exit they are stopped and joined before torch's own teardown:
# a daemon thread left inside torch when the interpreter dies aborts the process ("terminate
# called without an active exception").
_LIVE: dict[_Loop, threading.Thread] = {}
_LIVE_LOCK = threading.Lock()
_EXIT_JOIN_SECONDS = 10.0


def _run(loop: _Loop) -> None:
    try:
        loop.run()
    finally:
        with _LIVE_LOCK:
            _LIVE.pop(loop, None)


@atexit.register
def _shutdown_all() -> None:
    with _LIVE_LOCK:
        live = list(_LIVE.items())
    for loop, _ in live:
        loop.shutdown()
    deadline = time.monotonic() + _EXIT_JOIN_SECONDS
    for _, thread in live:
        thread.join(max(0.0, deadline - time.monotonic()))
