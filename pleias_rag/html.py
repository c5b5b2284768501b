"""Kept for imports: the HTML views live in :mod:`pleias_rag.views.html`."""

from .views.html import answer_fragment, render_page

__all__ = ["answer_fragment", "render_page"]
