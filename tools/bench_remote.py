"""Throughput of ``answer_batch``: a vLLM server (``RemoteBackend``) vs the local engine.

Runs one after the other on this machine (never both at once), with the same questions,
sources and fixed output length (``min_new_tokens`` = ``max_new_tokens``), greedy::

    PLEIAS_RAG_VLLM_PYTHON=... python tools/bench_remote.py --shape tiny
    PLEIAS_RAG_VLLM_PYTHON=... python tools/bench_remote.py --shape 350m --requests 16

``tiny`` is the trained test model (hidden 128, 2 layers); ``350m`` a random-weight model of
the Pleias-RAG-350M shape (hidden 1024, 26 layers, 16/8 heads, vocab 65,536).
"""

from __future__ import annotations

import argparse
import importlib.util
import os
import sys
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
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


def _tool() -> Any:
    spec = importlib.util.spec_from_file_location("vllm_tool", ROOT / "tools" / "vllm_server.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def model_folder(shape: str) -> tuple[Path, str]:
    from pleias_rag.testing import cached_random_model, cached_trained_model

    if shape == "tiny":
        return cached_trained_model("hash"), "hash"
    return cached_random_model("numbered", config=SHAPE_350M), "numbered"


def items(n: int) -> list[tuple[str, list[str]]]:
    return [
        (
            f"Question {i}: when was the tower completed?",
            [f"Doc {i}.{k}. " + TEXT for k in range(3)],
        )
        for i in range(n)
    ]


def timed(fn: Any) -> tuple[float, Any]:
    started = time.perf_counter()
    out = fn()
    return time.perf_counter() - started, out


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--shape", choices=["tiny", "350m"], default="tiny")
    parser.add_argument("--requests", type=int, default=32)
    parser.add_argument("--new-tokens", type=int, default=64)
    parser.add_argument("--concurrency", type=int, default=16)
    parser.add_argument("--max-batch-size", type=int, default=16)
    args = parser.parse_args()
    python = os.environ.get("PLEIAS_RAG_VLLM_PYTHON")
    if not python:
        print("set PLEIAS_RAG_VLLM_PYTHON (python tools/vllm_server.py install)", file=sys.stderr)
        return 2

    from pleias_rag.local import PleiasModel
    from pleias_rag.remote import RemoteBackend

    folder, dialect = model_folder(args.shape)
    gen = {"max_new_tokens": args.new_tokens, "min_new_tokens": args.new_tokens}
    batch = items(args.requests)
    rows = []

    server = _tool().start(python, folder, name="bench", max_model_len=1024)
    try:
        startup = server.wait_ready()
        remote = RemoteBackend(
            server.base_url,
            "bench",
            tokenizer=folder,
            max_concurrency=args.concurrency,
            timeout=3600,
        )
        remote.answer_batch(batch[:2], **gen)  # warm-up
        took, answers = timed(lambda: remote.answer_batch(batch, **gen))
        tokens = sum(a.completion_tokens or 0 for a in answers)
        rows.append(("vLLM server (RemoteBackend)", took, tokens))
    finally:
        server.stop()

    local = PleiasModel(folder, device="cpu", dtype="float32", max_batch_size=args.max_batch_size)
    local.answer_batch(batch[:2], **gen)  # warm-up (loads the weights)
    took, answers = timed(lambda: local.answer_batch(batch, **gen))
    rows.append(
        ("local engine (PleiasModel)", took, sum(a.completion_tokens or 0 for a in answers))
    )

    print(
        f"\n{args.shape} ({dialect}), {args.requests} questions x {args.new_tokens} new tokens, "
        f"prompt ~{remote.encode(*batch[0], **gen).prompt_tokens} tokens, "
        f"{os.cpu_count()} CPU cores, vLLM ready in {startup:.0f} s\n"
    )
    print("| backend | seconds | answers/s | generated tokens/s |")
    print("| --- | ---: | ---: | ---: |")
    for name, seconds, tokens in rows:
        print(
            f"| {name} | {seconds:.1f} | {args.requests / seconds:.2f} | {tokens / seconds:.0f} |"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
