"""``RemoteBackend``: a Pleias model served by vLLM, llama-server or another OpenAI-compatible
completions server, with the same API as the local engine."""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import os
import threading
from collections.abc import AsyncIterator, Iterator, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import httpx

from ..answer import PleiasAnswer
from ..dialects import CONTEXT_WINDOW, HASH, Dialect, check_dialect
from ..generation import (
    BatchItem,
    GenerationSettings,
    SourceLike,
    batch_items,
    settings_from,
    sources_arg,
)
from ..parser import Event, Finished, StreamParser, feed_off_loop, parse_response
from ..tokens import PromptEncoder
from ._config import (
    DEFAULT_API_KEY_ENV,
    SERVER_PRESETS,
    ServerInfo,
    ServerKind,
    check_int,
    check_seconds,
)
from ._http import HttpSettings, Transport
from ._request import (
    Completion,
    Prepared,
    body,
    completion,
    cut_eos,
    encode_string,
    finish_reason,
    normalize_url,
    stream_delta,
)
from ._tokenizer import LoadedTokenizer, load_tokenizer


class RemoteBackend:
    """A Pleias RAG model behind an OpenAI-compatible ``/v1/completions`` server.

    It has the :class:`~pleias_rag.generation.Backend` interface of the local engine, so
    ``ChatPleias``, ``PleiasLLM``, the chains and the synthesizer take it as their model.

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
        timeout: seconds to connect, and to wait for the answer (each chunk when streaming).
        max_retries: more tries on connection errors, 429 and 5xx (never on other 4xx).
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
        max_concurrency: most requests in flight for one ``answer_batch``.
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
            raise ValueError(f"unknown server {server!r}: use one of {sorted(SERVER_PRESETS)}")
        if dialect is None and tokenizer is None:
            raise ValueError(
                "give dialect= ('hash' for Pleias-Pico/Nano 0.1, 'numbered' for "
                "Pleias-RAG-350M/1B) or tokenizer= (the model's tokenizer folder)"
            )
        if model is not None and (not isinstance(model, str) or not model.strip()):
            raise ValueError(f"model must be the served model's name, got {model!r}")
        self._dialect: Dialect | None = check_dialect(dialect) if dialect is not None else None
        label, preset = SERVER_PRESETS[server]
        self._server = server
        self._extra = dict(preset if extra_body is None else extra_body)
        self._max_concurrency = check_int("max_concurrency", max_concurrency, 1)
        self._window = (
            None if context_window is None else check_int("context_window", context_window, 2)
        )
        self._max_sources = (
            None if max_sources is None else check_int("max_sources", max_sources, 0)
        )
        self._settings = settings_from(generation)
        if api_key is None and api_key_env:
            api_key = os.environ.get(api_key_env) or None
        http = HttpSettings(
            base_url=normalize_url(base_url),
            label=label,
            timeout=check_seconds("timeout", timeout, positive=True),
            max_retries=check_int("max_retries", max_retries, 0),
            backoff=check_seconds("backoff", backoff, positive=False),
            headers=dict(headers or {}),
            verify=verify,
        )
        self._transport = Transport(http, api_key, keepalive=max(self._max_concurrency, 8))
        self._model = model
        self._info = ServerInfo(
            self._transport, model, wants_window=tokenizer is not None and context_window is None
        )
        self._tokenizer_spec = tokenizer
        self._lock = threading.Lock()
        self._loaded: LoadedTokenizer | None = None
        self._encoder: PromptEncoder | None = None

    def __repr__(self) -> str:
        return (
            f"RemoteBackend({self.base_url!r}, model={self._model!r}, "
            f"dialect={self._dialect!r}, server={self._server!r})"
        )

    # -- properties ------------------------------------------------------------------------

    @property
    def base_url(self) -> str:
        return self._transport.settings.base_url

    @property
    def model_name(self) -> str:
        return self._info.name or self.base_url

    @property
    def dialect(self) -> Dialect:
        return self._dialect or self._tokenizer().dialect

    @property
    def context_window(self) -> int:
        """Explicit, else the server's ``max_model_len`` once known, else the model config's."""
        if self._window is not None:
            return self._window
        if self._info.max_model_len is not None:
            return self._info.max_model_len
        hint = self._tokenizer().window_hint if self._tokenizer_spec is not None else None
        return hint or CONTEXT_WINDOW[self.dialect]

    @property
    def settings(self) -> GenerationSettings:
        return self._settings

    @property
    def tokenizer(self) -> Any:
        """The local tokenizer (loaded on first use), or None when prompts are strings."""
        return self._tokenizer().tokenizer if self._tokenizer_spec is not None else None

    # -- lifecycle -------------------------------------------------------------------------

    def close(self) -> None:
        """Close the pooled connections (async calls keep none)."""
        self._transport.close()

    def __enter__(self) -> RemoteBackend:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- preparing -------------------------------------------------------------------------

    def _tokenizer(self) -> LoadedTokenizer:
        if self._loaded is None:
            loaded = load_tokenizer(self._tokenizer_spec, self._dialect)
            with self._lock:
                if self._loaded is None:
                    self._loaded = loaded
        return self._loaded

    def _prepare(
        self, query: str, sources: Sequence[SourceLike] | None, settings: GenerationSettings
    ) -> Prepared:
        checked = sources_arg(sources)
        if self._tokenizer_spec is None:
            limit = self._max_sources
            return encode_string(query, checked, self.dialect, settings, limit)
        loaded = self._tokenizer()
        encoder = self._get_encoder(loaded)
        encoded = encoder.encode(query, checked, max_new_tokens=settings.max_new_tokens)
        return Prepared(
            prompt=list(encoded.ids),
            sources=encoded.sources,
            dropped=encoded.dropped_ids,
            truncated=encoded.truncated_ids,
            settings=settings,
            prompt_tokens=len(encoded.ids),
            query=query,
        )

    def _get_encoder(self, loaded: LoadedTokenizer) -> PromptEncoder:
        window = self.context_window
        encoder = self._encoder
        if encoder is None or encoder.context_window != window:
            encoder = PromptEncoder(
                loaded.codec, loaded.dialect, context_window=window, max_sources=self._max_sources
            )
            self._encoder = encoder
        return encoder

    def _body(self, prep: Prepared, *, stream: bool) -> dict[str, Any]:
        return body(self._info.name or "", prep, self._extra, self._server == "vllm", stream=stream)

    def _start(self) -> str | None:
        # With the markers kept, the output starts in a known section; when the server may
        # have stripped them the parser must guess (marker-free text is the answer).
        if self._extra.get("skip_special_tokens") is not False:
            return None
        return "source_analysis" if self.dialect == HASH else "language"

    def _fill(self, answer: PleiasAnswer, prep: Prepared, done: Completion) -> PleiasAnswer:
        return dataclasses.replace(
            answer,
            raw=cut_eos(answer.raw),
            dropped_source_ids=prep.dropped,
            truncated_source_ids=prep.truncated,
            prompt_tokens=done.prompt_tokens or prep.prompt_tokens,
            completion_tokens=done.completion_tokens,
        )

    def _result(self, prep: Prepared, done: Completion) -> PleiasAnswer:
        answer = parse_response(
            cut_eos(done.text),
            prep.sources,
            self.dialect,
            start=self._start(),
            finish_reason=finish_reason(done.finish_reason),
            query=prep.query,
        )
        return self._fill(answer, prep, done)

    def _close_events(self, parser: StreamParser, prep: Prepared, done: Completion) -> list[Event]:
        events = parser.close(finish_reason(done.finish_reason))
        final = events.pop()
        assert isinstance(final, Finished)
        events.append(Finished(self._fill(final.answer, prep, done)))
        return events

    # -- sync API --------------------------------------------------------------------------

    def encode(self, query: str, sources: Sequence[SourceLike] | None = (), **gen: Any) -> Prepared:
        """What would be sent: the prompt (ids or string) and the sources kept and dropped."""
        settings = self._settings.merged(**gen)
        self._info.ensure()
        return self._prepare(query, sources, settings)

    def count_tokens(self, text: str) -> int:
        """Tokens of ``text``: the local tokenizer's count, else the server's ``/tokenize``."""
        if not isinstance(text, str):
            raise ValueError(f"count_tokens takes a str, got {type(text).__name__}")
        if not text:
            return 0
        if self._tokenizer_spec is not None:
            return len(self._tokenizer().codec.encode(text))
        if self._server == "llama.cpp":
            got = self._transport.request("POST", "/tokenize", {"content": text})
            return len(got["tokens"])
        if self._server == "vllm":
            self._info.ensure()
            req = {"model": self._info.name or "", "prompt": text, "add_special_tokens": False}
            return int(self._transport.request("POST", "/tokenize", req)["count"])
        raise ValueError("count_tokens needs tokenizer= (the model's tokenizer folder) here")

    def answer(
        self, query: str, sources: Sequence[SourceLike] | None = (), **gen: Any
    ) -> PleiasAnswer:
        """Generate and parse one answer (see :class:`~pleias_rag.GenerationSettings`)."""
        prep = self.encode(query, sources, **gen)
        return self._complete(prep)

    def _complete(self, prep: Prepared) -> PleiasAnswer:
        data = self._transport.request("POST", "completions", self._body(prep, stream=False))
        return self._result(prep, completion(data, self._transport.settings.server))

    def stream(
        self, query: str, sources: Sequence[SourceLike] | None = (), **gen: Any
    ) -> Iterator[Event]:
        """Parser events as the answer is streamed, ending with ``Finished``.

        Arguments are checked now; the request is sent on the first ``next()``. Stopping the
        iteration (``break``, ``close()``) closes the HTTP stream, which stops the generation.
        """
        prep = self.encode(query, sources, **gen)
        return self._stream(prep)

    def _stream(self, prep: Prepared) -> Iterator[Event]:
        parser = StreamParser(prep.sources, self.dialect, start=self._start(), query=prep.query)
        done = Completion()
        server = self._transport.settings.server
        chunks = self._transport.stream("completions", self._body(prep, stream=True))
        with contextlib.closing(chunks):
            for payload in chunks:
                text = stream_delta(payload, done, server)
                if text:
                    yield from parser.feed(text)
        yield from self._close_events(parser, prep, done)

    def answer_batch(self, items: Sequence[BatchItem], **gen: Any) -> list[PleiasAnswer]:
        """Answers to several ``(query, sources)`` pairs, in order, as concurrent requests
        (at most ``max_concurrency`` at once; the server batches them)."""
        settings = self._settings.merged(**gen)
        pairs = batch_items(items)
        if not pairs:
            return []
        self._info.ensure()
        preps = [self._prepare(q, s, settings) for q, s in pairs]
        if len(preps) == 1:
            return [self._complete(preps[0])]
        pool = ThreadPoolExecutor(min(self._max_concurrency, len(preps)), "pleias-remote")
        futures = [pool.submit(self._complete, p) for p in preps]
        try:
            results = [f.result() for f in futures]
        except BaseException:
            pool.shutdown(wait=False, cancel_futures=True)
            raise
        pool.shutdown()
        return results

    # -- async API -------------------------------------------------------------------------

    async def _aprepare(
        self,
        query: str,
        sources: Sequence[SourceLike] | None,
        settings: GenerationSettings,
        client: httpx.AsyncClient | None = None,
    ) -> Prepared:
        await self._info.aensure(client)
        if self._tokenizer_spec is None:
            return self._prepare(query, sources, settings)
        return await asyncio.to_thread(self._prepare, query, sources, settings)

    async def aanswer(
        self, query: str, sources: Sequence[SourceLike] | None = (), **gen: Any
    ) -> PleiasAnswer:
        """:meth:`answer` without blocking the event loop."""
        settings = self._settings.merged(**gen)
        checked = sources_arg(sources)
        async with self._transport.async_client() as client:
            prep = await self._aprepare(query, checked, settings, client)
            return await self._acomplete(prep, client)

    async def _acomplete(self, prep: Prepared, client: httpx.AsyncClient) -> PleiasAnswer:
        body = self._body(prep, stream=False)
        data = await self._transport.arequest("POST", "completions", body, client=client)
        done = completion(data, self._transport.settings.server)
        return await asyncio.to_thread(self._result, prep, done)  # quote checks: off the loop

    def astream(
        self, query: str, sources: Sequence[SourceLike] | None = (), **gen: Any
    ) -> AsyncIterator[Event]:
        """:meth:`stream` as an async iterator; settings and sources are checked now.
        Cancelling the consumer or closing the iterator closes the HTTP stream."""
        settings = self._settings.merged(**gen)
        checked = sources_arg(sources)
        return self._astream(query, checked, settings)

    async def _astream(
        self, query: str, sources: Sequence[SourceLike], settings: GenerationSettings
    ) -> AsyncIterator[Event]:
        prep = await self._aprepare(query, sources, settings)
        parser = StreamParser(prep.sources, self.dialect, start=self._start(), query=prep.query)
        done = Completion()
        server = self._transport.settings.server
        chunks = self._transport.astream("completions", self._body(prep, stream=True))
        async with contextlib.aclosing(chunks):
            async for payload in chunks:
                text = stream_delta(payload, done, server)
                if text:
                    for event in await feed_off_loop(parser.feed, text):
                        yield event
        for event in await asyncio.to_thread(self._close_events, parser, prep, done):
            yield event

    async def aanswer_batch(self, items: Sequence[BatchItem], **gen: Any) -> list[PleiasAnswer]:
        """:meth:`answer_batch` without blocking the event loop."""
        settings = self._settings.merged(**gen)
        pairs = batch_items(items)
        if not pairs:
            return []
        async with self._transport.async_client() as client:
            await self._info.aensure(client)
            preps = [await self._aprepare(q, s, settings, client) for q, s in pairs]
            limit = asyncio.Semaphore(self._max_concurrency)

            async def one(prep: Prepared) -> PleiasAnswer:
                async with limit:
                    return await self._acomplete(prep, client)

            tasks = [asyncio.ensure_future(one(p)) for p in preps]
            try:
                return list(await asyncio.gather(*tasks))
            except BaseException:
                for task in tasks:
                    task.cancel()
                await asyncio.gather(*tasks, return_exceptions=True)
                raise
