"""docs/troubleshooting.md's table of the library's bad inputs says what the code says."""

from __future__ import annotations

import re
import shutil
from collections.abc import Callable
from pathlib import Path

import pytest

from pleias_rag import Backend, ScriptedEngine, Source, parse_response

TABLE = (Path(__file__).parents[1] / "docs" / "troubleshooting.md").read_text(encoding="utf-8")
B = Backend(ScriptedEngine({}))

CASES: dict[str, Callable[[], object]] = {
    "temperature must be 0 (greedy) or in [1e-06, 1e+06], got inf": lambda: B.answer(
        "q?", [], temperature=float("inf")
    ),
    "temperature must be >= 0.0, got nan": lambda: B.answer("q?", [], temperature=float("nan")),
    "min_new_tokens=10 is above max_new_tokens=5": lambda: B.answer(
        "q?", [], min_new_tokens=10, max_new_tokens=5
    ),
    "unknown generation argument 'max_token'": lambda: B.answer("q?", [], max_token=5),
    "query must be a str (the question), got NoneType": lambda: B.stream(None, []),  # type: ignore[arg-type]
    "not a dict (its keys would be taken as the texts)": lambda: B.answer("q?", {"a": "b"}),  # type: ignore[arg-type]
    "not a set (its order changes from run to run, and with it the prompt and the citation "
    "numbers): give a list, e.g. sorted(s)": lambda: B.answer("q?", {"a", "b"}),
    "answer_batch takes a list of (query, sources) pairs, not a dict (its keys would be taken "
    "as the queries): give list(d.items()) when it maps queries to sources": lambda: B.answer_batch(
        {"q?": ["s"]}
    ),  # type: ignore[arg-type]
    "source 0 is empty: give every source some text, or leave it out": lambda: B.answer(
        "q?", ["  "]
    ),
    "Source.id must be a str, got 0 (int)": lambda: Source("text", id=0),  # type: ignore[arg-type]
    "finish_reason must be 'stop', 'length' or None": lambda: parse_response(
        "x",
        [],
        "hash",
        finish_reason="banana",  # type: ignore[arg-type]
    ),
    "use one of ('hash', 'numbered', 'markdown') or None": lambda: parse_response(
        "x", [], "chatml"
    ),
}


@pytest.mark.parametrize("message", sorted(CASES))
def test_the_table_shows_the_real_message(message: str) -> None:
    assert message in TABLE
    with pytest.raises(ValueError, match=re.escape(message)):
        CASES[message]()


# -- the command line's table ------------------------------------------------------------

CLI_TABLE = TABLE[TABLE.index("### Command line") :]
CLI_TABLE = CLI_TABLE[: CLI_TABLE.index("\n\n", CLI_TABLE.index("| input | message |"))]
# The table's placeholders: any text there.
_PLACEHOLDER = re.compile(
    r"\b(?:NEW_FILE|PATH|FILE|DIR|MODEL|ID|N)\b|\\\(\\\.\\\.\\\.\\\)|\\\.\\\.\\\."
)


def _pattern(message: str) -> str:
    """A table message as a regex: its placeholders (PATH, FILE... and "...") match anything."""
    return _PLACEHOLDER.sub(".*", re.escape(message.replace("\\|", "|")))


def _docs(tmp: Path, files: dict[str, bytes | str]) -> str:
    folder = tmp / "docs"
    folder.mkdir(exist_ok=True)
    for name, content in files.items():
        path = folder / name
        path.write_bytes(content if isinstance(content, bytes) else content.encode())
    return str(folder)


EIFFEL = {"eiffel.txt": "The Eiffel Tower was completed in 1889.\n"}


def _damaged(tmp: Path, model: Path) -> str:
    folder = tmp / "damaged"
    shutil.copytree(model, folder)
    weights = folder / "model.safetensors"
    weights.write_bytes(weights.read_bytes()[:1000])
    return str(folder)


def _no_model(tmp: Path) -> str:
    folder = tmp / "not-a-model"
    folder.mkdir()
    for name in ("tokenizer.json", "model.safetensors"):  # all but the config
        (folder / name).write_text("{}", encoding="utf-8")
    return str(folder)


def _bad_result(tmp: Path) -> str:
    (tmp / "result.json").write_text("{not json", encoding="utf-8")
    return str(tmp / "result.json")


