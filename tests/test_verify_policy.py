"""What ``verified`` promises: the quote is in the source, every time (issue 11's cases)."""

from __future__ import annotations

import re

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from pleias_rag import PleiasAnswer, Source, StreamParser, locate_quote, parse_response
from pleias_rag.meaning import negations
from pleias_rag.ranking import cited_uses, source_uses

FACTS = Source(
    "The Eiffel Tower was completed in 1889 for the World's Fair. Prices grew 10.5% in a year "
    "and the pass fell to -40 degrees. Sales reached 1,665 units. The dose is 5 mg daily. "
    "The CEO said he never approved the merger. The capital of France is Paris. "
    "The bridge is not closed on Sundays.",
    metadata={"title": "facts"},
)
OTHER = Source("Gustave Eiffel's company designed and built the tower in Paris.")


def hash_output(answer: str) -> str:
    return f"Analysis.<|source_analysis_end|>\n<|answer_start|>{answer}<|answer_end|>"


def cite(quote: str, src: Source = FACTS, query: str = "") -> tuple[str, str, str]:
    raw = hash_output(f'It says so<ref name="{src.id}">"{quote}"</ref>.')
    (c,) = parse_response(raw, [FACTS, OTHER], "hash", query=query).citations
    return c.status, c.match, c.note


# A changed number, sign, separator, unit or negation: never verified, not even approximate.
ALTERED = [
    "The Eiffel Tower was completed in 1898 for the World's Fair",
    "The Eiffel Tower was completed in 1989 for the World's Fair",
    "Prices grew 105% in a year",
    "Prices grew 10.5 in a year and the pass fell",
    "the pass fell to 40 degrees",
    "the pass fell to +40 degrees",
    "Sales reached 1,965 units",
    "Sales reached 1665 units",
    "Sales reached 1.665 units",
    "The dose is 5 g daily",
    "The dose is 50 mg daily",
    "The CEO said he approved the merger",
    "The CEO said he never ever approved the merger",
    "The bridge is closed on Sundays",
    "The bridge is not closed on Mondays, not Sundays",
    "The CEO (…) approved the merger",
    "The CEO said he (…) approved the merger",
]


@pytest.mark.parametrize("quote", ALTERED)
def test_altered_facts_are_never_verified(quote: str) -> None:
    status, match, note = cite(quote)
    assert status == "unverified", (quote, status, match)
    assert note


def test_a_changed_number_says_what_changed() -> None:
    raw = hash_output(
        f'x<ref name="{FACTS.id}">"The Eiffel Tower was completed in 1898 for the World\'s Fair"'
        "</ref>."
    )
    (c,) = parse_response(raw, [FACTS]).citations
    assert c.status == "unverified" and c.source_start is None and c.matched_text == ""
    assert [ch.to_dict() for ch in c.changes] == [
        {"op": "replace", "quote": "1898", "source": "1889"}
    ]
    assert "'1898'" in c.note and "'1889'" in c.note


@pytest.mark.parametrize(
    "quote",
    [
        "The capital of France is Rome",  # an entity swapped
        "The capital of France is the city of Paris",  # words inserted
        "The Eiffel Tower was completed for the World's Fair",  # words dropped
    ],
)
def test_close_quotes_are_approximate_at_best(quote: str) -> None:
    status, _match, _ = cite(quote)
    assert status in ("approximate", "unverified")
    if status == "approximate":
        raw = hash_output(f'x<ref name="{FACTS.id}">"{quote}"</ref>.')
        (c,) = parse_response(raw, [FACTS]).citations
        assert c.match == "fuzzy" and c.changes and c.score < 1
        assert c.matched_text == FACTS.text[c.source_start : c.source_end] != c.quote


