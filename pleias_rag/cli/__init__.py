"""``pleias-rag``: ask a question of a folder of text files and get a cited, checked answer."""

from __future__ import annotations

import argparse
import contextlib
import json
import logging
import re
import sys
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any, TextIO, TypeVar

from ..answer import Citation, PleiasAnswer
from ..errors import PleiasError, PromptTooLong
from ..fallback import has_answer, visible_text
from ..parser import AnswerDelta, Finished
from ..sources import Source
from ..views.html import render_page
from ..views.labels import citation_label, source_label
from .files import load_passages
from .models import ModelNotFound, resolve_model
from .search import BM25Index, has_word

T = TypeVar("T")
DEFAULT_MODEL = "PleIAs/Pleias-RAG-350M"
_MARK = {
    "verified": "✓",
    "approximate": "≈",
    "misattributed": "⚠",
    "from_query": "✗",
    "unverified": "✗",
    "unknown_source": "?",
}
_DEVICES = "cpu, cuda, cuda:0, cuda:1... (a GPU by number) or mps"


class CliError(Exception):
    """A problem the user can fix; printed without a traceback."""


class _Parser(argparse.ArgumentParser):
    """Usage errors as one line: ``pleias-rag ask: --top-k must be at least 1, got 0``."""

    def error(self, message: str) -> Any:
        message = re.sub(r"^argument (\S+?)(?:/\S+)?: ", r"\1 ", message)
        self.exit(2, f"{self.prog}: {message} (see {self.prog} --help)\n")


class _Help(argparse.ArgumentDefaultsHelpFormatter):
    """Shows the defaults, except the empty ones (None, False)."""

    def _get_help_string(self, action: argparse.Action) -> str:
        if action.default in (None, False):
            return action.help or ""
        return super()._get_help_string(action) or ""


def _at_least_one(value: str) -> int:
    try:
        number = int(value)
    except ValueError:
        raise argparse.ArgumentTypeError(f"must be a whole number, got {value!r}") from None
    if number < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1, got {number}")
    return number


