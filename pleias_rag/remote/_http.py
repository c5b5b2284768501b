"""HTTP to an OpenAI-compatible server: JSON calls and SSE streams, with retries.

``timeout`` is a deadline for the whole call: connecting, every retry and its wait, and reading
the whole answer (for a stream: the whole stream). Connection errors, 429 and 5xx answers are
retried with exponential backoff (``Retry-After`` honoured, capped) while the deadline allows;
other 4xx answers are not, and nothing is tried once the deadline has passed. Every failure
ends as a :class:`RemoteError` naming the server and, for an HTTP answer, its status. The API
key travels in a header only: it is in no message, ``repr`` or log line of this module.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import json
import logging
import random
import socket
import ssl
import sys
import threading
import time
import weakref
from collections.abc import AsyncGenerator, Awaitable, Callable, Generator, Iterator, Mapping
from contextvars import ContextVar
from dataclasses import dataclass
from typing import Any, TypeVar

import httpx

from .errors import RemoteConnectionError, RemoteError, RemoteStatusError, RemoteTimeoutError

__all__ = ["HttpSettings", "Transport", "counted_in_the_next_request", "spent_taken"]

# The longest wait between two tries, whatever Retry-After says.
_MAX_DELAY = 30.0
_SSE_DONE = "[DONE]"
_log = logging.getLogger("pleias_rag.remote")
_T = TypeVar("_T")
# Seconds the current call spent before its request (asking the server for its model): the
# next request made in this context takes them off its deadline, so ``timeout`` covers both.
_SPENT: ContextVar[float] = ContextVar("pleias_rag_remote_spent", default=0.0)
# The SSE fields (https://html.spec.whatwg.org/#event-stream-interpretation); a body whose
# lines are none of them (nor comments) is no event stream.
_SSE_FIELDS = ("data:", "event:", "id:", "retry:", ":")


@dataclass(frozen=True)
class HttpSettings:
    """How to reach the server.

    Attributes:
        base_url: the OpenAI-compatible root, ending in ``/v1``.
        label: the server's kind, for messages (``vLLM server``...).
        timeout: seconds for a whole call: connecting, retries, and the whole answer or stream.
        max_retries: tries after the first one, for connection errors, 429 and 5xx.
        backoff: the first delay between tries in seconds, doubled each time (with jitter).
        headers: extra headers (the API key is not one of them).
        verify: TLS verification: True, False, a CA bundle path or an ``ssl.SSLContext``.
    """

    base_url: str
    label: str
    timeout: float
    max_retries: int
    backoff: float
    headers: Mapping[str, str]
    verify: bool | str | ssl.SSLContext = True

    @property
    def server(self) -> str:
        return f"{self.label} at {self.base_url}"

    @property
    def root(self) -> str:
        """The server's root (``base_url`` without its ``/v1``), for ``/tokenize``."""
        return self.base_url[: -len("/v1")] if self.base_url.endswith("/v1") else self.base_url


class _Retry(Exception):
    """Internal: a failed try, and whether another try may succeed."""

    def __init__(self, error: RemoteError, *, retry: bool, after: float | None = None) -> None:
        super().__init__(str(error))
        self.error = error
        self.retry = retry
        self.after = after


class _Sse:
    """Decodes Server-Sent Events lines into the ``data`` of their events (JSON text).

    Attributes:
        done: the ``[DONE]`` event came.
        events: a line of the event-stream format came (a field or a comment).
        start: the start of the body while no such line came: what the server sent instead
            of an event stream, to quote (a JSON answer sent without a Content-Type...).
    """

    def __init__(self) -> None:
        self._data: list[str] = []
        self.done = False
        self.events = False
        self.start = ""

    def line(self, line: str) -> str | None:
        if line.startswith(_SSE_FIELDS):
            self.events = True
        elif line and not self.events and len(self.start) < _START:
            self.start += line + "\n"
        if line.startswith("data:"):
            self._data.append(line[5:].removeprefix(" "))
            return None
        if line or not self._data:
            return None  # a comment, another field, or a blank line with no event
        data, self._data = "\n".join(self._data), []
        if data.strip() == _SSE_DONE:
            self.done = True
            return None
        return data

    def flush(self) -> str | None:
        return self.line("")


