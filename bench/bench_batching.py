"""Benchmark of the local engine's scheduling: what a request pays for the others (issue #16).

    python bench/bench_batching.py [--shape tiny|350m] [--device cpu|cuda] [--transformers-cb]

On a random-weight model with the real inferred Pleias-RAG-350M vocabulary (the tiny shape:
overhead-bound; ``350m``: the shape of ``../shared/models/pleias-rag-350m.config.json``),
measures in one run, for each scheduler of ``PleiasModel`` (``scheduling="static"``: one
padded ``generate`` per batch; ``"continuous"``: rows join and leave at every step) on the
same weights:

1. head-of-line blocking: a short answer alone, then arriving while a long one runs;
2. an equal-length batch of 8 through ``answer_batch`` (1 and 2: medians of 5 runs, the batches
   of both schedulers taking turns);
3. 32 requests of mixed output lengths arriving over time (a fixed schedule, one thread
   each): total time, throughput and p50/p95 latency (3 runs a scheduler, taking turns: the
   median run);
4. with ``--transformers-cb``, the same batch of 8 through transformers' continuous batching
   manager (``generate_batch``, paged attention) on the same ids.

``--shape 350m`` scales the counts down (see ``PLANS``): a 350M model decodes ~100x slower on a
CPU. Every generation has a fixed length (EOS suppressed), so the comparisons are fair. Prints a
markdown report with the ratios of issue #16's targets. Random weights write noise: speed only.
"""

from __future__ import annotations

import argparse
import json
import random
import statistics
import sys
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from pleias_rag import PleiasModel, Source
from pleias_rag.testing import cached_random_model

SHARED = Path(__file__).resolve().parents[2] / "shared"
SHAPES = {"tiny": None, "350m": SHARED / "models/pleias-rag-350m.config.json"}
TOKENIZER = SHARED / "tokenizers/pleias-rag-350m-inferred/tokenizer.json"

Item = tuple[str, list[Source]]


@dataclass(frozen=True)
class Plan:
    """What to measure: token counts and the arrival schedule."""

    short: int = 32
    long: int = 1024
    batch: int = 8
    batch_tokens: int = 128
    requests: int = 32
    lengths: tuple[int, int] = (16, 512)
    mean_gap_s: float = 0.05
    seed: int = 0
    reps: int = 5  # of the head-of-line and equal-batch measures (their median)
    arrival_reps: int = 3  # runs of the arrivals per scheduler (the median one is kept)


QUICK = Plan(
    short=4, long=48, batch=2, batch_tokens=8, requests=4, lengths=(2, 12), reps=1, arrival_reps=1
)
# The 350M shape decodes ~100x slower on a CPU: the same measures, scaled down to minutes.
PLANS = {
    "tiny": Plan(),
    "350m": Plan(
        short=8,
        long=160,
        batch_tokens=16,
        requests=16,
        lengths=(8, 64),
        mean_gap_s=0.5,
        reps=3,
        arrival_reps=1,
    ),
}


def items(n: int) -> list[Item]:
    return [
        (f"What was built in year {1800 + i}?", [Source(f"Tower {i} was built in {1800 + i}.")])
        for i in range(n)
    ]


def fixed(tokens: int) -> dict[str, int]:
    return {"max_new_tokens": tokens, "min_new_tokens": tokens}


def timed(call: Any, reps: int) -> float:
    """The median seconds of ``reps`` calls (a shared CPU's noise is bursty)."""
    took = []
    for _ in range(reps):
        started = time.perf_counter()
        call()
        took.append(time.perf_counter() - started)
    return statistics.median(took)


def head_of_line(engine: PleiasModel, plan: Plan) -> dict[str, float]:
    """A short answer's latency alone, and arriving just after a long one started."""
    short, long = items(2)
    engine.answer(*short, **fixed(plan.short))  # warm
    alone = timed(lambda: engine.answer(*short, **fixed(plan.short)), plan.reps)

    def behind_long() -> None:
        runner = threading.Thread(target=engine.answer, args=long, kwargs=fixed(plan.long))
        runner.start()
        time.sleep(min(0.2, alone))  # the long one is decoding
        started = time.perf_counter()
        engine.answer(*short, **fixed(plan.short))
        took.append(time.perf_counter() - started)
        runner.join()

    took: list[float] = []
    for _ in range(plan.reps):
        behind_long()
    behind = statistics.median(took)
    return {"alone_s": alone, "behind_s": behind, "ratio": behind / alone}


