"""What a failed remote call raises: each error names the server and, when it answered, the
HTTP status."""

from __future__ import annotations

from ..errors import PleiasError

__all__ = ["RemoteConnectionError", "RemoteError", "RemoteStatusError", "RemoteTimeoutError"]


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
