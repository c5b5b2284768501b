"""Helpers of the remote tests: the server tools as modules, and the servers' settings."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path
from types import ModuleType

ROOT = Path(__file__).resolve().parents[2]

VLLM_ENV = "PLEIAS_RAG_VLLM_PYTHON"
LLAMACPP_ENV = "PLEIAS_RAG_LLAMACPP_PYTHON"
SERVED_NAME = "tiny-hash"
MAX_MODEL_LEN = 2048  # vLLM's --max-model-len: the tiny model's whole window
LLAMACPP_SLOT_CTX = 512  # llama-server: n_ctx 2048 shared by 4 parallel slots


def load_tool(name: str) -> ModuleType:
    """``tools/<name>.py`` as a module (``vllm_server`` or ``llamacpp_server``)."""
    path = ROOT / "tools" / f"{name}.py"
    spec = importlib.util.spec_from_file_location(f"pleias_tool_{name}", path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module
