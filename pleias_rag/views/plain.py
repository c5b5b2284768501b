"""The answer as plain text for a reader that only takes text (an agent reading a tool result):
the answer with its ``[n]`` markers, then a short numbered source list with the quotes."""

from __future__ import annotations

from ..answer import Citation, PleiasAnswer
from .labels import by_number, citation_label, cut

MAX_QUOTE_CHARS = 200
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
        lines.append(f"[{number}] {citation_label(cites[0])}: {quotes}")
    return "\n".join(lines)


def _quote(c: Citation) -> str:
    text = f'"{cut(" ".join(c.quote.split()), MAX_QUOTE_CHARS)}"'
    if c.status == "unverified":
        return text + " (not found in the source)"
    if c.status == "misattributed":
        return text + " (found in another source)"
    if c.status == "approximate":
        return text + " (close to the source, not its exact words)"
    if c.status == "from_query":
        return text + " (copied from the question, not from a source)"
    return text