def test_approximate_carries_the_source_words_and_the_diff() -> None:
    quote = "The Eiffel Tower was finished in 1889 for the World's Fair"
    raw = hash_output(f'x<ref name="{FACTS.id}">"{quote}"</ref>.')
    (c,) = parse_response(raw, [FACTS]).citations
    assert (c.status, c.match) == ("approximate", "fuzzy")
    assert c.matched_text == "The Eiffel Tower was completed in 1889 for the World's Fair"
    assert [ch.to_dict() for ch in c.changes] == [
        {"op": "replace", "quote": "finished", "source": "completed"}
    ]
    assert c.quote == quote and c.verified is False
    # Credited like a citation of its source, and shown with its words.
    assert [u.source for u in cited_uses(parse_response(raw, [FACTS]))] == [FACTS]


@pytest.mark.parametrize(
    ("quote", "kind"),
    [
        ("The Eiffel Tower was completed in 1889", "exact"),
        ("the eiffel tower was COMPLETED in 1889", "normalized"),
        ("The Eiffel  Tower\nwas completed in 1889", "normalized"),
        ("The Eif fel Tower was com-\npleted in 1889", "normalized"),
        ("completed in 1889 for the World’s Fair", "normalized"),
        ("The Eiffel\u200b Tower was completed", "normalized"),
        ("The Eiffel Tower was completed (…) for the World's Fair", "elided"),
        ("The Eiffel Tower was [...] in 1889 for the World's Fair", "elided"),
        ("The CEO said he never (…) the merger", "none"),  # a two-word piece
    ],
)
def test_true_quotes_verify(quote: str, kind: str) -> None:
    status, match, _ = cite(quote)
    assert (status, match) == (("verified", kind) if kind != "none" else ("unverified", "none"))


def test_elided_quotes_report_their_pieces() -> None:
    quote = "The Eiffel Tower was completed (…) for the World's Fair"
    m = locate_quote(quote, FACTS.text)
    assert m.kind == "elided" and len(m.spans) == 2
    assert [FACTS.text[s:e] for s, e in m.spans] == [
        "The Eiffel Tower was completed",
        "for the World's Fair",
    ]
    assert FACTS.text[m.start : m.end] != quote  # hence its own kind, not "exact"
    assert m.matched_text(FACTS.text) == "The Eiffel Tower was completed (…) for the World's Fair"


def test_an_elision_that_hides_a_negation_does_not_verify() -> None:
    quote = "The CEO said he (…) approved the merger"
    m = locate_quote(quote, FACTS.text, fuzzy=False)
    assert not m.found and "negation" in m.problem and "never" in m.problem


def test_a_bare_ellipsis_inside_a_word_is_no_elision() -> None:
    src = "Pa...ris is a word split by dots in this odd text."
    assert locate_quote("Pa...ris is a word split", src).kind == "exact"
    assert locate_quote("Pa…ris is a word split", src).kind == "normalized"
    assert not locate_quote("Pa… ris", "Paris is the capital").found


@pytest.mark.parametrize("quote", ["a", "The", "of the", "is", "5%", "  "])
def test_quotes_too_short_never_verify(quote: str) -> None:
    status, _, note = cite(quote)
    assert status == "unverified" and ("short" in note or "empty" in note)


def test_no_match_inside_a_word_or_a_number() -> None:
    text = "It is impossible. Temperatures of -40 and 10.5 percent, 1889s and 18890."
    assert not locate_quote("possible", text).found
    assert not locate_quote("40 and", text).found
    assert not locate_quote("5 percent", text).found
    assert not locate_quote("1889", text).found
    assert locate_quote("-40 and", text).kind == "exact"


@pytest.mark.parametrize(
    ("quote", "found"),
    [
        ("toxic", False),  # out of "non-toxic"
        ("He said he can", False),  # out of "can't"
        ("est pas vrai", False),  # out of "n'est pas"
        ("sive tower", False),  # half of a word broken over a line
        ("massive tower", True),
        ("non-toxic", True),
        ("he can't swim", True),
        ("The World", True),  # a possessive is no negation
    ],
)
def test_no_match_that_cuts_a_compound_or_a_contraction(quote: str, found: bool) -> None:
    text = (
        "It is non-toxic. He said he can't swim. Ce n'est pas vrai. The mas-\nsive tower. "
        "The World's Fair."
    )
    assert locate_quote(quote, text, fuzzy=False).verbatim is found


