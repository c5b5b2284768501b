"""Finding the model for ``--model`` fast, before transformers tries (and retries) the hub.

A local folder is checked for what a saved model holds. A hub id is used as is when the hub
can be reached; offline (``HF_HUB_OFFLINE`` set, or no connection to the hub) it is looked
up in the local Hugging Face cache only, and a missing one fails at once with one message.
"""

from __future__ import annotations

import os
import socket
from pathlib import Path
from urllib.parse import urlparse

_TRUE = ("1", "on", "yes", "true")
_PROXIES = ("HTTPS_PROXY", "https_proxy", "ALL_PROXY", "all_proxy")
_TOKENIZER_FILES = ("tokenizer.json", "tokenizer_config.json")
_WEIGHT_SUFFIXES = (".safetensors", ".bin", ".safetensors.index.json", ".bin.index.json")


class ModelNotFound(Exception):
    """The model cannot be used as given; the message is one line saying what to do."""


def hub_offline() -> bool:
    """Whether ``HF_HUB_OFFLINE`` is set (in the environment or in huggingface_hub)."""
    if os.environ.get("HF_HUB_OFFLINE", "").strip().lower() in _TRUE:
        return True
    try:
        from huggingface_hub import constants
    except ImportError:  # pragma: no cover - transformers depends on it
        return False
    return bool(constants.HF_HUB_OFFLINE)


def hub_reachable(timeout: float = 3.0) -> bool:
    """Whether a TCP connection to the hub opens within ``timeout`` seconds.

    Behind a proxy the hub is assumed reachable (the proxy is what transformers uses).
    """
    if any(os.environ.get(name) for name in _PROXIES):
        return True
    endpoint = urlparse(os.environ.get("HF_ENDPOINT") or "https://huggingface.co")
    host = endpoint.hostname or "huggingface.co"
    port = endpoint.port or (80 if endpoint.scheme == "http" else 443)
    try:
        with socket.create_connection((host, port), timeout=timeout):
            return True
    except OSError:
        return False


def looks_like_path(name: str) -> bool:
    """A name that can only be a path: a hub id is ``name`` or ``owner/name``."""
    return (
        os.path.isabs(name)
        or name.startswith((".", "~"))
        or name.count("/") > 1
        or "\\" in name
        or os.path.exists(name)
    )


def check_folder(folder: Path, name: str) -> None:
    """Fail with one line when ``folder`` is missing or lacks what a saved model holds."""
    if not folder.exists():
        raise ModelNotFound(
            f"could not load the model {name!r}: there is no such folder; point --model at "
            "the local folder of a Pleias RAG model, or give a hub id (PleIAs/Pleias-RAG-350M)"
        )
    if not folder.is_dir():
        raise ModelNotFound(
            f"could not load the model {name!r}: it is a file; point --model at the local "
            "folder of a Pleias RAG model (config.json, tokenizer files and weights)"
        )
    files = {p.name for p in folder.iterdir()}
    missing = []
    if "config.json" not in files:
        missing.append("config.json")
    if not files & set(_TOKENIZER_FILES):
        missing.append("tokenizer.json or tokenizer_config.json")
    if not any(f.endswith(_WEIGHT_SUFFIXES) for f in files):
        missing.append("weights (model.safetensors or pytorch_model.bin)")
    if missing:
        raise ModelNotFound(
            f"{name} is not a model folder: it has no {', no '.join(missing)}; point --model "
            "at a folder where a Pleias RAG model was saved or downloaded"
        )


def resolve_model(name: str) -> str:
    """What to load for ``--model``: a checked local folder, a hub id when the hub answers,
    else the cached snapshot folder of the hub id (no network needed)."""
    if looks_like_path(name):
        folder = Path(name).expanduser()
        check_folder(folder, name)
        return str(folder)
    offline = hub_offline()
    if not offline and hub_reachable():
        return name
    try:
        from huggingface_hub import snapshot_download

        return str(snapshot_download(name, local_files_only=True))
    except Exception:  # not cached, or not a valid repository id
        why = "HF_HUB_OFFLINE is set" if offline else "cannot reach the Hugging Face hub"
        raise ModelNotFound(
            f"{why}, and the model {name!r} is not in the local Hugging Face cache: download "
            f"it where there is network (`hf download {name} --local-dir ./model`), copy the "
            "folder here and pass --model ./model"
        ) from None
