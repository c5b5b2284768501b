"""Server presets, and what the server says about itself (``/v1/models``)."""

from __future__ import annotations

import threading
from collections.abc import Mapping
from typing import Any, Literal

from ._http import Transport
from .errors import RemoteError

ServerKind = Literal["vllm", "llama.cpp", "openai"]

DEFAULT_API_KEY_ENV = "PLEIAS_RAG_API_KEY"
# Per kind of server: its name in messages, and the vendor fields sent by default.
SERVER_PRESETS: Mapping[str, tuple[str, Mapping[str, Any]]] = {
    # vLLM strips special tokens from its output unless asked: the section markers would vanish.
    "vllm": ("vLLM server", {"skip_special_tokens": False, "spaces_between_special_tokens": False}),
    # llama-server keeps them only when started with --special; it takes no such field.
    "llama.cpp": ("llama-server", {}),
    "openai": ("OpenAI-compatible server", {}),
}


class ServerInfo:
    """The served model's name and ``max_model_len``, asked once from ``/v1/models``.

    Asked only when needed: the model name was not given, or the context window is needed
    (prompts are budgeted) and was not given. A server that lists no models (an HTTP error
    answer) is fine when the name was given; an unreachable one is an error.
    """

    def __init__(self, transport: Transport, model: str | None, *, wants_window: bool) -> None:
        self._transport = transport
        self._model = model
        self._wants_window = wants_window
        self._lock = threading.Lock()
        self._known: tuple[str, int | None] | None = None

    @property
    def name(self) -> str | None:
        """The model name to send: the given one, else the server's once asked."""
        return self._model or (self._known[0] if self._known else None)

    @property
    def max_model_len(self) -> int | None:
        return self._known[1] if self._known else None

    def _needed(self) -> bool:
        return self._known is None and (self._model is None or self._wants_window)

    def ensure(self) -> None:
        if self._needed():
            try:
                listing = self._transport.request("GET", "models")
            except RemoteError as exc:
                listing = self._failed(exc)
            self._learn(listing)

    async def aensure(self) -> None:
        if self._needed():
            try:
                listing = await self._transport.arequest("GET", "models")
            except RemoteError as exc:
                listing = self._failed(exc)
            self._learn(listing)

    def _failed(self, exc: RemoteError) -> Any:
        if exc.status is None or self._model is None:
            raise exc
        return {}  # no listing: go on with the given name and the model's own window

    def _learn(self, listing: Any) -> None:
        server = self._transport.settings.server
        data = listing.get("data") if isinstance(listing, Mapping) else None
        entries = [e for e in data or [] if isinstance(e, Mapping) and "id" in e]
        entry = next((e for e in entries if e["id"] == self._model), None)
        if entry is None and self._model is None:
            if not entries:
                raise RemoteError(f"the {server} listed no model: pass model=", server=server)
            entry = entries[0]
        name = str(entry["id"]) if entry is not None else str(self._model)
        window = entry.get("max_model_len") if entry is not None else None
        with self._lock:
            self._known = (name, window if isinstance(window, int) and window > 1 else None)
