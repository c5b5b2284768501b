"""``pleias-rag``: ask a question of a folder of text files and get a cited, checked answer."""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any, TextIO

from ..answer import Citation, PleiasAnswer
from ..fallback import has_answer, visible_text
from ..sources import Source
from ..views.html import render_page
from ..views.labels import citation_label, source_label
from .files import load_passages
from .search import BM25Index

DEFAULT_MODEL = "PleIAs/Pleias-RAG-350M"
_MARK = {
    "verified": "✓",
    "approximate": "≈",
    "misattributed": "⚠",
    "from_query": "✗",
    "unverified": "✗",
    "unknown_source": "?",
}


class CliError(Exception):
    """A problem the user can fix; printed without a traceback."""


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="pleias-rag", description="Cited answers from your documents with Pleias RAG models."
    )
    sub = parser.add_subparsers(dest="command", required=True)
    ask = sub.add_parser("ask", help="answer a question from the text files under --docs")
    ask.add_argument("question")
    ask.add_argument("--docs", required=True, type=Path, help="a text file or folder")
    ask.add_argument("--model", default=DEFAULT_MODEL, help="hub id or local model folder")
    ask.add_argument("--top-k", type=int, default=5, help="passages given to the model")
    ask.add_argument("--max-new-tokens", type=int, default=1024)
    ask.add_argument("--passage-words", type=int, default=160, help="passage size in words")
    ask.add_argument("--device", default=None, help="cpu, cuda, ... (default: best available)")
    ask.add_argument("--json", action="store_true", help="print the structured result")
    ask.add_argument("--html", type=Path, help="also write an HTML page of the answer here")
    render = sub.add_parser("render", help="turn a saved --json result into an HTML page")
    render.add_argument("result", type=Path, help="a file written by `ask --json`")
    render.add_argument("--out", type=Path, required=True, help="the HTML file to write")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        if args.command == "ask":
            return ask(args, sys.stdout)
        return render(args)
    except CliError as exc:
        print(f"pleias-rag: {exc}", file=sys.stderr)
        return 2


def ask(args: argparse.Namespace, out: TextIO) -> int:
    if args.top_k < 1:
        raise CliError("--top-k must be at least 1")
    try:
        passages = _progress(
            "Indexing documents", lambda: load_passages(args.docs, max_words=args.passage_words)
        )
    except FileNotFoundError as exc:
        raise CliError(str(exc)) from None
    index = BM25Index(passages)
    hits = index.search(args.question, args.top_k)
    if not hits:
        raise CliError(
            f"no passage under {args.docs} shares a word with the question; "
            "rephrase it, or add documents that cover it"
        )
    sources = [s for s, _ in hits]
    model = _load_model(args)
    answer = _progress(
        "Answering",
        lambda: model.answer(args.question, sources, max_new_tokens=args.max_new_tokens),
    )
    result = to_json(args.question, answer)
    if args.json:
        json.dump(result, out, ensure_ascii=False, indent=2)
        out.write("\n")
    else:
        out.write(format_answer(answer))
    if args.html:
        args.html.write_text(render_page(answer, query=args.question), encoding="utf-8")
    return 0


def render(args: argparse.Namespace) -> int:
    try:
        data = json.loads(args.result.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise CliError(f"cannot read {args.result} as an `ask --json` result: {exc}") from None
    answer = from_json(data)
    args.out.write_text(render_page(answer, query=data.get("question")), encoding="utf-8")
    return 0


def _load_model(args: argparse.Namespace) -> Any:
    from ..local import PleiasModel

    def load() -> Any:
        model = PleiasModel.from_pretrained(args.model, device=args.device)
        model.load()
        return model

    try:
        return _progress(f"Loading {args.model}", load)
    except OSError as exc:
        raise CliError(
            f"could not load the model {args.model!r} ({exc}). Without network access, "
            "download it elsewhere and point --model at the local folder (config.json, "
            "tokenizer files and weights)"
        ) from None


def _progress(label: str, work: Any) -> Any:
    """Run ``work()`` behind a progress indicator on stderr."""
    from tqdm import tqdm

    with tqdm(total=1, desc=label, file=sys.stderr, leave=False, bar_format="{desc}… {elapsed}"):
        return work()


def format_answer(answer: PleiasAnswer) -> str:
    """The answer, then each citation with its file, position, quote and check."""
    lines = [visible_text(answer).strip(), ""]
    if not has_answer(answer):
        lines.insert(0, "(the model wrote no answer section; its raw output follows)")
    if answer.citations:
        lines.append("Sources:")
    for c in answer.citations:
        lines.append(f"  [{c.number}] {_MARK[c.status]} {c.status}  {_where(c)}")
        lines.append(f"      “{c.quote}”")
        if c.status == "misattributed" and c.found_in:
            where = source_label(c.found_in[0])
            lines.append(f"      (the quote is in {where}, not in the source named)")
        elif c.status == "approximate":
            lines.append(f"      the source says: “{c.matched_text}”")
        elif c.note:
            lines.append(f"      ({c.note})")
    if not any(c.verified for c in answer.citations):
        lines.append(
            "Note: no quote of this answer is word for word in the documents; the documents "
            "may not answer this question."
        )
    if answer.truncated:
        lines.append("Note: the answer was cut off (raise --max-new-tokens).")
    return "\n".join(lines) + "\n"


def _where(c: Citation) -> str:
    src = c.source
    if src is None:
        return citation_label(c)
    where = source_label(src)
    line = src.metadata.get("line")
    base = src.metadata.get("start")
    if isinstance(base, int) and c.source_start is not None and c.source_end is not None:
        where += f" chars {base + c.source_start}-{base + c.source_end}"
    elif line is not None:
        where += f" line {line}"
    return where


def to_json(question: str, answer: PleiasAnswer) -> dict[str, Any]:
    return {
        "question": question,
        "answer": answer.answer,
        "dialect": answer.dialect,
        "finish_reason": answer.finish_reason,
        "source_analysis": answer.source_analysis,
        "raw": answer.raw,
        "citations": [c.to_dict() for c in answer.citations],
        "sources": [
            {"id": s.id, "text": s.text, "metadata": dict(s.metadata)} for s in answer.sources
        ],
    }


def from_json(data: dict[str, Any]) -> PleiasAnswer:
    """Rebuild the answer from ``to_json``'s output by parsing the raw text again."""
    from ..parser import parse_response

    try:
        sources = [Source(s["text"], id=s["id"], metadata=s["metadata"]) for s in data["sources"]]
        dialect = data["dialect"]
        start = {"hash": "source_analysis", "numbered": "language"}.get(dialect)
        return parse_response(
            data["raw"],
            sources,
            dialect,
            start=start,
            finish_reason=data["finish_reason"],
            query=data["question"],
        )
    except (KeyError, TypeError, ValueError) as exc:
        raise CliError(f"not an `ask --json` result: {exc}") from None


if __name__ == "__main__":
    raise SystemExit(main())
