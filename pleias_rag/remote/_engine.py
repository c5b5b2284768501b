"""The remote engine: prompts go to an OpenAI-compatible ``/v1/completions`` server, as
concurrent requests for a batch; streams are Server-Sent Events."""

from __future__ import annotations

import asyncio
import contextlib
import threading
from collections.abc import AsyncGenerator, Generator, Mapping, Sequence
from concurrent.futures import FIRST_EXCEPTION, ThreadPoolExecutor, wait
from typing import Any

from ..dialects import CONTEXT_WINDOW, Dialect
from ..engine import Completion, Engine, StreamItem
from ..errors import InvalidArgument
from ..generation import GenerationSettings
from ..tokens import EncodedPrompt, TokenCodec
from ._config import ServerInfo, ServerKind
from ._http import Transport
from ._request import Reply, body, check_text, completion, finish_reason, stream_delta
from ._tokenizer import LoadedTokenizer, load_tokenizer
from .errors import RemoteError, batch_error


class RemoteEngine(Engine):
    """Generation on a completions server (see :class:`~pleias_rag.remote.RemoteBackend`)."""

    def __init__(
        self,
        transport: Transport,
        info: ServerInfo,
        *,
        server: ServerKind,
        extra_body: Mapping[str, Any],
        dialect: Dialect | None,
        tokenizer: Any,
        max_concurrency: int,
    ) -> None:
        self.transport = transport
        self.info = info
        self.server = server
        self.extra_body = dict(extra_body)
        self._dialect = dialect
        self._tokenizer_spec = tokenizer
        self._max_concurrency = max_concurrency
        self._lock = threading.Lock()
        self._loaded: LoadedTokenizer | None = None

    def __repr__(self) -> str:
        return f"RemoteEngine({self.transport.settings.base_url!r}, server={self.server!r})"

    # -- what the backend asks ---------------------------------------------------------

    def tokenizer(self) -> LoadedTokenizer | None:
        """The local tokenizer (loaded on first use), or None when prompts are strings."""
        if self._tokenizer_spec is None:
            return None
        if self._loaded is None:
            loaded = load_tokenizer(self._tokenizer_spec, self._dialect)
            with self._lock:
                if self._loaded is None:
                    self._loaded = loaded
        return self._loaded

    @property
    def dialect(self) -> Dialect:
        if self._dialect is not None:
            return self._dialect
        loaded = self.tokenizer()
        assert loaded is not None  # RemoteBackend asks for a dialect or a tokenizer
        return loaded.dialect

    @property
    def model_name(self) -> str:
        return self.info.name or self.transport.settings.base_url

    @property
    def context_window(self) -> int:
        """The server's ``max_model_len`` once known, else the model config's."""
        if self.info.max_model_len is not None:
            return self.info.max_model_len
        loaded = self.tokenizer()
        hint = loaded.window_hint if loaded is not None else None
        return hint or CONTEXT_WINDOW[self.dialect]

    @property
    def codec(self) -> TokenCodec | None:
        loaded = self.tokenizer()
        return loaded.codec if loaded is not None else None

    @property
    def keeps_markers(self) -> bool:
        # vLLM strips them unless asked not to; other servers' settings are unknown here.
        return self.extra_body.get("skip_special_tokens") is False

    def count_tokens(self, text: str) -> int:
        """The server's ``/tokenize`` count (llama-server and vLLM have one)."""
        if self.server == "llama.cpp":
            got = self.transport.request("POST", "/tokenize", {"content": text})
            return len(got["tokens"])
        if self.server == "vllm":
            self.info.ensure()
            req = {"model": self.info.name or "", "prompt": text, "add_special_tokens": False}
            return int(self.transport.request("POST", "/tokenize", req)["count"])
        raise InvalidArgument("count_tokens needs tokenizer= (the model's tokenizer folder) here")

    def prepare(self) -> None:
        self.info.ensure()

    async def aprepare(self) -> None:
        await self.info.aensure()

    def _body(
        self, prompt: EncodedPrompt, settings: GenerationSettings, *, stream: bool
    ) -> dict[str, Any]:
        vllm = self.server == "vllm"
        name = self.info.name or ""
        return body(name, prompt.prompt, settings, self.extra_body, vllm, stream=stream)

    # -- sync --------------------------------------------------------------------------

    def stream(
        self, prompt: EncodedPrompt, settings: GenerationSettings
    ) -> Generator[StreamItem, None, None]:
        reply = Reply()
        label = self.transport.settings.server
        chunks = self.transport.stream("completions", self._body(prompt, settings, stream=True))
        with contextlib.closing(chunks):
            for payload in chunks:
                text = stream_delta(payload, reply, label)
                if text:
                    yield text
        yield _completion(reply, label)

    def _complete(self, prompt: EncodedPrompt, settings: GenerationSettings) -> Completion:
        data = self.transport.request(
            "POST", "completions", self._body(prompt, settings, stream=False)
        )
        label = self.transport.settings.server
        return _completion(completion(data, label), label)

    def complete(
        self, prompts: Sequence[EncodedPrompt], settings: GenerationSettings
    ) -> list[Completion]:
        """Concurrent requests, at most ``max_concurrency`` at once (the server batches).

        At the first failure the requests not yet sent are cancelled and those in flight
        finished; then :class:`RemoteBatchError` carries every outcome."""
        if len(prompts) == 1:
            return [self._complete(prompts[0], settings)]
        failed = threading.Event()

        def one(prompt: EncodedPrompt) -> Completion | None:
            if failed.is_set():
                return None  # not sent: an earlier request failed
            try:
                return self._complete(prompt, settings)
            except BaseException:
                failed.set()  # before this thread takes the next prompt
                raise

        pool = ThreadPoolExecutor(min(self._max_concurrency, len(prompts)), "pleias-remote")
        futures = [pool.submit(one, p) for p in prompts]
        try:
            wait(futures, return_when=FIRST_EXCEPTION)
            if failed.is_set():
                for future in futures:
                    future.cancel()  # the ones not started; the running ones finish
            pool.shutdown(wait=True)
        except BaseException:  # interrupted while waiting
            failed.set()
            pool.shutdown(wait=False, cancel_futures=True)
            raise
        outcomes = [None if f.cancelled() else (f.exception() or f.result()) for f in futures]
        return self._gathered(outcomes)

    def _gathered(self, outcomes: list[Any]) -> list[Completion]:
        """The completions, or the batch's error (another error than a server's as itself)."""
        errors = [o for o in outcomes if isinstance(o, BaseException)]
        if not errors:
            return list(outcomes)
        if not isinstance(errors[0], RemoteError):
            raise errors[0]  # a bug or a bad argument, not the server: raised as it is
        raise batch_error(self.transport.settings.server, outcomes)

    # -- async -------------------------------------------------------------------------

    async def astream(
        self, prompt: EncodedPrompt, settings: GenerationSettings
    ) -> AsyncGenerator[StreamItem, None]:
        reply = Reply()
        label = self.transport.settings.server
        chunks = self.transport.astream("completions", self._body(prompt, settings, stream=True))
        async with contextlib.aclosing(chunks):
            async for payload in chunks:
                text = stream_delta(payload, reply, label)
                if text:
                    yield text
        yield _completion(reply, label)

    async def _acomplete(self, prompt: EncodedPrompt, settings: GenerationSettings) -> Completion:
        payload = self._body(prompt, settings, stream=False)
        data = await self.transport.arequest("POST", "completions", payload)
        label = self.transport.settings.server
        return _completion(completion(data, label), label)

    async def acomplete(
        self, prompts: Sequence[EncodedPrompt], settings: GenerationSettings
    ) -> list[Completion]:
        """Concurrent requests, at most ``max_concurrency`` at once; a failure as in
        :meth:`complete`."""
        if len(prompts) == 1:
            return [await self._acomplete(prompts[0], settings)]
        limit = asyncio.Semaphore(self._max_concurrency)
        failed = False

        async def one(prompt: EncodedPrompt) -> Completion | None:
            nonlocal failed
            async with limit:
                if failed:
                    return None  # not sent: an earlier request failed
                try:
                    return await self._acomplete(prompt, settings)
                except BaseException:
                    failed = True  # before the next one waiting for the semaphore starts
                    raise

        tasks = [asyncio.ensure_future(one(p)) for p in prompts]
        try:
            await asyncio.wait(tasks)  # after a failure the others end at once or finish
        except BaseException:  # cancelled: stop them all
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
            raise
        outcomes = [None if t.cancelled() else (t.exception() or t.result()) for t in tasks]
        return self._gathered(outcomes)


def _completion(reply: Reply, server: str) -> Completion:
    check_text(reply, server)
    return Completion(
        reply.text,
        finish_reason=finish_reason(reply.finish_reason),
        prompt_tokens=reply.prompt_tokens,
        completion_tokens=reply.completion_tokens,
    )