# The CLI table's message (a template of it) -> the command that must print it; ``tmp`` is a
# fresh folder, ``model`` the tiny trained numbered model (a 4096-token window).
CLI_CASES: dict[str, Callable[[Path, Path], list[str]]] = {
    "pleias-rag ask: --passage-words must be at least 1, got 0 (see pleias-rag ask --help)": (
        lambda t, m: ["ask", "Eiffel?", "--docs", _docs(t, EIFFEL), "--passage-words", "0"]
    ),
    "pleias-rag ask: --top-k must be a whole number, got 'many' (...)": (
        lambda t, m: ["ask", "Eiffel?", "--docs", _docs(t, EIFFEL), "--top-k", "many"]
    ),
    "pleias-rag ask: --device 'gpu' is not a torch device: use cpu, cuda, cuda:0, cuda:1... "
    "(a GPU by number) or mps (...)": (
        lambda t, m: ["ask", "Eiffel?", "--docs", _docs(t, EIFFEL), "--device", "gpu"]
    ),
    "--max-new-tokens 5000 does not fit the context window of 4096 tokens of MODEL, which also "
    "holds the prompt: use at most 2048 or so (the passages need the rest)": (
        lambda t, m: (
            [
                "ask",
                "Eiffel?",
                "--docs",
                _docs(t, EIFFEL),
                "--model",
                str(m),
                "--max-new-tokens",
                "5000",
            ]
        )
    ),
    "the question is empty: give it as the first argument, in quotes": (
        lambda t, m: ["ask", "  ", "--docs", _docs(t, EIFFEL)]
    ),
    "the question has no word of two letters or more to search the documents with: '?'": (
        lambda t, m: ["ask", "?", "--docs", _docs(t, EIFFEL)]
    ),
    "PATH does not exist: give a file or a folder of text files": (
        lambda t, m: ["ask", "Eiffel?", "--docs", str(t / "nowhere")]
    ),
    "the text files under PATH are empty": (
        lambda t, m: ["ask", "Eiffel?", "--docs", _docs(t, {"a.txt": " \n"})]
    ),
    "no text files under PATH: pleias-rag reads .txt, .md, .markdown, .rst, .text files": (
        lambda t, m: ["ask", "Eiffel?", "--docs", _docs(t, {"a.pdf": "x"})]
    ),
    "no passage under PATH has a word of two letters or more to search: give text files that "
    "hold words": (lambda t, m: ["ask", "Eiffel?", "--docs", _docs(t, {"a.txt": "1 2 a b"})]),
    "cannot read FILE: it is UTF-16 text, and pleias-rag reads UTF-8 (convert it: iconv -f "
    "UTF-16 -t UTF-8 FILE > NEW_FILE)": (
        lambda t, m: (
            [
                "ask",
                "Eiffel?",
                "--docs",
                str(Path(_docs(t, {"a.txt": "Eiffel tower".encode("utf-16")})) / "a.txt"),
            ]
        )
    ),
    "no readable text file under PATH: the N file(s) found are not UTF-8 text": (
        lambda t, m: ["ask", "Eiffel?", "--docs", _docs(t, {"a.txt": b"Eiffel \x00\x01"})]
    ),
    "no passage under PATH shares a word with the question; rephrase it, or add documents that "
    "cover it": (lambda t, m: ["ask", "Zebra xylophone?", "--docs", _docs(t, EIFFEL)]),
    "cannot write --html FILE: the folder DIR does not exist": (
        lambda t, m: (
            ["ask", "Eiffel?", "--docs", _docs(t, EIFFEL), "--html", str(t / "nowhere" / "a.html")]
        )
    ),
    "could not load the model 'PATH': there is no such folder; point --model at the local "
    "folder of a Pleias RAG model, or give a hub id (PleIAs/Pleias-RAG-350M)": (
        lambda t, m: ["ask", "Eiffel?", "--docs", _docs(t, EIFFEL), "--model", str(t / "none")]
    ),
    "PATH is not a model folder: it has no config.json; point --model at a folder where a "
    "Pleias RAG model was saved or downloaded": (
        lambda t, m: ["ask", "Eiffel?", "--docs", _docs(t, EIFFEL), "--model", _no_model(t)]
    ),
    "could not load the weights of the model 'PATH': SafetensorError: ...; the files may be "
    "incomplete or damaged: download the model again": (
        lambda t, m: (
            [
                "ask",
                "Eiffel?",
                "--docs",
                _docs(t, EIFFEL),
                "--model",
                _damaged(t, m),
                "--max-new-tokens",
                "8",
            ]
        )
    ),
    "HF_HUB_OFFLINE is set, and the model 'ID' is not in the local Hugging Face cache: download "
    "it where there is network (`hf download ID --local-dir ./model`), copy the folder here and "
    "pass --model ./model": (
        lambda t, m: (
            ["ask", "Eiffel?", "--docs", _docs(t, EIFFEL), "--model", "PleIAs/Not-A-Model-xyz"]
        )
    ),
    "cannot read FILE as an `ask --json` result: ...": (
        lambda t, m: ["render", _bad_result(t), "--out", str(t / "page.html")]
    ),
}
# Rows tied elsewhere, or that need what a test does not have (the reason says which).
CLI_UNTIED = {
    "`--device cuda` without CUDA": "depends on the machine: tests/test_cli_errors.py",
    "such a file in a `--docs` folder": "a warning and exit 0: tests/test_cli_errors.py",
    "`--model` of another family": "builds a tokenizer: tests/test_cli_errors.py",
    "a hub id the hub does not have": "needs the network",
}


def _cli_rows() -> list[str]:
    rows = [line for line in CLI_TABLE.splitlines() if line.startswith("| ")]
    return rows[2:]  # after the header and its rule


def test_every_row_of_the_cli_table_is_tied() -> None:
    for row in _cli_rows():
        tied = any(message in row for message in CLI_CASES)
        untied = any(row.startswith(f"| {what}") for what in CLI_UNTIED)
        assert tied or untied, f"no test for the row {row!r}"


@pytest.mark.parametrize("message", list(CLI_CASES))
def test_the_cli_table_shows_the_real_message(
    message: str,
    tmp_path: Path,
    tiny_trained_model_numbered: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    from pleias_rag.cli import main

    assert message in CLI_TABLE
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.chdir(tmp_path)
    try:
        status = main(CLI_CASES[message](tmp_path, tiny_trained_model_numbered))
    except SystemExit as exit_:  # refused while the arguments are read
        status = exit_.code  # type: ignore[assignment]
    assert status == 2
    err = capsys.readouterr().err
    # One line, after the warnings for the files skipped (when a folder holds only such).
    lines = [ln for ln in err.strip().splitlines() if not ln.startswith("pleias-rag: skipped ")]
    assert len(lines) == 1 and "Traceback" not in err, err
    line = lines[0].removeprefix("pleias-rag: ")
    assert re.fullmatch(_pattern(message), line), f"{line!r} is not the table's {message!r}"
