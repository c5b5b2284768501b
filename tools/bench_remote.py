"""The local engine side by side with a vLLM server and a llama.cpp server (issue #16).

Same model folder, prompts and fixed output length (``min_new_tokens`` = ``max_new_tokens``,
greedy) for every backend, one backend at a time (never two at once), after a warm-up::

    export PLEIAS_RAG_VLLM_PYTHON=$(python tools/vllm_server.py install)
    export PLEIAS_RAG_LLAMACPP_PYTHON=$(python tools/llamacpp_server.py install)
    python tools/bench_remote.py --shape tiny
    python tools/bench_remote.py --shape 350m --new-tokens 32

Three workloads: one question alone, ``answer_batch`` of 8, and 32 concurrent requests (one
thread each calling ``answer``, as a web server's handlers would). ``tiny`` is a random-weight
test model (the tiny test shape: overhead-bound); ``350m`` a random-weight model of the
Pleias-RAG-350M shape (hidden 1024, 26 layers, 16/8 heads, vocab 65,536). Throughput counts
the tokens each backend reports generating (llama-server takes no ``min_tokens``: it is told
to ignore EOS). A backend whose server is not installed
(its variable unset) is left out. Prints a markdown table and the local/server ratios.
"""

from __future__ import annotations

import argparse
import importlib.util
import os
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
SHAPE_350M = {
    "vocab_size": 65536,
    "hidden_size": 1024,
    "num_hidden_layers": 26,
    "num_attention_heads": 16,
    "num_key_value_heads": 8,
    "head_dim": 64,
    "intermediate_size": 2560,
    "max_position_embeddings": 4096,
}
TEXT = (
    "The Eiffel Tower is a wrought-iron lattice tower on the Champ de Mars in Paris. It was "
    "designed by the company of Gustave Eiffel and completed in 1889 for the World's Fair. "
    "It was first criticised by some artists, and is now a global cultural icon of France. "
)
WORKLOADS = ("single", "batch8", "concurrent32")
Item = tuple[str, list[str]]


def _tool(name: str) -> Any:
    spec = importlib.util.spec_from_file_location(name, ROOT / "tools" / f"{name}.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def model_folder(shape: str) -> tuple[Path, str]:
    from pleias_rag.testing import cached_random_model

    # Random weights: the answers run to their length (a trained model stops early).
    if shape == "tiny":
        return cached_random_model("hash"), "hash"
    return cached_random_model("numbered", config=SHAPE_350M), "numbered"


def items(n: int) -> list[Item]:
    return [
        (
            f"Question {i}: when was the tower completed?",
            [f"Doc {i}.{k}. " + TEXT for k in range(3)],
        )
        for i in range(n)
    ]


def run_workloads(backend: Any, gen: dict[str, int]) -> dict[str, tuple[float, int]]:
    """Seconds and generated tokens of each workload on ``backend``."""
    backend.answer_batch(items(2), **gen)  # warm-up
    out: dict[str, tuple[float, int]] = {}
    question = items(1)[0]
    started = time.perf_counter()
    answer = backend.answer(*question, **gen)
    out["single"] = (time.perf_counter() - started, answer.completion_tokens or 0)
    started = time.perf_counter()
    answers = backend.answer_batch(items(8), **gen)
    out["batch8"] = (time.perf_counter() - started, sum(a.completion_tokens or 0 for a in answers))
    out["concurrent32"] = concurrently(lambda item: backend.answer(*item, **gen), items(32))
    return out


def concurrently(call: Callable[[Item], Any], work: list[Item]) -> tuple[float, int]:
    """Every item in its own thread, started together: seconds and tokens generated."""
    tokens = [0] * len(work)
    errors: list[BaseException] = []
    barrier = threading.Barrier(len(work) + 1)

    def one(i: int) -> None:
        barrier.wait()
        try:
            tokens[i] = call(work[i]).completion_tokens or 0
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=one, args=(i,)) for i in range(len(work))]
    for t in threads:
        t.start()
    barrier.wait()
    started = time.perf_counter()
    for t in threads:
        t.join()
    if errors:
        raise errors[0]
    return time.perf_counter() - started, sum(tokens)


