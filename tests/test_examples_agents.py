"""The agent and follow-up examples run offline on the tiny trained model and print their
cited answers.

Like ``tests/test_examples.py``, they run in this process (``runpy``, stdout captured), sharing
the imports and the loaded weights: a subprocess per example spends about 10 s (more on a busy
machine) importing torch and transformers. One of them also runs end to end as a real
subprocess, with a timeout, as ``python examples/langchain_agent.py`` would.
"""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
EXAMPLES = ROOT / "examples"

EIFFEL = "When was the Eiffel Tower completed?"
ANSWER = "The Eiffel Tower was completed in 1889[1]."
QUOTE = '"It was completed in 1889 for the World\'s Fair."'

#: What each example must print, line by line in this order (other lines may come between).
EXPECTED: dict[str, list[str]] = {
    "langchain_agent.py": [
        "User: When was the Eiffel Tower completed? Check the documents.",
        f"Agent calls answer_from_documents({{'query': '{EIFFEL}'}})",
        "Tool content (what the agent reads):",
        f"  {ANSWER}",
        "  Sources:",
        f"  [1] Eiffel Tower — https://example.org/0: {QUOTE}",
        "Agent: According to the documents, it was completed in 1889 [1].",
        "Citations in the tool's artifact:",
        f"  [1] Eiffel Tower: {QUOTE} (verified, exact)",
        "Cited documents:",
        "  Eiffel Tower <https://example.org/0>",
    ],
    "llama_index_agent.py": [
        "User: When was the Eiffel Tower completed? Check the documents.",
        f"Agent calls answer_from_documents({{'input': '{EIFFEL}'}})",
        "Tool content (what the agent reads):",
        f"  {ANSWER}",
        "  Sources:",
        f"  [1] Eiffel Tower — https://example.org/0: {QUOTE}",
        "Agent: According to the documents, it was completed in 1889 [1].",
        "Cited nodes in the tool's raw_output:",
        f"  [1] Eiffel Tower <https://example.org/0>: {QUOTE} (verified, exact)",
    ],
    "langchain_followup.py": [
        "User: When was it completed?",
        f"  standalone question: {EIFFEL}",
        f"Assistant: {ANSWER}",
        f"  [1] Eiffel Tower: {QUOTE}",
        "ChatPleias, same conversation:",
        f"  standalone question: {EIFFEL}",
        f"  answer: {ANSWER}",
    ],
    "llama_index_followup.py": [
        "User: When was it completed?",
        f"  standalone question: {EIFFEL}",
        f"Assistant: {ANSWER}",
        f"  [1] Eiffel Tower: {QUOTE} (verified)",
        "User: And when exactly was it finished?",
        f"  standalone question: {EIFFEL}",
        f"Assistant: {ANSWER}",
        "  cited nodes: ['Eiffel Tower']",
        "Memory (what the user said, not the rewrites):",
        "  user: When was it completed?",
        f"  assistant: {ANSWER}",
        "  user: And when exactly was it finished?",
    ],
}
RunExample = Callable[..., str]  # the `run_example` fixture of conftest.py


def lines_in_order(out: str, expected: list[str]) -> None:
    """Each expected line is printed, after the previous one."""
    lines = out.splitlines()
    pos = 0
    for line in expected:
        assert line in lines[pos:], f"{line!r} not printed (after line {pos}) in:\n{out}"
        pos = lines.index(line, pos) + 1


# The workflows package inspects the (pydantic) LlamaIndex agent with inspect.getmembers.
@pytest.mark.filterwarnings("ignore::pydantic.warnings.PydanticDeprecatedSince20")
@pytest.mark.filterwarnings("ignore::pydantic.warnings.PydanticDeprecatedSince211")
@pytest.mark.timeout(300)
@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_example(name: str, run_example: RunExample, tiny_trained_model_hash: Path) -> None:
    # One passes --model (here the tiny model's folder), the others use the default.
    args = ["--model", str(tiny_trained_model_hash)] if name == "langchain_followup.py" else []
    lines_in_order(run_example(name, *args), EXPECTED[name])


@pytest.mark.timeout(300)
def test_an_agent_example_runs_as_a_script(tiny_trained_model_hash: Path) -> None:
    done = subprocess.run(
        [sys.executable, str(EXAMPLES / "langchain_agent.py")],
        capture_output=True,
        text=True,
        timeout=280,
        cwd=ROOT,
        env={**os.environ, "PYTHONPATH": "", "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1"},
        check=False,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    lines_in_order(done.stdout, EXPECTED["langchain_agent.py"])
