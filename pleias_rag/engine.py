"""The I/O layer under :class:`~pleias_rag.backend.Backend`: an engine turns prepared prompts
into text, and knows nothing of sources, citations or parsing.

As httpx puts ``Client`` over ``BaseTransport``, :class:`~pleias_rag.backend.Backend` owns
settings, sources, prompt encoding, the six public operations and parsing, and calls an
:class:`Engine` for the generation itself. An engine implements :meth:`Engine.stream` (text
deltas, then one :class:`Completion`); the batch and async entry points have defaults built
on it that the real engines replace with batched or non-blocking I/O.
"""

from __future__ import annotations

import asyncio
import threading
from abc import ABC, abstractmethod
from collections.abc import AsyncGenerator, Generator, Iterator, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from .answer import FinishReason
from .dialects import Dialect
from .errors import InvalidArgument, batch_failure

if TYPE_CHECKING:
    from .generation import GenerationSettings
    from .tokens import EncodedPrompt, TokenCodec

__all__ = ["Completion", "Engine", "StreamItem"]


@dataclass(frozen=True)
class Completion:
    """What the engine generated for one prompt.

    Attributes:
        text: all the generated text (special tokens kept when the engine keeps them).
        finish_reason: ``stop`` or ``length`` when the engine knows; None lets the parser
            tell from the text.
        prompt_tokens: the prompt's length, when the engine counted it.
        completion_tokens: how many tokens were generated, when known.
    """

    text: str
    finish_reason: FinishReason | None = None
    prompt_tokens: int | None = None
    completion_tokens: int | None = None


#: What :meth:`Engine.stream` yields: text deltas, then one :class:`Completion`.
StreamItem = str | Completion


class Engine(ABC):
    """Generation I/O for one model: prompts in, text out, sync and async.

    Subclasses implement :meth:`stream` and the properties; they may replace the batch and
    async defaults. A prompt is an :class:`~pleias_rag.tokens.EncodedPrompt`: send its
    ``prompt`` (token ids, or a string when ``codec`` is None); its query and sources are
    there for engines that need them (a scripted one). ``codec`` is the model's tokenizer
    when prompts are token ids (the backend then packs sources into the context window token
    by token), or None when they are strings.
    """

    @property
    @abstractmethod
    def dialect(self) -> Dialect:
        """``hash`` or ``numbered``: the prompt and output format of the model."""

    @property
    @abstractmethod
    def model_name(self) -> str:
        """The model's name or path."""

    @property
    @abstractmethod
    def context_window(self) -> int:
        """Prompt plus output tokens the model takes."""

    @property
    def codec(self) -> TokenCodec | None:
        """The tokenizer that makes token-id prompts; None: prompts are strings."""
        return None

    @property
    def keeps_markers(self) -> bool:
        """Whether generated text keeps the special-token markers (section starts...)."""
        return True

    def count_tokens(self, text: str) -> int:
        """Tokens of ``text`` without a codec (a server may count them)."""
        raise InvalidArgument(
            f"{type(self).__name__} cannot count tokens without the model's tokenizer: "
            "give the backend tokenizer= (the model's tokenizer folder)"
        )

    def prepare(self) -> None:
        """Called before a prompt is encoded (a server may be asked its window here)."""
        return None

    async def aprepare(self) -> None:
        """:meth:`prepare` without blocking the event loop."""
        await asyncio.to_thread(self.prepare)

    @abstractmethod
    def stream(
        self, prompt: EncodedPrompt, settings: GenerationSettings
    ) -> Generator[StreamItem, None, None]:
        """Text deltas as generated, then the :class:`Completion`. Closing the iterator
        early stops the generation."""

    def complete(
        self, prompts: Sequence[EncodedPrompt], settings: GenerationSettings
    ) -> list[Completion]:
        """Whole completions of several prompts, in order (default: one stream each)."""
        return [_last(self.stream(p, settings)) for p in prompts]

    async def astream(
        self, prompt: EncodedPrompt, settings: GenerationSettings
    ) -> AsyncGenerator[StreamItem, None]:
        """:meth:`stream` without blocking the event loop (default: a thread runs it)."""
        items = self.stream(prompt, settings)
        lock = threading.Lock()  # close() waits for a next() still running in its thread

        def pull() -> StreamItem | None:
            with lock:
                return next(items, None)

        def close() -> None:
            with lock:
                items.close()

        try:
            while (item := await asyncio.to_thread(pull)) is not None:
                yield item
        finally:
            await asyncio.to_thread(close)

    async def acomplete(
        self, prompts: Sequence[EncodedPrompt], settings: GenerationSettings
    ) -> list[Completion]:
        """:meth:`complete` without blocking the event loop (default: in a thread)."""
        return await asyncio.to_thread(self.complete, prompts, settings)

    def batch_error(self, results: list[Any]) -> BaseException:
        """The error a batch call raises when some of its inputs failed: ``results`` has,
        per input, its answer, its exception, or None when it never ran (default:
        :func:`~pleias_rag.errors.batch_failure`)."""
        return batch_failure(results)


def _last(items: Iterator[StreamItem]) -> Completion:
    done: Completion | None = None
    for item in items:
        if isinstance(item, Completion):
            done = item
    if done is None:
        raise RuntimeError("the engine's stream ended without a Completion")
    return done
