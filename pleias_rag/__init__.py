"""pleias-rag: run Pleias RAG models and get answers whose citations are checked.

The core knows nothing of LangChain or LlamaIndex: sources and ids, prompt rendering, output
parsing and quote verification, and generation backends.
"""

from typing import TYPE_CHECKING, Any

from .answer import Citation, CitationStatus, FinishReason, MatchKind, PleiasAnswer
from .dialects import CONTEXT_WINDOW, DIALECTS, Dialect, check_dialect, special_tokens
from .parser import (
    AnswerDelta,
    CitationCompleted,
    Event,
    Finished,
    SectionEnded,
    SectionStarted,
    StreamParser,
    normalize_source_id,
    parse_response,
)
from .prompt import Segment, escape_text, prompt_ids, prompt_segments, render_prompt
from .sources import Source, SourceGroup, group_sources, make_sources, source_id
from .verify import QuoteMatch, locate_quote

if TYPE_CHECKING:
    from .backend import Backend
    from .generation import GenerationSettings
    from .local import PleiasModel

# Imported on first access, so `import pleias_rag` does not import torch.
_LAZY = {
    "Backend": "pleias_rag.backend",
    "GenerationSettings": "pleias_rag.generation",
    "PleiasModel": "pleias_rag.local",
}


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'pleias_rag' has no attribute {name!r}")
    import importlib

    value = getattr(importlib.import_module(module), name)
    globals()[name] = value
    return value


__all__ = [
    "CONTEXT_WINDOW",
    "DIALECTS",
    "AnswerDelta",
    "Backend",
    "Citation",
    "CitationCompleted",
    "CitationStatus",
    "Dialect",
    "Event",
    "FinishReason",
    "Finished",
    "GenerationSettings",
    "MatchKind",
    "PleiasAnswer",
    "PleiasModel",
    "QuoteMatch",
    "SectionEnded",
    "SectionStarted",
    "Segment",
    "Source",
    "SourceGroup",
    "StreamParser",
    "check_dialect",
    "escape_text",
    "group_sources",
    "locate_quote",
    "make_sources",
    "normalize_source_id",
    "parse_response",
    "prompt_ids",
    "prompt_segments",
    "render_prompt",
    "source_id",
    "special_tokens",
]
