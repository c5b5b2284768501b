"""Faults against real local servers (127.0.0.1 sockets, no mocked client): each ends in the
documented exception or result within its time bound, and nothing hangs."""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from fake_server import HERE_FILE, FakeServer, Step

from pleias_rag import AnswerDelta, Finished
from pleias_rag.remote import (
    RemoteBackend,
    RemoteConnectionError,
    RemoteError,
    RemoteStatusError,
    RemoteTimeoutError,
)

pytestmark = pytest.mark.timeout(60)

SOURCES = ["The Eiffel Tower was completed in 1889."]


def backend(url: str, **kwargs: Any) -> RemoteBackend:
    kwargs.setdefault("dialect", "hash")
    kwargs.setdefault("backoff", 0.02)
    kwargs.setdefault("timeout", 10.0)
    return RemoteBackend(url, "fake", **kwargs)


@contextlib.contextmanager
def elapsed_below(seconds: float) -> Iterator[None]:
    started = time.monotonic()
    yield
    took = time.monotonic() - started
    assert took < seconds, f"took {took:.2f} s, bound {seconds} s"


def closed_port() -> int:
    import socket

    with contextlib.closing(socket.socket()) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])  # nothing listens once it is closed


# --- server not started -----------------------------------------------------------------


def test_server_not_started_is_a_connection_error_after_the_retries() -> None:
    url = f"http://127.0.0.1:{closed_port()}/v1"
    b = backend(url, max_retries=2)
    with elapsed_below(5), pytest.raises(RemoteConnectionError) as info:
        b.answer("When?", SOURCES)
    message = str(info.value)
    assert f"vLLM server at {url}" in message and "after 3 tries" in message
    assert info.value.status is None and isinstance(info.value, ConnectionError)


async def test_server_not_started_async_and_stream() -> None:
    url = f"http://127.0.0.1:{closed_port()}/v1"
    b = backend(url, max_retries=1)
    with elapsed_below(5):
        with pytest.raises(RemoteConnectionError):
            await b.aanswer("When?", SOURCES)
        with pytest.raises(RemoteConnectionError):
            [e async for e in b.astream("When?", SOURCES)]
        with pytest.raises(RemoteConnectionError):
            list(b.stream("When?", SOURCES))
        with pytest.raises(RemoteConnectionError):
            await b.aanswer_batch([("When?", SOURCES)] * 3)


# --- killed mid-stream ------------------------------------------------------------------


def test_server_killed_mid_stream_raises_and_does_not_hang(tmp_path: Path) -> None:
    port_file = tmp_path / "port"
    proc = subprocess.Popen([sys.executable, str(HERE_FILE), str(port_file)])
    try:
        deadline = time.monotonic() + 20
        while not port_file.exists() or not port_file.read_text():
            assert time.monotonic() < deadline and proc.poll() is None, "fake server did not start"
            time.sleep(0.05)
        b = backend(f"http://127.0.0.1:{port_file.read_text()}/v1", max_retries=3)
        events = b.stream("When?", SOURCES)
        deltas = 0
        with elapsed_below(10), pytest.raises(RemoteConnectionError) as info:
            for event in events:
                if isinstance(event, AnswerDelta):
                    deltas += 1
                    if deltas == 3:
                        os.kill(proc.pid, signal.SIGKILL)
        assert deltas >= 3
        assert "closed the connection in the middle of the stream" in str(info.value)
    finally:
        proc.kill()
        proc.wait(10)


def test_connection_dropped_mid_stream() -> None:
    step = Step(chunks=["<|answer_start|>The ", "answer ", "is ", "here."], drop_after=2)
    with FakeServer([step]) as fake:
        b = backend(fake.base_url)
        got: list[Any] = []
        with elapsed_below(5), pytest.raises(RemoteConnectionError):
            got.extend(b.stream("When?", SOURCES))
        assert len(fake.completions) == 1  # a broken stream is not sent again


