"""Argument checks shared by every class: each failure names the argument and the fix."""

from __future__ import annotations

import numbers
from typing import overload

from .errors import InvalidArgument

__all__ = ["check_int", "check_number", "check_query", "check_seconds"]


@overload
def check_int(name: str, value: object, minimum: int) -> int: ...
@overload
def check_int(name: str, value: object, minimum: int, *, optional: bool) -> int | None: ...
def check_int(name: str, value: object, minimum: int, *, optional: bool = False) -> int | None:
    """``value`` as an int >= ``minimum`` (None passes when ``optional``)."""
    if value is None and optional:
        return None
    if isinstance(value, bool) or not isinstance(value, numbers.Integral):
        raise InvalidArgument(f"{name} must be an int, got {value!r} ({type(value).__name__})")
    if int(value) < minimum:
        raise InvalidArgument(f"{name} must be >= {minimum}, got {value}")
    return int(value)


def check_number(
    name: str, value: object, *, low: float, high: float | None = None, low_open: bool = False
) -> float:
    """``value`` as a float in ``[low, high]`` (``(low, high]`` when ``low_open``); NaN fails."""
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        raise InvalidArgument(f"{name} must be a number, got {value!r} ({type(value).__name__})")
    v = float(value)
    bad_low = v <= low if low_open else v < low
    if bad_low or (high is not None and v > high) or v != v:
        opening = "(" if low_open else "["
        bound = f"in {opening}{low}, {high}]" if high is not None else f">= {low}"
        if low_open and high is None:
            bound = f"> {low}"
        raise InvalidArgument(f"{name} must be {bound}, got {value}")
    return v


def check_seconds(
    name: str, value: object, *, positive: bool = False, maximum: float | None = None
) -> float:
    """``value`` as a number of seconds: >= 0 (> 0 when ``positive``), at most ``maximum``."""
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise InvalidArgument(f"{name} must be a number of seconds, got {value!r}")
    if maximum is not None and not 0 <= value <= maximum:
        raise InvalidArgument(f"{name} must be in [0, {maximum:g}] seconds, got {value}")
    if value != value or value < 0 or (positive and value == 0):
        raise InvalidArgument(
            f"{name} must be {'> 0' if positive else '>= 0'} seconds, got {value}"
        )
    return float(value)


def check_query(query: object) -> str:
    """``query`` as a question: a non-empty str (checked when a call is made, not when its
    stream is first iterated)."""
    if not isinstance(query, str):
        raise InvalidArgument(f"query must be a str (the question), got {type(query).__name__}")
    if not query.strip():
        raise InvalidArgument("query is empty: ask a question")
    return query
