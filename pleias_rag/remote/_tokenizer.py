"""The local tokenizer of a remote model (no weights, no torch): loading and dialect detection."""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..dialects import Dialect, tokenizer_dialect
from ..errors import InvalidArgument
from ..tokens import TokenCodec

# A tokenizer's model_max_length above this is transformers' "no limit" placeholder.
_NO_LIMIT = 1_000_000


@dataclass(frozen=True)
class LoadedTokenizer:
    """A tokenizer, its thread-safe codec, its dialect and the context window it suggests."""

    tokenizer: Any
    codec: TokenCodec
    dialect: Dialect
    window_hint: int | None


def load_tokenizer(spec: Any, dialect: str | None) -> LoadedTokenizer:
    """A tokenizer from a folder or hub id (tokenizer files only), or a tokenizer object."""
    if isinstance(spec, (str, os.PathLike)):
        name = os.fspath(spec)
        try:
            from transformers import AutoTokenizer
        except ImportError as exc:  # pragma: no cover - depends on the install
            raise ImportError(
                "tokenizer= needs the transformers package: pip install 'pleias-rag[remote]'"
            ) from exc
        try:
            tokenizer = AutoTokenizer.from_pretrained(name)
        except OSError as exc:
            raise OSError(
                f"could not load a tokenizer from {name!r}: give a folder with the model's "
                f"tokenizer files, or a hub id reachable from here (transformers said: {exc})"
            ) from exc
    elif hasattr(spec, "get_vocab") and hasattr(spec, "added_tokens_decoder"):
        name, tokenizer = type(spec).__name__, spec
    else:
        raise InvalidArgument(
            "tokenizer must be a folder, a hub id or a Hugging Face tokenizer, "
            f"got {type(spec).__name__}"
        )
    vocab = tokenizer.get_vocab()
    chosen = tokenizer_dialect(vocab, name, dialect)
    return LoadedTokenizer(tokenizer, TokenCodec(tokenizer), chosen, _window_hint(spec, tokenizer))


def _window_hint(spec: Any, tokenizer: Any) -> int | None:
    """The model's context window as its folder's config.json or its tokenizer says."""
    if isinstance(spec, (str, os.PathLike)):
        config = Path(os.fspath(spec)) / "config.json"
        try:
            value = json.loads(config.read_text(encoding="utf-8")).get("max_position_embeddings")
        except (OSError, ValueError, AttributeError):
            value = None
        if isinstance(value, int) and value > 1:
            return value
    length = getattr(tokenizer, "model_max_length", None)
    if isinstance(length, int) and 1 < length < _NO_LIMIT:
        return length
    return None