def test_superscripts_are_not_digits() -> None:
    assert not locate_quote("an area of 10 m2 exactly", "an area of 10 m² exactly").verbatim
    assert locate_quote("an area of 10 m² exactly", "an area of 10 m² exactly").kind == "exact"


def test_thousands_spacing_is_kept_but_ocr_spacing_forgiven() -> None:
    close = locate_quote("a total of 1665 units", "a total of 1 665 units")
    assert not close.verbatim and close.problem
    # Spaces inside words are OCR noise; a space between digits may part two numbers.
    assert locate_quote("the Eiffel Tower stands", "the Eiffel T ower stands").kind == (
        "normalized"
    )
    assert not locate_quote("the 1990s saw growth", "since the 199 0s saw growth").verbatim


# The clean-up that verifies a quote (case, spacing, dash styles) must leave units' case, signs,
# separators and digit groups as they are: (source, quote) pairs that differ only there.
CLEANUP_CHANGES_A_FACT = [
    ("The plant produces 10 mW of power at peak load.", "The plant produces 10 MW of power"),
    ("The link runs at 100 Mb per second on the line.", "The link runs at 100 MB per second"),
    ("The dose was 5 mg daily for the patients.", "The dose was 5 MG daily"),
    ("The summit was — 40 degrees colder than the valley.", "The summit was -40 degrees colder"),
    ("The summit was - 40 degrees colder than the valley.", "The summit was -40 degrees colder"),
    ("The summit was -40 degrees colder than the valley.", "The summit was - 40 degrees colder"),
    ("The team had 10. 5 new members joined later.", "The team had 10.5 new members"),
    ("He said 3, 500 people watched the game.", "He said 3,500 people watched"),
    ("The rooms 12 34 and 56 were closed for repairs.", "The rooms 1234 and 56 were closed"),
    ("The tower is 324 metres tall in total.", "The tower is 3 24 metres tall"),
    ("Values for 2019\n2020 were reported in the table.", "Values for 20192020 were reported"),
    ("Water boils at 100 °C at sea level.", "Water boils at 100 °c at sea level"),
]


@pytest.mark.parametrize(("source", "quote"), CLEANUP_CHANGES_A_FACT)
def test_normalization_never_changes_a_unit_sign_separator_or_digit_group(
    source: str, quote: str
) -> None:
    m = locate_quote(quote, source)
    assert not m.verbatim, (quote, m.kind)
    assert m.kind == "none" or m.problem, (quote, m.kind)  # not even approximate


@pytest.mark.parametrize(
    ("source", "quote"),
    [
        ("The plant produces 10 mW of power", "the plant produces 10 mW of power"),  # case
        ("The summit was −40 degrees colder", "The summit was -40 degrees colder"),  # minus
        ("Prices rose from 10 – 20 euros in May", "Prices rose from 10 — 20 euros in May"),
        ("The sales were 1,665 units in\n2020.", "The sales were 1,665 units in 2020"),
        ("It is 10 % higher than last year", "it is 10 % higher than last year"),
    ],
)
def test_normalization_still_forgives_case_and_styles_around_facts(source: str, quote: str) -> None:
    assert locate_quote(quote, source).kind == "normalized"


