"""Remote generation: a Pleias model served by vLLM, llama-server or another OpenAI-compatible
``/v1/completions`` server (needs ``pleias-rag[remote]``: httpx, and transformers for a local
tokenizer).

:class:`RemoteBackend` has the same ``answer`` / ``stream`` / ``answer_batch`` and async API as
the local engine, so the LangChain and LlamaIndex adapters take either. See ``docs/serving.md``.
"""

try:
    import httpx  # noqa: F401
except ImportError as exc:  # pragma: no cover - depends on the install
    raise ImportError("pleias_rag.remote needs httpx: pip install 'pleias-rag[remote]'") from exc

from ._config import DEFAULT_API_KEY_ENV, SERVER_PRESETS, ServerKind
from .backend import RemoteBackend
from .errors import (
    RemoteBatchError,
    RemoteConnectionError,
    RemoteError,
    RemoteStatusError,
    RemoteTimeoutError,
)

__all__ = [
    "DEFAULT_API_KEY_ENV",
    "SERVER_PRESETS",
    "RemoteBackend",
    "RemoteBatchError",
    "RemoteConnectionError",
    "RemoteError",
    "RemoteStatusError",
    "RemoteTimeoutError",
    "ServerKind",
]
