"""Generation settings and the interface every generation backend offers.

:class:`GenerationSettings` holds the Pleias recommendations (greedy, no repetition penalty,
stop on ``<|answer_end|>`` or EOS) and validates per-call overrides. :class:`Backend` is what
the LangChain and LlamaIndex adapters rely on: the local engine
(:class:`pleias_rag.local.PleiasModel`) implements it, and so can a remote one.
"""

from __future__ import annotations

import dataclasses
import numbers
from collections.abc import AsyncIterator, Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Protocol, runtime_checkable

from .answer import PleiasAnswer
from .parser import Event
from .sources import Source, make_sources

SourceLike = Source | str
# A (query, sources) pair, or a bare query with no sources.
BatchItem = tuple[str, Sequence[SourceLike]] | str


@dataclass(frozen=True)
class GenerationSettings:
    """How to generate: the Pleias recommendations by default.

    Attributes:
        max_new_tokens: the most tokens to generate. The prompt is packed so that it plus
            this many tokens fit the model's context window.
        temperature: 0 is greedy decoding (recommended: citations are quoted more exactly);
            above 0 samples with this temperature.
        top_p: nucleus sampling threshold, used only when sampling.
        seed: makes sampling reproducible: the same seed and inputs give the same output,
            whatever else is generated meanwhile. None: drawn from torch's global RNG.
        stop: extra stop strings; the output is cut before the first one found.
            ``<|answer_end|>`` and EOS always stop generation.
        min_new_tokens: generate at least this many tokens (EOS and ``<|answer_end|>`` are
            suppressed until then). Only for benchmarks that need a fixed output length.
    """

    max_new_tokens: int = 1024
    temperature: float = 0.0
    top_p: float = 0.95
    seed: int | None = None
    stop: tuple[str, ...] = ()
    min_new_tokens: int = 0

    def __post_init__(self) -> None:
        _check_int("max_new_tokens", self.max_new_tokens, minimum=1)
        _check_int("min_new_tokens", self.min_new_tokens, minimum=0)
        if self.min_new_tokens > self.max_new_tokens:
            raise ValueError(
                f"min_new_tokens={self.min_new_tokens} is above max_new_tokens="
                f"{self.max_new_tokens}: lower min_new_tokens or raise max_new_tokens"
            )
        _check_number("temperature", self.temperature, low=0.0, high=None, low_open=False)
        _check_number("top_p", self.top_p, low=0.0, high=1.0, low_open=True)
        if self.seed is not None:
            _check_int("seed", self.seed, minimum=0)
        object.__setattr__(self, "temperature", float(self.temperature))
        object.__setattr__(self, "top_p", float(self.top_p))
        object.__setattr__(self, "stop", _check_stop(self.stop))

    @property
    def greedy(self) -> bool:
        """Whether decoding is greedy (temperature 0)."""
        return self.temperature == 0.0

    def merged(self, **overrides: Any) -> GenerationSettings:
        """These settings with ``overrides`` applied; unknown names and bad values raise.

        ``None`` for ``seed`` means no seed and for ``stop`` no extra stop strings; ``None``
        for any other setting keeps the current value.

        Raises:
            ValueError: an unknown setting name, or a value out of range.
        """
        names = {f.name for f in dataclasses.fields(self)}
        changes: dict[str, Any] = {}
        for name, value in overrides.items():
            if name not in names:
                raise ValueError(
                    f"unknown generation argument {name!r}: use one of {sorted(names)}"
                )
            if value is None and name not in ("seed", "stop"):
                continue
            changes[name] = () if name == "stop" and value is None else value
        return dataclasses.replace(self, **changes) if changes else self


def _check_int(name: str, value: object, *, minimum: int) -> None:
    if isinstance(value, bool) or not isinstance(value, numbers.Integral):
        raise ValueError(f"{name} must be an int, got {value!r} ({type(value).__name__})")
    if int(value) < minimum:
        raise ValueError(f"{name} must be >= {minimum}, got {value}")


def _check_number(
    name: str, value: object, *, low: float, high: float | None, low_open: bool
) -> None:
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        raise ValueError(f"{name} must be a number, got {value!r} ({type(value).__name__})")
    v = float(value)
    bad_low = v <= low if low_open else v < low
    if bad_low or (high is not None and v > high) or v != v:
        bound = f"in ({low}, {high}]" if high is not None else f">= {low}"
        raise ValueError(f"{name} must be {bound}, got {value}")


