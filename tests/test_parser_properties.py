"""Property tests: the parser never raises, and streaming equals one-shot parsing."""

from corpus_sources import CORPUS_FILES
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from pleias_rag import AnswerDelta, PleiasAnswer, Source, StreamParser, parse_response

CORPUS_TEXTS = [p.read_text() for p in CORPUS_FILES]
SOURCES = [Source("Memes are a pain. Or so at least a glance"), Source("The court said that")]

PIECES = [
    "<|source_analysis_start|>", "<|source_analysis_end|>", "<|answer_start|>", "<|answer_end|>",
    "<|language_end|>", "<|query_report_start|>", "<|draft_end|>", "<|source_id|>",
    "<|end_of_text|>",
    '<ref name="', '">', "</ref>", "<ref", "<|", "|>", "**", '"', "“", "(…)", "### Answer ###",
    "#END#", "</s>", "<", "#", " ", "\n", "Memes are a pain", "770", "1",
]  # fmt: skip
fragments = st.lists(st.one_of(st.sampled_from(PIECES), st.text(max_size=8)), max_size=40)


def same(a: PleiasAnswer, b: PleiasAnswer) -> None:
    assert a == b


def streamed(text: str, cuts: list[int], sources: list[Source]) -> tuple[PleiasAnswer, str]:
    p = StreamParser(sources)
    events = []
    prev = 0
    for cut in sorted(c % (len(text) + 1) for c in cuts):
        events += p.feed(text[prev:cut])
        prev = cut
    events += p.feed(text[prev:])
    events += p.close()
    return p.result, "".join(e.text for e in events if isinstance(e, AnswerDelta))


@settings(max_examples=300, suppress_health_check=[HealthCheck.too_slow], deadline=None)
@given(fragments, st.lists(st.integers(min_value=0, max_value=10_000), max_size=12))
def test_arbitrary_output_never_raises_and_streams_the_same(
    parts: list[str], cuts: list[int]
) -> None:
    text = "".join(parts)
    one = parse_response(text, SOURCES)
    two, deltas = streamed(text, cuts, SOURCES)
    same(one, two)
    assert deltas == one.answer
    for c in one.citations:
        assert one.answer[c.start : c.end] == f"[{c.number}]"


@settings(max_examples=150, deadline=None)
@given(
    st.sampled_from(CORPUS_TEXTS),
    st.integers(min_value=0, max_value=10_000),
    st.integers(min_value=0, max_value=10_000),
    st.sampled_from([*PIECES, ""]),
    st.lists(st.integers(min_value=0, max_value=10_000), max_size=20),
)
def test_mutated_corpus_outputs(text: str, a: int, b: int, insert: str, cuts: list[int]) -> None:
    a, b = sorted((a % (len(text) + 1), b % (len(text) + 1)))
    mutated = text[:a] + insert + text[b:]  # cut a slice out and maybe insert a marker piece
    one = parse_response(mutated, SOURCES)
    two, deltas = streamed(mutated, cuts, SOURCES)
    same(one, two)
    assert deltas == one.answer


def test_one_char_at_a_time_on_the_whole_corpus() -> None:
    for text in CORPUS_TEXTS:
        two, deltas = streamed(text, list(range(len(text))), SOURCES)
        assert two == parse_response(text, SOURCES)
        assert deltas == two.answer