def equal_batches(engines: dict[str, PleiasModel], plan: Plan) -> dict[str, dict[str, float]]:
    """The batch of 8 on each engine, taking turns run by run (a shared CPU's speed drifts:
    turns give both the same share of it), the median of ``plan.reps`` each."""
    batch = items(plan.batch)
    took: dict[str, list[float]] = {name: [] for name in engines}
    for _ in range(plan.reps):
        for name, engine in engines.items():
            took[name].append(
                timed(lambda e=engine: e.answer_batch(batch, **fixed(plan.batch_tokens)), 1)
            )
    return {name: {"seconds": statistics.median(t)} for name, t in took.items()}


def arrivals(engine: PleiasModel, plan: Plan) -> dict[str, Any]:
    """Requests with mixed lengths arriving on a fixed (seeded) schedule, one thread each."""
    rng = random.Random(plan.seed)
    lengths = [rng.randint(*plan.lengths) for _ in range(plan.requests)]
    offsets = [0.0]
    for _ in range(plan.requests - 1):
        offsets.append(offsets[-1] + rng.expovariate(1 / plan.mean_gap_s))
    latencies: list[float] = [0.0] * plan.requests
    start = time.perf_counter()

    def one(i: int, item: Item) -> None:
        time.sleep(max(0.0, start + offsets[i] - time.perf_counter()))
        sent = time.perf_counter()
        engine.answer(*item, **fixed(lengths[i]))
        latencies[i] = time.perf_counter() - sent

    threads = [
        threading.Thread(target=one, args=(i, item)) for i, item in enumerate(items(plan.requests))
    ]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    total = time.perf_counter() - start
    ordered = sorted(latencies)
    return {
        "seconds": total,
        "tokens": sum(lengths),
        "tokens_per_s": sum(lengths) / total,
        "p50_s": statistics.median(ordered),
        "p95_s": ordered[min(len(ordered) - 1, round(0.95 * (len(ordered) - 1)))],
        "latencies_s": latencies,
    }


def transformers_cb(engine: PleiasModel, path: Path, plan: Plan) -> dict[str, float]:
    """The batch of 8 through transformers' continuous batching manager (second call)."""
    from transformers import AutoModelForCausalLM, GenerationConfig

    ids = [list(engine.encode(q, s).ids) for q, s in items(plan.batch)]
    model = AutoModelForCausalLM.from_pretrained(
        path, attn_implementation="paged|sdpa", dtype=engine.dtype
    ).to(engine.device)
    config: Any = GenerationConfig(
        max_new_tokens=plan.batch_tokens, min_new_tokens=plan.batch_tokens, do_sample=False
    )
    model.generate_batch(ids, generation_config=config, persistent_manager=True)  # warm
    started = time.perf_counter()
    model.generate_batch(ids, generation_config=config, persistent_manager=True)
    return {"seconds": time.perf_counter() - started}


SCHEDULERS = ("static", "continuous")


