"""Issue #13 (remote backend): ``timeout`` is a deadline for the whole call; malformed streams,
empty completions and the event loop during quote checks, against the scripted fake server."""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import random
import time
from collections.abc import Iterator
from typing import Any

import pytest
from fake_server import FakeServer, Step

from pleias_rag import Finished, Source, parse_response
from pleias_rag.remote import (
    RemoteBackend,
    RemoteConnectionError,
    RemoteError,
    RemoteStatusError,
    RemoteTimeoutError,
)

pytestmark = pytest.mark.timeout(20)

SOURCES = ["The Eiffel Tower was completed in 1889."]
WORDS = ["<|answer_start|>", *(["word "] * 200)]


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


def deadline_error(info: pytest.ExceptionInfo[RemoteTimeoutError], seconds: str) -> None:
    message = str(info.value)
    assert f"{seconds} s deadline" in message and "timeout=" in message, message
    assert isinstance(info.value, TimeoutError)


# --- 1. timeout is a deadline for the whole call ------------------------------------------


def test_a_trickled_answer_ends_at_the_deadline() -> None:
    # Four bytes every 50 ms: each read is quick, the whole answer takes seconds.
    with FakeServer([Step(trickle=4, chunk_delay=0.05)]) as fake:
        b = backend(fake.base_url, timeout=0.5)
        with elapsed_below(1.2), pytest.raises(RemoteTimeoutError) as info:
            b.answer("When?", SOURCES)
        deadline_error(info, "0.5")


async def test_a_trickled_answer_ends_at_the_deadline_async() -> None:
    with FakeServer([Step(trickle=4, chunk_delay=0.05)]) as fake:
        b = backend(fake.base_url, timeout=0.5)
        with elapsed_below(1.2), pytest.raises(RemoteTimeoutError) as info:
            await b.aanswer("When?", SOURCES)
        deadline_error(info, "0.5")


def test_a_trickled_stream_ends_at_the_deadline() -> None:
    with FakeServer([Step(chunks=WORDS, chunk_delay=0.05)]) as fake:
        b = backend(fake.base_url, timeout=0.6)
        got: list[Any] = []
        with elapsed_below(1.3), pytest.raises(RemoteTimeoutError) as info:
            got.extend(b.stream("When?", SOURCES))
        deadline_error(info, "0.6")
        assert got  # the first parts were delivered before the deadline


async def test_a_trickled_stream_ends_at_the_deadline_async() -> None:
    with FakeServer([Step(chunks=WORDS, chunk_delay=0.05)]) as fake:
        b = backend(fake.base_url, timeout=0.6)
        with elapsed_below(1.3), pytest.raises(RemoteTimeoutError) as info:
            [e async for e in b.astream("When?", SOURCES)]
        deadline_error(info, "0.6")


KEEPALIVE = Step(raw_chunks=[b": keep-alive\n\n"] * 200, chunk_delay=0.05)


def test_keep_alive_comments_do_not_hold_a_stream_open() -> None:
    with FakeServer([KEEPALIVE]) as fake:
        b = backend(fake.base_url, timeout=0.5)
        with elapsed_below(1.2), pytest.raises(RemoteTimeoutError) as info:
            list(b.stream("When?", SOURCES))
        deadline_error(info, "0.5")


async def test_keep_alive_comments_do_not_hold_a_stream_open_async() -> None:
    with FakeServer([KEEPALIVE]) as fake:
        b = backend(fake.base_url, timeout=0.5)
        with elapsed_below(1.2), pytest.raises(RemoteTimeoutError) as info:
            [e async for e in b.astream("When?", SOURCES)]
        deadline_error(info, "0.5")


def test_a_stream_stalled_after_its_first_parts_ends_at_the_deadline() -> None:
    # The stall starts 0.4 s in: a per-read timeout would wait 0.6 s more.
    step = Step(chunks=["<|answer_start|>The ", "answer ", "is."], chunk_delay=0.4)
    with FakeServer([step]) as fake:
        b = backend(fake.base_url, timeout=0.6)
        with elapsed_below(0.9), pytest.raises(RemoteTimeoutError):
            list(b.stream("When?", SOURCES))


def test_retries_do_not_multiply_the_timeout() -> None:
    with FakeServer([Step(status=500, delay=0.3)]) as fake:
        b = backend(fake.base_url, timeout=0.5, max_retries=5)
        with elapsed_below(0.9), pytest.raises(RemoteTimeoutError) as info:
            b.answer("When?", SOURCES)
        deadline_error(info, "0.5")
        assert len(fake.completions) == 2


async def test_retries_do_not_multiply_the_timeout_async() -> None:
    with FakeServer([Step(status=500, delay=0.3)]) as fake:
        b = backend(fake.base_url, timeout=0.5, max_retries=5)
        with elapsed_below(0.9), pytest.raises(RemoteTimeoutError) as info:
            await b.aanswer("When?", SOURCES)
        deadline_error(info, "0.5")


