"""The answer as Markdown: ``[^n]`` footnotes listing each source and its quotes."""

from __future__ import annotations

from ..answer import Citation, PleiasAnswer
from .labels import by_number, citation_label, first_per_number


def to_markdown(answer: PleiasAnswer) -> str:
    """The answer with Markdown footnotes ``[^n]``: each source's label and its quotes, the
    status of every quote that is not verified beside it."""
    body = answer.answer
    for c in sorted(first_per_number(answer.citations), key=lambda c: -c.number):
        body = body.replace(c.marker, f"[^{c.number}]")
    notes = []
    for number, cites in by_number(answer.citations).items():
        quotes = "; ".join(f'"{c.quote}"' + _flag(c) for c in cites)
        notes.append(f"[^{number}]: {citation_label(cites[0])}: {quotes}")
    return body + ("\n\n" + "\n".join(notes) if notes else "")


def _flag(c: Citation) -> str:
    return "" if c.status == "verified" else f" ({c.status})"
