"""The async client of each event loop: kept and reused by the async calls on that loop, closed
by ``aclose`` / ``async with`` / ``close()`` / the end of ``asyncio.run``; closing one stream
early closes its connection, not the client. Real sockets against the scripted server: the
connections are counted where the server accepts and closes them."""

from __future__ import annotations

import asyncio
import gc
import logging
import threading
import time
import warnings
from collections.abc import AsyncGenerator
from concurrent.futures import ThreadPoolExecutor
from socket import socket
from typing import Any

import pytest
from fake_server import FakeServer, Step

from pleias_rag import AnswerDelta, Finished
from pleias_rag.remote import RemoteBackend, RemoteStatusError

pytestmark = pytest.mark.timeout(60)

SOURCES = ["The Eiffel Tower was completed in 1889."]
SLOW = Step(chunks=["<|answer_start|>", *(["word "] * 400)], chunk_delay=0.01)


def backend(url: str, **kwargs: Any) -> RemoteBackend:
    kwargs.setdefault("dialect", "hash")
    kwargs.setdefault("backoff", 0.02)
    kwargs.setdefault("timeout", 10.0)
    return RemoteBackend(url, "fake", **kwargs)


class Connections:
    """Counts the TCP connections the fake server accepts, and those that ended."""

    def __init__(self, fake: FakeServer, monkeypatch: pytest.MonkeyPatch) -> None:
        self.accepted = 0
        self.ended = 0
        self._cond = threading.Condition()
        server = fake._server
        get_request, shutdown_request = server.get_request, server.shutdown_request

        def accept() -> tuple[socket, Any]:
            got = get_request()
            with self._cond:
                self.accepted += 1
            return got

        def ended(request: Any) -> None:  # the handler is done: the client closed it
            shutdown_request(request)
            with self._cond:
                self.ended += 1
                self._cond.notify_all()

        monkeypatch.setattr(server, "get_request", accept)
        monkeypatch.setattr(server, "shutdown_request", ended)

    def wait_ended(self, count: int, timeout: float = 3.0) -> bool:
        with self._cond:
            return self._cond.wait_for(lambda: self.ended >= count, timeout)

    async def await_ended(self, count: int, timeout: float = 3.0) -> bool:
        return await asyncio.to_thread(self.wait_ended, count, timeout)


@pytest.fixture
def fake() -> Any:
    with FakeServer([Step()]) as server:
        yield server


