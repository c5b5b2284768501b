"""The verification benchmark's labelled set: not one altered quote verified, >= 99% of
the true ones verified, and the documented figures are this run's."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest

ROOT = Path(__file__).resolve().parents[1]
ALTERATIONS = {
    "digit changed", "digits swapped", "decimal dropped", "separator changed", "sign added",
    "sign dropped", "unit changed", "negation added", "negation dropped", "entity swapped",
    "word inserted", "word dropped", "elision out of order", "elision hides a negation",
    "elision across sources", "query copy", "real query copy", "unit case changed",
    "dash joined to a number", "digit groups joined", "digit group split", "separator spaced",
}  # fmt: skip


def _bench() -> ModuleType:
    spec = importlib.util.spec_from_file_location("bench_verify", ROOT / "bench/bench_verify.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="module")
def result() -> dict[str, Any]:
    bench = _bench()
    return dict(bench.evaluate(bench.build_cases(seed=0)))


def test_no_altered_quote_is_verified(result: dict[str, Any]) -> None:
    assert result["wrongly_verified"] == [] and result["precision"] == 1.0
    present = {c for c, truth in result["categories"].items() if not truth}
    assert present >= ALTERATIONS  # every kind of alteration is in the set
    for category in ALTERATIONS:
        assert sum(result["table"][category].values()) > 0


def test_true_quotes_verify(result: dict[str, Any]) -> None:
    assert result["recall"] >= 0.99, result["missed"]
    assert result["table"]["real output quote"] == {"verified": 15}


def test_documented_figures_are_this_run(result: dict[str, Any]) -> None:
    doc = (ROOT / "docs" / "benchmarks.md").read_text()
    assert "python bench/bench_verify.py" in doc
    assert f"{result['cases']} cases ({result['true']} true, {result['altered']} altered)" in doc
    assert f"recall on true quotes: {100 * result['recall']:.2f}%" in doc
    assert "precision of verified: 100.00%" in doc
    readme = (ROOT / "README.md").read_text()
    assert f"not one of {result['altered']:,} altered quotes" in readme
