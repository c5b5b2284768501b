"""Issue #13: a failed request of a batch keeps the answers already made, cancels the requests
in flight and those not yet sent, and leaves no request running behind the error."""

from __future__ import annotations

import asyncio
import threading
import time
from typing import Any

import pytest
from fake_server import FakeServer, Step

from pleias_rag import BatchError, PleiasAnswer
from pleias_rag.remote import RemoteBackend, RemoteBatchError, RemoteError, RemoteStatusError

pytestmark = pytest.mark.timeout(30)

SOURCES = ["The Eiffel Tower was completed in 1889."]
# Two at once: Q0 answers at once, Q1 fails at 0.3 s, Q2 (sent when Q0 is done) is in flight
# then (it would answer at 1.5 s): cancelled; Q3 is never sent.
ROUTES = {
    "Q0?": Step(),
    "Q1?": Step(status=400, error="bad prompt", delay=0.3),
    "Q2?": Step(delay=1.5),
    "Q3?": Step(delay=1.5),
}
ITEMS = [(f"Q{i}?", SOURCES) for i in range(4)]


def backend(url: str, **kwargs: Any) -> RemoteBackend:
    kwargs.setdefault("max_concurrency", 2)
    return RemoteBackend(url, "fake", dialect="hash", timeout=10.0, **kwargs)


def check(err: RemoteBatchError, fake: FakeServer) -> None:
    results = err.results
    assert len(results) == 4
    assert isinstance(results[0], PleiasAnswer) and results[0].answer == "The answer."
    assert isinstance(results[1], RemoteStatusError) and results[1].status == 400
    assert results[2] is None  # in flight at the failure: cancelled
    assert results[3] is None  # not sent
    assert err.errors == [results[1]] and err.__cause__ is results[1]
    assert isinstance(err, RemoteError) and err.status == 400
    assert isinstance(err, RemoteStatusError)  # the kind of the first failure
    message = str(err)
    assert "1 of 4 requests" in message and "bad prompt" in message
    assert "2 cancelled or not sent" in message
    prompts = [r.body["prompt"] for r in fake.completions]
    assert not any("Q3?" in p for p in prompts)
    assert fake.disconnected.wait(3), "the request in flight was not cancelled"


def test_a_failed_batch_keeps_the_finished_answers() -> None:
    with FakeServer(routes=ROUTES) as fake:
        b = backend(fake.base_url)
        started = time.monotonic()
        with pytest.raises(RemoteBatchError) as info:
            b.answer_batch(ITEMS)
        assert time.monotonic() - started < 1.0, "the error waited for the request in flight"
        check(info.value, fake)
        running = [t for t in threading.enumerate() if t.name.startswith("pleias-remote")]
        assert not running, "pool threads still run after the error"


async def test_a_failed_async_batch_keeps_the_finished_answers() -> None:
    with FakeServer(routes=ROUTES) as fake:
        b = backend(fake.base_url)
        started = time.monotonic()
        with pytest.raises(RemoteBatchError) as info:
            await b.aanswer_batch(ITEMS)
        assert time.monotonic() - started < 1.0, "the error waited for the request in flight"
        check(info.value, fake)


def test_a_sync_batch_runs_inside_a_running_event_loop() -> None:
    # The sync batch runs its requests on a loop of its own: a caller's loop is no obstacle.
    async def inside() -> list[PleiasAnswer]:
        return backend(fake.base_url).answer_batch(ITEMS[:2])

    with FakeServer() as fake:
        answers = asyncio.run(inside())
    assert [a.answer for a in answers] == ["The answer."] * 2


def test_a_batch_error_is_a_pleias_batch_error() -> None:
    with FakeServer(routes=ROUTES) as fake, pytest.raises(BatchError) as info:
        backend(fake.base_url).answer_batch(ITEMS)
    assert isinstance(info.value, RemoteBatchError)


def test_a_batch_that_succeeds_is_unchanged() -> None:
    with FakeServer([Step(delay=0.05)]) as fake:
        answers = backend(fake.base_url).answer_batch(ITEMS)
        assert [a.answer for a in answers] == ["The answer."] * 4


def test_a_failed_batch_is_prompt_when_nothing_is_in_flight() -> None:
    with FakeServer([Step(status=400), Step(delay=5)]) as fake:
        b = backend(fake.base_url, max_concurrency=1)
        started = time.monotonic()
        with pytest.raises(RemoteBatchError) as info:
            b.answer_batch([("Q?", SOURCES)] * 3)
        assert time.monotonic() - started < 3
        assert isinstance(info.value.results[0], RemoteStatusError)
        assert info.value.results[1:] == [None, None]
        assert len(fake.completions) == 1
