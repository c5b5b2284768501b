"""The answer as plain text for a reader that only takes text (an agent reading a tool result):
the answer with its ``[n]`` markers, then a short numbered source list with the quotes."""

from __future__ import annotations

from .answer import Citation, PleiasAnswer, by_number
from .sources import Source

MAX_QUOTE_CHARS = 200
_LABEL_CHARS = 60
NONE_CITED = "Sources: none cited."


def answer_with_sources(answer: PleiasAnswer, text: str | None = None) -> str:
    """``text`` (the answer's clean text by default), a blank line, then :func:`sources_list`."""
    body = answer.answer if text is None else text
    return "\n\n".join(part for part in (body.strip(), sources_list(answer)) if part)


def sources_list(answer: PleiasAnswer) -> str:
    """``Sources:`` and one line per marker number: ``[n] <label>: "<quote>"``.

    Quotes that were not found in their source are flagged, so an agent does not repeat them
    as facts of that source.
    """
    groups = by_number(answer.citations)
    if not groups:
        return NONE_CITED
    lines = ["Sources:"]
    for number, cites in groups.items():
        quotes = "; ".join(dict.fromkeys(_quote(c) for c in cites))
        lines.append(f"[{number}] {_label(cites[0])}: {quotes}")
    return "\n".join(lines)


def _label(c: Citation) -> str:
    src = c.source
    if src is None:
        return f"unknown source {c.source_id!r} (not among the documents)"
    return source_label(src)


def source_label(src: Source) -> str:
    """A source's title and url, else its file or first words."""
    bits = [b for b in (src.title, src.url) if b]
    if bits:
        return " — ".join(dict.fromkeys(bits))
    for key in ("source", "file_name", "file_path", "file"):
        value = src.metadata.get(key)
        if isinstance(value, str) and value.strip():
            return value.strip()
    return _cut(" ".join(src.text.split()), _LABEL_CHARS)


def _quote(c: Citation) -> str:
    text = f'"{_cut(" ".join(c.quote.split()), MAX_QUOTE_CHARS)}"'
    if c.status == "unverified":
        return text + " (not found in the source)"
    if c.status == "misattributed":
        return text + " (found in another source)"
    if c.status == "approximate":
        return text + " (close to the source, not its exact words)"
    if c.status == "from_query":
        return text + " (copied from the question, not from a source)"
    return text


def _cut(text: str, limit: int) -> str:
    return text if len(text) <= limit else text[: limit - 1].rstrip() + "…"
