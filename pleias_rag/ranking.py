"""Kept for imports: source ranking lives in :mod:`pleias_rag.views.ranking`."""

from .views.ranking import (
    APPROXIMATE_SCORE,
    CITED_SCORE,
    MENTIONED_SCORE,
    UNUSED_SCORE,
    SourceUse,
    cited_uses,
    source_uses,
)

__all__ = [
    "APPROXIMATE_SCORE",
    "CITED_SCORE",
    "MENTIONED_SCORE",
    "UNUSED_SCORE",
    "SourceUse",
    "cited_uses",
    "source_uses",
]
