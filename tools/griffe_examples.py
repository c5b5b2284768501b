"""Docs build: read a Google-style ``Example:`` heading as the ``Examples:`` section.

griffe knows ``Examples:`` as the section whose ``>>>`` lines become code blocks; a singular
``Example:`` is rendered as an admonition whose doctest lines turn into nested quotes (and
``x["key"][0]`` into broken links). The adapters' docstrings say ``Example:``, so the API
reference reads them as ``Examples:``. Loaded by mkdocstrings (``extensions`` in mkdocs.yml).
"""

from __future__ import annotations

import re
from typing import Any

from griffe import Extension, Object

_EXAMPLE = re.compile(r"^(\s*)Example:\s*$", re.MULTILINE)


class ExampleSections(Extension):
    """Rename ``Example:`` headings to ``Examples:`` before docstrings are parsed."""

    def on_object(self, *, obj: Object, **kwargs: Any) -> None:
        if obj.docstring is not None:
            obj.docstring.value = _EXAMPLE.sub(r"\1Examples:", obj.docstring.value)