@pytest.mark.parametrize(
    ("source", "quote"),
    [
        ("Water boils at 100 °C at sea level in normal conditions.", "at 100 °F at sea level"),
        ("Temperatures reach 45°C in summer in the desert region.", "reach 45°F in summer in"),
        ("The result is impossible to reproduce in the lab.", "is possible to reproduce in"),
        ("The vaccine was ineffective against the new strain.", "was effective against the"),
        ("The substance is nontoxic to humans and animals.", "is toxic to humans and animals"),
        ("The building was unfinished by the architects.", "was finished by the architects"),
        ("The witness was dishonest about the whole affair.", "was honest about the whole"),
        ("The plan was possible to carry out in a year.", "was impossible to carry out"),
    ],
)
def test_a_changed_unit_or_negating_prefix_is_not_even_approximate(source: str, quote: str) -> None:
    src = Source(source)
    raw = hash_output(f'x<ref name="{src.id}">"{quote}"</ref>.')
    (c,) = parse_response(raw, [src]).citations
    assert c.status == "unverified" and "differs" in c.note, (quote, c.status)


@pytest.mark.parametrize(
    ("source", "quote"),
    [  # a word replaced by one that merely starts like its negation: still approximate
        ("The minister will form the new cabinet next week.", "will inform the new cabinet"),
        ("The house stands inside the old city walls today.", "stands beside the old city"),
        ("They import grain from the north every winter.", "They report grain from the north"),
        ("The team will cover the story in the morning news.", "will discover the story in"),
        ("The final score was announced at the press event.", "was announced at the impress"),
    ],
)
def test_ordinary_words_are_not_read_as_negating_prefixes(source: str, quote: str) -> None:
    src = Source(source)
    raw = hash_output(f'x<ref name="{src.id}">"{quote}"</ref>.')
    (c,) = parse_response(raw, [src]).citations
    assert c.status == "approximate", (quote, c.status, c.note)


def test_negated_pair() -> None:
    from pleias_rag.meaning import negated_pair

    opposites = [
        ("possible", "impossible"), ("toxic", "non-toxic"), ("legal", "illegal"),
        ("regular", "irregular"), ("agree", "disagree"), ("known", "unknown"),
    ]  # fmt: skip
    for a, b in opposites:
        assert negated_pair(a, b) and negated_pair(b, a), (a, b)
    lookalikes = [
        ("form", "inform"), ("side", "inside"), ("port", "import"), ("do", "undo"),
        ("cover", "discover"), ("press", "impress"), ("come", "income"),
    ]  # fmt: skip
    for a, b in lookalikes:
        assert not negated_pair(a, b), (a, b)


# --------------------------------------------------------------------------- query copies


def test_a_quote_copied_from_the_query_is_from_query() -> None:
    query = "Claim: the bridge closes at night. Is that true?"
    status, match, note = cite("the bridge closes at night", query=query)
    assert (status, match) == ("from_query", "none") and "query" in note
    # In a source as well as the query: verified (the query may quote the source).
    status, _, _ = cite("The capital of France is Paris", query="The capital of France is Paris?")
    assert status == "verified"


# --------------------------------------------------------------------------- numbered ids


def test_numbered_ids_are_positions_even_when_source_ids_are_numbers() -> None:
    second, first = (
        Source("Bees dance to tell where food is.", id="2"),
        Source("Ants follow trails of scent to find food.", id="1"),
    )
    raw = (
        '<|answer_start|>Ants<ref name="<|source_id|>1">Bees dance to tell where food is.</ref>'
        ' and<ref name="2">Ants follow trails of scent</ref>.<|answer_end|>'
    )
    a, b = parse_response(raw, [second, first], "numbered").citations
    assert a.source is second and a.status == "verified"
    assert b.source is first and b.status == "verified"
    # The hash dialect has no positions: ids are ids.
    hashed = hash_output('x<ref name="1">"Ants follow trails of scent"</ref>.')
    (h,) = parse_response(hashed, [second, first], "hash").citations
    assert h.source is first


