"""Parser behaviour on constructed outputs: citations, verification, sections, events."""

import pytest

from pleias_rag import (
    AnswerDelta,
    CitationCompleted,
    Finished,
    SectionEnded,
    SectionStarted,
    SectionText,
    Source,
    StreamParser,
    locate_quote,
    parse_response,
)

A = Source("The Eiffel Tower was completed in 1889 for the World's Fair.", metadata={"title": "T"})
B = Source("Gustave Eiffel's company designed and built the tower in Paris.")
C = Source("Paris is the capital and most populous city of France.")


def ref(src: Source | str, quote: str) -> str:
    sid = src.id if isinstance(src, Source) else src
    return f'<ref name="{sid}">"{quote}"</ref>'


def hash_output(answer: str, analysis: str = "Analysis.") -> str:
    return (
        f"{analysis}<|source_analysis_end|>\n<|answer_start|>{answer}<|answer_end|><|end_of_text|>"
    )


def test_verified_citation_with_offsets() -> None:
    raw = hash_output(f"It opened in 1889{ref(A, 'completed in 1889')}.")
    ans = parse_response(raw, [A, B, C])
    assert ans.answer == "It opened in 1889[1]."
    (c,) = ans.citations
    assert (c.status, c.match, c.score) == ("verified", "exact", 1.0)
    assert c.source is A and A.text[c.source_start : c.source_end] == "completed in 1889"
    assert (c.start, c.end) == (17, 20)
    assert ans.cited_sources == [A]


def test_misattributed_quote_carries_the_real_source() -> None:
    raw = hash_output(f"Eiffel's firm built it{ref(A, 'designed and built the tower')}.")
    (c,) = parse_response(raw, [A, B, C]).citations
    assert c.status == "misattributed"
    assert c.source is A and c.found_in == (B,)
    assert c.source_start is None


def test_unknown_id_never_points_at_a_document() -> None:
    raw = hash_output(f"Paris is big{ref('deadbeefdeadbeef', 'most populous city of France')}.")
    (c,) = parse_response(raw, [A, B, C]).citations
    assert c.status == "unknown_source"
    assert c.source is None and c.sources == ()
    assert c.found_in == (C,)  # where the quote really is, for the reader


def test_integer_ids_are_not_positions_in_the_hash_dialect() -> None:
    raw = hash_output(f"Paris{ref('2', 'capital and most populous')}.")
    (c,) = parse_response(raw, [A, B, C], "hash").citations
    assert c.status == "unknown_source" and c.source is None
    numbered = '<|answer_start|>Paris<ref name="<|source_id|>3">capital and most populous</ref>.'
    (n,) = parse_response(numbered, [A, B, C], "numbered").citations
    assert n.source is C and n.status == "verified" and n.source_id == "3"


def test_unverified_quote() -> None:
    raw = hash_output(f"x{ref(C, 'Berlin is the capital of Germany')}.")
    (c,) = parse_response(raw, [A, B, C]).citations
    assert (c.status, c.match, c.source) == ("unverified", "none", C)


def test_fuzzy_and_elided_quotes() -> None:
    raw = hash_output(
        f"a{ref(A, 'The Eiffel tower was completed in 1889 for the Worlds Fair')}"
        f" b{ref(A, 'The Eiffel Tower (…) for the World')}."
    )
    fuzzy, elided = parse_response(raw, [A]).citations
    # "Worlds" for "World's": close, not the source's words.
    assert (fuzzy.status, fuzzy.match) == ("approximate", "fuzzy") and 0.85 <= fuzzy.score < 1
    assert [c.to_dict() for c in fuzzy.changes] == [
        {"op": "replace", "quote": "Worlds", "source": "World's"}
    ]
    assert fuzzy.matched_text == A.text[fuzzy.source_start : fuzzy.source_end]
    assert fuzzy.matched_text.startswith("The Eiffel Tower was completed in 1889")
    assert elided.status == "verified" and elided.match == "elided"
    assert elided.spans == ((0, 16), (A.text.index("for the World"), A.text.index("'s Fair")))
    assert (elided.source_start, elided.source_end) == (elided.spans[0][0], elided.spans[1][1])
    assert elided.matched_text == "The Eiffel Tower (…) for the World"