@pytest.mark.timeout(5)
def test_retry_after_beyond_the_deadline_is_not_waited_for() -> None:
    with FakeServer([Step(status=429, headers={"Retry-After": "3600"}), Step()]) as fake:
        b = backend(fake.base_url, timeout=1.0, max_retries=2)
        with elapsed_below(0.5), pytest.raises(RemoteTimeoutError) as info:
            b.answer("When?", SOURCES)
        deadline_error(info, "1")
        assert info.value.status == 429 and "3600" in str(info.value)
        assert isinstance(info.value.__cause__, RemoteStatusError)
        assert len(fake.completions) == 1


@pytest.mark.timeout(5)
async def test_retry_after_beyond_the_deadline_is_not_waited_for_async() -> None:
    with FakeServer([Step(status=503, headers={"Retry-After": "3600"}), Step()]) as fake:
        b = backend(fake.base_url, timeout=1.0, max_retries=2)
        with elapsed_below(0.5), pytest.raises(RemoteTimeoutError):
            [e async for e in b.astream("When?", SOURCES)]


def test_retry_after_within_the_deadline_is_still_honoured() -> None:
    with FakeServer([Step(status=429, headers={"Retry-After": "0.3"}), Step()]) as fake:
        b = backend(fake.base_url, timeout=5.0, max_retries=1, backoff=0.0)
        started = time.monotonic()
        assert b.answer("When?", SOURCES).answer == "The answer."
        assert 0.25 < time.monotonic() - started < 2


@pytest.mark.parametrize("how", ["answer", "aanswer", "stream"])
@pytest.mark.parametrize("wants", ["name", "window"])
def test_asking_the_server_for_its_model_counts_in_the_deadline(
    how: str, wants: str, tiny_trained_model_hash: Any
) -> None:
    # /v1/models takes 0.6 s and the completion 0.6 s: together over timeout=1.
    options: dict[str, Any] = (
        {"model": None} if wants == "name" else {"tokenizer": tiny_trained_model_hash}
    )
    models = {"data": [{"id": "fake", "max_model_len": 2048}]}
    with FakeServer([Step(delay=0.6)], models=models, models_delay=0.6) as fake:
        b = RemoteBackend(fake.base_url, dialect="hash", timeout=1.0, **options)
        assert (b.tokenizer is None) == (wants == "name")  # loaded now: not timed
        with elapsed_below(1.4), pytest.raises(RemoteTimeoutError) as info:
            if how == "answer":
                b.answer("When?", SOURCES)
            elif how == "aanswer":
                asyncio.run(b.aanswer("When?", SOURCES))
            else:
                list(b.stream("When?", SOURCES))
        deadline_error(info, "1")
        assert "asking the server for its model" in str(info.value)
        assert [r.path for r in fake.requests][:1] == ["/v1/models"]
        # Once known, the next call has the whole timeout for its completion.
        assert b.answer("When?", SOURCES).answer == "The answer."


def test_a_slow_but_steady_stream_within_the_deadline_succeeds() -> None:
    with FakeServer([Step(chunks=WORDS[:10], chunk_delay=0.02)]) as fake:
        events = list(backend(fake.base_url, timeout=3.0).stream("When?", SOURCES))
        assert isinstance(events[-1], Finished)


# --- 2. malformed streams -----------------------------------------------------------------


@pytest.mark.parametrize(
    "raw",
    [
        b'data: {"choices": [{"text": "The ans\n\n',  # malformed JSON
        b'data: {"choices": [{"text": "The ans',  # cut: the body ends inside the event
    ],
)
def test_a_malformed_or_cut_event_is_a_remote_error(raw: bytes) -> None:
    with FakeServer([Step(raw_chunks=[raw])]) as fake:
        with pytest.raises(RemoteError) as info:
            list(backend(fake.base_url).stream("When?", SOURCES))
        message = str(info.value)
        assert not isinstance(info.value, json.JSONDecodeError)
        assert fake.base_url in message and '{"choices": [{"text": "The ans' in message


async def test_a_malformed_event_is_a_remote_error_async() -> None:
    with FakeServer([Step(raw_chunks=[b"data: {nope}\n\n"])]) as fake:
        with pytest.raises(RemoteError, match=r"\{nope\}") as info:
            [e async for e in backend(fake.base_url).astream("When?", SOURCES)]
        assert not isinstance(info.value, json.JSONDecodeError)


def test_json_answer_to_a_stream_request_says_what_came_back() -> None:
    answer = {"choices": [{"text": "<|answer_start|>Hi", "finish_reason": "stop"}]}
    with FakeServer([Step(raw_json=answer)]) as fake:
        with pytest.raises(RemoteError) as info:
            list(backend(fake.base_url).stream("When?", SOURCES))
        message = str(info.value)
        assert "application/json" in message and '{"choices"' in message, message
        assert "[DONE]" not in message and not isinstance(info.value, RemoteConnectionError)
        assert len(fake.completions) == 1