class _Deadline:
    """The end of one call: ``timeout`` seconds after it started, for all its tries and reads."""

    def __init__(self, settings: HttpSettings) -> None:
        self.seconds = settings.timeout
        self.server = settings.server
        # The time the call already spent on this request's behalf (see _SPENT): taken once.
        self.spent = _SPENT.get()
        if self.spent:
            _SPENT.set(0.0)
        self.at = time.monotonic() + settings.timeout - self.spent

    def left(self) -> float:
        return self.at - time.monotonic()

    def passed(self) -> bool:
        return self.left() <= 0

    def httpx_timeout(self) -> httpx.Timeout:
        """Each network wait of the next try ends with the call (httpx's timeouts are per
        read: the whole answer is bounded by :meth:`Transport._watch` and the checks)."""
        return httpx.Timeout(max(self.left(), 0.001))

    def error(
        self, what: str, *, reason: str = "", status: int | None = None, body: str = ""
    ) -> RemoteTimeoutError:
        """The error of a call that ``what`` within its deadline."""
        before = (
            f"; {self.spent:.2g} s of it went to asking the server for its model first"
            if self.spent >= 0.01
            else ""
        )
        msg = (
            f"the {self.server} {what} within the {self.seconds:g} s deadline (timeout="
            f"{self.seconds:g} covers connecting, the retries and the whole answer{before}: "
            "raise timeout= for long generations)"
        )
        if reason:
            msg += f": {reason}"
        return RemoteTimeoutError(msg, server=self.server, status=status, body=body)


class _Tries:
    """The retry policy of one call, without I/O: after a failed try, how long to wait before
    the next one, or the error to give up with. The sync and async loops only sleep and send."""

    def __init__(self, settings: HttpSettings, deadline: _Deadline) -> None:
        self._settings = settings
        self._deadline = deadline
        self._attempt = 0

    def wait(self, failed: _Retry) -> float:
        """Seconds to wait before trying again; raises the final error when no try is left,
        or when the wait would end past the deadline."""
        attempt, retries = self._attempt, self._settings.max_retries
        if not failed.retry or attempt >= retries:
            raise _give_up(failed, attempt) from failed.__cause__
        delay = _delay(self._settings.backoff, attempt, failed.after)
        if delay >= self._deadline.left():
            # Waiting would end past the deadline: give up now rather than sleep for nothing.
            error = failed.error
            wait = f"it asked to wait {failed.after:g} s" if failed.after else f"{delay:.2g} s"
            late = self._deadline.error(
                "could not answer",
                reason=f"the next try would start past it ({wait}); the last one: {error}",
                status=error.status,
                body=error.body,
            )
            raise late from error
        _log.warning(
            "try %d of %d failed, trying again: %s", attempt + 1, retries + 1, failed.error
        )
        self._attempt += 1
        return delay


@contextlib.contextmanager
def counted_in_the_next_request() -> Iterator[None]:
    """The time the block takes (asking the server for its model before a call) is taken off
    the deadline of the next request made in this context (the call's own), so that
    ``timeout`` is a deadline for the whole call. The block's own requests get a whole one."""
    _SPENT.set(0.0)
    started = time.monotonic()
    try:
        yield
    finally:
        _SPENT.set(time.monotonic() - started)


def spent_taken() -> None:
    """The time counted by :func:`counted_in_the_next_request` was taken (by the requests
    of a batch, each in a copy of this context): no later request of this one takes it."""
    _SPENT.set(0.0)


class _LoopClient:
    """The ``httpx.AsyncClient`` of one event loop, and the async generator that closes it.

    The generator is started on the loop, so the loop knows it: ``asyncio.run`` (any loop's
    ``shutdown_asyncgens()``) closes it, and with it the client, before the loop closes.
    """

    def __init__(self, client: httpx.AsyncClient) -> None:
        self.client = client
        self.closer = _close_with_the_loop(client)


async def _close_with_the_loop(client: httpx.AsyncClient) -> AsyncGenerator[None, None]:
    try:
        yield
    finally:
        await client.aclose()


