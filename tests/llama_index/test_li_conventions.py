"""Package conventions: exports, runnable docstring examples, no network, no namespace package."""

from __future__ import annotations

import doctest
import importlib
import socket
from pathlib import Path

import pytest
import pytest_socket

import llama_index_pleias

MODULES = ["__init__", "_convert", "llms", "synthesizer", "query_engine", "postprocessor"]
MODULES += ["evaluation"]


def test_exports() -> None:
    for name in llama_index_pleias.__all__:
        assert getattr(llama_index_pleias, name) is not None
    root = Path(llama_index_pleias.__file__).resolve().parents[1]
    assert not (root / "llama_index" / "__init__.py").exists()


@pytest.mark.parametrize("name", MODULES)
def test_docstring_examples_run(name: str) -> None:
    module = importlib.import_module(
        "llama_index_pleias" if name == "__init__" else f"llama_index_pleias.{name}"
    )
    result = doctest.testmod(module, optionflags=doctest.ELLIPSIS, verbose=False)
    assert result.failed == 0


def test_public_classes_have_an_example() -> None:
    for name in llama_index_pleias.__all__:
        obj = getattr(llama_index_pleias, name)
        if isinstance(obj, type) and name not in ("NodeRef", "GroundingResult"):
            assert "Examples:" in (obj.__doc__ or ""), name


@pytest.mark.filterwarnings("ignore:A test tried to use socket")
def test_the_network_is_blocked() -> None:
    with pytest.raises(pytest_socket.SocketBlockedError):
        socket.socket(socket.AF_INET, socket.SOCK_STREAM)
