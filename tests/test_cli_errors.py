"""`pleias-rag ask`: every bad input gets one clear line on stderr and exit status 2."""

from __future__ import annotations

import io
import json
import shutil
import time
from pathlib import Path
from typing import Any

import pytest

from pleias_rag.cli import _progress, main
from pleias_rag.testing import TRAINING_EXAMPLES

CITED = next(e for e in TRAINING_EXAMPLES["hash"] if e.name == "cited")
ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture
def docs(tmp_path: Path) -> Path:
    folder = tmp_path / "docs"
    folder.mkdir()
    eiffel, louvre = CITED.sources
    (folder / "eiffel.txt").write_text(f"{eiffel}\n", encoding="utf-8")
    (folder / "louvre.md").write_text(f"{louvre}\n", encoding="utf-8")
    return folder


@pytest.fixture
def no_weights(monkeypatch: pytest.MonkeyPatch) -> None:
    """Loading the weights fails the test: the error must come before."""

    def refuse(*args: Any, **kwargs: Any) -> Any:
        raise AssertionError("the weights were loaded before the error")

    monkeypatch.setattr("pleias_rag.local._resources.load_model", refuse)


def one_line(capsys: pytest.CaptureFixture[str]) -> str:
    err = capsys.readouterr().err
    lines = err.strip().splitlines()
    assert len(lines) == 1, f"expected one line on stderr, got {err!r}"
    assert "Traceback" not in err
    return lines[0]


def ask(*args: str) -> int:
    return main(["ask", *args])


# -- documents -------------------------------------------------------------------------


