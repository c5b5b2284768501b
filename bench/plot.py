"""Draw docs/img/throughput.svg from bench/figures.json: a dependency-free bar chart.

    python bench/plot.py

Each run is one panel (its own time scale): the seconds to answer the same 8 questions one at a
time in fp32 (like Pleias's helper library), with 8 sequential ``answer`` calls, and with one
``answer_batch``; and the scheduling panel: a short answer's seconds behind a long one, and the
p95 latency of 32 requests arriving over time, under static and continuous batching.
"""

from __future__ import annotations

import json
from html import escape
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
FIGURES = ROOT / "bench" / "figures.json"
OUT = ROOT / "docs" / "img" / "throughput.svg"
COLORS = ("#b0b7c3", "#7a9cc6", "#2f6db5")
BAR_W, LABEL_W, ROW_H, PANEL_GAP = 360, 190, 26, 34


def render(figures: dict[str, object]) -> str:
    runs = figures["runs"]
    assert isinstance(runs, list)
    rows: list[str] = []
    y = 10
    for run in runs:
        seconds: dict[str, float] = run["seconds"]
        top = max(seconds.values())
        rows.append(f'<text x="0" y="{y + 14}" font-weight="bold">{escape(run["machine"])}</text>')
        y += 24
        for i, (name, value) in enumerate(seconds.items()):
            width = BAR_W * value / top
            rows.append(
                f'<text x="{LABEL_W - 8}" y="{y + 15}" text-anchor="end">{escape(name)}</text>'
                f'<rect x="{LABEL_W}" y="{y + 3}" width="{width:.1f}" height="{ROW_H - 8}" '
                f'fill="{COLORS[i % len(COLORS)]}"/>'
                f'<text x="{LABEL_W + width + 6:.1f}" y="{y + 15}">{value:g} s</text>'
            )
            y += ROW_H
        y += PANEL_GAP - 24
    height = y + 10
    width = LABEL_W + BAR_W + 70
    return (
        f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" '
        f'font-family="sans-serif" font-size="13">{"".join(rows)}</svg>\n'
    )


def main() -> None:
    OUT.parent.mkdir(parents=True, exist_ok=True)
    OUT.write_text(render(json.loads(FIGURES.read_text())), encoding="utf-8")
    print(f"wrote {OUT}")


if __name__ == "__main__":
    main()
