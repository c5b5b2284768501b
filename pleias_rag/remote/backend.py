"""``RemoteBackend``: a Pleias model served by vLLM, llama-server or another OpenAI-compatible
completions server, with the same API as the local engine."""

from __future__ import annotations

import os
from collections.abc import Mapping
from typing import Any

from ..backend import Backend
from ..checks import check_int, check_seconds
from ..dialects import check_dialect
from ..errors import InvalidArgument
from ..generation import GenerationSettings
from ._config import DEFAULT_API_KEY_ENV, SERVER_PRESETS, ServerInfo, ServerKind
from ._engine import RemoteEngine
from ._http import HttpSettings, Transport
from ._request import normalize_url


class RemoteBackend(Backend):
    """A Pleias RAG model behind an OpenAI-compatible ``/v1/completions`` server.

    It is a :class:`~pleias_rag.backend.Backend` like the local engine, so ``ChatPleias``,
    ``PleiasLLM``, the chains and the synthesizer take it as their model.

    With ``tokenizer`` (the model's tokenizer files, no weights) prompts are sent as token ids
    built by the local engine's token-level renderer, so no query or document can inject
    markers, and sources are packed into the context window as locally. Without it the prompt
    is the escaped string prompt, and every source is sent (the numbered dialect keeps 10).

    Args:
        base_url: the server's address, e.g. ``http://127.0.0.1:8000/v1`` (``/v1`` is added
            to a bare host).
        model: the served model name; None asks the server (``/v1/models``) for its first one.
        dialect: ``hash`` or ``numbered``; detected from ``tokenizer`` when None (one of the
            two is needed).
        api_key: sent as ``Authorization: Bearer``; None reads ``$PLEIAS_RAG_API_KEY`` (see
            ``api_key_env``). Never logged nor shown.
        api_key_env: the environment variable read when ``api_key`` is None.
        timeout: a deadline in seconds for each call: asking the server for its model
            (``model=None``) or window on the first call, connecting, every retry and its
            wait, and the whole answer (for ``stream``/``astream``: the whole stream). A call still
            running when it passes raises :class:`~pleias_rag.remote.RemoteTimeoutError`; a
            wait for a retry (backoff, ``Retry-After``) that would end past it is not made.
            Raise it for long generations.
        max_retries: more tries on connection errors, 429 and 5xx (never on other 4xx), within
            the deadline.
        backoff: first delay between tries, in seconds, doubled each time.
        server: ``vllm`` (default), ``llama.cpp`` or ``openai``: names the server in errors and
            picks the default ``extra_body``.
        extra_body: fields added to each request body. None: the server's defaults
            (``{"skip_special_tokens": false, "spaces_between_special_tokens": false}`` for
            vLLM, nothing for the others). Given, it replaces them: pass ``{}`` for a server
            that rejects unknown fields.
        tokenizer: a local tokenizer folder or hub id (tokenizer files only), or a tokenizer.
        context_window: prompt plus output tokens; None: the server's ``max_model_len`` when
            it tells it, else the model config's.
        max_sources: most sources per prompt (default 10 for the numbered dialect).
        max_concurrency: most requests in flight for one ``answer_batch``. When a request of
            a batch fails, those in flight are cancelled and those not yet sent are not
            sent; :class:`~pleias_rag.remote.RemoteBatchError` carries every answer and error.
        generation: default :class:`~pleias_rag.GenerationSettings` (or a dict of them).
        headers: more HTTP headers.
        verify: TLS verification: True, False, a CA bundle path or an ``ssl.SSLContext``.
    """

    def __init__(
        self,
        base_url: str,
        model: str | None = None,
        *,
        dialect: str | None = None,
        api_key: str | None = None,
        api_key_env: str = DEFAULT_API_KEY_ENV,
        timeout: float = 120.0,
        max_retries: int = 2,
        backoff: float = 0.5,
        server: ServerKind = "vllm",
        extra_body: Mapping[str, Any] | None = None,
        tokenizer: str | os.PathLike[str] | Any | None = None,
        context_window: int | None = None,
        max_sources: int | None = None,
        max_concurrency: int = 8,
        generation: GenerationSettings | Mapping[str, Any] | None = None,
        headers: Mapping[str, str] | None = None,
        verify: Any = True,
    ) -> None:
        if server not in SERVER_PRESETS:
            raise InvalidArgument(f"unknown server {server!r}: use one of {sorted(SERVER_PRESETS)}")
        if dialect is None and tokenizer is None:
            raise InvalidArgument(
                "give dialect= ('hash' for Pleias-Pico/Nano 0.1, 'numbered' for "
                "Pleias-RAG-350M/1B) or tokenizer= (the model's tokenizer folder)"
            )
        if model is not None and (not isinstance(model, str) or not model.strip()):
            raise InvalidArgument(f"model must be the served model's name, got {model!r}")
        label, preset = SERVER_PRESETS[server]
        concurrency = check_int("max_concurrency", max_concurrency, 1)
        if api_key is None and api_key_env:
            api_key = os.environ.get(api_key_env) or None
        http = HttpSettings(
            base_url=normalize_url(base_url),
            label=label,
            timeout=check_seconds("timeout", timeout, positive=True),
            max_retries=check_int("max_retries", max_retries, 0),
            backoff=check_seconds("backoff", backoff),
            headers=dict(headers or {}),
            verify=verify,
        )
        self._transport = Transport(http, api_key, keepalive=max(concurrency, 8))
        self._model = model
        self._server = server
        info = ServerInfo(
            self._transport, model, wants_window=tokenizer is not None and context_window is None
        )
        self._remote = RemoteEngine(
            self._transport,
            info,
            server=server,
            extra_body=preset if extra_body is None else extra_body,
            dialect=check_dialect(dialect) if dialect is not None else None,
            tokenizer=tokenizer,
            max_concurrency=concurrency,
        )
        super().__init__(
            self._remote,
            generation=generation,
            context_window=context_window,
            max_sources=max_sources,
        )

    def __repr__(self) -> str:
        return (
            f"RemoteBackend({self.base_url!r}, model={self._model!r}, "
            f"dialect={self._remote._dialect!r}, server={self._server!r})"
        )

    @property
    def base_url(self) -> str:
        return self._transport.settings.base_url

    @property
    def tokenizer(self) -> Any:
        """The local tokenizer (loaded on first use), or None when prompts are strings."""
        loaded = self._remote.tokenizer()
        return loaded.tokenizer if loaded is not None else None

    # -- lifecycle -------------------------------------------------------------------------

    def close(self) -> None:
        """Close the pooled connections (each event loop's are closed on that loop)."""
        self._transport.close()

    def __enter__(self) -> RemoteBackend:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    async def aclose(self) -> None:
        """Close the running event loop's pooled connections (``asyncio.run`` does it too)."""
        await self._transport.aclose()

    async def __aenter__(self) -> RemoteBackend:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()
