"""The benchmark plot shows the documented figures, and is up to date."""

import json
import runpy
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def test_plot_matches_figures_and_docs() -> None:
    plot = runpy.run_path(str(ROOT / "bench" / "plot.py"))
    figures = json.loads((ROOT / "bench" / "figures.json").read_text())
    svg = plot["render"](figures)
    assert (ROOT / "docs" / "img" / "throughput.svg").read_text() == svg, "run bench/plot.py"
    doc = (ROOT / "docs" / "benchmarks.md").read_text()
    assert "img/throughput.svg" in doc
    for run in figures["runs"]:
        assert run["command"] in doc
        for value in run["seconds"].values():
            assert f"{value:.2f} s" in doc and f"{value:g} s" in svg
