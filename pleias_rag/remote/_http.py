"""HTTP to an OpenAI-compatible server: JSON calls and SSE streams, with retries.

Connection errors, 429 and 5xx answers are retried with exponential backoff (``Retry-After``
honoured, capped); other 4xx answers and read timeouts are not (a server that is still
generating would only get the same work again). Every failure ends as a :class:`RemoteError`
naming the server and, for an HTTP answer, its status. The API key travels in a header only: it
is in no message, ``repr`` or log line of this module.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import json
import logging
import random
import ssl
import threading
import time
import weakref
from collections.abc import AsyncGenerator, Awaitable, Callable, Generator, Iterator, Mapping
from dataclasses import dataclass
from typing import Any, TypeVar

import httpx

from .errors import RemoteConnectionError, RemoteError, RemoteStatusError, RemoteTimeoutError

__all__ = ["HttpSettings", "Transport"]

# The longest wait between two tries, whatever Retry-After says.
_MAX_DELAY = 30.0
_SSE_DONE = "[DONE]"
_log = logging.getLogger("pleias_rag.remote")
_T = TypeVar("_T")


@dataclass(frozen=True)
class HttpSettings:
    """How to reach the server.

    Attributes:
        base_url: the OpenAI-compatible root, ending in ``/v1``.
        label: the server's kind, for messages (``vLLM server``...).
        timeout: seconds to connect, and to wait for the answer (each chunk when streaming).
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
    """Decodes Server-Sent Events lines into the JSON payloads of their ``data`` fields."""

    def __init__(self) -> None:
        self._data: list[str] = []
        self.done = False

    def line(self, line: str) -> Any | None:
        if line.startswith("data:"):
            self._data.append(line[5:].removeprefix(" "))
            return None
        if line or not self._data:
            return None  # a comment, another field, or a blank line with no event
        data, self._data = "\n".join(self._data), []
        if data.strip() == _SSE_DONE:
            self.done = True
            return None
        return json.loads(data)

    def flush(self) -> Any | None:
        return self.line("")


class _Tries:
    """The retry policy of one call, without I/O: after a failed try, how long to wait before
    the next one, or the error to give up with. The sync and async loops only sleep and send."""

    def __init__(self, settings: HttpSettings) -> None:
        self._settings = settings
        self._attempt = 0

    def wait(self, failed: _Retry) -> float:
        """Seconds to wait before trying again; raises the final error when no try is left."""
        attempt, retries = self._attempt, self._settings.max_retries
        if not failed.retry or attempt >= retries:
            raise _give_up(failed, attempt) from failed.__cause__
        _log.warning(
            "try %d of %d failed, trying again: %s", attempt + 1, retries + 1, failed.error
        )
        self._attempt += 1
        return _delay(self._settings.backoff, attempt, failed.after)


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

    def _transport_error(self, exc: httpx.HTTPError, *, streaming: bool = False) -> _Retry:
        server = self.settings.server
        if isinstance(exc, (httpx.ConnectTimeout, httpx.PoolTimeout)):
            msg = f"could not connect to the {server} within {self.settings.timeout:g} s"
            return _Retry(RemoteTimeoutError(msg, server=server), retry=True)
        if isinstance(exc, httpx.TimeoutException):
            what = "the next part of the stream" if streaming else "its answer"
            msg = (
                f"the {server} did not send {what} within {self.settings.timeout:g} s "
                "(raise timeout= for long generations)"
            )
            return _Retry(RemoteTimeoutError(msg, server=server), retry=False)
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
    def _sending(self) -> Iterator[None]:
        """Turns the httpx errors of sending a request into a :class:`_Retry`."""
        try:
            yield
        except httpx.HTTPError as exc:
            raise self._transport_error(exc) from exc

    @contextlib.contextmanager
    def _reading(self) -> Iterator[None]:
        """Turns the httpx errors of reading a stream into the error to raise (no retry)."""
        try:
            yield
        except httpx.HTTPError as exc:
            raise self._transport_error(exc, streaming=True).error from exc

    def _answer(self, response: httpx.Response) -> Any:
        """A JSON call's decoded answer, or its failure."""
        if not response.is_success:
            raise self._status_error(response, response.text)
        return self._json(response.text)

    def _stream_error(self, payload: Mapping[str, Any]) -> RemoteError:
        err = payload.get("error")
        detail = err.get("message", err) if isinstance(err, Mapping) else err
        code = err.get("code") if isinstance(err, Mapping) else None
        msg = f"the {self.settings.server} reported an error in the stream: {detail}"
        status = code if isinstance(code, int) else None
        return RemoteStatusError(msg, server=self.settings.server, status=status)

    # -- sync ------------------------------------------------------------------------------

    def _retrying(self, once: Callable[[], _T]) -> _T:
        tries = _Tries(self.settings)
        while True:
            try:
                return once()
            except _Retry as failed:
                time.sleep(tries.wait(failed))

    def request(self, method: str, path: str, body: Any = None) -> Any:
        """One JSON call, retried; the decoded JSON answer."""
        client = self._sync_client()

        def once() -> Any:
            with self._sending():
                response = client.request(method, self.url(path), json=body)
            return self._answer(response)

        return self._retrying(once)

    def stream(self, path: str, body: Any) -> Generator[Mapping[str, Any], None, None]:
        """The JSON payloads of an SSE answer. Closing the iterator closes the connection."""
        client = self._sync_client()
        request = client.build_request("POST", self.url(path), json=body)

        def once() -> httpx.Response:
            with self._sending():
                response = client.send(request, stream=True)
            if not response.is_success:
                text = _read_error(response)
                raise self._status_error(response, text)
            return response

        response = self._retrying(once)
        with contextlib.closing(response), self._reading():
            sse = _Sse()
            for line in itertools.chain(response.iter_lines(), [None]):
                yield from self._decoded(sse, line)
                if sse.done:
                    return

    # -- async -----------------------------------------------------------------------------

    async def _aretrying(self, once: Callable[[], Awaitable[_T]]) -> _T:
        tries = _Tries(self.settings)
        while True:
            try:
                return await once()
            except _Retry as failed:
                await asyncio.sleep(tries.wait(failed))

    async def arequest(self, method: str, path: str, body: Any = None) -> Any:
        """:meth:`request` on the running loop's async client."""
        client = await self._async_client()

        async def once() -> Any:
            with self._sending():
                response = await client.request(method, self.url(path), json=body)
            return self._answer(response)

        return await self._aretrying(once)

    async def astream(self, path: str, body: Any) -> AsyncGenerator[Mapping[str, Any], None]:
        """:meth:`stream` on the running loop's async client. Closing the iterator (or
        cancelling its consumer) closes this answer's connection, not the client."""
        client = await self._async_client()
        request = client.build_request("POST", self.url(path), json=body)

        async def once() -> httpx.Response:
            with self._sending():
                response = await client.send(request, stream=True)
            if not response.is_success:
                text = await _aread_error(response)
                raise self._status_error(response, text)
            return response

        response = await self._aretrying(once)
        try:
            with self._reading():
                sse = _Sse()
                async for line in response.aiter_lines():
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
        payload = sse.line(line) if line is not None else sse.flush()
        if payload is not None:
            yield self._payload(payload)
        if line is None:
            self._check_done(sse)

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