def _device(value: str) -> str:
    import torch

    try:
        dev = torch.device(value)
    except (RuntimeError, TypeError, ValueError):
        raise argparse.ArgumentTypeError(
            f"{value!r} is not a torch device: use {_DEVICES}"
        ) from None
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise argparse.ArgumentTypeError(f"{value!r}: CUDA is not available here, use cpu")
    if dev.type == "mps" and not torch.backends.mps.is_available():
        raise argparse.ArgumentTypeError(f"{value!r}: MPS is not available here, use cpu")
    if dev.type not in ("cpu", "cuda", "mps", "xpu"):
        raise argparse.ArgumentTypeError(f"{value!r} is not supported: use {_DEVICES}")
    return value


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(
        prog="pleias-rag",
        description="Cited answers from your documents with Pleias RAG models.",
        formatter_class=_Help,
    )
    sub = parser.add_subparsers(dest="command", required=True)
    ask = sub.add_parser(
        "ask", help="answer a question from the text files under --docs", formatter_class=_Help
    )
    ask.add_argument("question", help="the question, in quotes")
    ask.add_argument(
        "--docs", required=True, type=Path, metavar="PATH", help="a text file or folder"
    )
    ask.add_argument("--model", default=DEFAULT_MODEL, metavar="NAME", help="hub id or folder")
    ask.add_argument(
        "--top-k", type=_at_least_one, default=5, metavar="N", help="passages given to the model"
    )
    ask.add_argument(
        "--max-new-tokens", type=_at_least_one, default=1024, metavar="N", help="output limit"
    )
    ask.add_argument(
        "--passage-words",
        type=_at_least_one,
        default=160,
        metavar="N",
        help="passage size in words",
    )
    ask.add_argument(
        "--device", type=_device, metavar="DEVICE", help=f"{_DEVICES} (default: best available)"
    )
    ask.add_argument("--json", action="store_true", help="print the structured result")
    ask.add_argument(
        "--html", type=Path, metavar="FILE", help="also write an HTML page of the answer here"
    )
    render = sub.add_parser(
        "render", help="turn a saved --json result into an HTML page", formatter_class=_Help
    )
    render.add_argument("result", type=Path, help="a file written by `ask --json`")
    render.add_argument(
        "--out", type=Path, required=True, metavar="FILE", help="the HTML file to write"
    )
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
    except PleiasError as exc:  # a check of the library the CLI did not anticipate
        print(f"pleias-rag: {_one_line(str(exc))}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("pleias-rag: interrupted", file=sys.stderr)
        return 130


def ask(args: argparse.Namespace, out: TextIO) -> int:
    question = args.question.strip()
    if not question:
        raise CliError("the question is empty: give it as the first argument, in quotes")
    if not has_word(question):
        raise CliError(
            f"the question has no word of two letters or more to search the documents with: "
            f"{args.question!r}"
        )
    if args.html:
        _check_writable(args.html, "--html")
    passages = _progress("Indexing documents", lambda: _read_docs(args.docs, args.passage_words))
    try:
        index = BM25Index(passages)
    except PleiasError:
        raise CliError(
            f"no passage under {args.docs} has a word of two letters or more to search: "
            "give text files that hold words"
        ) from None
    hits = index.search(question, args.top_k)
    if not hits:
        raise CliError(
            f"no passage under {args.docs} shares a word with the question; "
            "rephrase it, or add documents that cover it"
        )
    found = [s for s, _ in hits]
    model = _load_model(args, question, found)
    gen = {"max_new_tokens": args.max_new_tokens}
    with _quiet_source_report():
        if args.json:
            answer = _progress("Answering", lambda: model.answer(question, found, **gen))
            result = to_json(question, answer, found)
            json.dump(result, out, ensure_ascii=False, indent=2)
            out.write("\n")
        else:
            answer = _stream_answer(model.stream(question, found, **gen), out, found)
    if args.html:
        try:
            args.html.write_text(render_page(answer, query=question), encoding="utf-8")
        except OSError as exc:
            raise CliError(f"cannot write --html {args.html}: {exc.strerror or exc}") from None
    return 0


def _read_docs(docs: Path, passage_words: int) -> list[Source]:
    def skipped(file: Path, reason: str) -> None:
        print(f"pleias-rag: skipped {file}: {reason}", file=sys.stderr)

    try:
        return load_passages(docs, max_words=passage_words, on_skip=skipped)
    except (OSError, ValueError) as exc:
        raise CliError(str(exc)) from None


def _stream_answer(events: Iterator[Any], out: TextIO, found: Sequence[Source]) -> PleiasAnswer:
    """Print the answer text as it is generated, then its sources; the answer."""
    answer: PleiasAnswer | None = None
    started = False
    with _ticker("Answering") as stop:
        for event in events:
            if isinstance(event, AnswerDelta):
                text = event.text if started else event.text.lstrip()
                if not text:
                    continue
                if not started:
                    stop()
                    started = True
                out.write(text)
                out.flush()
            elif isinstance(event, Finished):
                answer = event.answer
    assert answer is not None
    if started and has_answer(answer):
        out.write("\n" + "\n".join(["", *_details(answer, found)]) + "\n")
    else:
        if started:
            out.write("\n\n")
        out.write(format_answer(answer, found))
    out.flush()
    return answer


def render(args: argparse.Namespace) -> int:
    try:
        data = json.loads(args.result.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise CliError(f"cannot read {args.result} as an `ask --json` result: {exc}") from None
    _check_writable(args.out, "--out")
    answer = from_json(data)
    try:
        args.out.write_text(render_page(answer, query=data.get("question")), encoding="utf-8")
    except OSError as exc:
        raise CliError(f"cannot write --out {args.out}: {exc.strerror or exc}") from None
    return 0


def _check_writable(path: Path, option: str) -> None:
    """Fail now, not after generating, when ``path`` cannot be written: the file is opened
    for writing (and removed again when this made it). ``os.access`` is not enough: it says
    yes to root, and knows nothing of /proc, read-only mounts or full disks."""
    problem = None
    parent = path.parent if str(path.parent) else Path(".")
    if path.is_dir():
        problem = "it is a folder; give a file name"
    elif not parent.is_dir():
        problem = f"the folder {parent} does not exist"
    else:
        existed = path.exists()
        try:
            with open(path, "a", encoding="utf-8"):  # "a": an existing file is not emptied
                pass
        except OSError as exc:
            problem = exc.strerror or str(exc)
        else:
            if not existed:
                with contextlib.suppress(OSError):
                    path.unlink()
    if problem:
        raise CliError(f"cannot write {option} {path}: {problem}")


def _load_model(args: argparse.Namespace, question: str, found: Sequence[Source]) -> Any:
    """The model, its window and the prompt checked with the tokenizer, then the weights."""
    try:
        name = resolve_model(args.model)
    except ModelNotFound as exc:
        raise CliError(str(exc)) from None
    from transformers.utils import logging as hf_logging

    from ..local import PleiasModel

    hf_logging.disable_progress_bar()  # type: ignore[no-untyped-call]  # the CLI shows its own

    def tokenizer() -> Any:
        model = PleiasModel.from_pretrained(name, device=args.device)
        return model, model.context_window  # reads the tokenizer and config only

    try:
        model, window = _progress(f"Reading {args.model}", tokenizer)
    except PleiasError as exc:
        if "dialect" in str(exc):
            raise CliError(
                f"the model {args.model!r} is not a Pleias RAG model: its tokenizer has none of "
                "the Pleias markers (<|source_id|>, <|source_analysis_start|>...); use one such "
                "as PleIAs/Pleias-RAG-350M"
            ) from None
        raise CliError(f"cannot use the model {args.model!r}: {_one_line(str(exc))}") from None
    except Exception as exc:  # OSError, ValueError, or a tokenizer library's own error
        raise CliError(f"could not load the model {args.model!r}: {_first_line(exc)}") from None
    if args.max_new_tokens >= window:
        raise CliError(
            f"--max-new-tokens {args.max_new_tokens} does not fit the context window of "
            f"{window} tokens of {args.model}, which also holds the prompt: use at most "
            f"{window // 2} or so (the passages need the rest)"
        )
    try:
        model.encode(question, found, max_new_tokens=args.max_new_tokens)
    except PromptTooLong as exc:
        raise CliError(
            f"the question needs {exc.prompt_tokens} tokens and --max-new-tokens "
            f"{exc.max_new_tokens} more, over the context window of {exc.context_window} "
            "tokens: shorten the question or lower --max-new-tokens"
        ) from None
    try:
        _progress(f"Loading {args.model}", model.load)
    except Exception as exc:  # a damaged weights file raises the loader's own error type
        raise CliError(
            f"could not load the weights of the model {args.model!r}: "
            f"{type(exc).__name__}: {_first_line(exc)}; the files may be incomplete or "
            "damaged: download the model again"
        ) from None
    return model


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__


def _one_line(text: str) -> str:
    return " ".join(text.split())


class _SourceReportFilter(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        return not str(record.msg).startswith("the prompt left out")


@contextmanager
def _quiet_source_report() -> Iterator[None]:
    """The library's warning about left-out sources: the CLI reports them itself."""
    logger, quiet = logging.getLogger("pleias_rag"), _SourceReportFilter()
    logger.addFilter(quiet)
    try:
        yield
    finally:
        logger.removeFilter(quiet)


@contextmanager
def _ticker(label: str, interval: float = 0.25) -> Iterator[Callable[[], None]]:
    """``label… MM:SS`` on stderr, advancing, while the block runs (only on a terminal);
    the block gets a function that stops and clears it early."""
    err = sys.stderr
    if not err.isatty():
        yield lambda: None
        return
    done = threading.Event()
    lock = threading.Lock()
    start = time.monotonic()
    width = 0

    def show() -> None:
        nonlocal width
        secs = int(time.monotonic() - start)
        line = f"{label}… {secs // 60:02}:{secs % 60:02}"
        width = max(width, len(line))
        err.write("\r" + line)
        err.flush()

    def tick() -> None:
        while not done.wait(interval):
            with lock:
                if not done.is_set():
                    show()

    def stop() -> None:
        with lock:
            if done.is_set():
                return
            done.set()
            err.write("\r" + " " * width + "\r")
            err.flush()

    with lock:
        show()
    thread = threading.Thread(target=tick, daemon=True)
    thread.start()
    try:
        yield stop
    finally:
        stop()
        thread.join()


def _progress(label: str, work: Callable[[], T]) -> T:
    """Run ``work()`` behind an advancing ``label… MM:SS`` on stderr (on a terminal)."""
    with _ticker(label):
        return work()


def format_answer(answer: PleiasAnswer, found: Sequence[Source] = ()) -> str:
    """The answer, then each citation with its file, position, quote and check, then what
    the context window left out of the passages ``found``."""
    lines = [visible_text(answer).strip(), "", *_details(answer, found)]
    if not has_answer(answer):
        lines.insert(0, "(the model wrote no answer section; its raw output follows)")
    return "\n".join(lines) + "\n"


def _details(answer: PleiasAnswer, found: Sequence[Source]) -> list[str]:
    lines = []
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
    dropped, cut = _left_out(answer, found)
    if dropped:
        lines.append(
            f"Note: {len(dropped)} of the {len(found)} passages found did not fit the model's "
            "context window and were left out (lower --top-k, --passage-words or "
            f"--max-new-tokens): {_passage_list(dropped)}."
        )
    if cut:
        lines.append(f"Note: cut short to fit the context window: {_passage_list(cut)}.")
    return lines


def _left_out(
    answer: PleiasAnswer, found: Sequence[Source]
) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """The passages found that the prompt left out, and those it cut: number (1 = the best
    match), id, file, line and offsets."""

    def entries(ids: Sequence[str]) -> list[dict[str, Any]]:
        wanted = set(ids)
        return [
            {
                "number": n,
                "id": s.id,
                "file": s.metadata.get("file"),
                "line": s.metadata.get("line"),
                "start": s.metadata.get("start"),
                "end": s.metadata.get("end"),
            }
            for n, s in enumerate(found, 1)
            if s.id in wanted
        ]

    return entries(answer.dropped_source_ids), entries(answer.truncated_source_ids)


def _passage_list(entries: Sequence[dict[str, Any]]) -> str:
    return ", ".join(f"#{e['number']} {e['file']} line {e['line']}" for e in entries)


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


def to_json(question: str, answer: PleiasAnswer, found: Sequence[Source] = ()) -> dict[str, Any]:
    dropped, cut = _left_out(answer, found)
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
        "dropped_passages": dropped,
        "truncated_passages": cut,
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