async def test_async_calls_on_one_loop_reuse_one_connection(
    fake: FakeServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    conns = Connections(fake, monkeypatch)
    b = backend(fake.base_url)
    for _ in range(3):
        assert (await b.aanswer("When?", SOURCES)).answer == "The answer."
    assert (await b.aanswer_batch([("When?", SOURCES)]))[0].answer == "The answer."
    events = [e async for e in b.astream("When?", SOURCES)]
    assert isinstance(events[-1], Finished)
    # One connection for all five; the stream took it from the pool too, and, ending at its
    # [DONE] event before the end of the HTTP body, leaves it closed.
    assert len(fake.completions) == 5 and conns.accepted == 1
    assert await conns.await_ended(1)
    assert (await b.aanswer("When?", SOURCES)).answer == "The answer."
    assert conns.accepted == 2
    await b.aclose()
    assert await conns.await_ended(2)


async def test_batches_on_one_loop_reuse_their_connections(monkeypatch: pytest.MonkeyPatch) -> None:
    with FakeServer([Step(delay=0.2)]) as fake:
        conns = Connections(fake, monkeypatch)
        async with backend(fake.base_url, max_concurrency=3) as b:
            await b.aanswer_batch([(f"Q{i}?", SOURCES) for i in range(6)])
            first = conns.accepted
            assert 1 <= first <= 3
            await b.aanswer_batch([(f"Q{i}?", SOURCES) for i in range(6)])
            assert conns.accepted == first and len(fake.completions) == 12


def test_each_event_loop_gets_its_client_closed_with_the_loop(
    fake: FakeServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    conns = Connections(fake, monkeypatch)
    b = backend(fake.base_url)

    async def two_calls() -> str:
        await b.aanswer("When?", SOURCES)
        return (await b.aanswer("When?", SOURCES)).answer

    assert asyncio.run(two_calls()) == "The answer."
    assert conns.accepted == 1
    assert conns.wait_ended(1), "asyncio.run left the loop's connection open"
    assert asyncio.run(two_calls()) == "The answer."
    assert conns.accepted == 2 and conns.wait_ended(2)
    assert b.answer("When?", SOURCES).answer == "The answer."  # the sync client is its own
    b.close()
    assert conns.accepted == 3 and conns.wait_ended(3)


def test_loops_in_several_threads_at_once(fake: FakeServer) -> None:
    b = backend(fake.base_url, max_concurrency=2)

    def run() -> list[str]:
        answers = asyncio.run(b.aanswer_batch([("When?", SOURCES)] * 4))
        return [a.answer for a in answers]

    with ThreadPoolExecutor(3) as pool:
        results = list(pool.map(lambda _: run(), range(3)))
    assert results == [["The answer."] * 4] * 3


def test_a_loop_closed_without_shutting_down_does_not_break_the_next(fake: FakeServer) -> None:
    b = backend(fake.base_url)
    loop = asyncio.new_event_loop()
    try:
        assert loop.run_until_complete(b.aanswer("When?", SOURCES)).answer == "The answer."
    finally:
        loop.close()  # no shutdown_asyncgens(): its client is forgotten, not reused
    with warnings.catch_warnings():
        # Its pooled socket could not be closed on its loop: the garbage collector does it.
        warnings.simplefilter("ignore", ResourceWarning)
        assert asyncio.run(b.aanswer("When?", SOURCES)).answer == "The answer."
        gc.collect()
    b.close()


async def test_async_with_closes_the_client(
    fake: FakeServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    conns = Connections(fake, monkeypatch)
    async with backend(fake.base_url) as b:
        assert isinstance(b, RemoteBackend)
        await b.aanswer("When?", SOURCES)
        assert conns.ended == 0
    assert await conns.await_ended(1), "async with left the connection open"
    # The backend still works after aclose(): a new client (and connection) for this loop.
    assert (await b.aanswer("When?", SOURCES)).answer == "The answer."
    assert conns.accepted == 2
    await b.aclose()
    await b.aclose()  # closing twice is fine
    assert await conns.await_ended(2)


async def test_sync_close_on_a_running_loop_closes_its_client(
    fake: FakeServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    conns = Connections(fake, monkeypatch)
    b = backend(fake.base_url)
    with b:
        await b.aanswer("When?", SOURCES)
    assert await conns.await_ended(1), "close() left the loop's connection open"
    assert (await b.aanswer("When?", SOURCES)).answer == "The answer."
    assert conns.accepted == 2
    await b.aclose()


@pytest.mark.parametrize("how", ["aclose", "cancel"])
async def test_closing_a_stream_early_closes_its_connection_not_the_client(
    how: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Two answers at once leave two idle connections; the stream takes one, and closing it
    # early must close that one only: the next answer goes on the other.
    with FakeServer([Step(delay=0.3), Step(delay=0.3), SLOW, Step()]) as fake:
        conns = Connections(fake, monkeypatch)
        async with backend(fake.base_url) as b:
            await asyncio.gather(b.aanswer("A?", SOURCES), b.aanswer("B?", SOURCES))
            assert conns.accepted == 2
            if how == "aclose":
                events = b.astream("When?", SOURCES)
                assert isinstance(events, AsyncGenerator)
                async for event in events:
                    if isinstance(event, AnswerDelta):
                        break
                await events.aclose()
            else:

                async def consume() -> None:
                    async for _ in b.astream("When?", SOURCES):
                        pass

                task = asyncio.ensure_future(consume())
                await asyncio.sleep(0.3)
                task.cancel()
                with pytest.raises(asyncio.CancelledError):
                    await task
            assert await asyncio.to_thread(fake.disconnected.wait, 3), "the stream went on"
            assert await conns.await_ended(1)
            assert (await b.aanswer("When?", SOURCES)).answer == "The answer."
            assert conns.accepted == 2 and conns.ended == 1  # the other pooled connection
            events2 = [e async for e in b.astream("When?", SOURCES)]
            assert isinstance(events2[-1], Finished)
            assert conns.accepted == 2
        assert await conns.await_ended(2)


async def test_sync_and_async_give_up_alike(
    caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch
) -> None:
    with FakeServer([Step(status=503, error="overloaded")]) as fake:
        conns = Connections(fake, monkeypatch)
        b = backend(fake.base_url, max_retries=2)
        caplog.set_level(logging.WARNING, logger="pleias_rag.remote")
        messages: list[str] = []
        with pytest.raises(RemoteStatusError) as info:
            await asyncio.to_thread(b.answer, "When?", SOURCES)
        messages.append(str(info.value))
        with pytest.raises(RemoteStatusError) as info:
            await asyncio.to_thread(lambda: list(b.stream("When?", SOURCES)))
        messages.append(str(info.value))
        with pytest.raises(RemoteStatusError) as info:
            await b.aanswer("When?", SOURCES)
        messages.append(str(info.value))
        with pytest.raises(RemoteStatusError) as info:
            [e async for e in b.astream("When?", SOURCES)]
        messages.append(str(info.value))
        assert len(set(messages)) == 1 and messages[0].endswith("(after 3 tries)")
        assert "answered 503" in messages[0] and "overloaded" in messages[0]
        warnings = [r.getMessage() for r in caplog.records if r.name == "pleias_rag.remote"]
        assert len(warnings) == 8 and len(set(warnings)) == 2
        assert warnings[0].startswith("try 1 of 3 failed, trying again: the vLLM server at")
        assert warnings[1].startswith("try 2 of 3 failed")
        assert len(fake.completions) == 12
        # 4 calls: one sync connection and one async one, each reused by every try.
        assert conns.accepted == 2
        b.close()
        await b.aclose()


def test_retry_after_is_capped(monkeypatch: pytest.MonkeyPatch) -> None:
    waits: list[float] = []
    monkeypatch.setattr(time, "sleep", waits.append)
    with FakeServer([Step(status=429, headers={"Retry-After": "3600"}), Step()]) as fake:
        b = backend(fake.base_url, max_retries=1, timeout=120.0)  # the cap is within it
        with b:
            assert b.answer("When?", SOURCES).answer == "The answer."
    assert [w for w in waits if w] == [30.0]  # the server sleeps 0 s too