def _check_stop(stop: object) -> tuple[str, ...]:
    if isinstance(stop, str):
        stop = (stop,)
    if not isinstance(stop, (list, tuple)):
        raise ValueError(f"stop must be a str or a list of str, got {type(stop).__name__}")
    for s in stop:
        if not isinstance(s, str) or not s:
            raise ValueError(f"stop strings must be non-empty str, got {s!r}")
    return tuple(stop)


@runtime_checkable
class Backend(Protocol):
    """What a Pleias generation backend offers (local engine, remote server...).

    Sources are given in retrieval order, as :class:`~pleias_rag.Source` objects or plain
    strings (ids from :func:`~pleias_rag.source_id`). ``**gen`` are
    :class:`GenerationSettings` overrides (``max_new_tokens``, ``temperature``, ``top_p``,
    ``seed``, ``stop``).
    """

    @property
    def dialect(self) -> str:
        """``hash`` or ``numbered``: the prompt and output format of the model."""
        ...

    @property
    def model_name(self) -> str:
        """The model's name or path."""
        ...

    @property
    def context_window(self) -> int:
        """Prompt and output tokens together can not exceed this."""
        ...

    def count_tokens(self, text: str) -> int:
        """How many tokens ``text`` takes in a prompt."""
        ...

    def answer(self, query: str, sources: Sequence[SourceLike] = (), **gen: Any) -> PleiasAnswer:
        """Generate and parse one answer."""
        ...

    def stream(self, query: str, sources: Sequence[SourceLike] = (), **gen: Any) -> Iterator[Event]:
        """Parser events as the answer is generated, ending with ``Finished``."""
        ...

    def answer_batch(self, items: Sequence[BatchItem], **gen: Any) -> list[PleiasAnswer]:
        """Answers to several ``(query, sources)`` pairs (or bare queries), in order."""
        ...

    async def aanswer(
        self, query: str, sources: Sequence[SourceLike] = (), **gen: Any
    ) -> PleiasAnswer:
        """:meth:`answer` without blocking the event loop."""
        ...

    def astream(
        self, query: str, sources: Sequence[SourceLike] = (), **gen: Any
    ) -> AsyncIterator[Event]:
        """:meth:`stream` as an async iterator."""
        ...

    async def aanswer_batch(self, items: Sequence[BatchItem], **gen: Any) -> list[PleiasAnswer]:
        """:meth:`answer_batch` without blocking the event loop."""
        ...


def settings_from(generation: GenerationSettings | Mapping[str, Any] | None) -> GenerationSettings:
    """Default generation settings from a ``GenerationSettings``, a dict of them, or None."""
    if generation is None:
        return GenerationSettings()
    if isinstance(generation, GenerationSettings):
        return generation
    if isinstance(generation, Mapping):
        return GenerationSettings().merged(**generation)
    raise ValueError(
        f"generation must be a GenerationSettings or a dict, got {type(generation).__name__}"
    )


def sources_arg(sources: Sequence[SourceLike] | None) -> list[Source]:
    """The sources of a call, as ``Source`` objects (None means no sources)."""
    if sources is None:
        return []
    if isinstance(sources, (str, bytes)):
        raise ValueError("sources must be a list of texts or Source objects, not one str")
    if not hasattr(sources, "__iter__"):
        raise ValueError(f"sources must be a list, got {type(sources).__name__}")
    return make_sources(sources)


def batch_items(items: Sequence[BatchItem]) -> list[tuple[str, list[Source]]]:
    """``(query, sources)`` pairs of a batch call; a bare str is a query with no sources."""
    if isinstance(items, (str, bytes)) or not hasattr(items, "__iter__"):
        raise ValueError("answer_batch takes a list of (query, sources) pairs")
    out: list[tuple[str, list[Source]]] = []
    for i, item in enumerate(items):
        if isinstance(item, str):
            out.append((item, []))
        elif isinstance(item, (tuple, list)) and len(item) == 2:
            out.append((item[0], sources_arg(item[1])))
        else:
            raise ValueError(
                f"answer_batch item {i} must be a (query, sources) pair or a query str, "
                f"got {type(item).__name__}"
            )
    return out
