"""How every view names a source, and the citations grouped by marker number."""

from __future__ import annotations

from collections.abc import Iterable

from ..answer import Citation
from ..sources import Source

#: Most characters of a source's first words used as its label.
LABEL_CHARS = 60
#: Metadata keys naming the file a source comes from, in order of preference.
FILE_KEYS = ("file", "file_name", "file_path", "source")


def source_label(src: Source) -> str:
    """The one name of a source in every view: its title, then where it is (its url, else
    the file it comes from: metadata ``file``, ``file_name``, ``file_path`` or ``source``),
    joined by " — " (the title left out when it is that file's name); else its first words.
    Never empty.
    """
    title = src.title.strip() if src.title and src.title.strip() else None
    where = src.url or _file(src)
    if where is not None and title is not None and _names(where, title):
        title = None
    bits = [b for b in (title, where) if b]
    if bits:
        return " — ".join(bits)
    return cut(" ".join(src.text.split()), LABEL_CHARS)


def _file(src: Source) -> str | None:
    for key in FILE_KEYS:
        value = src.metadata.get(key)
        if isinstance(value, str) and value.strip():
            return value.strip()
    return None


def _names(where: str, title: str) -> bool:
    """Whether ``where`` (a path or url) ends with the file name ``title``."""
    return where == title or where.replace("\\", "/").endswith("/" + title)


def citation_label(c: Citation) -> str:
    """:func:`source_label` of the cited source, or what the model wrote when no source has
    that id."""
    src = c.source
    if src is None:
        return f"unknown source {c.source_id!r} (not among the documents)"
    return source_label(src)


def by_number(citations: Iterable[Citation]) -> dict[int, list[Citation]]:
    """The citations of each marker number, numbers in order."""
    out: dict[int, list[Citation]] = {}
    for c in citations:
        out.setdefault(c.number, []).append(c)
    return dict(sorted(out.items()))


def first_per_number(citations: Iterable[Citation]) -> list[Citation]:
    """The first citation of each marker number, numbers in order."""
    return [cites[0] for cites in by_number(citations).values()]


def cut(text: str, limit: int) -> str:
    """``text``, shortened to ``limit`` characters with an ellipsis when longer."""
    return text if len(text) <= limit else text[: limit - 1].rstrip() + "…"