class Transport:
    """Sync and async HTTP with retries, shared by every call of one backend.

    The sync ``httpx.Client`` is made once (it is thread-safe). Each event loop gets one
    ``httpx.AsyncClient``, made on its first async call and kept for the next ones (their
    connections are reused); it is closed by :meth:`aclose` on that loop, or when the loop
    shuts down (``asyncio.run`` closes it before closing the loop). The clients share one SSL
    context.
    """

    def __init__(self, settings: HttpSettings, api_key: str | None, keepalive: int) -> None:
        self.settings = settings
        headers = {"Accept": "application/json", **settings.headers}
        if api_key:
            headers["Authorization"] = f"Bearer {api_key}"
        self._headers = headers
        # No cap on connections: the callers' concurrency is the cap (a capped pool would make
        # the calls beyond it wait, and time out, for a free connection).
        self._limits = httpx.Limits(max_connections=None, max_keepalive_connections=keepalive)
        self._timeout = httpx.Timeout(settings.timeout)
        self._lock = threading.Lock()
        self._client: httpx.Client | None = None
        self._aclients: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, _LoopClient] = (
            weakref.WeakKeyDictionary()
        )
        self._ssl: ssl.SSLContext | bool | None = None

    def _verify(self) -> ssl.SSLContext | bool:
        if self._ssl is None:
            verify = self.settings.verify
            if isinstance(verify, (ssl.SSLContext, bool)):
                self._ssl = verify if verify is not True else ssl.create_default_context()
            else:
                self._ssl = ssl.create_default_context(cafile=verify)
        return self._ssl

    def _client_args(self) -> dict[str, Any]:
        return {
            "headers": self._headers,
            "timeout": self._timeout,
            "limits": self._limits,
            "verify": self._verify(),
        }

    def _sync_client(self) -> httpx.Client:
        with self._lock:
            if self._client is None:
                self._client = httpx.Client(**self._client_args())
            return self._client

    async def _async_client(self) -> httpx.AsyncClient:
        """The running loop's client, made on first use (or after it was closed)."""
        loop = asyncio.get_running_loop()
        with self._lock:
            for old in [old for old in self._aclients if old.is_closed()]:
                del self._aclients[old]  # its connections went with it
            entry = self._aclients.get(loop)
            if entry is not None and not entry.client.is_closed:
                return entry.client
            entry = self._aclients[loop] = _LoopClient(httpx.AsyncClient(**self._client_args()))
        # Runs to its first yield at once (nothing is awaited), so no other task interleaves.
        await entry.closer.__anext__()
        return entry.client

    def close(self) -> None:
        """Close the sync client; each loop's async client is closed on its loop (at once if
        that loop is running, else when it next runs; a closed loop's ones are forgotten)."""
        with self._lock:
            client, self._client = self._client, None
            entries = list(self._aclients.items())
            self._aclients.clear()
        if client is not None:
            client.close()
        for loop, entry in entries:
            # The loop may be closed between the check and the call (by another thread).
            with contextlib.suppress(RuntimeError):
                if not loop.is_closed():
                    loop.call_soon_threadsafe(loop.create_task, entry.closer.aclose())

    async def aclose(self) -> None:
        """Close the running loop's async client (the next async call makes a new one)."""
        loop = asyncio.get_running_loop()
        with self._lock:
            entry = self._aclients.pop(loop, None)
        if entry is not None:
            await entry.closer.aclose()

    def url(self, path: str) -> str:
        if path.startswith("/") and not path.startswith("/v1/"):
            return self.settings.root + path
        return self.settings.base_url + "/" + path.lstrip("/")

    # -- failures --------------------------------------------------------------------------

    def _transport_error(
        self, exc: httpx.HTTPError, deadline: _Deadline, *, streaming: bool = False
    ) -> _Retry:
        server = self.settings.server
        if isinstance(exc, (httpx.ConnectTimeout, httpx.PoolTimeout)):
            return _Retry(deadline.error("could not be reached"), retry=False)
        if isinstance(exc, httpx.TimeoutException) or deadline.passed():
            # A read timeout is the deadline; so is a connection cut by the watchdog.
            what = "did not send the whole stream" if streaming else "did not send its answer"
            return _Retry(deadline.error(what), retry=False)
        if isinstance(exc, httpx.ConnectError):
            msg = f"could not connect to the {server}: {exc}. Is the server running?"
            return _Retry(RemoteConnectionError(msg, server=server), retry=True)
        if streaming:
            msg = f"the {server} closed the connection in the middle of the stream: {exc}"
            return _Retry(RemoteConnectionError(msg, server=server), retry=False)
        if isinstance(exc, httpx.TransportError):
            msg = f"the connection to the {server} failed: {exc}"
            return _Retry(RemoteConnectionError(msg, server=server), retry=True)
        raise exc  # pragma: no cover - httpx raises only TransportErrors while sending

    def _status_error(self, response: httpx.Response, text: str) -> _Retry:
        status = response.status_code
        detail = _error_detail(text)
        msg = f"the {self.settings.server} answered {status} {response.reason_phrase}"
        if detail:
            msg += f": {detail}"
        error = RemoteStatusError(msg, server=self.settings.server, status=status, body=text[:2000])
        retry = status == 429 or status >= 500
        return _Retry(error, retry=retry, after=_retry_after(response))

    @contextlib.contextmanager
    def _sending(self, deadline: _Deadline) -> Iterator[None]:
        """Turns the httpx errors of sending a request (and reading a JSON answer) into a
        :class:`_Retry`."""
        try:
            yield
        except httpx.HTTPError as exc:
            raise self._transport_error(exc, deadline) from exc

    @contextlib.contextmanager
    def _reading(self, deadline: _Deadline) -> Iterator[None]:
        """Turns the httpx errors of reading a stream into the error to raise (no retry)."""
        try:
            yield
        except httpx.HTTPError as exc:
            raise self._transport_error(exc, deadline, streaming=True).error from exc

    @contextlib.contextmanager
    def _watch(self, response: httpx.Response, deadline: _Deadline) -> Iterator[None]:
        """Cuts the response's connection when the deadline passes while it is read: a sync
        read that waits for the server then ends at the deadline, not a whole timeout later."""
        stream = response.extensions.get("network_stream")
        sock = stream.get_extra_info("socket") if stream is not None else None
        if not isinstance(sock, socket.socket):
            yield  # the per-read timeouts and the checks between reads still bound it
            return
        timer = threading.Timer(max(deadline.left(), 0.0), _cut, (sock,))
        timer.daemon = True
        timer.start()
        try:
            yield
        finally:
            timer.cancel()

    def _answer(self, response: httpx.Response) -> Any:
        """A JSON call's decoded answer, or its failure."""
        if not response.is_success:
            raise self._status_error(response, response.text)
        return self._json(response.text)

    def _not_a_stream(self, response: httpx.Response, start: str) -> RemoteError | None:
        """The error for a 200 answer to a streaming request that is not an event stream."""
        kind = response.headers.get("content-type", "")
        if _is_event_stream(kind):
            return None
        return self._not_events(kind, start, response.status_code)

    def _not_events(self, kind: str, start: str, status: int | None) -> RemoteError:
        server = self.settings.server
        return RemoteError(
            f"the {server} answered the streaming request with {kind}, not an event stream "
            f"(text/event-stream): {start[:200]!r}. Is it an OpenAI-compatible completions "
            "endpoint that streams (stream=true)?",
            server=server,
            status=status,
            body=start,
        )

    def _stream_error(self, payload: Mapping[str, Any]) -> RemoteError:
        err = payload.get("error")
        detail = err.get("message", err) if isinstance(err, Mapping) else err
        code = err.get("code") if isinstance(err, Mapping) else None
        msg = f"the {self.settings.server} reported an error in the stream: {detail}"
        status = code if isinstance(code, int) else None
        return RemoteStatusError(msg, server=self.settings.server, status=status)

    # -- sync ------------------------------------------------------------------------------

    def _retrying(self, deadline: _Deadline, once: Callable[[], _T]) -> _T:
        tries = _Tries(self.settings, deadline)
        while True:
            try:
                return once()
            except _Retry as failed:
                time.sleep(tries.wait(failed))

    def request(self, method: str, path: str, body: Any = None) -> Any:
        """One JSON call, retried, within the deadline; the decoded JSON answer."""
        client = self._sync_client()
        deadline = _Deadline(self.settings)

        def once() -> Any:
            with self._sending(deadline):
                request = client.build_request(
                    method, self.url(path), json=body, timeout=deadline.httpx_timeout()
                )
                response = client.send(request, stream=True)
                with contextlib.closing(response), self._watch(response, deadline):
                    response.read()
            return self._answer(response)

        return self._retrying(deadline, once)

    def stream(self, path: str, body: Any) -> Generator[Mapping[str, Any], None, None]:
        """The JSON payloads of an SSE answer, all within the deadline. Closing the iterator
        closes the connection."""
        client = self._sync_client()
        deadline = _Deadline(self.settings)

        def once() -> httpx.Response:
            with self._sending(deadline):
                request = client.build_request(
                    "POST", self.url(path), json=body, timeout=deadline.httpx_timeout()
                )
                response = client.send(request, stream=True)
            if not response.is_success:
                text = _read_error(response)
                raise self._status_error(response, text)
            error = self._not_a_stream(response, _read_start(response))
            if error is not None:
                raise error
            return response

        response = self._retrying(deadline, once)
        with (
            contextlib.closing(response),
            self._reading(deadline),
            self._watch(response, deadline),
        ):
            sse = _Sse()
            for line in itertools.chain(response.iter_lines(), [None]):
                yield from self._decoded(sse, line)
                if sse.done:
                    return
                if deadline.passed():
                    raise deadline.error("did not send the whole stream")

    # -- async -----------------------------------------------------------------------------

    async def _aretrying(self, deadline: _Deadline, once: Callable[[], Awaitable[_T]]) -> _T:
        tries = _Tries(self.settings, deadline)
        while True:
            try:
                return await once()
            except _Retry as failed:
                await asyncio.sleep(tries.wait(failed))

    async def arequest(self, method: str, path: str, body: Any = None) -> Any:
        """:meth:`request` on the running loop's async client."""
        client = await self._async_client()
        deadline = _Deadline(self.settings)

        async def send() -> httpx.Response:
            with self._sending(deadline):
                return await client.request(
                    method, self.url(path), json=body, timeout=deadline.httpx_timeout()
                )

        async def once() -> Any:
            response = await _within(deadline, send(), "did not send its answer")
            return self._answer(response)

        return await self._aretrying(deadline, once)

    async def astream(self, path: str, body: Any) -> AsyncGenerator[Mapping[str, Any], None]:
        """:meth:`stream` on the running loop's async client. Closing the iterator (or
        cancelling its consumer) closes this answer's connection, not the client."""
        client = await self._async_client()
        deadline = _Deadline(self.settings)

        async def send() -> httpx.Response:
            with self._sending(deadline):
                request = client.build_request(
                    "POST", self.url(path), json=body, timeout=deadline.httpx_timeout()
                )
                response = await client.send(request, stream=True)
            if not response.is_success:
                text = await _aread_error(response)
                raise self._status_error(response, text)
            error = self._not_a_stream(response, await _aread_start(response))
            if error is not None:
                raise error
            return response

        async def once() -> httpx.Response:
            return await _within(deadline, send(), "did not send the whole stream")

        response = await self._aretrying(deadline, once)
        try:
            with self._reading(deadline):
                sse = _Sse()
                lines = response.aiter_lines()
                while True:
                    try:
                        line = await _within(
                            deadline, lines.__anext__(), "did not send the whole stream"
                        )
                    except StopAsyncIteration:
                        break
                    for payload in self._decoded(sse, line):
                        yield payload
                    if sse.done:
                        return
                for payload in self._decoded(sse, None):
                    yield payload
        finally:
            await response.aclose()

    # -- payloads --------------------------------------------------------------------------

    def _decoded(self, sse: _Sse, line: str | None) -> Iterator[Mapping[str, Any]]:
        """The payload of one SSE line; None is the end of the body (it must have had the
        ``[DONE]`` event)."""
        data = sse.line(line) if line is not None else sse.flush()
        if not sse.events and sse.start and (line is None or len(sse.start) >= _START):
            # No line of an event stream: a body sent without a Content-Type (else it was
            # refused before reading), quoted rather than reported as a cut stream.
            raise self._not_events("a body of no Content-Type", sse.start[:_START], None)
        if data is not None:
            yield self._payload(self._event(data, cut=line is None))
        if line is None:
            self._check_done(sse)

    def _event(self, data: str, *, cut: bool) -> Any:
        """The JSON of one event's ``data``; ``cut``: the body ended inside the event."""
        try:
            return json.loads(data)
        except ValueError as exc:
            how = "ended inside an event" if cut else "streamed an event that is not JSON"
            raise RemoteError(
                f"the {self.settings.server} {how}: {data[:200]!r}", server=self.settings.server
            ) from exc

    def _json(self, text: str) -> Any:
        try:
            return json.loads(text)
        except ValueError as exc:
            raise RemoteError(
                f"the {self.settings.server} answered with something that is not JSON: "
                f"{text[:200]!r}",
                server=self.settings.server,
            ) from exc

    def _payload(self, payload: Any) -> Mapping[str, Any]:
        if not isinstance(payload, Mapping):
            raise RemoteError(
                f"the {self.settings.server} streamed an unexpected event: {payload!r:.200}",
                server=self.settings.server,
            )
        if "error" in payload and "choices" not in payload:
            raise self._stream_error(payload)
        return payload

    def _check_done(self, sse: _Sse) -> None:
        if not sse.done:
            raise RemoteConnectionError(
                f"the stream from the {self.settings.server} ended without its [DONE] event "
                "(the server stopped or the connection was cut)",
                server=self.settings.server,
            )


