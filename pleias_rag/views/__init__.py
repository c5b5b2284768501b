"""Every view of a :class:`~pleias_rag.answer.PleiasAnswer`, in one place.

- :mod:`~pleias_rag.views.labels`: how a source is named (one rule for every view), and the
  citations grouped by marker number.
- :mod:`~pleias_rag.views.markdown`: the answer with Markdown footnotes.
- :mod:`~pleias_rag.views.html`: an HTML fragment, and a standalone page.
- :mod:`~pleias_rag.views.plain`: plain text for a reader that only takes text (an agent).
- :mod:`~pleias_rag.views.ranking`: the sources ranked by the model's use of them.

They read the data module :mod:`pleias_rag.answer` only; the citation dict they and the
adapters share is :meth:`pleias_rag.answer.Citation.to_dict`.
"""

from .html import answer_fragment, render_page
from .labels import by_number, citation_label, first_per_number, source_label
from .markdown import to_markdown
from .plain import MAX_QUOTE_CHARS, NONE_CITED, answer_with_sources, sources_list
from .ranking import (
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
    "MAX_QUOTE_CHARS",
    "MENTIONED_SCORE",
    "NONE_CITED",
    "UNUSED_SCORE",
    "SourceUse",
    "answer_fragment",
    "answer_with_sources",
    "by_number",
    "citation_label",
    "cited_uses",
    "first_per_number",
    "render_page",
    "source_label",
    "source_uses",
    "sources_list",
    "to_markdown",
]
