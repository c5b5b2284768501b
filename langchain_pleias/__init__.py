"""LangChain integration for Pleias RAG models: answers whose citations are checked.

- :class:`ChatPleias`: chat model; sources from ``documents=`` or ``text-plain`` blocks,
  citations as standard annotations.
- :class:`PleiasLLM`: text completion, with real batching.
- :func:`create_pleias_rag_chain`: retriever → answer → citations mapped to documents.
- :class:`PleiasReranker`: documents ranked by the model's use of them.
- :class:`PleiasOutputParser`: raw Pleias output → :class:`pleias_rag.PleiasAnswer`.
- :func:`create_pleias_rag_tool`: the RAG chain as an agent's tool (content: the answer and
  its numbered sources; artifact: the citations and cited documents).
- :class:`PleiasCitationsMiddleware`: a LangChain agent middleware putting the tool calls'
  citations on the agent's final answer (needs ``langchain``).

A Pleias model does not call tools: in an agent it is a tool, never the brain.
"""

from __future__ import annotations

import typing as _typing
from importlib import metadata

from .chains import PleiasRAGChain, create_pleias_rag_chain
from .chat_models import ChatPleias
from .llms import PleiasLLM
from .output_parsers import PleiasOutputParser
from .rerankers import PleiasReranker
from .tools import PleiasRAGTool, create_pleias_rag_tool

if _typing.TYPE_CHECKING:  # imported on first use, by __getattr__
    from ._agents import PleiasCitationsMiddleware

try:
    __version__ = metadata.version("pleias-rag")
except metadata.PackageNotFoundError:  # pragma: no cover - running from a source tree
    __version__ = ""

__all__ = [
    "ChatPleias",
    "PleiasCitationsMiddleware",
    "PleiasLLM",
    "PleiasOutputParser",
    "PleiasRAGChain",
    "PleiasRAGTool",
    "PleiasReranker",
    "__version__",
    "create_pleias_rag_chain",
    "create_pleias_rag_tool",
]


def __getattr__(name: str) -> object:
    """The agent middleware, imported on first use: it needs ``langchain`` (the agents
    package), which the rest of this package does not."""
    if name == "PleiasCitationsMiddleware":
        try:
            from ._agents import PleiasCitationsMiddleware
        except ModuleNotFoundError as exc:
            raise ImportError(
                "PleiasCitationsMiddleware is a LangChain agent middleware and needs the "
                f"langchain package ({exc}): pip install 'langchain>=1.0'"
            ) from exc
        globals()[name] = PleiasCitationsMiddleware
        return PleiasCitationsMiddleware
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
