"""What a failed remote call raises: each error names the server and, when it answered, the
HTTP status."""

from __future__ import annotations

from typing import Any

from ..errors import BatchError, PleiasError

__all__ = [
    "RemoteBatchError",
    "RemoteConnectionError",
    "RemoteError",
    "RemoteStatusError",
    "RemoteTimeoutError",
]


class RemoteError(PleiasError):
    """A request to the generation server failed.

    Attributes:
        server: which server (its kind and base URL).
        status: the HTTP status when the server answered, else None.
        body: the start of the server's error answer ("" when there was none).
    """

    def __init__(self, message: str, *, server: str, status: int | None = None, body: str = ""):
        super().__init__(message)
        self.server = server
        self.status = status
        self.body = body


class RemoteStatusError(RemoteError):
    """The server answered with an HTTP error status (after retries for 429 and 5xx)."""


class RemoteConnectionError(RemoteError, ConnectionError):
    """The server could not be reached (after retries), or dropped the connection."""


class RemoteTimeoutError(RemoteError, TimeoutError):
    """The server took longer than the timeout to connect or to send (more of) its answer."""


class RemoteBatchError(RemoteError, BatchError):
    """Some requests of an ``answer_batch`` / ``aanswer_batch`` of several failed.

    At the first failure the requests in flight are cancelled (their connections closed)
    and those not yet sent are not sent, so no request outlives the error. ``status`` and
    ``__cause__`` are the first failure's, and so is the kind: the error raised is also a
    :class:`RemoteStatusError`, :class:`RemoteConnectionError` or :class:`RemoteTimeoutError`
    when the first failure is one (``except RemoteTimeoutError`` still catches a batch's).

    Attributes:
        results: one entry per input, in input order: the
            :class:`~pleias_rag.PleiasAnswer` of a request that succeeded (the engine's
            :class:`~pleias_rag.engine.Completion` when raised by ``RemoteEngine.complete``
            itself), the exception of one that failed, or None for one cancelled in flight
            or never sent.
    """

    def __init__(self, message: str, *, server: str, results: list[Any], status: int | None):
        super().__init__(message, server=server, status=status)
        self.results = results


class _BatchStatusError(RemoteBatchError, RemoteStatusError):
    pass


class _BatchConnectionError(RemoteBatchError, RemoteConnectionError):
    pass


class _BatchTimeoutError(RemoteBatchError, RemoteTimeoutError):
    pass


_BATCH_KINDS: tuple[tuple[type[RemoteError], type[RemoteBatchError]], ...] = (
    (RemoteStatusError, _BatchStatusError),
    (RemoteConnectionError, _BatchConnectionError),
    (RemoteTimeoutError, _BatchTimeoutError),
)


def batch_error(server: str, results: list[Any]) -> RemoteBatchError:
    """The error for a batch with failures (``results`` as :attr:`RemoteBatchError.results`)."""
    errors = [r for r in results if isinstance(r, BaseException)]
    first = errors[0]
    answered = sum(1 for r in results if r is not None and not isinstance(r, BaseException))
    unsent = sum(1 for r in results if r is None)
    message = (
        f"{len(errors)} of {len(results)} requests to the {server} failed ({answered} answered, "
        f"{unsent} cancelled or not sent; .results has each in input order); the first: {first}"
    )
    status = first.status if isinstance(first, RemoteError) else None
    kind = next((b for k, b in _BATCH_KINDS if isinstance(first, k)), RemoteBatchError)
    error = kind(message, server=server, results=results, status=status)
    error.__cause__ = first
    return error
