"""Parsing with no dialect given: the output says which it is, and markers of one dialect
copied into another's text stay text."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from corpus_sources import CORPUS, CORPUS_2, corpus_query, corpus_sources

from pleias_rag import PleiasAnswer, Source, StreamParser, parse_response

INDEX_2 = {e["file"]: e for e in json.loads((CORPUS_2 / "index.json").read_text())}
INDEX_1 = {e["file"]: e for e in json.loads((CORPUS / "index.json").read_text())}


def _streamed(raw: str, sources: list[Source], step: int = 3) -> PleiasAnswer:
    parser = StreamParser(sources)
    for i in range(0, len(raw), step):
        parser.feed(raw[i : i + step])
    parser.close()
    return parser.result


def _prompt(folder: Path, entry: dict[str, object]) -> tuple[list[Source], str]:
    name = entry.get("prompt_file") or str(entry["file"]).replace(".txt", ".prompt.txt")
    path = folder / "prompts" / str(name)
    if not entry.get("has_prompt") or not path.exists():
        return [], ""
    return corpus_sources(path), corpus_query(path)


@pytest.mark.parametrize("name", sorted(INDEX_2))
def test_every_output_of_corpus_2_is_detected(name: str) -> None:
    """Numbered outputs with special tokens stripped, answer spans only, bare ``name="1"``."""
    raw = (CORPUS_2 / name).read_text()
    sources, query = _prompt(CORPUS_2, INDEX_2[name])
    for srcs in ([], sources):
        assert parse_response(raw, srcs, query=query).dialect == INDEX_2[name]["dialect"]
        assert _streamed(raw, srcs).dialect == INDEX_2[name]["dialect"]


@pytest.mark.parametrize(
    ("folder", "name"),
    [(CORPUS, n) for n in sorted(INDEX_1)] + [(CORPUS_2, n) for n in sorted(INDEX_2)],
)
def test_no_dialect_reads_every_corpus_output_as_its_own_dialect_does(
    folder: Path, name: str
) -> None:
    """Where the text cannot tell (an answer span of a hash model with refs named 1, 2, 3 and
    no sources), the reading does not depend on it."""
    entry = (INDEX_1 if folder == CORPUS else INDEX_2)[name]
    raw = (folder / name).read_text()
    sources, query = _prompt(folder, entry)
    known = parse_response(raw, sources, str(entry["dialect"]), query=query)
    guessed = parse_response(raw, sources, query=query)
    assert guessed.answer == known.answer
    assert guessed.citations == known.citations
    assert guessed.sections == known.sections


def test_a_bare_number_is_a_position_unless_it_is_a_source_id() -> None:
    bees = Source("Bees dance to tell where food is.")
    ants = Source("Ants follow trails of scent to find food.")
    raw = 'Bees dance<ref name="2">Ants follow trails of scent</ref>.'
    ans = parse_response(raw, [bees, ants])
    assert ans.dialect == "numbered" and ans.citations[0].source is ants
    assert ans.citations[0].status == "verified"
    # Sources whose own ids are those numbers: the ids are meant.
    one, two = Source(bees.text, id="2"), Source(ants.text, id="1")
    ans = parse_response('x<ref name="1">Ants follow trails of scent</ref>.', [one, two])
    assert ans.dialect == "hash" and ans.citations[0].source is two
    # A 16-hex id, or a number no numbered prompt has (above 10 sources), is hash.
    assert parse_response(f'x<ref name="{bees.id}">Bees dance</ref>.').dialect == "hash"
    assert parse_response('x<ref name="875">Bees dance</ref>.').dialect == "hash"


def test_a_source_id_marker_anywhere_is_numbered() -> None:
    raw = "Looking at the sources, <|source_id|>3 says nothing of it."
    assert parse_response(raw).dialect == "numbered"
    # A position after hash-looking markers: numbered, when no source has that id.
    src = [Source("a"), Source("b"), Source("The office is open Monday through Friday.")]
    raw = '<|answer_start|>Open<ref name="3">The office is open Monday through Friday</ref>.'
    ans = parse_response(raw + "<|answer_end|>", src)
    assert ans.dialect == "numbered" and ans.citations[0].status == "verified"


@pytest.mark.parametrize(
    "raw",
    [
        "The manual says type #END# to stop and restart the machine.",
        "Answer text ends </s> and more text.",
        "Paris is the capital.\n### Analysis ###\nThe doc heading. More text.",
        "The doc has a heading ### Analysis ### and then text.",
        "The doc has a heading ### Answer ### and then text.",
        "Paris is the capital[1]. Type #END# to stop.\nThen ### Answer ### again.",
    ],
)
def test_markdown_markers_in_text_that_is_not_markdown_are_text(raw: str) -> None:
    for ans in (parse_response(raw), _streamed(raw, [], step=1)):
        assert ans.answer == raw.strip() and ans.dialect != "markdown"


def test_markdown_is_detected_from_its_headings_on_their_own_lines() -> None:
    raw = "### Analysis ###\nx\n### Answer ###\nIt says ### Answer ### in the text.\n#END#junk"
    for dialect in (None, "markdown"):
        ans = parse_response(raw, [], dialect)
        assert ans.dialect == "markdown" and ans.finish_reason == "stop"
        assert ans.answer == "It says ### Answer ### in the text."
    # The analysis written first without its heading (the prompt ended with it).
    ans = parse_response("The query asks for x.\n### Answer ###\nIt is y.\n#END#")
    assert (ans.dialect, ans.source_analysis, ans.answer) == (
        "markdown",
        "The query asks for x.",
        "It is y.",
    )
