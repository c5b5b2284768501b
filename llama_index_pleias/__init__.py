"""LlamaIndex integration of Pleias RAG models, with cited and checked source nodes.

- :class:`PleiasLLM`: the model as a LlamaIndex LLM (``complete``/``chat``, streaming, async).
- :class:`PleiasSynthesizer`: retrieved nodes → an answer whose ``source_nodes`` are the cited
  nodes only, annotated with their quotes and offsets.
- :class:`PleiasQueryEngine`: retriever + synthesizer; ``as_tool()`` gives an agent's tool
  (:class:`PleiasQueryEngineTool`) whose output keeps the cited ``Response``.
- :func:`condense_chat_engine`: follow-up questions, rewritten by another LLM into standalone
  ones before the query engine answers them (:class:`PleiasCondenseChatEngine`).
- :class:`PleiasReranker`: node postprocessor ordering nodes by the model's use of them.
- :class:`CitationGroundingEvaluator`: deterministic check that every quote is in its source.

A Pleias model is not a chat or function-calling model: in an agent it serves as a tool (a
``QueryEngineTool`` over :class:`PleiasQueryEngine`) or a synthesizer, never as the brain.
"""

from ._convert import DEFAULT_MODEL, PLEIAS_METADATA_KEY, NodeRef, nodes_to_sources
from .chat import PleiasCondenseChatEngine, condense_chat_engine
from .evaluation import CitationGroundingEvaluator, GroundingResult
from .llms import PleiasLLM
from .postprocessor import PleiasReranker
from .query_engine import PleiasQueryEngine, PleiasQueryEngineTool
from .synthesizer import PleiasSynthesizer

__all__ = [
    "DEFAULT_MODEL",
    "PLEIAS_METADATA_KEY",
    "CitationGroundingEvaluator",
    "GroundingResult",
    "NodeRef",
    "PleiasCondenseChatEngine",
    "PleiasLLM",
    "PleiasQueryEngine",
    "PleiasQueryEngineTool",
    "PleiasReranker",
    "PleiasSynthesizer",
    "condense_chat_engine",
    "nodes_to_sources",
]