def vllm(folder: Path, python: str, gen: dict[str, int]) -> tuple[dict[str, Any], float]:
    from pleias_rag.remote import RemoteBackend

    server = _tool("vllm_server").start(python, folder, name="bench", max_model_len=1024)
    try:
        startup = server.wait_ready()
        remote = RemoteBackend(
            server.base_url, "bench", tokenizer=folder, max_concurrency=32, timeout=3600
        )
        return run_workloads(remote, gen), startup
    finally:
        server.stop()


def llamacpp(folder: Path, python: str, gen: dict[str, int]) -> tuple[dict[str, Any], float]:
    from pleias_rag.remote import RemoteBackend

    tool = _tool("llamacpp_server")
    gguf = tool.convert(folder)
    # 32 slots of 1024 tokens: every concurrent request gets a slot of the local window.
    server = tool.start(python, gguf, name="bench", n_ctx=32 * 1024, parallel=32)
    try:
        startup = server.wait_ready()
        remote = RemoteBackend(
            server.base_url,
            "bench",
            tokenizer=folder,
            server="llama.cpp",
            context_window=1024,
            max_concurrency=32,
            timeout=3600,
            # llama-server takes no min_tokens: it is told to ignore EOS instead.
            extra_body={"ignore_eos": True},
        )
        return run_workloads(remote, {"max_new_tokens": gen["max_new_tokens"]}), startup
    finally:
        server.stop()


def local(folder: Path, gen: dict[str, int], max_batch_size: int) -> dict[str, Any]:
    from pleias_rag.local import PleiasModel

    model = PleiasModel(folder, device="cpu", dtype="float32", max_batch_size=max_batch_size)
    return run_workloads(model, gen)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--shape", choices=["tiny", "350m"], default="tiny")
    parser.add_argument("--new-tokens", type=int, default=64)
    parser.add_argument("--max-batch-size", type=int, default=32, help="of the local engine")
    args = parser.parse_args()
    folder, dialect = model_folder(args.shape)
    gen = {"max_new_tokens": args.new_tokens, "min_new_tokens": args.new_tokens}
    results: dict[str, dict[str, Any]] = {}
    notes: list[str] = []
    if python := os.environ.get("PLEIAS_RAG_VLLM_PYTHON"):
        results["vLLM"], startup = vllm(folder, python, gen)
        notes.append(f"vLLM ready in {startup:.0f} s")
    if python := os.environ.get("PLEIAS_RAG_LLAMACPP_PYTHON"):
        results["llama.cpp"], startup = llamacpp(folder, python, gen)
        notes.append(f"llama.cpp ready in {startup:.0f} s")
    results["local"] = local(folder, gen, args.max_batch_size)

    print(
        f"\n{args.shape} ({dialect}), {args.new_tokens} new tokens per answer, "
        f"{os.cpu_count()} CPU cores, local max_batch_size={args.max_batch_size}; "
        + ", ".join(notes)
        + "\n"
    )
    print("| backend | " + " | ".join(f"{w} (s, tok/s)" for w in WORKLOADS) + " |")
    print("| --- |" + " ---: |" * len(WORKLOADS))
    for name, res in results.items():
        cells = [f"{res[w][0]:.2f} s, {res[w][1] / res[w][0]:.0f}" for w in WORKLOADS]
        print(f"| {name} | " + " | ".join(cells) + " |")
    for name in (n for n in results if n != "local"):
        ratios = ", ".join(
            f"{w} {results[name][w][0] / results['local'][w][0]:.2f}x" for w in WORKLOADS
        )
        print(f"\nlocal speed vs {name} (their seconds / ours; > 1: local faster): {ratios}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
