"""The scheduling benchmark (``bench/bench_batching.py``) runs end to end on a tiny model and
reports every measure it makes."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path
from types import ModuleType

import pytest

from pleias_rag.testing import cached_random_model

ROOT = Path(__file__).resolve().parents[1]


def _bench() -> ModuleType:
    spec = importlib.util.spec_from_file_location(
        "bench_batching", ROOT / "bench/bench_batching.py"
    )
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module


@pytest.mark.filterwarnings("ignore::UserWarning")
def test_quick_run_measures_both_schedulers_and_reports() -> None:
    bench = _bench()
    plan = bench.QUICK
    result = bench.measure(cached_random_model("numbered"), "cpu", plan)
    for scheduling in bench.SCHEDULERS:
        arrivals = result[scheduling]["arrivals"]
        assert len(arrivals["latencies_s"]) == plan.requests
        assert all(t > 0 for t in arrivals["latencies_s"])
        lo, hi = plan.requests * plan.lengths[0], plan.requests * plan.lengths[1]
        assert lo <= arrivals["tokens"] <= hi
        assert arrivals["p50_s"] <= arrivals["p95_s"] <= arrivals["seconds"]
        hol = result[scheduling]["head_of_line"]
        assert hol["ratio"] == pytest.approx(hol["behind_s"] / hol["alone_s"])
    got = result["targets"]
    assert got["p95"] == pytest.approx(
        result["continuous"]["arrivals"]["p95_s"] / result["static"]["arrivals"]["p95_s"]
    )
    text = bench.report(result, plan, "test machine")
    assert f"behind a {plan.long}-token one" in text
    for name in bench.GOALS:
        assert f"| {name} |" in text