@pytest.mark.parametrize("digit", ["²", "١", "①", "12345678901"])
def test_odd_digits_in_ids_are_unknown_not_errors(digit: str) -> None:
    raw = (
        f"<|language_end|>\n<|query_analysis_start|>See <|source_id|>{digit}.<|query_analysis_end|>"
        f'\n<|answer_start|>x<ref name="<|source_id|>{digit}">Bees dance.</ref>.<|answer_end|>'
    )
    src = [Source("Bees dance.")]
    ans = parse_response(raw, src, "numbered")
    assert ans.citations[0].status == "unknown_source" and ans.citations[0].source is None
    parser = StreamParser(src, "numbered")
    for ch in raw:
        parser.feed(ch)
    parser.close()
    assert parser.result.citations == ans.citations


# --------------------------------------------------------------------------- copied markers


@pytest.mark.parametrize(
    "copied", ["<|ANSWER_END|>", "<|Answer_End|>", "#END#", "</s>", "### Analysis ###"]
)
@pytest.mark.parametrize("dialect", ["hash", "numbered"])
def test_marker_text_copied_into_the_answer_is_text(copied: str, dialect: str) -> None:
    body = f"The manual says to type {copied} to stop, and then restart."
    start = "Analysis.<|source_analysis_end|>\n" if dialect == "hash" else "English\n"
    ans = parse_response(f"{start}<|answer_start|>{body}<|answer_end|>", [], dialect)
    assert ans.answer == body and ans.finish_reason == "stop"


def test_markdown_sections_go_forward_only() -> None:
    raw = "### Analysis ###\nx\n### Answer ###\nIt says ### Analysis ### in the text.\n#END#"
    ans = parse_response(raw, [], "markdown")
    assert ans.answer == "It says ### Analysis ### in the text."


# --------------------------------------------------------------------------- unclosed refs


def test_an_unclosed_wrapped_ref_ends_at_its_closing_quote() -> None:
    raw = hash_output(
        f'Built in 1889<ref name="{FACTS.id}">"completed in 1889" and designed by Eiffel'
        f'<ref name="{OTHER.id}">"designed and built the tower"</ref>.'
    )
    for ans in (parse_response(raw, [FACTS, OTHER]), _streamed(raw, [FACTS, OTHER])):
        assert ans.answer == "Built in 1889[1] and designed by Eiffel[2]."
        first, second = ans.citations
        assert (first.quote, first.status, first.truncated) == (
            "completed in 1889",
            "verified",
            False,
        )
        assert second.status == "verified"
        assert ans.finish_reason == "stop"


def test_an_unclosed_bare_ref_ends_where_the_source_stops() -> None:
    src = [Source("Paris is the capital and most populous city of France.")]
    raw = (
        '<|answer_start|>Paris is the capital<ref name="<|source_id|>1">Paris is the capital '
        "and most populous city of France. It is also a major tourist city.<|answer_end|>"
    )
    ans = parse_response(raw, src, "numbered")
    assert ans.answer == "Paris is the capital[1]. It is also a major tourist city."
    (c,) = ans.citations
    assert c.quote == "Paris is the capital and most populous city of France"
    assert c.status == "verified"


TOWER = Source("The Eiffel Tower was completed in 1889 for the World's Fair. It is 330 m tall.")
PARIS = Source("Paris is the capital and most populous city of France. It hosts the Louvre.")
LOUVRE = Source("The Louvre is the world's most visited museum.")


@pytest.mark.parametrize("dialect", ["hash", "numbered"])
def test_an_unclosed_ref_never_verifies_a_prefix_the_model_did_not_quote(dialect: str) -> None:
    name = TOWER.id if dialect == "hash" else "<|source_id|>1"
    body = (
        f'It opened<ref name="{name}">The Eiffel Tower was built in 1900 by the city council. '
        "It remains popular."
    )
    numbered = f"English\n<|answer_start|>{body}<|answer_end|>"
    raw = hash_output(body) if dialect == "hash" else numbered
    for ans in (parse_response(raw, [TOWER], dialect), _streamed(raw, [TOWER], dialect=dialect)):
        assert ans.answer == "It opened[1]. It remains popular."
        (c,) = ans.citations
        # The model's quote is its sentence, not the words the source happens to share.
        assert c.quote == "The Eiffel Tower was built in 1900 by the city council"
        assert c.status == "unverified"


