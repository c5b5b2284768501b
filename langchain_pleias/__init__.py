"""LangChain integration for Pleias RAG models: answers whose citations are checked.

- :class:`ChatPleias`: chat model; sources from ``documents=`` or ``text-plain`` blocks,
  citations as standard annotations.
- :class:`PleiasLLM`: text completion, with real batching.
- :func:`create_pleias_rag_chain`: retriever → answer → citations mapped to documents.
- :class:`PleiasReranker`: documents ranked by the model's use of them.
- :class:`PleiasOutputParser`: raw Pleias output → :class:`pleias_rag.PleiasAnswer`.
"""

from __future__ import annotations

from importlib import metadata

from .chains import PleiasRAGChain, create_pleias_rag_chain
from .chat_models import ChatPleias
from .llms import PleiasLLM
from .output_parsers import PleiasOutputParser
from .rerankers import PleiasReranker

try:
    __version__ = metadata.version("pleias-rag")
except metadata.PackageNotFoundError:  # pragma: no cover - running from a source tree
    __version__ = ""

__all__ = [
    "ChatPleias",
    "PleiasLLM",
    "PleiasOutputParser",
    "PleiasRAGChain",
    "PleiasReranker",
    "__version__",
    "create_pleias_rag_chain",
]
