"""The examples run offline on the tiny trained model and print real, checked, cited answers.

They run in this process (``runpy``, stdout captured), sharing the imports and the loaded
weights: a subprocess per example would spend about 10 s on imports alone. One also starts as
a real subprocess (``--help``), to check that a script finds ``examples/_offline.py``. The
remote examples need a real vLLM server: like ``tests/remote``, they run only when
``$PLEIAS_RAG_VLLM_PYTHON`` names a vLLM venv's python.
"""

from __future__ import annotations

import os
import runpy
import subprocess
import sys
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from pleias_rag import source_id
from pleias_rag.testing import TRAINING_EXAMPLES

ROOT = Path(__file__).resolve().parents[1]
EXAMPLES = ROOT / "examples"

TIDES = "The Moon's gravity causes the tides[1]. The Louvre houses the Mona Lisa[2]."
EIFFEL = "The Eiffel Tower was completed in 1889[1]."
_BY_NAME = {ex.name: ex for ex in TRAINING_EXAMPLES["hash"]}
MOON, LOUVRE, TEA = _BY_NAME["two_citations"].sources
WATER = _BY_NAME["misattributed"].sources[0]

#: What each example must print (in this order), on the tiny model.
EXPECTED: dict[str, list[str]] = {
    "langchain_chat_documents.py": [
        f"A: {TIDES}",
        "[1] document 1: 'Its gravity causes the tides.' -> verified",
        "found (exact) at 52:81",
        "[2] document 2: 'It houses the Mona Lisa.' -> verified",
        "'input_tokens': 176",
        "A: Water boils at 100 degrees Celsius at sea level[1].",
        f"[1] {source_id(WATER)}: 'At sea level, water boils at 100 degrees Celsius.' "
        "-> misattributed",
        f"the model named {source_id(MOON)}; the quote is in {source_id(WATER)}",
    ],
    "langchain_rag_chain_streaming.py": [
        TIDES,
        "[1] document 1: 'Its gravity causes the tides.' (verified, exact)",
        "[2] document 2: 'It houses the Mona Lisa.' (verified, exact)",
        "document 1 [52:81]: 'Its gravity causes the tides.'",
        "document 2 [52:76]: 'It houses the Mona Lisa.'",
    ],
    "langchain_reranker.py": [
        f"1.0 {MOON[:50]!r} quotes ['Its gravity causes the tides.']",
        f"1.0 {LOUVRE[:50]!r} quotes ['It houses the Mona Lisa.']",
        f"0.0 {TEA[:50]!r} quotes []",
        "analysis only, top 2:",
        f"0.5 {MOON[:50]!r}",
        f"0.5 {LOUVRE[:50]!r}",
    ],
    "llama_index_query_engine.py": [
        f"A: {TIDES}",
        "[1] document 1: verified, 'Its gravity causes the tides.'",
        "[2] document 2: verified, 'It houses the Mona Lisa.'",
        f"Source analysis: 1. **{source_id(MOON)}** explains the tides.",
        "Dropped to fit the context: []",
    ],
    "llama_index_streaming.py": [
        TIDES,
        "[1] verified: 'Its gravity causes the tides.'",
        "[2] verified: 'It houses the Mona Lisa.'",
        f"A (async): {TIDES}",
        "[1] verified: 'Its gravity causes the tides.'",
        "[2] verified: 'It houses the Mona Lisa.'",
    ],
    "llama_index_reranker.py": [
        f"score 1.0 (retrieval 0.56) {MOON[:50]!r}",
        f"score 0.8 (retrieval 0.43) {LOUVRE[:50]!r}",
        f"score 0.0 (retrieval 0.03) {TEA[:50]!r}",
    ],
    "llama_index_grounding.py": [
        f"A: {EIFFEL}",
        "passing=True score=1.0",
        "[1] grounded=True: quote found (exact, 1.00) in cited-1",
        "A: Water boils at 100 degrees Celsius at sea level[1].",
        "passing=False score=0.0",
        "misattributed: the quote is in misattributed-1, not in the one cited",
        "A: Bees use a waggle dance[1].",
        "passing=False score=0.0",
        "id '0123456789abcdef' is not one of the sources",
    ],
}
REMOTE = ("remote_langchain.py", "remote_llama_index.py")
#: Written by colleagues and tested with their own features.
NOT_HERE = ("*agent*.py", "*followup*.py")
RunExample = Callable[..., str]  # the `run_example` fixture of conftest.py