def _give_up(failed: _Retry, attempt: int) -> RemoteError:
    """The error to raise once no more tries are made (how many were made, when several)."""
    error = failed.error
    if attempt:
        error.args = (f"{error.args[0]} (after {attempt + 1} tries)", *error.args[1:])
    return error


def _delay(backoff: float, attempt: int, after: float | None) -> float:
    """The wait before try ``attempt + 2``: exponential, with jitter, at least Retry-After,
    capped."""
    delay = backoff * 2.0**attempt * (0.75 + 0.5 * random.random())
    if after is not None:
        delay = max(delay, after)
    return min(delay, _MAX_DELAY)


if sys.version_info >= (3, 11):

    async def _within(deadline: _Deadline, step: Awaitable[_T], what: str) -> _T:
        """``await step``, ended by the deadline (the deadline's error then)."""
        try:
            async with asyncio.timeout(max(deadline.left(), 0.0)):
                return await step
        except TimeoutError as exc:
            if isinstance(exc, RemoteError):
                raise
            raise deadline.error(what) from None

else:  # pragma: no cover - Python 3.10

    async def _within(deadline: _Deadline, step: Awaitable[_T], what: str) -> _T:
        """``await step``, ended by the deadline (the deadline's error then)."""
        try:
            return await asyncio.wait_for(step, max(deadline.left(), 0.0))
        except asyncio.TimeoutError as exc:
            if isinstance(exc, RemoteError):
                raise
            raise deadline.error(what) from None


