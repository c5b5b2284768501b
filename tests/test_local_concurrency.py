"""PleiasModel under concurrency: threads, asyncio, cancellation, errors, interpreter exit."""

from __future__ import annotations

import asyncio
import subprocess
import sys
import textwrap
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("transformers")

from pleias_rag import AnswerDelta, Finished, PleiasAnswer  # noqa: E402
from pleias_rag.local import PleiasModel  # noqa: E402
from pleias_rag.testing import TRAINING_EXAMPLES  # noqa: E402

NEW = 160
LONG = {"max_new_tokens": 1500, "min_new_tokens": 1500}  # far longer than any test waits


@pytest.fixture(scope="module")
def model(tiny_trained_model_numbered: Path) -> Any:
    return PleiasModel.from_pretrained(tiny_trained_model_numbered, max_batch_size=16).load()


@pytest.fixture(scope="module")
def reference(model: Any) -> list[PleiasAnswer]:
    # One batch (test_local_model checks that batched answers equal one-by-one answers).
    return list(model.answer_batch([example(i) for i in range(6)], max_new_tokens=NEW))


@pytest.fixture(scope="module")
def rand(tiny_random_model_hash: Path) -> Any:
    return PleiasModel.from_pretrained(tiny_random_model_hash).load()


def example(i: int) -> tuple[str, list[str]]:
    ex = TRAINING_EXAMPLES["numbered"][i % len(TRAINING_EXAMPLES["numbered"])]
    return ex.query, list(ex.sources)


def assert_stops_soon(model: Any, steps_before: int, limit: int = 1500) -> None:
    """The worker goes idle long before ``limit`` decoding steps: generation was stopped."""
    assert model.worker.wait_idle(timeout=60)
    assert model.worker.steps - steps_before < limit // 2


# --------------------------------------------------------------------------- threads


def test_concurrent_threads_get_the_sequential_answers(
    model: Any, reference: list[PleiasAnswer]
) -> None:
    n = 16
    results: list[PleiasAnswer | None] = [None] * n
    barrier = threading.Barrier(n)

    def work(i: int) -> None:
        barrier.wait()
        q, s = example(i)
        results[i] = model.answer(q, s, max_new_tokens=NEW)

    before = len(model.worker.batch_sizes)
    threads = [threading.Thread(target=work, args=(i,)) for i in range(n)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=300)
    assert results == [reference[i % len(reference)] for i in range(n)]
    sizes = model.worker.batch_sizes[before:]
    assert 1 < max(sizes) <= n  # calls were coalesced: rows generating together


def test_threads_mixing_stream_batch_and_answer(model: Any, reference: list[PleiasAnswer]) -> None:
    out: dict[str, Any] = {}

    def streamer() -> None:
        events = list(model.stream(*example(1), max_new_tokens=NEW))
        out["stream"] = events[-1].answer

    def batcher() -> None:
        out["batch"] = model.answer_batch([example(i) for i in range(4)], max_new_tokens=NEW)

    def single() -> None:
        out["single"] = model.answer(*example(5), max_new_tokens=NEW)

    threads = [threading.Thread(target=f) for f in (streamer, batcher, single)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=300)
    assert out["stream"] == reference[1]
    assert out["batch"] == reference[:4]
    assert out["single"] == reference[5]


# --------------------------------------------------------------------------- asyncio


async def test_concurrent_tasks_get_the_sequential_answers(
    model: Any, reference: list[PleiasAnswer]
) -> None:
    before = len(model.worker.batch_sizes)
    got = await asyncio.gather(*(model.aanswer(*example(i), max_new_tokens=NEW) for i in range(16)))
    assert got == [reference[i % len(reference)] for i in range(16)]
    assert max(model.worker.batch_sizes[before:]) > 1


async def test_astream_and_aanswer_batch(model: Any, reference: list[PleiasAnswer]) -> None:
    events = [e async for e in model.astream(*example(0), max_new_tokens=NEW)]
    assert isinstance(events[-1], Finished)
    assert events[-1].answer == reference[0]
    deltas = "".join(e.text for e in events if isinstance(e, AnswerDelta))
    assert deltas == reference[0].answer
    got = await model.aanswer_batch([example(i) for i in range(6)], max_new_tokens=NEW)
    assert got == reference


async def test_the_event_loop_is_never_blocked(rand: Any) -> None:
    ticks = 0
    stop = asyncio.Event()

    async def ticker() -> None:
        nonlocal ticks
        while not stop.is_set():
            ticks += 1
            await asyncio.sleep(0.005)

    task = asyncio.create_task(ticker())
    await asyncio.sleep(0)
    started = time.monotonic()
    await rand.aanswer("q?", ["s"], max_new_tokens=300, min_new_tokens=300)
    elapsed = time.monotonic() - started
    stop.set()
    await task
    # The ticker ran all along (at least a third of the ticks it would get with nothing else).
    assert ticks >= max(3, elapsed / 0.005 / 3)


