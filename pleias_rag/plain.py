"""Kept for imports: the plain-text views live in :mod:`pleias_rag.views.plain`."""

from .views.labels import source_label
from .views.plain import MAX_QUOTE_CHARS, NONE_CITED, answer_with_sources, sources_list

__all__ = ["MAX_QUOTE_CHARS", "NONE_CITED", "answer_with_sources", "source_label", "sources_list"]