def test_markers_numbered_per_source_and_adjacent_repeats_merged() -> None:
    raw = hash_output(
        f"One{ref(B, 'designed')}{ref(B, 'built the tower')}, two{ref(A, '1889')}"
        f"{ref(B, 'in Paris')} and three{ref(B, 'tower')}."
    )
    ans = parse_response(raw, [A, B])
    assert ans.answer == "One[1], two[2][1] and three[1]."
    assert [c.number for c in ans.citations] == [1, 1, 2, 1, 1]
    assert ans.citations[0].start == ans.citations[1].start == 3


def test_identical_texts_map_back_to_every_original() -> None:
    dup = Source(C.text, metadata={"copy": 2})
    raw = hash_output(f"x{ref(C, 'capital')}.")
    (c,) = parse_response(raw, [C, dup]).citations
    assert c.sources == (C, dup)


def test_ids_are_normalized() -> None:
    raw = hash_output(f'x<ref name="** {A.id} **">"1889"</ref>.')
    (c,) = parse_response(raw, [A]).citations
    assert c.source_id == A.id and c.source is A


def test_output_without_any_marker_is_all_answer() -> None:
    raw = f"The tower dates from 1889{ref(A, 'completed in 1889')}."
    ans = parse_response(raw, [A])
    assert ans.answer == "The tower dates from 1889[1]."
    assert ans.finish_reason == "stop" and ans.source_analysis == ""


@pytest.mark.parametrize("end", ["<|end_of_text|>", "<|answer_end|>"])
def test_trailing_end_markers(end: str) -> None:
    ans = parse_response(f"<|answer_start|>Done{end}ignored", [])
    assert ans.answer == "Done" and ans.finish_reason == "stop"


@pytest.mark.parametrize("end", ["</s>", "#END#"])
def test_markdown_stops_end_only_markdown_answers(end: str) -> None:
    md = parse_response(f"### Answer ###\nDone.{end}ignored", [])
    assert (md.dialect, md.answer, md.finish_reason) == ("markdown", "Done.", "stop")
    # In the other dialects they are text (a document the model copied from).
    for dialect in ("hash", None):
        ans = parse_response(f"<|answer_start|>Done {end} not ignored.<|answer_end|>", [], dialect)
        assert ans.answer == f"Done {end} not ignored."


def test_markdown_layout() -> None:
    raw = f"### Analysis ###\n**{A.id}** is relevant.\n\n### Answer ###\n1889{ref(A, '1889')}.\n"
    ans = parse_response(raw, [A, B])
    assert ans.dialect == "markdown"
    assert ans.source_analysis == f"**{A.id}** is relevant."
    assert ans.answer == "1889[1]." and ans.mentioned_ids == (A.id,)


def test_hash_answer_start_lost_after_analysis() -> None:
    ans = parse_response(f"Analysis **{A.id}**.<|source_analysis_end|>\nThe answer.", [A])
    assert ans.answer == "The answer." and ans.mentioned_ids == (A.id,)


def test_cut_in_the_analysis_is_length() -> None:
    ans = parse_response("The sources discuss", [A], start="source_analysis")
    assert ans.answer == "" and ans.finish_reason == "length"
    assert ans.source_analysis == "The sources discuss"


def test_finish_reason_override() -> None:
    raw = hash_output("Complete sentence.")
    assert parse_response(raw, finish_reason="length").finish_reason == "length"


def test_markdown_and_html_rendering() -> None:
    raw = hash_output(f"Built by Eiffel{ref(B, 'designed and built')} in 1889{ref(A, 'x <y>')}.")
    ans = parse_response(raw, [A, B])
    md = ans.to_markdown()
    assert md.startswith("Built by Eiffel[^1] in 1889[^2].")
    # Sources are named as in every view (source_label): title, else their first words.
    assert "[^1]: Gustave Eiffel's company designed and built the tower in Pa…: \"designed" in md
    assert '[^2]: T: "x <y>" (unverified)' in md
    html = ans.to_html()
    assert 'href="#src-1"' in html and "x &lt;y&gt;" in html
    assert "pleias-unverified" in html


