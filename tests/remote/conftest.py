"""Fixtures of the remote tests: real vLLM and llama.cpp servers.

The vLLM tests (marker ``remote``) need a virtualenv with the CPU build of vLLM, made by
``python tools/vllm_server.py install``; ``$PLEIAS_RAG_VLLM_PYTHON`` names its python. The
llama.cpp tests need ``$PLEIAS_RAG_LLAMACPP_PYTHON`` (``python tools/llamacpp_server.py
install``). Without them these tests are skipped. Each server (the tiny trained hash model)
serves the whole session. The fault tests use the scripted servers of ``fake_server.py``.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent))

from remote_support import (
    LLAMACPP_ENV,
    MAX_MODEL_LEN,
    SERVED_NAME,
    VLLM_ENV,
    load_tool,
)


def _python(env: str, install: str) -> str:
    python = os.environ.get(env, "")
    if not python or not os.access(python, os.X_OK):
        pytest.skip(
            f"${env} is not set to a python: make the venv with `python tools/{install} "
            f"install` and export {env}=<the python it prints> to run the real-server tests"
        )
    return python


@pytest.fixture(scope="session")
def vllm_python() -> str:
    return _python(VLLM_ENV, "vllm_server.py")


@pytest.fixture(scope="session")
def vllm_server(vllm_python: str, tiny_trained_model_hash: Path) -> Iterator[Any]:
    """A real vLLM server on 127.0.0.1 serving the tiny trained hash model."""
    server = load_tool("vllm_server").start(
        vllm_python, tiny_trained_model_hash, name=SERVED_NAME, max_model_len=MAX_MODEL_LEN
    )
    try:
        took = server.wait_ready(timeout=float(os.environ.get("PLEIAS_RAG_VLLM_STARTUP", "600")))
        print(f"\nvLLM ready in {took:.0f} s on port {server.port}", file=sys.stderr)
        yield server
    finally:
        server.stop()


@pytest.fixture(scope="session")
def llamacpp_python() -> str:
    return _python(LLAMACPP_ENV, "llamacpp_server.py")


@pytest.fixture(scope="session")
def llamacpp_gguf(llamacpp_python: str, tiny_trained_model_hash: Path) -> Path:
    path: Path = load_tool("llamacpp_server").convert(tiny_trained_model_hash)
    return path


def _llamacpp(python: str, gguf: Path, *, special: bool) -> Iterator[Any]:
    tool = load_tool("llamacpp_server")
    server = tool.start(python, gguf, name="tiny-gguf", special=special)
    try:
        took = server.wait_ready(timeout=120)
        print(f"\nllama-server ready in {took:.1f} s on port {server.port}", file=sys.stderr)
        yield server
    finally:
        server.stop()


@pytest.fixture(scope="session")
def llamacpp_server(llamacpp_python: str, llamacpp_gguf: Path) -> Iterator[Any]:
    """llama-server (xllamacpp) with --special, serving the tiny trained hash model."""
    yield from _llamacpp(llamacpp_python, llamacpp_gguf, special=True)


@pytest.fixture
def llamacpp_plain_server(llamacpp_python: str, llamacpp_gguf: Path) -> Iterator[Any]:
    """The same without --special: it strips the special tokens from its output."""
    yield from _llamacpp(llamacpp_python, llamacpp_gguf, special=False)