def measure(
    path: Path,
    device: str,
    plan: Plan,
    *,
    transformers: bool = False,
    engine_kwargs: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """Every measure for each scheduler, on one copy of the weights."""
    engines = {
        scheduling: PleiasModel.from_pretrained(
            path, device=device, dtype="float32", scheduling=scheduling, **(engine_kwargs or {})
        ).load()
        for scheduling in SCHEDULERS
    }
    out: dict[str, Any] = {
        name: {"head_of_line": head_of_line(engine, plan)} for name, engine in engines.items()
    }
    for name, batch in equal_batches(engines, plan).items():
        out[name]["equal_batch"] = batch
    # The arrivals too take turns, the run of median total time of each kept.
    runs: dict[str, list[dict[str, Any]]] = {name: [] for name in engines}
    for _ in range(plan.arrival_reps):
        for name, engine in engines.items():
            runs[name].append(arrivals(engine, plan))
    for name, done in runs.items():
        out[name]["arrivals"] = sorted(done, key=lambda r: r["seconds"])[len(done) // 2]
    out["targets"] = targets(out["static"], out["continuous"])
    if transformers:
        out["transformers_cb"] = transformers_cb(engines["continuous"], path, plan)
    return out


def targets(static: dict[str, Any], continuous: dict[str, Any]) -> dict[str, float]:
    """The ratios issue #16 sets targets on (continuous against static)."""
    arr_s, arr_c = static["arrivals"], continuous["arrivals"]
    return {
        "short_behind_long": continuous["head_of_line"]["ratio"],  # <= 1.5
        "throughput": arr_c["tokens_per_s"] / arr_s["tokens_per_s"],  # >= 1.3
        "p95": arr_c["p95_s"] / arr_s["p95_s"],  # <= 0.5
        "equal_batch_speed": static["equal_batch"]["seconds"]
        / continuous["equal_batch"]["seconds"],  # >= 0.95
    }


GOALS = {
    "short_behind_long": ("<=", 1.5),
    "throughput": (">=", 1.3),
    "p95": ("<=", 0.5),
    "equal_batch_speed": (">=", 0.95),
}


def report(result: dict[str, Any], plan: Plan, machine: str) -> str:
    s, c = result["static"], result["continuous"]

    def row(label: str, fmt: Any) -> str:
        return f"| {label} | {fmt(s)} | {fmt(c)} |"

    def arr(r: dict[str, Any]) -> str:
        a = r["arrivals"]
        return (
            f"{a['seconds']:.2f} s, {a['tokens_per_s']:.0f} tok/s, "
            f"p50 {a['p50_s']:.2f} s, p95 {a['p95_s']:.2f} s"
        )

    lines = [
        f"Machine: {machine}",
        "",
        "| measure | static | continuous |",
        "|---|---|---|",
        row(f"{plan.short}-token answer alone", lambda r: f"{r['head_of_line']['alone_s']:.2f} s"),
        row(
            f"... behind a {plan.long}-token one",
            lambda r: f"{r['head_of_line']['behind_s']:.2f} s ({r['head_of_line']['ratio']:.1f}x)",
        ),
        row(
            f"answer_batch {plan.batch} x {plan.batch_tokens} tokens",
            lambda r: f"{r['equal_batch']['seconds']:.2f} s",
        ),
        row(
            f"{plan.requests} requests, {plan.lengths[0]}-{plan.lengths[1]} tokens, "
            "arriving over time",
            arr,
        ),
        "",
        "| target (continuous vs static) | goal | measured |",
        "|---|---|---|",
    ]
    for name, value in result["targets"].items():
        op, goal = GOALS[name]
        met = value <= goal if op == "<=" else value >= goal
        lines.append(f"| {name} | {op} {goal} | {value:.2f}x {'met' if met else 'NOT met'} |")
    if "transformers_cb" in result:
        cb = result["transformers_cb"]["seconds"]
        ours = c["equal_batch"]["seconds"]
        lines.append("")
        lines.append(
            f"transformers generate_batch {plan.batch} x {plan.batch_tokens}: {cb:.2f} s "
            f"({cb / ours:.2f}x continuous answer_batch)"
        )
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> dict[str, Any]:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--shape", choices=sorted(SHAPES), default="tiny")
    p.add_argument("--device", default=None, help="cpu or cuda (default: cuda if available)")
    p.add_argument("--transformers-cb", action="store_true", help="also measure generate_batch")
    p.add_argument("--quick", action="store_true", help="tiny counts (a smoke run)")
    p.add_argument("--max-batch-size", type=int, default=None, help="of both engines")
    args = p.parse_args(argv)
    device = args.device or ("cuda" if torch.cuda.is_available() else "cpu")
    shape = SHAPES[args.shape]
    config = None if shape is None else json.loads(shape.read_text())
    tokenizer = TOKENIZER if TOKENIZER.exists() else None
    path = cached_random_model("numbered", config=config, tokenizer_file=tokenizer)
    plan = QUICK if args.quick else PLANS[args.shape]
    extra = {} if args.max_batch_size is None else {"max_batch_size": args.max_batch_size}
    result = measure(path, device, plan, transformers=args.transformers_cb, engine_kwargs=extra)
    name = torch.cuda.get_device_name() if device == "cuda" else f"CPU x{torch.get_num_threads()}"
    print(f"## bench_batching --shape {args.shape}\n")
    print(report(result, plan, f"{name}, torch {torch.__version__}"))
    return result


if __name__ == "__main__":
    main()