async def test_connection_dropped_mid_stream_async() -> None:
    step = Step(chunks=["<|answer_start|>The ", "answer ", "is ", "here."], drop_after=2)
    with FakeServer([step]) as fake:
        b = backend(fake.base_url)
        with elapsed_below(5), pytest.raises(RemoteConnectionError):
            [e async for e in b.astream("When?", SOURCES)]


def test_stream_without_done_is_an_error() -> None:
    with (
        FakeServer([Step(done=False)]) as fake,
        pytest.raises(RemoteConnectionError, match=r"without its \[DONE\]"),
    ):
        list(backend(fake.base_url).stream("When?", SOURCES))


def test_error_event_in_the_stream() -> None:
    error = {"error": {"message": "engine died", "code": 500}}
    with FakeServer([Step(chunks=["<|answer_start|>The", error], done=False)]) as fake:
        with pytest.raises(RemoteStatusError, match="engine died") as info:
            list(backend(fake.base_url).stream("When?", SOURCES))
        assert info.value.status == 500 and len(fake.completions) == 1


# --- slow beyond the timeout ------------------------------------------------------------


def test_slow_answer_times_out_without_retry() -> None:
    with FakeServer([Step(delay=3.0)]) as fake:
        b = backend(fake.base_url, timeout=0.5, max_retries=3)
        with elapsed_below(2.0), pytest.raises(RemoteTimeoutError) as info:
            b.answer("When?", SOURCES)
        assert "0.5 s deadline" in str(info.value) and isinstance(info.value, TimeoutError)
        assert len(fake.completions) == 1


def test_slow_stream_times_out_between_chunks() -> None:
    step = Step(chunks=["<|answer_start|>The ", "answer."], chunk_delay=3.0)
    with FakeServer([step]) as fake:
        b = backend(fake.base_url, timeout=0.5)
        got: list[Any] = []
        with elapsed_below(2.0), pytest.raises(RemoteTimeoutError, match="whole stream"):
            got.extend(b.stream("When?", SOURCES))


async def test_slow_answer_times_out_async() -> None:
    with FakeServer([Step(delay=3.0)]) as fake:
        b = backend(fake.base_url, timeout=0.5)
        with elapsed_below(2.0), pytest.raises(RemoteTimeoutError):
            await b.aanswer("When?", SOURCES)
        with elapsed_below(2.0), pytest.raises(RemoteTimeoutError):
            await b.aanswer_batch([("When?", SOURCES)] * 2)


# --- retries ----------------------------------------------------------------------------


@pytest.mark.parametrize("status", [500, 502, 503, 429])
def test_retryable_status_then_success(status: int) -> None:
    with FakeServer([Step(status=status), Step(status=status), Step()]) as fake:
        b = backend(fake.base_url, max_retries=2)
        with elapsed_below(3):
            answer = b.answer("When?", SOURCES)
        assert answer.answer == "The answer."
        assert len(fake.completions) == 3


async def test_500_then_success_async_and_stream() -> None:
    with FakeServer([Step(status=500), Step()]) as fake:
        b = backend(fake.base_url, max_retries=1)
        assert (await b.aanswer("When?", SOURCES)).answer == "The answer."
    with FakeServer([Step(status=500), Step()]) as fake:
        b = backend(fake.base_url, max_retries=1)
        events = list(b.stream("When?", SOURCES))
        assert isinstance(events[-1], Finished) and events[-1].answer.answer == "The answer."
    with FakeServer([Step(status=503), Step()]) as fake:
        b = backend(fake.base_url, max_retries=1)
        events = [e async for e in b.astream("When?", SOURCES)]
        assert isinstance(events[-1], Finished) and events[-1].answer.answer == "The answer."


def test_retry_after_is_honoured() -> None:
    with FakeServer([Step(status=429, headers={"Retry-After": "1"}), Step()]) as fake:
        b = backend(fake.base_url, max_retries=1, backoff=0.0)
        started = time.monotonic()
        b.answer("When?", SOURCES)
        assert 0.9 < time.monotonic() - started < 5