@pytest.mark.parametrize("how", ["stream", "astream"])
def test_json_answer_without_content_type_to_a_stream_request_says_what_came_back(
    how: str,
) -> None:
    # No Content-Type to refuse it by: the body, which has no line of an event stream, tells.
    answer = json.dumps({"choices": [{"text": "<|answer_start|>Hi", "finish_reason": "stop"}]})
    with FakeServer([Step(raw_chunks=[answer.encode()], content_type="")]) as fake:
        b = backend(fake.base_url)
        with pytest.raises(RemoteError) as info:
            if how == "stream":
                list(b.stream("When?", SOURCES))
            else:
                asyncio.run(_events(b.astream("When?", SOURCES)))
        message = str(info.value)
        assert "no Content-Type, not an event stream" in message and '{"choices"' in message
        assert "[DONE]" not in message and not isinstance(info.value, RemoteConnectionError)


async def _events(stream: Any) -> list[Any]:
    return [e async for e in stream]


async def test_html_answer_to_a_stream_request_says_what_came_back() -> None:
    page = Step(raw_chunks=[b"<html><body>Please log in</body></html>"], content_type="text/html")
    with FakeServer([page]) as fake:
        with pytest.raises(RemoteError) as info:
            [e async for e in backend(fake.base_url).astream("When?", SOURCES)]
        message = str(info.value)
        assert "text/html" in message and "<html><body>Please log in" in message, message


# --- 3. empty completions -----------------------------------------------------------------


def test_an_empty_completion_is_an_error() -> None:
    with FakeServer([Step(text="")]) as fake:
        with pytest.raises(RemoteError, match="returned no text") as info:
            backend(fake.base_url).answer("When?", SOURCES)
        assert fake.base_url in str(info.value)


async def test_a_stream_of_no_choice_is_an_error() -> None:
    with FakeServer([Step(chunks=[{"choices": []}])]) as fake:
        b = backend(fake.base_url)
        with pytest.raises(RemoteError, match="returned no text"):
            list(b.stream("When?", SOURCES))
        with pytest.raises(RemoteError, match="returned no text"):
            [e async for e in b.astream("When?", SOURCES)]


def test_an_empty_stream_is_an_error() -> None:
    with (
        FakeServer([Step(chunks=[""])]) as fake,
        pytest.raises(RemoteError, match="returned no text"),
    ):
        list(backend(fake.base_url).stream("When?", SOURCES))


def test_an_empty_completion_cut_by_max_tokens_is_an_answer_with_a_warning(
    caplog: pytest.LogCaptureFixture,
) -> None:
    with FakeServer([Step(text="", finish_reason="length")]) as fake:
        with caplog.at_level(logging.WARNING, logger="pleias_rag.remote"):
            answer = backend(fake.base_url).answer("When?", SOURCES, max_new_tokens=1)
        assert answer.raw == "" and answer.truncated
        assert any("returned no text" in r.getMessage() for r in caplog.records)


# --- 6. quote checks stay off the event loop ----------------------------------------------


def _long_quotes() -> tuple[Source, str]:
    rng = random.Random(7)
    words = ["alpha", "beta", "gamma", "delta", "omega", "tower", "river", "stone"]

    def text(n: int) -> str:
        return " ".join(f"{rng.choice(words)}{rng.randint(0, 99)}" for _ in range(n))

    source = Source(text(100_000))
    refs = "".join(f'Claim {i}<ref name="{source.id}">"{text(300)}"</ref>. ' for i in range(10))
    raw = f"<|source_analysis_start|>x<|source_analysis_end|>\n<|answer_start|>{refs}"
    return source, raw + "<|answer_end|>"


async def _max_gap_while(work: Any) -> tuple[float, Any]:
    gaps: list[float] = []
    stop = asyncio.Event()

    async def heartbeat() -> None:
        last = time.monotonic()
        while not stop.is_set():
            await asyncio.sleep(0.005)
            now = time.monotonic()
            gaps.append(now - last)
            last = now

    beat = asyncio.ensure_future(heartbeat())
    try:
        result = await work
    finally:
        stop.set()
        await beat
    return max(gaps), result


@pytest.mark.timeout(60)
async def test_the_loop_keeps_running_while_long_quotes_are_checked() -> None:
    source, raw = _long_quotes()
    started = time.monotonic()
    parse_response(raw, [source], "hash")
    checking = time.monotonic() - started
    assert checking > 0.25, f"the check took {checking:.2f} s: too quick to tell"
    pieces = [raw[i : i + 2000] for i in range(0, len(raw), 2000)]
    with FakeServer([Step(text=raw, chunks=pieces)]) as fake:
        b = backend(fake.base_url, timeout=30.0)
        await b.aanswer("Warm up?", ["x"])  # the client and the prompt path are ready
        gap, answer = await _max_gap_while(b.aanswer("When?", [source]))
        assert len(answer.citations) == 10
        assert gap < checking / 2, f"the loop stalled {gap:.2f} s (the check takes {checking:.2f})"

        async def stream() -> list[Any]:
            return [e async for e in b.astream("When?", [source])]

        gap, events = await _max_gap_while(stream())
        assert isinstance(events[-1], Finished) and len(events[-1].answer.citations) == 10
        assert gap < checking / 2, f"the loop stalled {gap:.2f} s (the check takes {checking:.2f})"
