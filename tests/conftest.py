"""Shared fixtures: tiny real models (built once, cached on disk) and the corpus folder."""

from __future__ import annotations

import os
import runpy
import sys
import threading
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from pleias_rag.verify import SourceText

# Never reach the Hugging Face hub: every model the tests use is built locally.
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
# Tiny models gain nothing from intra-op threads, and a loaded 2-core machine loses a lot;
# set before torch is imported (engine worker threads keep the count of their first use).
os.environ.setdefault("OMP_NUM_THREADS", "1")

DIALECTS = ("hash", "numbered")


@pytest.fixture(scope="session")
def tiny_random_model_hash() -> Path:
    from pleias_rag.testing import cached_random_model

    return cached_random_model("hash")


@pytest.fixture(scope="session")
def tiny_random_model_numbered() -> Path:
    from pleias_rag.testing import cached_random_model

    return cached_random_model("numbered")


@pytest.fixture(scope="session")
def tiny_trained_model_hash() -> Path:
    from pleias_rag.testing import cached_trained_model

    return cached_trained_model("hash")


@pytest.fixture(scope="session")
def tiny_trained_model_numbered() -> Path:
    from pleias_rag.testing import cached_trained_model

    return cached_trained_model("numbered")


@pytest.fixture(scope="session", params=DIALECTS)
def tiny_trained_model(request: pytest.FixtureRequest) -> tuple[str, Path]:
    """``(dialect, model folder)`` for each dialect."""
    dialect: str = request.param
    path: Path = request.getfixturevalue(f"tiny_trained_model_{dialect}")
    return dialect, path


@pytest.fixture(scope="session")
def corpus_dir() -> Path:
    """Real Pleias outputs, kept beside the project in ``../shared`` (not copied)."""
    return Path(__file__).resolve().parents[1].parent / "shared" / "corpus" / "pleias-outputs"


EXAMPLES = Path(__file__).resolve().parents[1] / "examples"
RunExample = Callable[..., str]


@pytest.fixture
def run_example(
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
    tiny_trained_model_hash: Path,
) -> RunExample:
    """Run ``examples/NAME`` as ``__main__`` with these arguments, in-process; its stdout."""

    def run(name: str, *args: str) -> str:
        path = EXAMPLES / name
        monkeypatch.syspath_prepend(str(EXAMPLES))  # as `python examples/NAME` does
        monkeypatch.setattr(sys, "argv", [str(path), *args])
        capsys.readouterr()
        runpy.run_path(str(path), run_name="__main__")
        return capsys.readouterr().out

    return run


@pytest.fixture
def check_threads(monkeypatch: pytest.MonkeyPatch) -> Iterator[list[int]]:
    """The thread of every quote check made while the test runs."""
    seen: list[int] = []
    real = SourceText.locate

    def locate(self: SourceText, quote: str, **kwargs: Any) -> Any:
        seen.append(threading.get_ident())
        return real(self, quote, **kwargs)

    monkeypatch.setattr(SourceText, "locate", locate)
    yield seen
