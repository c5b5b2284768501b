"""The parser and the verifier on the 70 real outputs of ../shared/corpus/pleias-outputs-2.

Its ``index.json`` says, for each ref of the 25 outputs with their exact prompt, where the
quote really is (in the cited source, only in another one, copied from the query, nowhere):
the statuses must say the same, and no quote outside its source may verify.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest
from corpus_sources import CORPUS_2, CORPUS_2_FILES, corpus_query, corpus_sources

from pleias_rag import normalize_source_id, parse_response

INDEX = {e["file"]: e for e in json.loads((CORPUS_2 / "index.json").read_text())}
WITH_PROMPT = sorted(name for name, e in INDEX.items() if e.get("has_prompt"))
# index.json's word for each ref -> the statuses that say the same.
VERDICTS = {
    "quote found in cited source": {"verified"},
    "quote not in any source; it is copied from the QUERY": {"from_query"},
    "quote found only in OTHER source(s)": {"misattributed"},
    # 18 quotes its query with two words changed: from_query says it best.
    "quote NOT found verbatim in any source": {"unverified", "approximate", "from_query"},
}
_NOTE = re.compile(r"ref '(?P<id>[^']*)' -> (?P<verdict>[^:\[]+?)(?: \[[^\]]*\])?: ")


def test_corpus_2_is_there() -> None:
    assert len(CORPUS_2_FILES) == 70, f"expected the corpus at {CORPUS_2}"
    assert len(WITH_PROMPT) == 25


def _output(name: str) -> tuple[str, str | None]:
    """The text to parse and the section it starts in. 69 continues a prefilled prompt
    whose last ref is open: the prompt's answer part comes first."""
    raw = (CORPUS_2 / name).read_text()
    if name == "69.txt":
        prompt = (CORPUS_2 / "prompts" / "69.prompt.txt").read_text()
        return prompt.split("<|source_analysis_start|>", 1)[1] + raw, "source_analysis"
    return raw, None


@pytest.mark.parametrize("path", CORPUS_2_FILES, ids=lambda p: p.name)
def test_every_file_parses_and_refs_become_citations(path: Path) -> None:
    raw, start = _output(path.name)
    ans = parse_response(raw, dialect=INDEX[path.name]["dialect"], start=start)
    assert ans.raw == raw
    cut_in_name = re.search(r'<ref name="[^">]*$', raw) is not None
    assert len(ans.citations) == raw.count("<ref name=") - cut_in_name
    for bad in ("<ref", "</ref>", "<|", "|>"):
        assert bad not in ans.answer, (path.name, bad)
    for c in ans.citations:
        assert ans.answer[c.start : c.end] == f"[{c.number}]"
        assert c.source_id == c.source_id.strip()


@pytest.mark.parametrize("name", WITH_PROMPT)
def test_statuses_agree_with_where_the_quotes_really_are(name: str) -> None:
    prompt = CORPUS_2 / "prompts" / INDEX[name]["prompt_file"]
    sources, query = corpus_sources(prompt), corpus_query(prompt)
    raw, start = _output(name)
    dialect = INDEX[name]["dialect"]
    ans = parse_response(raw, sources, dialect, start=start, query=query)
    notes = [(m["id"], m["verdict"]) for m in _NOTE.finditer(INDEX[name]["notes"])]
    # 69's notes skip the ref its prompt opened.
    noted = ans.citations[1:] if name == "69.txt" else ans.citations
    assert len(notes) == len(noted) or not notes
    for c, (sid, verdict) in zip(noted, notes, strict=False):
        assert c.source_id == normalize_source_id(sid)
        assert c.status in VERDICTS[verdict], (name, c.quote, c.status, c.note)
    for c in ans.citations:
        if c.status == "verified":
            assert c.source is not None and c.source_start is not None
            found = c.source.text[c.source_start : c.source_end]
            assert found == c.matched_text
            if c.match == "exact":
                assert found == c.quote
        else:
            assert c.source_start is None or c.status == "approximate"
        if c.status == "from_query":
            assert not any(s.text and c.quote in s.text for s in sources)


def test_quotes_copied_from_the_query_are_told_apart() -> None:
    copied = []
    for name in WITH_PROMPT:
        prompt = CORPUS_2 / "prompts" / INDEX[name]["prompt_file"]
        raw, start = _output(name)
        ans = parse_response(
            raw, corpus_sources(prompt), INDEX[name]["dialect"], start=start,
            query=corpus_query(prompt),
        )  # fmt: skip
        copied += [c for c in ans.citations if c.status == "from_query"]
        # Without the query such a quote is unverified, never verified.
        bare = parse_response(raw, corpus_sources(prompt), INDEX[name]["dialect"], start=start)
        by_quote = {c.quote: c.status for c in bare.citations}
        for c in copied:
            if c.quote in by_quote:
                assert by_quote[c.quote] in ("unverified", "approximate")
    assert len(copied) >= 9  # 13-17, 19, 21, 26 quote their query


def test_blank_lines_between_numbered_sections() -> None:
    ans = parse_response((CORPUS_2 / "01.txt").read_text(), dialect="numbered")
    assert ans.language == "English" and ans.query_report == "Trivial"
    assert ans.answer.startswith("Paris is the capital of France[1].")
    assert ans.finish_reason == "stop"


def test_outputs_decoded_without_special_tokens_are_all_answer() -> None:
    ans = parse_response((CORPUS_2 / "26.txt").read_text(), dialect="numbered")
    assert ans.citations and all(c.source_id == "1" for c in ans.citations)