# --------------------------------------------------------------------------- cancellation


def test_abandoned_stream_stops_generation(rand: Any) -> None:
    rand.worker.wait_idle(timeout=60)
    steps = rand.worker.steps
    for event in rand.stream("q?", ["s"], **LONG):
        assert event is not None
        break  # the consumer stops: the generator is closed, its row is cancelled
    assert_stops_soon(rand, steps)
    # The model is free for the next call at once.
    ans = rand.answer("q?", ["s"], max_new_tokens=4)
    assert ans.completion_tokens == 4


def test_closing_a_stream_midway(rand: Any) -> None:
    rand.worker.wait_idle(timeout=60)
    steps = rand.worker.steps
    stream = rand.stream("q?", ["s"], **LONG)
    # (A random model writes no answer: after SectionStarted the next event is the end.)
    assert next(stream) is not None
    stream.close()
    assert_stops_soon(rand, steps)


def test_cancelled_stream_does_not_disturb_its_batch_neighbour(
    model: Any, reference: list[PleiasAnswer]
) -> None:
    result: dict[str, Any] = {}

    def other() -> None:
        result["answer"] = model.answer(*example(2), max_new_tokens=NEW)

    stream = model.stream(*example(0), **LONG)
    next(stream)
    t = threading.Thread(target=other)
    t.start()
    stream.close()
    t.join(timeout=300)
    assert result["answer"] == reference[2]


async def test_cancelled_task_stops_generation(rand: Any) -> None:
    await asyncio.to_thread(rand.worker.wait_idle, 60)
    steps = rand.worker.steps
    task = asyncio.create_task(rand.aanswer("q?", ["s"], **LONG))
    while rand.worker.steps == steps:  # wait until it is generating
        await asyncio.sleep(0.01)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    await asyncio.to_thread(assert_stops_soon, rand, steps)


async def test_abandoned_astream_stops_generation(rand: Any) -> None:
    await asyncio.to_thread(rand.worker.wait_idle, 60)
    steps = rand.worker.steps
    stream = rand.astream("q?", ["s"], **LONG)
    async for _ in stream:
        break
    await stream.aclose()
    await asyncio.to_thread(assert_stops_soon, rand, steps)


# --------------------------------------------------------------------------- errors


class Boom(RuntimeError):
    pass


@pytest.fixture
def failing(tiny_random_model_numbered: Path) -> Iterator[tuple[Any, dict[str, int]]]:
    """A model (own weights: eager attention) whose forward fails after ``after`` calls."""
    pm = PleiasModel.from_pretrained(
        tiny_random_model_numbered, model_kwargs={"attn_implementation": "eager"}
    )
    inner = pm.model
    real = inner.forward
    state = {"calls": 0, "after": 3}

    def forward(*args: Any, **kwargs: Any) -> Any:
        state["calls"] += 1
        if state["calls"] > state["after"]:
            raise Boom("forward failed")
        return real(*args, **kwargs)

    inner.forward = forward
    try:
        yield pm, state
    finally:
        inner.forward = real


def test_generation_errors_reach_the_caller(failing: tuple[Any, dict[str, int]]) -> None:
    pm, state = failing
    with pytest.raises(Boom, match="forward failed"):
        pm.answer("q?", ["s"], **LONG)
    state.update(calls=0, after=5)
    events: list[Any] = []
    started = time.monotonic()
    with pytest.raises(Boom):
        for event in pm.stream("q?", ["s"], **LONG):
            events.append(event)
    assert events  # text came before the failure, then the error at once
    assert time.monotonic() - started < 60
    state.update(calls=0, after=1)
    with pytest.raises(Boom):
        pm.answer_batch([("a?", []), ("b?", ["s"])], **LONG)
    state.update(calls=0, after=10**9)
    assert pm.answer("q?", ["s"], max_new_tokens=3).completion_tokens == 3  # worker survived


async def test_generation_errors_reach_async_callers(
    failing: tuple[Any, dict[str, int]],
) -> None:
    pm, state = failing
    with pytest.raises(Boom):
        await pm.aanswer("q?", ["s"], **LONG)
    state.update(calls=0)
    with pytest.raises(Boom):
        async for _ in pm.astream("q?", ["s"], **LONG):
            pass


def test_interpreter_exit_is_clean_with_a_generation_running(
    tiny_random_model_hash: Path,
) -> None:
    code = textwrap.dedent(
        f"""
        from pleias_rag import PleiasModel
        m = PleiasModel.from_pretrained({str(tiny_random_model_hash)!r})
        print(m.answer("q?", ["s"], max_new_tokens=3).completion_tokens)
        stream = m.stream("q?", ["s"], max_new_tokens=1500, min_new_tokens=1500)
        next(stream)
        """
    )
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == "3"
    assert "terminate called" not in proc.stderr
