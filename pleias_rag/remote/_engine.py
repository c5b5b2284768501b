"""The remote engine: prompts go to an OpenAI-compatible ``/v1/completions`` server, as
concurrent requests for a batch; streams are Server-Sent Events."""

from __future__ import annotations

import asyncio
import contextlib
import contextvars
import threading
from collections.abc import AsyncGenerator, Callable, Coroutine, Generator, Mapping, Sequence
from concurrent.futures import Future
from typing import Any, TypeVar

from ..dialects import CONTEXT_WINDOW, Dialect
from ..engine import Completion, Engine, StreamItem
from ..errors import InvalidArgument, InvalidType
from ..generation import GenerationSettings
from ..tokens import EncodedPrompt, TokenCodec
from ._config import ServerInfo, ServerKind
from ._http import Transport, counted_in_the_next_request, spent_taken
from ._request import Reply, body, check_text, completion, finish_reason, stream_delta
from ._tokenizer import LoadedTokenizer, load_tokenizer
from .errors import batch_error

_T = TypeVar("_T")


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
            self.prepare()
            req = {"model": self.info.name or "", "prompt": text, "add_special_tokens": False}
            return int(self.transport.request("POST", "/tokenize", req)["count"])
        raise InvalidArgument("count_tokens needs tokenizer= (the model's tokenizer folder) here")

    def prepare(self) -> None:
        # Asking /v1/models counts in the deadline of the call it is made for.
        with counted_in_the_next_request():
            self.info.ensure()

    async def aprepare(self) -> None:
        with counted_in_the_next_request():
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
        """Concurrent requests, at most ``max_concurrency`` at once (the server batches);
        a failure as in :meth:`acomplete`, which runs them (on an event loop of its own)."""
        if len(prompts) == 1:
            return [self._complete(prompts[0], settings)]
        try:
            return _on_a_loop_of_its_own(lambda: self.acomplete(prompts, settings))
        finally:
            spent_taken()

    def _gathered(self, outcomes: list[Any]) -> list[Completion]:
        """The completions, or the batch's error (a bad argument as itself)."""
        errors = [o for o in outcomes if isinstance(o, BaseException)]
        if not errors:
            return list(outcomes)
        if isinstance(errors[0], (InvalidArgument, InvalidType)):
            raise errors[0]  # the call's, not one request's
        raise self.batch_error(outcomes)

    def batch_error(self, results: list[Any]) -> BaseException:
        """A :class:`RemoteBatchError` (a batch of one: its request's error itself)."""
        if len(results) == 1 and isinstance(results[0], BaseException):
            return results[0]
        return batch_error(self.transport.settings.server, results)

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
        """Concurrent requests, at most ``max_concurrency`` at once. At the first failure the
        requests in flight are cancelled (their connections closed) and the others not sent;
        then :class:`RemoteBatchError` carries every outcome (None: cancelled or not sent)."""
        if len(prompts) == 1:
            return [await self._acomplete(prompts[0], settings)]
        limit = asyncio.Semaphore(self._max_concurrency)

        async def one(prompt: EncodedPrompt) -> Completion:
            async with limit:
                return await self._acomplete(prompt, settings)

        tasks = [asyncio.ensure_future(one(p)) for p in prompts]
        spent_taken()  # each task has it in its copy of the context
        try:
            await asyncio.wait(tasks, return_when=asyncio.FIRST_EXCEPTION)
        finally:  # a failure, or this call cancelled: stop the rest, wait until they are
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
        outcomes = [None if t.cancelled() else (t.exception() or t.result()) for t in tasks]
        return self._gathered(outcomes)


def _on_a_loop_of_its_own(work: Callable[[], Coroutine[Any, Any, _T]]) -> _T:
    """``work()`` run to its end by ``asyncio.run`` in a thread of its own, in a copy of this
    context (the call's deadline goes with it), whether or not this thread runs a loop: the
    sync batch is the async one, whose requests can be cancelled. An interrupt of the
    waiting thread (Ctrl-C) cancels the work and waits for it to stop."""
    context = contextvars.copy_context()
    result: Future[_T] = Future()
    started = threading.Event()
    task: asyncio.Task[_T] | None = None
    loop: asyncio.AbstractEventLoop | None = None

    async def main() -> _T:
        nonlocal task, loop
        task, loop = asyncio.current_task(), asyncio.get_running_loop()
        started.set()
        return await work()

    def run() -> None:
        try:
            result.set_result(context.run(asyncio.run, main()))
        except BaseException as exc:  # delivered to the waiting thread
            result.set_exception(exc)
        finally:
            started.set()

    thread = threading.Thread(target=run, name="pleias-remote-batch", daemon=True)
    thread.start()
    try:
        return result.result()
    except BaseException:
        if not result.done():  # interrupted while waiting: stop the requests
            started.wait()
            if loop is not None and task is not None:
                with contextlib.suppress(RuntimeError):  # the loop closed meanwhile
                    loop.call_soon_threadsafe(task.cancel)
        raise
    finally:
        thread.join()


def _completion(reply: Reply, server: str) -> Completion:
    check_text(reply, server)
    return Completion(
        reply.text,
        finish_reason=finish_reason(reply.finish_reason),
        prompt_tokens=reply.prompt_tokens,
        completion_tokens=reply.completion_tokens,
    )
