"""Fixtures of the LangChain tests: the tiny real models, kept loaded for the session."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest


@pytest.fixture(scope="session")
def _loaded_models(
    tiny_trained_model_hash: Path, tiny_trained_model_numbered: Path
) -> Iterator[None]:
    """Keep the tiny models' weights loaded for the session: the engine shares weights only
    while someone holds them, and every test builds new ``ChatPleias`` objects."""
    from pleias_rag.local import PleiasModel

    held = [
        PleiasModel.from_pretrained(tiny_trained_model_hash).load(),
        PleiasModel.from_pretrained(tiny_trained_model_numbered).load(),
    ]
    yield
    del held


@pytest.fixture(scope="session")
def hash_model(tiny_trained_model_hash: Path, _loaded_models: None) -> str:
    """Folder of the tiny model trained on ``TRAINING_EXAMPLES["hash"]`` (weights loaded)."""
    return str(tiny_trained_model_hash)


@pytest.fixture(scope="session")
def numbered_model(tiny_trained_model_numbered: Path, _loaded_models: None) -> str:
    """Folder of the tiny model trained on ``TRAINING_EXAMPLES["numbered"]`` (loaded)."""
    return str(tiny_trained_model_numbered)
