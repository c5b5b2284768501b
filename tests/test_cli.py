"""`pleias-rag ask` / `render` end to end, on a tiny trained model and real files."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from pleias_rag.cli import main
from pleias_rag.cli.files import load_passages, split_text
from pleias_rag.testing import TRAINING_EXAMPLES

CITED = next(e for e in TRAINING_EXAMPLES["hash"] if e.name == "cited")


@pytest.fixture
def docs(tmp_path: Path) -> Path:
    folder = tmp_path / "docs"
    (folder / "sub").mkdir(parents=True)
    eiffel, louvre = CITED.sources
    (folder / "eiffel.txt").write_text(f"{eiffel}\n", encoding="utf-8")
    (folder / "sub" / "louvre.md").write_text(f"\n{louvre}\n", encoding="utf-8")
    (folder / "image.png").write_bytes(b"\x89PNG")
    return folder


def test_split_text_keeps_positions_and_limits() -> None:
    text = "Para one is short.\n\nPara two. " + "word " * 50 + "\n\nEnd."
    spans = split_text(text, max_words=20)
    assert all(len(text[s:e].split()) <= 20 for s, e in spans)
    joined = " ".join(text[s:e] for s, e in spans).split()
    assert joined == text.split()


def test_load_passages_metadata(docs: Path) -> None:
    passages = load_passages(docs)
    assert [p.text for p in passages] == list(CITED.sources)
    louvre = passages[1]
    assert louvre.metadata["file"].endswith("louvre.md") and louvre.metadata["line"] == 2
    raw = Path(louvre.metadata["file"]).read_text()
    assert raw[louvre.metadata["start"] : louvre.metadata["end"]] == louvre.text


def test_ask_prints_checked_citations(
    docs: Path, tiny_trained_model_hash: Path, capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    page = tmp_path / "answer.html"
    args = [
        "ask", CITED.query, "--docs", str(docs), "--model", str(tiny_trained_model_hash),
        "--top-k", "2", "--max-new-tokens", "120", "--html", str(page),
    ]  # fmt: skip
    assert main(args) == 0
    out = capsys.readouterr().out
    assert out.startswith("The Eiffel Tower was completed in 1889[1].")
    assert "[1] ✓ verified" in out and "eiffel.txt chars" in out
    assert "“It was completed in 1889 for the World's Fair.”" in out
    html = page.read_text()
    assert '<a class="verified" href="#src-1">[1]</a>' in html
    assert "<mark" in html and "It was completed in 1889" in html


def test_ask_json_then_render(
    docs: Path, tiny_trained_model_hash: Path, capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    args = ["ask", CITED.query, "--docs", str(docs), "--model", str(tiny_trained_model_hash)]
    assert main([*args, "--top-k", "2", "--max-new-tokens", "120", "--json"]) == 0
    result = json.loads(capsys.readouterr().out)
    (cite,) = result["citations"]
    (source,) = [s for s in result["sources"] if s["id"] == cite["cited_id"]]
    assert cite["status"] == "verified" and source["metadata"]["file"].endswith("eiffel.txt")
    assert result["answer"][cite["answer_start"] : cite["answer_end"]] == "[1]"
    assert source["text"][cite["source_start"] : cite["source_end"]] == cite["matched_text"]
    saved = tmp_path / "result.json"
    saved.write_text(json.dumps(result))
    page = tmp_path / "page.html"
    assert main(["render", str(saved), "--out", str(page)]) == 0
    assert "It was completed in 1889" in page.read_text()


@pytest.mark.parametrize(
    ("setup", "message"),
    [
        ("missing", "does not exist"),
        ("empty", "no text files under"),
        ("unrelated", "shares a word with the question"),
    ],
)
def test_ask_clear_errors(
    tmp_path: Path, setup: str, message: str, capsys: pytest.CaptureFixture[str]
) -> None:
    folder = tmp_path / "d"
    if setup != "missing":
        folder.mkdir()
    if setup == "unrelated":
        (folder / "a.txt").write_text("Zebras gallop quickly.")
    assert main(["ask", "Which year?", "--docs", str(folder), "--model", "/nonexistent"]) == 2
    assert message in capsys.readouterr().err


def test_model_not_found_says_how_to_use_a_local_folder(
    docs: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    code = main(["ask", CITED.query, "--docs", str(docs), "--model", str(tmp_path / "nope")])
    assert code == 2
    err = capsys.readouterr().err
    assert "could not load the model" in err and "--model at the local folder" in err


def test_console_script_entry_point(docs: Path) -> None:
    script = Path(sys.executable).with_name("pleias-rag")
    assert script.exists(), "pip install -e . installs the pleias-rag command"
    proc = subprocess.run(
        [str(script), "ask", "Which year?", "--docs", str(docs / "none")],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == 2 and "does not exist" in proc.stderr
