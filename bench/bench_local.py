"""Benchmark of the local engine on a random-weight model of the real Pleias-RAG-350M shape.

    python bench/bench_local.py [--dtype auto|float32|bfloat16|float16] [--device cpu|cuda]

Builds (once, cached) a random-weight LlamaForCausalLM with the shape of
``../shared/models/pleias-rag-350m.config.json`` and the real 65,536-token vocabulary
(``../shared/tokenizers/pleias-rag-350m-inferred``; ``--tokenizer built`` for a built one),
then measures in
one run, on one machine:

1. the overhead of ``PleiasModel.answer`` over a bare ``model.generate`` on the same ids;
2. ``answer_batch`` on 8 questions vs 8 sequential ``answer`` calls (same dtype), and the
   default-settings engine vs an fp32 one-question-at-a-time loop like Pleias's own helper
   library (string prompt -> tokenizer -> generate -> decode);
3. streaming time-to-first-token vs non-streaming latency.

Every generation has a fixed length (EOS suppressed until ``--new-tokens``), so the
comparisons are fair. Prints a markdown report. Random weights write noise: speed only.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch
from transformers import AutoModelForCausalLM, GenerationConfig

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from pleias_rag import PleiasModel, Source, render_prompt
from pleias_rag.local import resolve_dtype
from pleias_rag.testing import cached_random_model

SHARED = Path(__file__).resolve().parents[2] / "shared"
DEFAULT_CONFIG = SHARED / "models/pleias-rag-350m.config.json"
DEFAULT_TOKENIZER = SHARED / "tokenizers/pleias-rag-350m-inferred/tokenizer.json"
TOPICS = ["tower", "museum", "moon", "water", "bees", "tea", "river", "library"]


def parse_args() -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--dtype", default="auto", help="auto (default), float32, bfloat16, float16")
    p.add_argument("--device", default=None, help="cpu or cuda (default: cuda if available)")
    p.add_argument("--config", type=Path, default=DEFAULT_CONFIG, help="model shape config.json")
    p.add_argument(
        "--tokenizer",
        default=str(DEFAULT_TOKENIZER),
        help="a real tokenizer.json (default: the inferred RAG-350M one), or 'built'",
    )
    p.add_argument("--new-tokens", type=int, default=32, help="fixed output length")
    p.add_argument("--prompt-tokens", type=int, default=110, help="approximate prompt length")
    p.add_argument("--batch", type=int, default=8, help="questions in the batch comparison")
    p.add_argument("--reps", type=int, default=3, help="repetitions of the short measurements")
    return p.parse_args()


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def timed(fn: Callable[[], Any], device: torch.device) -> float:
    sync(device)
    start = time.perf_counter()
    fn()
    sync(device)
    return time.perf_counter() - start


def questions(engine: Any, n: int, target: int, new: int) -> list[tuple[str, list[Source]]]:
    """``n`` questions with two sources each, padded to about ``target`` prompt tokens."""
    out = []
    for i in range(n):
        topic = TOPICS[i % len(TOPICS)]
        query = f"What do the sources say about the {topic} number {i}?"
        words = 1
        while True:
            body = " ".join(
                f"The {topic} fact {k} is about history and people." for k in range(words)
            )
            sources = [Source(body[: len(body) // 2]), Source(body[len(body) // 2 :] + f" ({i})")]
            if len(engine.encode(query, sources, max_new_tokens=new)) >= target or words > 400:
                break
            words += 1
        out.append((query, sources))
    return out


def machine(device: torch.device) -> str:
    if device.type == "cuda":
        return f"{torch.cuda.get_device_name(device)} (CUDA {torch.version.cuda})"
    model = platform.processor() or platform.machine()
    try:
        info = subprocess.run(["lscpu"], capture_output=True, text=True, check=True).stdout
        for line in info.splitlines():
            if line.startswith("Model name:"):
                model = line.split(":", 1)[1].strip()
    except (OSError, subprocess.CalledProcessError):
        pass
    return f"{model}, {os.cpu_count()} CPUs, torch threads {torch.get_num_threads()}"


def main() -> None:
    args = parse_args()
    device = torch.device(args.device or ("cuda" if torch.cuda.is_available() else "cpu"))
    new = args.new_tokens
    gen = {"max_new_tokens": new, "min_new_tokens": new}
    config = json.loads(args.config.read_text())
    started = time.perf_counter()
    tokenizer = None if args.tokenizer == "built" else Path(args.tokenizer)
    path = cached_random_model("numbered", config=config, tokenizer_file=tokenizer)
    build_s = time.perf_counter() - started

    engine = PleiasModel.from_pretrained(path, device=device, dtype=args.dtype).load()
    dtype = engine.dtype
    default = PleiasModel.from_pretrained(path, device=device).load()  # dtype auto
    model, tok = engine.model, engine.tokenizer
    items = questions(engine, args.batch, args.prompt_tokens, new)
    prompt_lens = [len(engine.encode(q, s, max_new_tokens=new)) for q, s in items]
    stop_ids = list(engine._res.bundle().stop_ids)
    make_config: Any = GenerationConfig  # untyped in transformers
    bare_config = make_config(
        max_new_tokens=new, min_new_tokens=new, do_sample=False, repetition_penalty=1.0,
        eos_token_id=stop_ids, pad_token_id=tok.pad_token_id,
    )  # fmt: skip

    def bare(ids: list[int], m: Any = model) -> str:
        x = torch.tensor([ids], device=device)
        with torch.inference_mode():
            out = m.generate(input_ids=x, attention_mask=torch.ones_like(x),
                             generation_config=bare_config)  # fmt: skip
        return str(tok.decode(out[0, len(ids) :], skip_special_tokens=False))

    def bare_batch(batch: list[list[int]]) -> None:
        """One left-padded generate: the ceiling of what batching can give."""
        width = max(len(ids) for ids in batch)
        x = torch.full((len(batch), width), tok.pad_token_id, dtype=torch.long)
        mask = torch.zeros_like(x)
        for i, ids in enumerate(batch):
            x[i, width - len(ids) :] = torch.tensor(ids)
            mask[i, width - len(ids) :] = 1
        with torch.inference_mode():
            model.generate(input_ids=x.to(device), attention_mask=mask.to(device),
                           generation_config=bare_config)  # fmt: skip

    fp32 = model if dtype == torch.float32 else None
    if fp32 is None:
        loaded: Any = AutoModelForCausalLM.from_pretrained(path, dtype=torch.float32)
        fp32 = loaded.to(device).eval()

    # Warm-up of every model and path measured: first calls allocate caches, pick kernels.
    engine.answer(*items[0], **gen)
    engine.answer_batch(items, **gen)
    default.answer_batch(items, **gen)
    bare(list(engine.encode(*items[0]).ids))
    bare(list(engine.encode(*items[0]).ids), fp32)

    rows: list[tuple[str, str]] = []
    q0, s0 = items[0]
    ids0 = list(engine.encode(q0, s0, max_new_tokens=new).ids)

    # 1. overhead vs bare generate (alternated, median)
    t_bare, t_engine = [], []
    for _ in range(args.reps):
        t_bare.append(timed(lambda: bare(ids0), device))
        t_engine.append(timed(lambda: engine.answer(q0, s0, **gen), device))
    mb, me = statistics.median(t_bare), statistics.median(t_engine)
    lb, le = min(t_bare), min(t_engine)
    rows.append(("bare `model.generate`, 1 question (median / best)",
                 f"{mb * 1000:.0f} / {lb * 1000:.0f} ms"))  # fmt: skip
    rows.append(("`PleiasModel.answer`, same ids (median / best)",
                 f"{me * 1000:.0f} / {le * 1000:.0f} ms"))  # fmt: skip
    rows.append(("**overhead** (answer / bare: medians, bests)",
                 f"**{me / mb:.3f}x**, {le / lb:.3f}x"))  # fmt: skip

    # 2. batch vs sequential, same dtype
    t_seq = timed(lambda: [engine.answer(q, s, **gen) for q, s in items], device)
    t_batch = timed(lambda: engine.answer_batch(items, **gen), device)
    n = len(items)
    rows.append((f"{n} sequential `answer` calls", f"{t_seq:.2f} s ({n * new / t_seq:.1f} tok/s)"))
    rows.append((f"`answer_batch` of {n}", f"{t_batch:.2f} s ({n * new / t_batch:.1f} tok/s)"))
    rows.append(("**batch speed-up** (same dtype)", f"**{t_seq / t_batch:.2f}x**"))
    all_ids = [list(engine.encode(q, s, max_new_tokens=new).ids) for q, s in items]
    t_bare_batch = timed(lambda: bare_batch(all_ids), device)
    rows.append((f"bare padded `generate` of {n} (ceiling)", f"{t_bare_batch:.2f} s"))

    # 2b. default-settings engine vs an fp32 one-at-a-time loop like Pleias's helper library
    def helper_loop() -> None:
        for q, s in items:
            prompt = render_prompt(q, s, "numbered")
            bare(list(tok(prompt)["input_ids"]), fp32)

    t_helper = timed(helper_loop, device)
    t_default = timed(lambda: default.answer_batch(items, **gen), device)
    auto = str(default.dtype).removeprefix("torch.")
    rows.append((f"fp32 one-at-a-time loop (helper-library style), {n}", f"{t_helper:.2f} s"))
    rows.append((f"default engine (`dtype=auto` -> {auto}) `answer_batch`", f"{t_default:.2f} s"))
    rows.append(("**default engine vs fp32 loop**", f"**{t_helper / t_default:.2f}x**"))

    # 3. streaming time-to-first-token vs non-streaming latency
    ttft, total = [], []
    for _ in range(args.reps):
        sync(device)
        start = time.perf_counter()
        stream = engine.stream(q0, s0, **gen)
        next(iter(stream))
        ttft.append(time.perf_counter() - start)
        stream.close()
        engine.worker.wait_idle()
        total.append(timed(lambda: engine.answer(q0, s0, **gen), device))
    mt, ml = statistics.median(ttft), statistics.median(total)
    rows.append(("streaming: time to first token", f"{mt * 1000:.0f} ms"))
    rows.append(("non-streaming: time to the answer", f"{ml * 1000:.0f} ms"))
    rows.append(("**first token / full answer**", f"**{mt / ml:.2f}**"))

    load = os.getloadavg()[0] if hasattr(os, "getloadavg") else float("nan")
    print(
        f"### {Path(args.config).stem}, random weights, dtype {str(dtype).removeprefix('torch.')}"
    )
    print()
    print(f"- machine: {machine(device)}; load average at the end {load:.1f}")
    print(f"- torch {torch.__version__}; default dtype here: "
          f"{str(resolve_dtype('auto', device)).removeprefix('torch.')}")  # fmt: skip
    print(f"- prompts {min(prompt_lens)}-{max(prompt_lens)} tokens, {new} new tokens each "
          f"(fixed), batch {n}, median of {args.reps} where repeated")  # fmt: skip
    print(f"- command: `python bench/bench_local.py {' '.join(sys.argv[1:])}`".rstrip())
    print(f"- model built/cached in {build_s:.0f} s at {path}")
    print()
    print("| measurement | result |")
    print("|---|---|")
    for name, value in rows:
        print(f"| {name} | {value} |")


if __name__ == "__main__":
    main()
