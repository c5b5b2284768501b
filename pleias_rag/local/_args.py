"""Checks of the arguments users give ``PleiasModel``: clear errors that say what to fix."""

from __future__ import annotations

from typing import Any

import torch

from ..generation import GenerationSettings


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
