"""docs/troubleshooting.md's table of the library's bad inputs says what the code says."""

from __future__ import annotations

import re
from collections.abc import Callable
from pathlib import Path

import pytest

from pleias_rag import Backend, ScriptedEngine, Source, parse_response

TABLE = (Path(__file__).parents[1] / "docs" / "troubleshooting.md").read_text(encoding="utf-8")
B = Backend(ScriptedEngine({}))

CASES: dict[str, Callable[[], object]] = {
    "temperature must be 0 (greedy) or in [1e-06, 1e+06], got inf": lambda: B.answer(
        "q?", [], temperature=float("inf")
    ),
    "temperature must be >= 0.0, got nan": lambda: B.answer("q?", [], temperature=float("nan")),
    "min_new_tokens=10 is above max_new_tokens=5": lambda: B.answer(
        "q?", [], min_new_tokens=10, max_new_tokens=5
    ),
    "unknown generation argument 'max_token'": lambda: B.answer("q?", [], max_token=5),
    "query must be a str (the question), got NoneType": lambda: B.stream(None, []),  # type: ignore[arg-type]
    "not a dict (its keys would be taken as the texts)": lambda: B.answer("q?", {"a": "b"}),  # type: ignore[arg-type]
    "source 0 is empty: give every source some text, or leave it out": lambda: B.answer(
        "q?", ["  "]
    ),
    "Source.id must be a str, got 0 (int)": lambda: Source("text", id=0),  # type: ignore[arg-type]
    "finish_reason must be 'stop', 'length' or None": lambda: parse_response(
        "x",
        [],
        "hash",
        finish_reason="banana",  # type: ignore[arg-type]
    ),
    "use one of ('hash', 'numbered', 'markdown') or None": lambda: parse_response(
        "x", [], "chatml"
    ),
}


@pytest.mark.parametrize("message", sorted(CASES))
def test_the_table_shows_the_real_message(message: str) -> None:
    assert message in TABLE
    with pytest.raises(ValueError, match=re.escape(message)):
        CASES[message]()
