"""pleias-rag: run Pleias RAG models and get answers whose citations are checked.

The core knows nothing of LangChain or LlamaIndex: sources and ids, prompt rendering, output
parsing and quote verification, and generation backends.
"""

from typing import TYPE_CHECKING, Any

from .answer import Citation, CitationStatus, FinishReason, MatchKind, PleiasAnswer
from .backend import Backend, resolve_backend
from .dialects import CONTEXT_WINDOW, DIALECTS, Dialect, check_dialect, special_tokens
from .engine import Completion, Engine
from .errors import BatchError, InvalidArgument, InvalidType, PleiasError, PromptTooLong
from .generation import GenerationSettings
from .parser import (
    AnswerDelta,
    CitationCompleted,
    Event,
    Finished,
    SectionEnded,
    SectionStarted,
    SectionText,
    StreamParser,
    normalize_source_id,
    parse_response,
)
from .prompt import Segment, escape_text, prompt_ids, prompt_segments, render_prompt
from .scripted import ScriptedEngine
from .sources import Source, SourceGroup, group_sources, make_sources, source_id
from .tokens import EncodedPrompt
from .verify import QuoteMatch, locate_quote

if TYPE_CHECKING:
    from .local import PleiasModel

# Imported on first access, so `import pleias_rag` does not import torch.
_LAZY = {"PleiasModel": "pleias_rag.local"}


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
    "BatchError",
    "Citation",
    "CitationCompleted",
    "CitationStatus",
    "Completion",
    "Dialect",
    "EncodedPrompt",
    "Engine",
    "Event",
    "FinishReason",
    "Finished",
    "GenerationSettings",
    "InvalidArgument",
    "InvalidType",
    "MatchKind",
    "PleiasAnswer",
    "PleiasError",
    "PleiasModel",
    "PromptTooLong",
    "QuoteMatch",
    "ScriptedEngine",
    "SectionEnded",
    "SectionStarted",
    "SectionText",
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
    "resolve_backend",
    "source_id",
    "special_tokens",
]