@pytest.mark.parametrize(
    ("name", "quote", "status"),
    [
        ("zz", "Paris is the capital and most populous city of France.", "unknown_source"),
        (LOUVRE.id, "Paris is the capital and most populous city of France.", "misattributed"),
        (PARIS.id, '"Paris is the capital and most populous city of France.', "verified"),
        (PARIS.id, "Paris is a big town in Europe.", "unverified"),
        ("zz", "Some words no source has at all.", "unknown_source"),
    ],
)
def test_an_unclosed_ref_gives_the_rest_of_the_answer_back(
    name: str, quote: str, status: str
) -> None:
    raw = hash_output(f'Paris<ref name="{name}">{quote} And more text follows here.')
    for ans in (parse_response(raw, [PARIS, LOUVRE]), _streamed(raw, [PARIS, LOUVRE])):
        assert ans.answer == "Paris[1]. And more text follows here."
        (c,) = ans.citations
        assert c.quote == quote.strip('".') and c.status == status


def test_an_unclosed_ref_before_another_ref_ends_after_a_claim_not_a_fragment() -> None:
    claim = hash_output(
        f'Paris<ref name="{PARIS.id}">Paris is the capital and most populous city of France '
        f'and the Louvre<ref name="{LOUVRE.id}">The Louvre is the world\'s most visited museum'
        "</ref>."
    )
    ans = parse_response(claim, [PARIS, LOUVRE])
    assert ans.answer == "Paris[1] and the Louvre[2]."
    assert [c.status for c in ans.citations] == ["verified", "verified"]
    # Four words the source holds, then words it does not and no sentence end: one quote.
    fragment = hash_output(
        f'It<ref name="{TOWER.id}">The Eiffel Tower was built by the city council'
        f'<ref name="{LOUVRE.id}">The Louvre is the world\'s most visited museum</ref>.'
    )
    first, second = parse_response(fragment, [TOWER, LOUVRE]).citations
    assert first.quote == "The Eiffel Tower was built by the city council"
    assert first.status == "unverified" and second.status == "verified"


def test_a_ref_cut_by_the_end_of_output_is_truncated_not_split() -> None:
    raw = f'<|answer_start|>Built<ref name="{FACTS.id}">"completed in 1889" and more'
    (c,) = parse_response(raw, [FACTS], "hash").citations
    assert c.truncated
    stopped = parse_response(raw, [FACTS], "hash", finish_reason="stop")
    assert stopped.answer == "Built[1] and more" and not stopped.citations[0].truncated


# --------------------------------------------------------------------------- streaming


def _streamed(
    raw: str, sources: list[Source], cuts: list[int] | None = None, dialect: str = "hash"
) -> PleiasAnswer:
    parser = StreamParser(sources, dialect)
    pos = 0
    for cut in sorted(cuts or list(range(1, len(raw), 3))):
        parser.feed(raw[pos:cut])
        pos = cut
    parser.feed(raw[pos:])
    parser.close()
    return parser.result


@settings(max_examples=40, deadline=None)
@given(
    name_len=st.integers(400, 700),
    cuts=st.lists(st.integers(1, 900), max_size=12),
)
def test_stream_equals_one_shot_for_long_ref_tags(name_len: int, cuts: list[int]) -> None:
    raw = hash_output(f'A<ref name="{"<|source_id|>" * 3}{"x" * name_len}">"q"</ref> b.')
    one = parse_response(raw, [FACTS], "hash")
    parser = StreamParser([FACTS], "hash")
    pos = 0
    for cut in sorted({c for c in cuts if c < len(raw)}):
        parser.feed(raw[pos:cut])
        pos = cut
    parser.feed(raw[pos:])
    parser.close()
    assert parser.result.answer == one.answer
    assert parser.result.citations == one.citations


# --------------------------------------------------------------------------- rankings


