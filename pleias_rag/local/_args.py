"""Checks of the arguments users give ``PleiasModel``: clear errors that say what to fix."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import torch

from ..generation import BatchItem, GenerationSettings, SourceLike
from ..sources import Source, make_sources


def check_int(name: str, value: Any, minimum: int, *, optional: bool = False) -> int | None:
    """``value`` if it is an int >= ``minimum`` (or None when optional), else ValueError."""
    if value is None and optional:
        return None
    if isinstance(value, bool) or not isinstance(value, int):
        raise ValueError(f"{name} must be an int, got {value!r}")
    if value < minimum:
        raise ValueError(f"{name} must be >= {minimum}, got {value}")
    return value


def check_seconds(name: str, value: Any, maximum: float) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise ValueError(f"{name} must be a number of seconds, got {value!r}")
    if not 0 <= value <= maximum:
        raise ValueError(f"{name} must be in [0, {maximum:g}] seconds, got {value}")
    return float(value)


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


def request_seed(settings: GenerationSettings) -> int:
    """The seed of a request's sampling generator.

    Unseeded sampling draws it from the caller's global torch RNG, so ``torch.manual_seed``
    before the call makes it reproducible too; greedy requests leave the RNG alone.
    """
    if settings.greedy:
        return 0
    if settings.seed is not None:
        return settings.seed
    return int(torch.randint(0, 2**62, (1,)).item())
