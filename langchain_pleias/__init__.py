"""LangChain integration for Pleias RAG models: answers whose citations are checked.

- :class:`ChatPleias`: chat model; sources from ``documents=`` or ``text-plain`` blocks,
  citations as standard annotations.
- :class:`PleiasLLM`: text completion, with real batching.
- :func:`create_pleias_rag_chain`: retriever → answer → citations mapped to documents.
- :class:`PleiasReranker`: documents ranked by the model's use of them.
- :class:`PleiasOutputParser`: raw Pleias output → :class:`pleias_rag.PleiasAnswer`.
- :func:`create_pleias_rag_tool`: the RAG chain as an agent's tool (content: the answer and
  its numbered sources; artifact: the citations and cited documents).

A Pleias model does not call tools: in an agent it is a tool, never the brain.
"""

from __future__ import annotations

from importlib import metadata

from .chains import PleiasRAGChain, create_pleias_rag_chain
from .chat_models import ChatPleias
from .llms import PleiasLLM
from .output_parsers import PleiasOutputParser
from .rerankers import PleiasReranker
from .tools import PleiasRAGTool, create_pleias_rag_tool

try:
    __version__ = metadata.version("pleias-rag")
except metadata.PackageNotFoundError:  # pragma: no cover - running from a source tree
    __version__ = ""

__all__ = [
    "ChatPleias",
    "PleiasLLM",
    "PleiasOutputParser",
    "PleiasRAGChain",
    "PleiasRAGTool",
    "PleiasReranker",
    "__version__",
    "create_pleias_rag_chain",
    "create_pleias_rag_tool",
]
