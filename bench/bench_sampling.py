"""Benchmark of one sampling step of ``RowSampler``: batched top-p against the old per-row loop.

    python bench/bench_sampling.py [--device cpu|cuda] [--batch 8] [--vocab 65536] [--reps 200]
        [--threads N]

Times the sampler's step alone (no model) on random logits for a batch of sampling rows
(temperature 0.7, top_p 0.95, each with its own seeded generator): the old loop, which
sorted the whole vocabulary once per row (``top_p_filter`` then ``torch.multinomial``), and
the current batched ``RowSampler`` (one softmax, sort and cumsum for the batch; each row's
generator only draws that row's noise). Also a mixed batch (half greedy rows), top_p=1.0
(no sort in either) and a single row. The two samplers take turns step by step. Prints a
markdown table of median and best times per step.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, cast

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from pleias_rag.generation import GenerationSettings
from pleias_rag.local._sampling import RowSampler
from pleias_rag.local._streaming import Request, Row, ThreadSink
from pleias_rag.tokens import TokenCodec

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_local import machine


def parse_args() -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--device", default=None, help="cpu or cuda (default: cuda if available)")
    p.add_argument("--batch", type=int, default=8, help="rows in the batch")
    p.add_argument("--vocab", type=int, default=65536, help="vocabulary size")
    p.add_argument("--reps", type=int, default=200, help="timed steps per variant")
    p.add_argument("--threads", type=int, default=None, help="torch CPU threads (default: torch's)")
    return p.parse_args()


# --- the old per-row loop, kept here only as the baseline ------------------------------------


def top_p_filter(logits: torch.Tensor, top_p: float) -> torch.Tensor:
    """``logits`` (1-D) with the tokens outside the top-p nucleus set to -inf."""
    if top_p >= 1.0:
        return logits
    sorted_logits, order = torch.sort(logits, descending=False)
    cumulative = sorted_logits.softmax(-1).cumsum(-1)
    remove = cumulative <= (1.0 - top_p)
    remove[-1] = False  # always keep the most likely token
    mask = remove.scatter(0, order, remove)
    return logits.masked_fill(mask, float("-inf"))


class LoopSampler(RowSampler):
    """``RowSampler`` with the sampling step of before: one sort per row per step."""

    def _sample(self, active: list[int], scores: torch.Tensor) -> None:
        for i in active:
            gen = self.generators[i]
            s = self.rows[i].request.settings
            logits = top_p_filter(scores[i].float() / s.temperature, s.top_p)
            probs = logits.softmax(-1)
            token = torch.multinomial(probs, 1, generator=gen)
            scores[i] = float("-inf")
            scores[i, token] = 0.0


# ---------------------------------------------------------------------------------------------


class _Codec:
    def decode(self, ids: object) -> str:
        return ""


def make_rows(n: int, *, greedy: Sequence[int] = (), top_p: float = 0.95) -> list[Row]:
    rows = []
    for i in range(n):
        settings = GenerationSettings(temperature=0.0 if i in greedy else 0.7, top_p=top_p)
        request = Request(
            ids=(1,), settings=settings, sink=ThreadSink(), codec=cast(TokenCodec, _Codec()),
            stop_ids=(0,), pad_id=0, seed=i,
        )  # fmt: skip
        rows.append(Row(request))
    return rows


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def time_steps(
    makers: Sequence[Callable[[], RowSampler]],
    logits: torch.Tensor,
    reps: int,
    device: torch.device,
) -> list[tuple[float, float]]:
    """Median and best seconds of one call of each sampler (the copy of the scores not counted).

    The samplers take turns, step by step, so that load on a shared machine hits them alike.
    """
    samplers = [make() for make in makers]
    ids = cast(torch.LongTensor, torch.zeros((logits.shape[0], 1), dtype=torch.long))
    times: list[list[float]] = [[] for _ in samplers]
    for k in range(reps + 10):
        for sampler, spent in zip(samplers, times, strict=True):
            scores = cast(torch.FloatTensor, logits.clone())
            sync(device)
            start = time.perf_counter()
            out: Any = sampler(ids, scores)
            sync(device)
            if k >= 10:  # warm-up
                spent.append(time.perf_counter() - start)
            assert bool((out.isfinite().sum(-1) >= 1).all())
    return [(statistics.median(spent), min(spent)) for spent in times]


def main() -> None:
    args = parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    device = torch.device(args.device or ("cuda" if torch.cuda.is_available() else "cpu"))
    gen = torch.Generator().manual_seed(0)
    logits = (torch.randn((args.batch, args.vocab), generator=gen) * 3.0).to(device)
    half = range(0, args.batch, 2)
    variants: list[tuple[str, Callable[[type[RowSampler]], RowSampler]]] = [
        (f"{args.batch} sampling rows, top_p 0.95", lambda c: c(make_rows(args.batch), device)),
        (
            f"{args.batch} rows, half greedy, top_p 0.95",
            lambda c: c(make_rows(args.batch, greedy=half), device),
        ),
        (
            f"{args.batch} sampling rows, top_p 1.0",
            lambda c: c(make_rows(args.batch, top_p=1.0), device),
        ),
        ("1 sampling row, top_p 0.95", lambda c: c(make_rows(1), device)),
    ]
    print(f"### Sampling step, batch {args.batch}, vocabulary {args.vocab:,}")
    print()
    print(f"- machine: {machine(device)}; load average {os.getloadavg()[0]:.1f}")
    print(f"- torch {torch.__version__}; {args.reps} timed steps per variant")
    print(f"- command: `python bench/bench_sampling.py {' '.join(sys.argv[1:])}`".rstrip())
    print()
    print("| batch | per-row loop (median / best) | batched (median / best) | speed-up |")
    print("|---|---|---|---|")
    for name, build in variants:
        rows_logits = logits[: 1 if name.startswith("1 ") else args.batch]
        old, new = time_steps(
            [lambda b=build: b(LoopSampler), lambda b=build: b(RowSampler)],
            rows_logits,
            args.reps,
            device,
        )
        print(
            f"| {name} | {old[0] * 1e3:.2f} / {old[1] * 1e3:.2f} ms "
            f"| {new[0] * 1e3:.2f} / {new[1] * 1e3:.2f} ms | **{old[0] / new[0]:.2f}x** |"
        )


if __name__ == "__main__":
    main()
