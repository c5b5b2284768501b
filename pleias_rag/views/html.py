"""The answer as HTML: a fragment (linked markers, each source with its quotes) and a standalone
page (each marker links to its source, quotes highlighted where they are)."""

from __future__ import annotations

import html

from ..answer import Citation, PleiasAnswer
from .labels import by_number, citation_label, source_label
from .ranking import cited_uses

_CSS = """
body{font:16px/1.55 system-ui,sans-serif;max-width:50rem;margin:2rem auto;padding:0 1rem;color:#222}
h1{font-size:1.3rem} .answer{background:#f6f8fa;padding:1rem 1.2rem;border-radius:8px}
sup a{text-decoration:none;font-weight:600} .source{border-left:4px solid #8ab;margin:1.2rem 0;
padding:.2rem 1rem} .source pre{white-space:pre-wrap;font:inherit} mark{background:#ffe58a}
.badge{font-size:.8rem;padding:.1rem .4rem;border-radius:4px;margin-left:.4rem}
.verified{background:#d5f5dc} .unverified,.unknown_source,.from_query{background:#ffd6d6}
.misattributed,.approximate{background:#ffe8c2} .meta{color:#666;font-size:.9rem}
"""


def safe_href(url: str | None) -> str | None:
    """``url`` when it may be a link target: http(s), or relative; None for any other scheme
    (``javascript:``, ``data:``...), which a document's metadata could carry into a page."""
    if not url:
        return None
    # Browsers drop tabs, newlines and control characters inside a scheme ("java\tscript:").
    squeezed = "".join(ch for ch in url if ord(ch) > 32 and ord(ch) != 127)
    scheme, sep, _ = squeezed.partition(":")
    if sep and "/" not in scheme and "?" not in scheme and "#" not in scheme:
        return url.strip() if scheme.lower() in ("http", "https") else None
    return url.strip()  # no scheme: a relative reference


def render_page(answer: PleiasAnswer, *, query: str | None = None) -> str:
    """The whole HTML document for ``answer`` (``query`` shown as the heading)."""
    title = html.escape(query or "Answer")
    body = [f"<h1>{title}</h1>", f'<div class="answer">{_answer_html(answer)}</div>']
    for use in cited_uses(answer):
        number = use.citations[0].number
        src = use.source
        label = html.escape(source_label(src))
        url = safe_href(src.url)
        heading = f'<a href="{html.escape(url)}">{label}</a>' if url else label
        badges = "".join(
            f'<span class="badge {c.status}">[{c.number}] {c.status}</span>' for c in use.citations
        )
        body.append(
            f'<section class="source" id="src-{number}"><h2>[{number}] {heading}</h2>'
            f'<div class="meta">id {html.escape(src.id)}{badges}</div>'
            f"<pre>{_highlight(src.text, use.citations)}</pre>{_unplaced(use.citations)}</section>"
        )
    unknown = [c for c in answer.citations if c.source is None]
    if unknown:
        items = "".join(
            f"<li>[{c.number}] id {html.escape(c.source_id)}: “{html.escape(c.quote)}”</li>"
            for c in unknown
        )
        body.append(
            f'<section class="source unknown_source"><h2>Unknown sources</h2><ul>{items}</ul>'
        )
        body.append("</section>")
    lost = [c for c in answer.citations if c.source is not None and not c.credited]
    if lost:
        items = "".join(
            f"<li>[{c.number}] “{html.escape(c.quote)}” ({c.status}: {html.escape(c.note)}; "
            f"cited as {html.escape(source_label(c.source))})</li>"
            for c in lost
            if c.source is not None
        )
        body.append(
            '<section class="source unverified"><h2>Quotes not found in the sources</h2>'
            f"<ul>{items}</ul></section>"
        )
    return (
        '<!doctype html><html><head><meta charset="utf-8">'
        f"<title>{title}</title><style>{_CSS}</style></head><body>{''.join(body)}</body></html>"
    )


def answer_fragment(answer: PleiasAnswer) -> str:
    """The answer with linked markers, then each cited source with its quotes and statuses."""
    items = []
    for number, cites in by_number(answer.citations).items():
        quotes = "".join(
            f'<blockquote class="pleias-{c.status}">{html.escape(c.quote)}'
            f"<footer>{html.escape(c.status)} ({c.match}, {c.score:.2f})</footer></blockquote>"
            for c in cites
        )
        name = html.escape(citation_label(cites[0]))
        items.append(f'<li id="src-{number}"><strong>{name}</strong>{quotes}</li>')
    sources = f'<ol class="pleias-sources">{"".join(items)}</ol>' if items else ""
    return f'<div class="pleias-answer">{_answer_html(answer)}{sources}</div>'


def _answer_html(answer: PleiasAnswer) -> str:
    parts, pos = [], 0
    for c in sorted(answer.citations, key=lambda c: c.start):
        if c.start < pos:
            continue
        parts.append(html.escape(answer.answer[pos : c.start]))
        parts.append(f'<sup><a class="{c.status}" href="#src-{c.number}">[{c.number}]</a></sup>')
        pos = c.end
    parts.append(html.escape(answer.answer[pos:]))
    return "<p>" + "".join(parts).replace("\n\n", "</p><p>") + "</p>"


def _unplaced(citations: tuple[Citation, ...]) -> str:
    """What a reader must know of the quotes highlighted here: misattributed ones were cited
    as another source, approximate ones differ from the source's words."""
    items = []
    for c in citations:
        if c.status == "misattributed" and c.source is not None:
            note = f" — cited as {html.escape(source_label(c.source))}"
        elif c.status == "approximate":
            diff = "; ".join(f"“{ch.quote}” for “{ch.source}”" for ch in c.changes)
            note = f" — the model wrote {html.escape(diff)}" if diff else ""
        else:
            continue
        items.append(f"<li>[{c.number}] “{html.escape(c.quote)}” ({c.status}{note})</li>")
    return f'<ul class="unplaced">{"".join(items)}</ul>' if items else ""


def _highlight(text: str, citations: tuple[Citation, ...]) -> str:
    spans = sorted(
        (start, end, c.number)
        for c in citations
        for start, end in [c.credited_span]
        if start is not None and end is not None
    )
    out, pos = [], 0
    for start, end, number in spans:
        if start < pos:
            continue  # overlapping quotes: the first one is highlighted
        out.append(html.escape(text[pos:start]))
        out.append(f'<mark title="[{number}]">{html.escape(text[start:end])}</mark>')
        pos = end
    out.append(html.escape(text[pos:]))
    return "".join(out)
