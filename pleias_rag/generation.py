"""Generation settings, and the checks of a call's sources and batch items.

:class:`GenerationSettings` holds the Pleias recommendations (greedy, no repetition penalty,
stop on ``<|answer_end|>`` or EOS) and validates per-call overrides; adapters take the options it
names (:data:`GENERATION_OPTIONS`) through :func:`generation_kwargs`. The class every backend
is, :class:`~pleias_rag.backend.Backend`, is importable from here too.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from .checks import check_int, check_number, check_query
from .errors import InvalidArgument, InvalidType
from .sources import Source, check_ordered, make_sources

if TYPE_CHECKING:
    pass

#: The largest seed: ``torch.Generator.manual_seed`` takes a 64-bit unsigned int.
MAX_SEED = 2**64 - 1
#: The range of a sampling temperature (0 is greedy): outside it, the logits divided by the
#: temperature over- or underflow in float32.
MIN_TEMPERATURE = 1e-6
MAX_TEMPERATURE = 1e6

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
            else sampling with this temperature, in [1e-6, 1e6].
        top_p: nucleus sampling threshold, used only when sampling.
        seed: makes sampling reproducible: the same seed and inputs give the same output,
            whatever else is generated meanwhile; an int in [0, 2**64). None: drawn from
            torch's global RNG.
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
        check_int("max_new_tokens", self.max_new_tokens, 1)
        check_int("min_new_tokens", self.min_new_tokens, 0)
        if self.min_new_tokens > self.max_new_tokens:
            raise InvalidArgument(
                f"min_new_tokens={self.min_new_tokens} is above max_new_tokens="
                f"{self.max_new_tokens}: lower min_new_tokens or raise max_new_tokens"
            )
        temperature = check_number("temperature", self.temperature, low=0.0)
        if temperature != 0.0 and not MIN_TEMPERATURE <= temperature <= MAX_TEMPERATURE:
            # Beyond these, logits / temperature over- or underflows in float32: NaN tokens.
            raise InvalidArgument(
                f"temperature must be 0 (greedy) or in [{MIN_TEMPERATURE:g}, "
                f"{MAX_TEMPERATURE:g}], got {self.temperature}: use 0 for greedy decoding, "
                "or a temperature such as 0.7 to sample"
            )
        check_number("top_p", self.top_p, low=0.0, high=1.0, low_open=True)
        if self.seed is not None:
            seed = check_int("seed", self.seed, 0)
            if seed > MAX_SEED:
                raise InvalidArgument(
                    f"seed must be below 2**64 (what torch.Generator.manual_seed takes), got "
                    f"{seed}: use a smaller seed, e.g. seed % 2**64"
                )
            object.__setattr__(self, "seed", seed)
        object.__setattr__(self, "temperature", temperature)
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
            InvalidArgument: an unknown setting name, or a value out of range.
        """
        names = {f.name for f in dataclasses.fields(self)}
        changes: dict[str, Any] = {}
        for name, value in overrides.items():
            if name not in names:
                raise InvalidArgument(
                    f"unknown generation argument {name!r}: use one of {sorted(names)}"
                )
            if value is None and name not in ("seed", "stop"):
                continue
            changes[name] = () if name == "stop" and value is None else value
        return dataclasses.replace(self, **changes) if changes else self


#: The names of the generation options every backend takes: GenerationSettings' fields, so
#: that an option added to the core reaches every adapter with no edit there.
GENERATION_OPTIONS: tuple[str, ...] = tuple(f.name for f in dataclasses.fields(GenerationSettings))