def in_order(out: str, expected: list[str]) -> None:
    """Each expected piece is in ``out``, after the previous one."""
    pos = 0
    for piece in expected:
        found = out.find(piece, pos)
        assert found >= 0, f"{piece!r} not printed (after position {pos}) in:\n{out}"
        pos = found + len(piece)


def test_every_example_is_run_here() -> None:
    """A new example needs its expected output in EXPECTED."""
    on_disk = {p.name for p in EXAMPLES.glob("[!_]*.py")}
    for pattern in NOT_HERE:
        on_disk -= {p.name for p in EXAMPLES.glob(pattern)}
    assert on_disk == set(EXPECTED) | set(REMOTE)


@pytest.mark.timeout(300)
@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_example(name: str, run_example: RunExample, tiny_trained_model_hash: Path) -> None:
    # One passes --model (here the tiny model's folder), the others use the default.
    args = (
        ["--model", str(tiny_trained_model_hash)] if name == "langchain_chat_documents.py" else []
    )
    in_order(run_example(name, *args), EXPECTED[name])


@pytest.mark.timeout(120)
def test_example_starts_as_a_script() -> None:
    """As ``python examples/NAME`` it finds ``_offline``; ``--help`` stops before the model."""
    done = subprocess.run(
        [sys.executable, str(EXAMPLES / "langchain_chat_documents.py"), "--help"],
        capture_output=True,
        text=True,
        timeout=100,
        cwd=ROOT,
        env={**os.environ, "PYTHONPATH": ""},
        check=False,
    )
    assert done.returncode == 0, done.stderr
    assert "LangChain: ChatPleias answers" in done.stdout and "--model" in done.stdout


# --- remote: against a real vLLM server serving the tiny model -----------------------------


@pytest.fixture(scope="module")
def vllm_url(tiny_trained_model_hash: Path) -> Iterator[str]:
    """A vLLM server on 127.0.0.1 for these tests (see tests/remote/conftest.py)."""
    python = os.environ.get("PLEIAS_RAG_VLLM_PYTHON", "")
    if not python or not os.access(python, os.X_OK):
        pytest.skip("$PLEIAS_RAG_VLLM_PYTHON does not name a vLLM venv's python (tests/remote)")
    tool: Any = runpy.run_path(str(ROOT / "tools" / "vllm_server.py"))
    server = tool["start"](python, tiny_trained_model_hash, name="tiny", max_model_len=512)
    try:
        server.wait_ready(timeout=float(os.environ.get("PLEIAS_RAG_VLLM_STARTUP", "600")))
        yield server.base_url
    finally:
        server.stop()


@pytest.mark.remote
@pytest.mark.timeout(900)
def test_remote_langchain(
    vllm_url: str, tiny_trained_model_hash: Path, run_example: RunExample
) -> None:
    out = run_example(
        "remote_langchain.py", "--url", vllm_url, "--tokenizer", str(tiny_trained_model_hash)
    )
    in_order(
        out,
        [
            TIDES,
            "[1] doc 0: 'Its gravity causes the tides.' (verified)",
            "[2] doc 1: 'It houses the Mona Lisa.' (verified)",
            f"streamed: {TIDES}",
            # the batch asks every training question over the same (tides) documents
            f"What causes the tides, and what is in the Louvre? -> {TIDES}",
        ],
    )


@pytest.mark.remote
@pytest.mark.timeout(900)
def test_remote_llama_index(
    vllm_url: str, tiny_trained_model_hash: Path, run_example: RunExample
) -> None:
    out = run_example(
        "remote_llama_index.py", "--url", vllm_url, "--tokenizer", str(tiny_trained_model_hash)
    )
    in_order(
        out,
        [
            f"When was the Eiffel Tower completed?\n  {EIFFEL}",
            '[1] verified: "It was completed in 1889 for the World\'s Fair."',
            f"What causes the tides, and what is in the Louvre?\n  {TIDES}",
        ],
    )