def test_rankings_credit_where_the_quote_is_and_not_unverified_quotes() -> None:
    raw = hash_output(
        f'a<ref name="{FACTS.id}">"designed and built the tower"</ref>'
        f' b<ref name="{OTHER.id}">"nothing of the sort is written"</ref>.'
    )
    ans = parse_response(raw, [FACTS, OTHER])
    mis, unverified = ans.citations
    assert (mis.status, unverified.status) == ("misattributed", "unverified")
    assert mis.credited == (OTHER,) and unverified.credited == ()
    assert OTHER.text[mis.found_start : mis.found_end] == mis.matched_text
    (use,) = cited_uses(ans)
    assert use.source is OTHER and use.citations == (mis,)
    assert ans.cited_sources == [OTHER]
    assert [u.score for u in source_uses(ans)] == [1.0, 0.5]  # OTHER cited, FACTS mentioned


# --------------------------------------------------------------------------- bounded cost


def test_long_quotes_are_located_by_the_bounded_search() -> None:
    words = [f"word{i % 997}x{i % 13}" for i in range(3000)]
    text = " ".join(words)
    quote = " ".join(words[1000:2600])  # ~16k chars
    assert len(quote) > 15000
    assert locate_quote(quote, text).kind == "exact"
    changed = quote.replace(" word203x4 ", " word203x5 ", 1)
    assert changed != quote
    m = locate_quote(changed, text)
    assert m.kind == "fuzzy" and m.score > 0.99 and m.problem  # a digit changed
    assert m.start is not None and abs(m.start - text.index(quote)) < 20


# --------------------------------------------------------------------------- the invariant

_TEXT = (
    "In 1889 the tower, 324 m tall, cost 7,799,401 francs; it is not 10.5% taller than -40 "
    "ideas. Nobody never saw 1 665 visitors, n'est-ce pas? The dose is 5 mg, not 50 mg."
)
_EDITS = st.sampled_from(
    ["", " ", "  ", "\n", "-", "-\n", "\u200b", "0", "1", "9", ".", ",", "%", "not ", "never ",
     "n't", "no", "(…)", " (…) ", "…", "m", "g", "’", "'", '"', "“"]
)  # fmt: skip


def _digits(text: str) -> list[str]:
    """The numbers of ``text`` with their sign, separators and the spaces between digit
    groups: a verified match may change none of them ("12 34" is not "1234")."""
    text = text.replace("\u200b", "").replace("−", "-")
    found = re.findall(r"(?<!\w)(?:[-+]\s*)?\d+(?:\s*[.,]\s*\d+|\s+\d+)*", text)
    return [" ".join(n.split()) for n in found]


@settings(max_examples=400, deadline=None)
@given(
    st.integers(0, len(_TEXT) - 1),
    st.integers(3, 80),
    st.lists(st.tuples(st.integers(0, 80), _EDITS, st.integers(0, 2)), max_size=3),
)
def test_verified_never_changes_a_number_or_a_negation(
    start: int, size: int, edits: list[tuple[int, str, int]]
) -> None:
    quote = _TEXT[start : start + size]
    for at, text, cut in edits:  # insert ``text`` at ``at``, deleting ``cut`` chars
        at = min(at, len(quote))
        quote = quote[:at] + text + quote[at + cut :]
    m = locate_quote(quote, _TEXT)
    if not m.verbatim:
        return
    found = m.matched_text(_TEXT)
    pieces = [p for p in re.split(r"\s*\(…\)\s*", found)]
    assert _digits(" ".join(pieces)) == _digits(quote.replace("(…)", " ")), (quote, found)
    assert negations(found) == negations(quote), (quote, found)
    for s, e in m.spans:  # never inside a word or a number
        assert s == 0 or not (_TEXT[s - 1].isalnum() and _TEXT[s].isalnum())
        assert e == len(_TEXT) or not (_TEXT[e - 1].isalnum() and _TEXT[e].isalnum())