def test_no_passage_with_a_word(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    (tmp_path / "n.txt").write_text("1 2 3 . a b\n\n- ; 4\n", encoding="utf-8")
    assert ask("Which year?", "--docs", str(tmp_path), "--model", "/nonexistent") == 2
    line = one_line(capsys)
    assert "no passage under" in line and "two letters or more" in line


def test_utf16_file_given_alone_fails(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    file = tmp_path / "notes.txt"
    file.write_text("The Eiffel Tower was completed in 1889.", encoding="utf-16")
    assert ask("When?", "--docs", str(file), "--model", "/nonexistent") == 2
    line = one_line(capsys)
    assert "notes.txt" in line and "UTF-16" in line and "UTF-8" in line


def test_binary_file_given_alone_fails(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    file = tmp_path / "image.png"
    file.write_bytes(b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR Eiffel")
    assert ask("Eiffel?", "--docs", str(file), "--model", "/nonexistent") == 2
    line = one_line(capsys)
    assert "image.png" in line and "binary" in line


def test_bad_files_in_a_folder_are_skipped_with_a_warning(
    docs: Path, tiny_trained_model_hash: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    (docs / "utf16.txt").write_text("The Eiffel Tower in 1889.", encoding="utf-16")
    (docs / "latin1.txt").write_bytes("Eiffel, café in 1889.".encode("latin-1"))
    (docs / "blob.md").write_bytes(b"Eiffel\x00\x01\x02 1889")
    args = ["--model", str(tiny_trained_model_hash), "--top-k", "5", "--max-new-tokens", "120"]
    assert ask(CITED.query, "--docs", str(docs), *args, "--json") == 0
    captured = capsys.readouterr()
    warnings = captured.err.strip().splitlines()
    assert len(warnings) == 3 and all(w.startswith("pleias-rag: skipped ") for w in warnings)
    assert "utf16.txt" in warnings[2] and "UTF-16" in warnings[2]
    assert "latin1.txt" in warnings[1] and "not UTF-8" in warnings[1]
    assert "blob.md" in warnings[0] and "binary" in warnings[0]
    result = json.loads(captured.out)
    assert all("\ufffd" not in s["text"] for s in result["sources"])
    assert {Path(s["metadata"]["file"]).name for s in result["sources"]} <= {
        "eiffel.txt",
        "louvre.md",
    }


def test_only_bad_files_in_a_folder_fail(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    (tmp_path / "utf16.txt").write_text("The Eiffel Tower in 1889.", encoding="utf-16")
    assert ask("Eiffel?", "--docs", str(tmp_path), "--model", "/nonexistent") == 2
    lines = capsys.readouterr().err.strip().splitlines()
    assert len(lines) == 2 and "skipped" in lines[0]
    assert "no readable text file under" in lines[1]


# -- numbers, device, output path: checked at once -----------------------------------------


@pytest.mark.parametrize(
    ("option", "value", "message"),
    [
        ("--passage-words", "0", "--passage-words must be at least 1, got 0"),
        ("--passage-words", "-5", "--passage-words must be at least 1, got -5"),
        ("--max-new-tokens", "0", "--max-new-tokens must be at least 1, got 0"),
        ("--max-new-tokens", "-1", "--max-new-tokens must be at least 1, got -1"),
        ("--top-k", "0", "--top-k must be at least 1, got 0"),
        ("--top-k", "many", "--top-k must be a whole number, got 'many'"),
    ],
)
def test_bad_numbers_are_refused_at_parse_time(
    docs: Path, option: str, value: str, message: str, capsys: pytest.CaptureFixture[str]
) -> None:
    with pytest.raises(SystemExit) as exit_:
        ask("Eiffel?", "--docs", str(docs), "--model", "/nonexistent", f"{option}={value}")
    assert exit_.value.code == 2
    line = one_line(capsys)
    assert message in line and line.startswith("pleias-rag ask: ")


def test_max_new_tokens_over_the_window_fails_before_the_weights(
    docs: Path, tiny_trained_model_hash: Path, no_weights: None, capsys: pytest.CaptureFixture[str]
) -> None:
    model = str(tiny_trained_model_hash)
    assert ask(CITED.query, "--docs", str(docs), "--model", model, "--max-new-tokens", "5000") == 2
    line = one_line(capsys)
    assert "--max-new-tokens 5000" in line and "context window of 2048 tokens" in line


def test_device_gpu_names_the_valid_devices(docs: Path, capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exit_:
        ask("Eiffel?", "--docs", str(docs), "--model", "/nonexistent", "--device", "gpu")
    assert exit_.value.code == 2
    line = one_line(capsys)
    assert "'gpu' is not a torch device" in line and "cpu" in line and "cuda:1" in line


@pytest.mark.parametrize("where", ["missing-folder/page.html", "a-folder"])
def test_unwritable_html_path_fails_before_generating(
    docs: Path, tmp_path: Path, where: str, capsys: pytest.CaptureFixture[str]
) -> None:
    (tmp_path / "a-folder").mkdir()
    page = tmp_path / where
    assert ask("Eiffel?", "--docs", str(docs), "--model", "/nonexistent", "--html", str(page)) == 2
    line = one_line(capsys)
    assert f"cannot write --html {page}" in line


@pytest.mark.skipif(not Path("/proc/self").is_dir(), reason="needs Linux's /proc")
def test_html_path_that_cannot_be_created_fails_before_generating(
    docs: Path, tiny_trained_model_hash: Path, no_weights: None, capsys: pytest.CaptureFixture[str]
) -> None:
    # /proc takes no new file, even for root (whom os.access tells it may write anywhere).
    page = Path("/proc/pleias-rag-test.html")
    args = ("Eiffel?", "--docs", str(docs), "--model", str(tiny_trained_model_hash))
    assert ask(*args, "--html", str(page)) == 2
    line = one_line(capsys)
    assert f"cannot write --html {page}" in line


def test_html_check_leaves_no_file_and_keeps_an_existing_one(docs: Path, tmp_path: Path) -> None:
    from pleias_rag.cli import CliError, _check_writable

    new, old = tmp_path / "new.html", tmp_path / "old.html"
    old.write_text("kept", encoding="utf-8")
    _check_writable(new, "--html")
    _check_writable(old, "--html")
    assert not new.exists() and old.read_text(encoding="utf-8") == "kept"
    with pytest.raises(CliError, match="does not exist"):
        _check_writable(tmp_path / "nowhere" / "x.html", "--html")


# -- the question ----------------------------------------------------------------------


@pytest.mark.parametrize("question", ["", "   ", "\n"])
def test_empty_question(docs: Path, question: str, capsys: pytest.CaptureFixture[str]) -> None:
    assert ask(question, "--docs", str(docs), "--model", "/nonexistent") == 2
    assert "the question is empty" in one_line(capsys)


def test_question_without_a_word(docs: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert ask("? 1", "--docs", str(docs), "--model", "/nonexistent") == 2
    line = one_line(capsys)
    assert "the question has no word of two letters or more" in line


# -- the model -------------------------------------------------------------------------


def test_folder_that_is_no_model(
    docs: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    folder = tmp_path / "not-a-model"
    folder.mkdir()
    (folder / "README.md").write_text("hello")
    assert ask(CITED.query, "--docs", str(docs), "--model", str(folder)) == 2
    line = one_line(capsys)
    assert "is not a model folder" in line and "config.json" in line
    assert "network" not in line


def test_model_that_is_not_a_pleias_model(
    docs: Path,
    tmp_path: Path,
    tiny_trained_model_hash: Path,
    no_weights: None,
    capsys: pytest.CaptureFixture[str],
) -> None:
    from tokenizers import Tokenizer, models, pre_tokenizers
    from transformers import PreTrainedTokenizerFast

    folder = tmp_path / "gpt-like"
    folder.mkdir()
    for name in ("config.json", "model.safetensors"):
        shutil.copy(tiny_trained_model_hash / name, folder / name)
    vocab = {"[UNK]": 0, "<|end_of_text|>": 1, "eiffel": 2}
    raw = Tokenizer(models.WordLevel(vocab, unk_token="[UNK]"))
    raw.pre_tokenizer = pre_tokenizers.Whitespace()
    tok = PreTrainedTokenizerFast(
        tokenizer_object=raw, unk_token="[UNK]", eos_token="<|end_of_text|>"
    )
    tok.save_pretrained(folder)
    assert ask(CITED.query, "--docs", str(docs), "--model", str(folder)) == 2
    line = one_line(capsys)
    assert "is not a Pleias RAG model" in line and str(folder) in line


def test_damaged_weights_are_one_line(
    docs: Path, tmp_path: Path, tiny_trained_model_hash: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    damaged = tmp_path / "damaged"
    shutil.copytree(tiny_trained_model_hash, damaged)
    weights = damaged / "model.safetensors"
    weights.write_bytes(weights.read_bytes()[:1000])  # a download cut short
    assert ask(CITED.query, "--docs", str(docs), "--model", str(damaged)) == 2
    line = one_line(capsys)
    assert f"could not load the weights of the model '{damaged}'" in line, line
    assert "download the model again" in line


def test_offline_hub_id_not_cached_fails_fast_and_once(
    docs: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    start = time.monotonic()
    assert ask(CITED.query, "--docs", str(docs), "--model", "PleIAs/Not-A-Model-xyz") == 2
    assert time.monotonic() - start < 10
    line = one_line(capsys)
    assert "HF_HUB_OFFLINE" in line and "not in the local Hugging Face cache" in line
    assert line.count("hf download") == 1 and "hf download PleIAs/Not-A-Model-xyz" in line


def test_unreachable_hub_fails_fast_and_once(
    docs: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    monkeypatch.setattr("huggingface_hub.constants.HF_HUB_OFFLINE", False)
    monkeypatch.setattr("pleias_rag.cli.models.hub_reachable", lambda: False)
    start = time.monotonic()
    assert ask(CITED.query, "--docs", str(docs), "--model", "PleIAs/Not-A-Model-xyz") == 2
    assert time.monotonic() - start < 10
    line = one_line(capsys)
    assert "cannot reach the Hugging Face hub" in line
    assert line.count("hf download") == 1


def test_troubleshooting_names_the_current_download_command() -> None:
    text = (ROOT / "docs" / "troubleshooting.md").read_text(encoding="utf-8")
    assert "huggingface-cli" not in text and "hf download PleIAs/Pleias-RAG-350M" in text
    assert "Bad inputs and their messages" in text and "### Command line" in text


# -- help, dropped passages, streaming, progress -----------------------------------------


def test_help_shows_defaults(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exit_:
        main(["ask", "--help"])
    assert exit_.value.code == 0
    out = " ".join(capsys.readouterr().out.split())
    assert "(default: 5)" in out and "(default: 160)" in out and "(default: 1024)" in out
    assert "(default: PleIAs/Pleias-RAG-350M)" in out


@pytest.fixture
def many_docs(tmp_path: Path) -> Path:
    folder = tmp_path / "many"
    folder.mkdir()
    filler = " ".join(f"word{i}" for i in range(90))
    for n in range(20):
        (folder / f"f{n:02}.txt").write_text(f"The Eiffel Tower fact {n}. {filler}\n")
    return folder


def test_dropped_passages_are_reported(
    many_docs: Path, tiny_trained_model_hash: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    args = [
        "ask", "Eiffel Tower?", "--docs", str(many_docs), "--model", str(tiny_trained_model_hash),
        "--top-k", "20", "--max-new-tokens", "1200",
    ]  # fmt: skip
    assert main(args) == 0
    out = capsys.readouterr().out
    assert "of the 20 passages found did not fit" in out
    assert "f19.txt" in out.split("did not fit")[1]
    assert main([*args, "--json"]) == 0
    result = json.loads(capsys.readouterr().out)
    dropped = result["dropped_passages"]
    assert 10 < len(dropped) < 20
    assert all({"number", "id", "file", "line"} <= set(d) for d in dropped)
    numbers = [d["number"] for d in dropped] + [t["number"] for t in result["truncated_passages"]]
    assert len(result["sources"]) + len(dropped) == 20 and max(numbers) == 20


class Recorder(io.StringIO):
    def __init__(self) -> None:
        super().__init__()
        self.writes: list[str] = []
        self.flushes = 0

    def write(self, s: str) -> int:
        self.writes.append(s)
        return super().write(s)

    def flush(self) -> None:
        self.flushes += 1


def test_answer_streams(
    docs: Path, tiny_trained_model_hash: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    out = Recorder()
    monkeypatch.setattr("sys.stdout", out)
    model = str(tiny_trained_model_hash)
    assert ask(CITED.query, "--docs", str(docs), "--model", model, "--max-new-tokens", "120") == 0
    text = out.getvalue()
    assert text.startswith("The Eiffel Tower was completed in 1889[1].")
    assert "[1] ✓ verified" in text
    answer_writes = out.writes[: out.writes.index("[1]") + 1]
    assert len(answer_writes) >= 5 and answer_writes[0] == "The"
    assert out.flushes >= len(answer_writes)


class FakeTty(io.StringIO):
    def isatty(self) -> bool:
        return True


def test_progress_advances(monkeypatch: pytest.MonkeyPatch) -> None:
    err = FakeTty()
    monkeypatch.setattr("sys.stderr", err)
    assert _progress("Loading", lambda: time.sleep(1.4) or 7) == 7
    shown = err.getvalue()
    assert "Loading… 00:00" in shown and "Loading… 00:01" in shown
    assert shown.endswith("\r")  # the line is cleared at the end
