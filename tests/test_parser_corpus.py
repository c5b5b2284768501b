"""The parser on the 35 real outputs of ../shared/corpus/pleias-outputs."""

import json
import re
from pathlib import Path

import pytest
from corpus_sources import CORPUS, CORPUS_FILES, corpus_sources

from pleias_rag import Source, parse_response


def test_corpus_is_there() -> None:
    assert len(CORPUS_FILES) == 35, f"expected the corpus at {CORPUS}"


DIALECTS = {e["file"]: e["dialect"] for e in json.loads((CORPUS / "index.json").read_text())}


@pytest.mark.parametrize("path", CORPUS_FILES, ids=lambda p: p.name)
def test_every_file_parses_and_refs_become_citations(path: Path) -> None:
    raw = path.read_text()
    ans = parse_response(raw, dialect=DIALECTS[path.name])
    assert ans.raw == raw
    assert ans.answer.strip()
    # Every ref a reader sees is a citation; no markup is left in the clean answer.
    cut_in_name = re.search(r'<ref name="[^">]*$', raw) is not None
    assert len(ans.citations) == raw.count("<ref name=") - cut_in_name
    for bad in ("<ref", "</ref>", "<|", "|>"):
        assert bad not in ans.answer
    for c in ans.citations:
        assert ans.answer[c.start : c.end] == f"[{c.number}]"
        assert c.source_id and c.source_id == c.source_id.strip()
        assert not c.quote.startswith('"') or c.quote.count('"') % 2 == 0


# file -> (finish_reason, first citation id, first quote prefix, number of citations)
EXPECTED = {
    "01.txt": ("stop", "8", "The A5117 runs between Shotwick and Helsby", 2),
    "02.txt": ("stop", "6", "La canzone era destinata", 2),
    "03.txt": ("stop", "3", "The Pinewood County Tax Office is open", 1),
    "04.txt": ("stop", "7b3a9c2d4e8f5g1h", "The Transformer generalizes well", 4),
    "06.txt": ("length", "62d6d314276154d6", "Biases can be introduced or amplified", None),
    "07.txt": ("stop", "48b5a2044aa92c53", "I know the sort of thing;", None),
    "12.txt": ("stop", "07e275d416bcc6df", "Cuius erroris causa est", None),
    "20.txt": ("length", "875", "Memes are a pain.", None),
    "23.txt": ("stop", "770", "Memes are a pain.", None),
    "28.txt": (
        "length",
        "http://www.legalinterpretationhub.com/articles/no-clause-interpretation-court-rulings",
        "The court said that the 'no' clause",
        None,
    ),
}


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_known_citations(name: str) -> None:
    finish, first_id, first_quote, count = EXPECTED[name]
    ans = parse_response((CORPUS / name).read_text(), dialect=DIALECTS[name])
    assert ans.finish_reason == finish
    assert ans.citations[0].source_id == first_id
    assert ans.citations[0].quote.startswith(first_quote)
    if count is not None:
        assert len(ans.citations) == count


def test_truncated_inside_a_ref_keeps_the_partial_citation() -> None:
    ans = parse_response((CORPUS / "20.txt").read_text())
    last = ans.citations[-1]
    assert last.truncated and last.source_id == "770"
    assert last.quote.startswith("Memes are a pain") and last.quote.endswith("academic debate,")
    assert ans.answer.endswith(last.marker)


def test_truncated_inside_a_ref_name_drops_the_fragment() -> None:
    ans = parse_response((CORPUS / "28.txt").read_text())
    assert ans.truncated
    assert ans.answer.endswith("meet specific conditions")
    assert not any(c.truncated for c in ans.citations)


def test_output_starting_at_answer_start() -> None:
    ans = parse_response((CORPUS / "23.txt").read_text())
    assert ans.answer.startswith("Memes are a significant aspect")
    assert ans.source_analysis == ""
    assert [c.number for c in ans.citations[:3]] == [1, 2, 1]


def test_csv_doubled_quotes_are_unwrapped() -> None:
    ans = parse_response((CORPUS / "06.txt").read_text())
    assert ans.dialect == "markdown"
    assert ans.citations[0].quote.startswith("Biases can be introduced")
    assert not ans.citations[0].quote.endswith('"')


def test_numbered_sections_and_language() -> None:
    ans = parse_response((CORPUS / "02.txt").read_text())
    assert ans.dialect == "numbered"
    assert ans.language == "Italian"
    assert ans.query_report == "Trivial"
    assert "If You've Got Trouble" in ans.sections["query_analysis"]
    assert ans.mentioned_ids == ("6", "10")


def test_hash_analysis_mentions_rank_sources() -> None:
    ans = parse_response((CORPUS / "08.txt").read_text())
    assert ans.dialect == "hash"
    assert ans.source_analysis and "<|" not in ans.source_analysis
    assert len(ans.mentioned_ids) >= 3
    assert all(len(i) == 16 for i in ans.mentioned_ids)


def test_latin_and_italian_outputs() -> None:
    for name in ("09.txt", "10.txt", "12.txt", "13.txt"):
        ans = parse_response((CORPUS / name).read_text())
        assert ans.finish_reason == "stop" and ans.citations


@pytest.mark.parametrize("name", ["01", "02", "03", "04", "05"])
def test_quotes_verified_against_the_recovered_prompts(name: str) -> None:
    sources = corpus_sources(CORPUS / "prompts" / f"{name}.prompt.txt")
    ans = parse_response((CORPUS / f"{name}.txt").read_text(), sources, DIALECTS[f"{name}.txt"])
    for c in ans.citations:
        if c.status == "verified":
            assert c.source is not None and c.source_start is not None
            assert c.source_end is not None
            found = c.source.text[c.source_start : c.source_end]
            assert found == c.quote if c.match == "exact" else found
        elif c.status == "misattributed":
            assert c.found_in and c.source is not None and c.source_start is None
    verified = [c for c in ans.citations if c.verified]
    assert verified, "each of these outputs quotes its sources"


def test_paraphrase_is_not_verified() -> None:
    # 01: the model wrote "The A5117 runs between ..." where the source says "It runs between".
    sources = corpus_sources(CORPUS / "prompts" / "01.prompt.txt")
    ans = parse_response((CORPUS / "01.txt").read_text(), sources, "numbered")
    first, second = ans.citations
    assert first.source is sources[7] and first.status == "unverified"
    assert second.source is sources[6] and second.status == "verified" and second.match == "exact"


def test_real_misattribution_in_corpus_05() -> None:
    sources = corpus_sources(CORPUS / "prompts" / "05.prompt.txt")
    ans = parse_response((CORPUS / "05.txt").read_text(), sources)
    mis = [c for c in ans.citations if c.status == "misattributed"]
    assert mis
    for c in mis:
        other = c.found_in[0]
        assert other.id != c.source_id
        assert Source is type(other)
