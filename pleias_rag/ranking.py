"""Kept for imports: source ranking lives in :mod:`pleias_rag.views.ranking`."""

from .views.ranking import (
    CITED_SCORE,
    MENTIONED_SCORE,
    UNUSED_SCORE,
    SourceUse,
    cited_uses,
    source_uses,
)

__all__ = [
    "CITED_SCORE",
    "MENTIONED_SCORE",
    "UNUSED_SCORE",
    "SourceUse",
    "cited_uses",
    "source_uses",
]