def _cut(sock: socket.socket) -> None:
    """Shuts a connection down from the watchdog thread: its blocked read returns at once."""
    with contextlib.suppress(OSError):
        socket.socket.shutdown(sock, socket.SHUT_RDWR)


_START = 2000  # how much of an unexpected answer is read, to quote it


def _is_event_stream(kind: str) -> bool:
    """Whether a Content-Type may be an event stream (none said: the lines will tell)."""
    return not kind or kind.split(";")[0].strip().lower() == "text/event-stream"


def _read_start(response: httpx.Response) -> str:
    """The start of a streamed answer's body when it is not an event stream ("" when it is:
    nothing is read then); closes the response after reading."""
    if _is_event_stream(response.headers.get("content-type", "")):
        return ""
    got = b""
    with contextlib.closing(response), contextlib.suppress(httpx.HTTPError):
        for chunk in response.iter_raw():
            got += chunk
            if len(got) >= _START:
                break
    return got[:_START].decode("utf-8", "replace")


async def _aread_start(response: httpx.Response) -> str:
    """:func:`_read_start`, async."""
    if _is_event_stream(response.headers.get("content-type", "")):
        return ""
    got = b""
    try:
        with contextlib.suppress(httpx.HTTPError):
            async for chunk in response.aiter_raw():
                got += chunk
                if len(got) >= _START:
                    break
    finally:
        await response.aclose()
    return got[:_START].decode("utf-8", "replace")


def _read_error(response: httpx.Response) -> str:
    """The body of an error answer to a streamed request; closes the response."""
    with contextlib.closing(response):
        try:
            return response.read().decode("utf-8", "replace")
        except httpx.HTTPError:
            return ""


async def _aread_error(response: httpx.Response) -> str:
    """:func:`_read_error`, async."""
    try:
        return (await response.aread()).decode("utf-8", "replace")
    except httpx.HTTPError:
        return ""
    finally:
        await response.aclose()


def _error_detail(text: str) -> str:
    """The server's own words from an error answer (OpenAI ``{"error": {"message"}}`` form)."""
    try:
        data = json.loads(text)
    except ValueError:
        return " ".join(text.split())[:300]
    if isinstance(data, Mapping):
        err = data.get("error", data.get("detail", data.get("message")))
        if isinstance(err, Mapping):
            err = err.get("message", err)
        if err is not None:
            return str(err)[:500]
    return str(data)[:300]


def _retry_after(response: httpx.Response) -> float | None:
    value = response.headers.get("retry-after")
    if value is None:
        return None
    try:
        return max(0.0, float(value))
    except ValueError:
        return None
