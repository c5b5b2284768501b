"""Fixtures of the LlamaIndex adapter tests: network blocked, no default models, tiny models."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from li_support import MAX_NEW_TOKENS, MiniLMEmbedding, WordEmbedding, network_blocked
from llama_index.core import Settings


@pytest.fixture(autouse=True)
def _network_blocked() -> Iterator[None]:
    """No test of this folder may reach the network."""
    with network_blocked():
        yield


@pytest.fixture(autouse=True)
def _no_default_models() -> Iterator[None]:
    """Settings.llm / embed_model are never resolved: reaching for OpenAI is an error."""

    def refuse(*_: Any, **__: Any) -> Any:
        raise AssertionError("LlamaIndex tried to resolve a default (OpenAI) model")

    mp = pytest.MonkeyPatch()
    mp.setattr("llama_index.core.settings.resolve_llm", refuse)
    mp.setattr("llama_index.core.settings.resolve_embed_model", refuse)
    Settings._llm = None
    Settings._embed_model = None
    try:
        yield
    finally:
        mp.undo()


@pytest.fixture(scope="session")
def word_embedding() -> WordEmbedding:
    return WordEmbedding()


@pytest.fixture(scope="session")
def minilm_embedding() -> MiniLMEmbedding:
    with network_blocked():
        return MiniLMEmbedding()


# --- the tiny real models -------------------------------------------------------------------


@pytest.fixture(scope="session")
def hash_llm(tiny_trained_model_hash: Any) -> Any:
    """A PleiasLLM over the tiny trained hash-dialect model (weights shared, loaded once)."""
    from llama_index_pleias import PleiasLLM

    llm = PleiasLLM(str(tiny_trained_model_hash), max_new_tokens=MAX_NEW_TOKENS, device="cpu")
    with network_blocked():
        llm.backend.load()  # type: ignore[attr-defined]
    return llm


@pytest.fixture(scope="session")
def numbered_llm(tiny_trained_model_numbered: Any) -> Any:
    from llama_index_pleias import PleiasLLM

    llm = PleiasLLM(str(tiny_trained_model_numbered), max_new_tokens=MAX_NEW_TOKENS, device="cpu")
    with network_blocked():
        llm.backend.load()  # type: ignore[attr-defined]
    return llm


@pytest.fixture(scope="session")
def hash_examples() -> dict[str, Any]:
    from pleias_rag.testing import TRAINING_EXAMPLES

    return {ex.name: ex for ex in TRAINING_EXAMPLES["hash"]}


@pytest.fixture(scope="session")
def numbered_examples() -> dict[str, Any]:
    from pleias_rag.testing import TRAINING_EXAMPLES

    return {ex.name: ex for ex in TRAINING_EXAMPLES["numbered"]}