def test_events_in_order() -> None:
    raw = hash_output(f"Yes{ref(A, '1889')}.", analysis="Fine.")
    p = StreamParser([A], "hash", start="source_analysis")
    events = p.feed(raw) + p.close()
    kinds = [type(e).__name__ for e in events]
    assert kinds == [
        "SectionStarted",
        "SectionText",
        "SectionEnded",
        "SectionStarted",
        "AnswerDelta",
        "AnswerDelta",
        "CitationCompleted",
        "AnswerDelta",
        "SectionEnded",
        "Finished",
    ]
    assert events[0] == SectionStarted("source_analysis")
    assert events[1] == SectionText("source_analysis", "Fine.")  # the analysis, as it comes
    assert isinstance(events[-1], Finished) and events[-1].answer is p.result
    deltas = [e.text for e in events if isinstance(e, AnswerDelta)]
    assert deltas == ["Yes", "[1]", "."]
    assert isinstance(events[6], CitationCompleted) and events[6].citation.source is A
    assert events[-2] == SectionEnded("answer")


def test_answer_streams_before_the_output_ends() -> None:
    p = StreamParser([A], "hash", start="source_analysis")
    first = p.feed("ok<|source_analysis_end|><|answer_start|>The tower ")
    second = p.feed("was built")
    assert [e.text for e in first if isinstance(e, AnswerDelta)] == ["The tower"]
    assert [e.text for e in second if isinstance(e, AnswerDelta)] == [" was built"]


def test_parser_misuse_errors() -> None:
    p = StreamParser()
    with pytest.raises(RuntimeError, match="close"):
        _ = p.result
    p.close()
    with pytest.raises(RuntimeError, match="closed"):
        p.feed("x")
    with pytest.raises(ValueError, match="unknown dialect"):
        StreamParser(dialect="xml")
    with pytest.raises(ValueError, match="unknown section"):
        StreamParser(start="intro")
    with pytest.raises(ValueError, match="raw must be"):
        parse_response(b"bytes")  # type: ignore[arg-type]  # the error under test


@pytest.mark.parametrize(
    ("quote", "text", "kind", "span"),
    [
        ("capital", "Paris is the capital.", "exact", "capital"),
        ("THE  Capital", "Paris is the capital.", "normalized", "the capital"),
        ("“quoted” — text", 'A "quoted" - text.', "normalized", '"quoted" - text'),
        ("the Eiffel Tower", "since the Eiffel T ower and", "normalized", "the Eiffel T ower"),
        ("massive models", "mas-\nsive models", "normalized", "mas-\nsive models"),
        ("zero\u200bwidth", "zerowidth", "normalized", "zerowidth"),
        (
            "Paris is the (…) most populous city",
            "Paris is the capital and most populous city.",
            "elided",
            "Paris is the capital and most populous city",
        ),
    ],
)
def test_locate_quote(quote: str, text: str, kind: str, span: str) -> None:
    m = locate_quote(quote, text)
    assert m.kind == kind
    assert m.start is not None and text[m.start : m.end] == span


def test_locate_quote_fuzzy_and_none() -> None:
    text = "The Transformer generalizes well to English constituency parsing."
    m = locate_quote("The Transformer generalises good to English constituency parsing", text)
    assert m.kind == "fuzzy" and 0.85 <= m.score < 1
    assert locate_quote("Nothing at all like the source", text).kind == "none"
    assert locate_quote("", text).kind == "none"


@pytest.mark.parametrize("tail", ["<", "<|", "<|answer_e", "<ref", '<ref name="ab', "</", "</re"])
def test_output_cut_in_a_marker_leaves_no_markup(tail: str) -> None:
    ans = parse_response(f"<|answer_start|>Done.{tail}")
    assert ans.answer == "Done." and ans.finish_reason == "length"