def generation_kwargs(
    *layers: Mapping[str, Any],
    aliases: Mapping[str, str] | None = None,
    base: GenerationSettings | None = None,
    also: Sequence[str] = (),
) -> dict[str, Any]:
    """The generation keyword arguments of an adapter's call, checked by the core.

    ``layers`` (an adapter's defaults, then per-call overrides...) are applied in order; a
    ``None`` value means "not given" and is left out. Names are :data:`GENERATION_OPTIONS`
    (``aliases`` maps other accepted names to them, e.g. ``{"max_tokens": "max_new_tokens"}``);
    the result is validated by merging it into ``base`` (default ``GenerationSettings()``), so
    a bad value fails when the call is made, with the core's message. The values are returned
    as given, for the backend to merge into its own settings.

    Raises:
        InvalidType: an unknown name (as Python does for an unexpected keyword argument);
            the message lists the options and the names of ``also`` (the caller's others).
        InvalidArgument: a value out of range, or ``min_new_tokens`` above ``max_new_tokens``.
    """
    aliases = aliases or {}
    out: dict[str, Any] = {}
    for layer in layers:
        for key, value in layer.items():
            name = aliases.get(key, key)
            if name not in GENERATION_OPTIONS:
                names = ", ".join((*GENERATION_OPTIONS, *aliases))
                extra = f" (and {', '.join(f'{n}=...' for n in also)})" if also else ""
                raise InvalidType(
                    f"unexpected keyword argument {key!r}: generation takes {names}{extra}"
                )
            if value is not None:
                out[name] = value
    (base or GenerationSettings()).merged(**out)
    return out


def _check_stop(stop: object) -> tuple[str, ...]:
    if isinstance(stop, str):
        stop = (stop,)
    if not isinstance(stop, (list, tuple)):
        raise InvalidArgument(f"stop must be a str or a list of str, got {type(stop).__name__}")
    for s in stop:
        if not isinstance(s, str) or not s:
            raise InvalidArgument(f"stop strings must be non-empty str, got {s!r}")
    return tuple(stop)


def settings_from(generation: GenerationSettings | Mapping[str, Any] | None) -> GenerationSettings:
    """Default generation settings from a ``GenerationSettings``, a dict of them, or None."""
    if generation is None:
        return GenerationSettings()
    if isinstance(generation, GenerationSettings):
        return generation
    if isinstance(generation, Mapping):
        return GenerationSettings().merged(**generation)
    raise InvalidArgument(
        f"generation must be a GenerationSettings or a dict, got {type(generation).__name__}"
    )


def sources_arg(sources: Sequence[SourceLike] | None) -> list[Source]:
    """The sources of a call, as ``Source`` objects (None means no sources)."""
    if sources is None:
        return []
    if isinstance(sources, (str, bytes)):
        raise InvalidArgument("sources must be a list of texts or Source objects, not one str")
    if not hasattr(sources, "__iter__"):
        raise InvalidArgument(f"sources must be a list, got {type(sources).__name__}")
    return make_sources(sources)  # rejects a mapping (its keys are no texts)


def batch_items(items: Sequence[BatchItem]) -> list[tuple[str, list[Source]]]:
    """``(query, sources)`` pairs of a batch call; a bare str is a query with no sources."""
    if isinstance(items, (str, bytes)) or not hasattr(items, "__iter__"):
        raise InvalidArgument("answer_batch takes a list of (query, sources) pairs")
    what = "answer_batch takes a list of (query, sources) pairs"
    check_ordered(items, what, "queries", "list(d.items()) when it maps queries to sources")
    out: list[tuple[str, list[Source]]] = []
    for i, item in enumerate(items):
        if isinstance(item, str):
            out.append((_batch_query(i, item), []))
        elif isinstance(item, (tuple, list)) and len(item) == 2:
            out.append((_batch_query(i, item[0]), sources_arg(item[1])))
        else:
            raise InvalidArgument(
                f"answer_batch item {i} must be a (query, sources) pair or a query str, "
                f"got {type(item).__name__}"
            )
    return out


def _batch_query(index: int, query: object) -> str:
    try:
        return check_query(query)
    except InvalidArgument as exc:
        raise InvalidArgument(f"answer_batch item {index}: {exc}") from None


def __getattr__(name: str) -> Any:
    if name == "Backend":  # the core class lives in its own module (it imports this one)
        from .backend import Backend

        return Backend
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