def test_retries_exhausted_names_server_status_and_tries() -> None:
    with FakeServer([Step(status=503, error="overloaded")]) as fake:
        b = backend(fake.base_url, max_retries=2)
        with elapsed_below(3), pytest.raises(RemoteStatusError) as info:
            b.answer("When?", SOURCES)
        err = info.value
        assert err.status == 503 and len(fake.completions) == 3
        assert str(err).startswith(f"the vLLM server at {fake.base_url} answered 503")
        assert "overloaded" in str(err) and "after 3 tries" in str(err)


@pytest.mark.parametrize("status", [400, 401, 404, 422])
def test_4xx_is_not_retried(status: int) -> None:
    with FakeServer([Step(status=status, error="bad prompt"), Step()]) as fake:
        b = backend(fake.base_url, max_retries=5)
        with elapsed_below(2), pytest.raises(RemoteStatusError) as info:
            b.answer("When?", SOURCES)
        assert info.value.status == status and "bad prompt" in str(info.value)
        assert len(fake.completions) == 1


async def test_400_async_stream_not_retried() -> None:
    with FakeServer([Step(status=400, error="too long")]) as fake:
        b = backend(fake.base_url, max_retries=5)
        with pytest.raises(RemoteStatusError, match="too long"):
            [e async for e in b.astream("When?", SOURCES)]
        with pytest.raises(RemoteStatusError, match="too long"):
            list(b.stream("When?", SOURCES))
        assert len(fake.completions) == 2


def test_errors_are_remote_errors() -> None:
    assert issubclass(RemoteStatusError, RemoteError)
    assert issubclass(RemoteTimeoutError, RemoteError)
    assert issubclass(RemoteConnectionError, RemoteError)


# --- cancellation -----------------------------------------------------------------------


SLOW = Step(chunks=["<|answer_start|>", *(["word "] * 400)], chunk_delay=0.01)


def test_breaking_out_of_a_stream_closes_the_connection() -> None:
    with FakeServer([SLOW]) as fake:
        b = backend(fake.base_url)
        events = b.stream("When?", SOURCES)
        for event in events:
            if isinstance(event, AnswerDelta):
                break
        events.close()  # type: ignore[attr-defined]
        assert fake.disconnected.wait(3), "the server kept streaming to a closed stream"


async def test_cancelling_an_async_stream_closes_the_connection() -> None:
    with FakeServer([SLOW]) as fake:
        b = backend(fake.base_url)

        async def consume() -> None:
            async for _ in b.astream("When?", SOURCES):
                pass

        task = asyncio.ensure_future(consume())
        await asyncio.sleep(0.5)
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        assert await asyncio.to_thread(fake.disconnected.wait, 3)


# --- batches ----------------------------------------------------------------------------


def test_batch_respects_the_concurrency_limit() -> None:
    with FakeServer([Step(delay=0.2)]) as fake:
        b = backend(fake.base_url, max_concurrency=3)
        answers = b.answer_batch([(f"Q{i}?", SOURCES) for i in range(9)])
        assert [a.answer for a in answers] == ["The answer."] * 9
        assert fake.max_active == 3
        prompts = [r.body["prompt"] for r in fake.completions]
        assert sorted(prompts) == sorted(b.encode(f"Q{i}?", SOURCES).prompt for i in range(9))


async def test_async_batch_respects_the_concurrency_limit() -> None:
    with FakeServer([Step(delay=0.2)]) as fake:
        b = backend(fake.base_url, max_concurrency=4)
        with elapsed_below(3):
            answers = await b.aanswer_batch([(f"Q{i}?", SOURCES) for i in range(8)])
        assert len(answers) == 8 and fake.max_active == 4


def test_batch_failure_raises_promptly() -> None:
    with FakeServer([Step(status=400), Step(delay=5)]) as fake:
        b = backend(fake.base_url, max_concurrency=1)
        with elapsed_below(3), pytest.raises(RemoteStatusError):
            b.answer_batch([("Q?", SOURCES)] * 3)
