"""The parser's state machine: its transition table, out-of-place tokens, and chunking."""

import itertools

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from test_parser_properties import CORPUS_TEXTS, SOURCES, fragments

from pleias_rag import AnswerDelta, Event, StreamParser
from pleias_rag.answer import FinishReason
from pleias_rag.parser import (
    _TRANSITIONS,
    CitationCompleted,
    Finished,
    SectionEnded,
    SectionStarted,
    SectionText,
    _Phase,
)


def test_every_phase_but_done_has_transitions_and_is_reachable() -> None:
    outgoing: dict[_Phase, set[_Phase]] = {phase: set() for phase in _Phase}
    for (phase, _symbol), (_action, nxt) in _TRANSITIONS.items():
        outgoing[phase].add(nxt)
    assert outgoing[_Phase.DONE] == set()  # the final phase: everything after is ignored
    for phase in _Phase:
        if phase is not _Phase.DONE:
            assert outgoing[phase] - {phase}, f"{phase} has no way out"
    reached, todo = {_Phase.BEGIN}, [_Phase.BEGIN]
    while todo:
        for nxt in outgoing[todo.pop()] - reached:
            reached.add(nxt)
            todo.append(nxt)
    assert reached == set(_Phase)


def events_of(chunks: list[str], start: str | None = None) -> list[Event]:
    p = StreamParser(SOURCES, start=start)
    events: list[Event] = []
    for chunk in chunks:
        events += p.feed(chunk)
    return events + p.close()


def test_tokens_out_of_place_change_nothing() -> None:
    # The end of a section that is not open, the start of the one that is, text between
    # sections: ignored, without an exception, as before the table.
    events = events_of(
        [
            "English<|language_end|>stray text<|query_report_end|>",
            "<|answer_start|>Hi<|draft_end|><|answer_start|> there.<|answer_end|>",
            "after the end<|answer_start|>",
        ],
        start="language",
    )
    *sections, finished = events
    assert sections == [
        SectionStarted("language"),
        SectionText("language", "English"),
        SectionEnded("language"),
        SectionStarted("answer"),
        AnswerDelta("Hi"),
        AnswerDelta(" there."),
        SectionEnded("answer"),
    ]
    assert isinstance(finished, Finished)
    ans = finished.answer
    assert ans.sections == {"language": "English", "answer": "Hi there."}
    assert ans.finish_reason == "stop"
    assert ans.dialect == "numbered"  # <|language_end|> is numbered-only


def test_done_ignores_even_dialect_evidence() -> None:
    p = StreamParser(SOURCES)
    p.feed("<|answer_start|>Hi.<|answer_end|><|query_report_start|>Trivial")
    assert p.section is None
    p.close()
    assert p.dialect == "hash" and p.result.answer == "Hi."


def test_text_after_the_analysis_opens_the_answer_after_later_sections_too() -> None:
    # Once the source analysis has ended, text outside any section is the answer whose
    # <|answer_start|> was lost, even after a draft; before it ended, such text is dropped.
    raw = "a<|source_analysis_end|>\n<|draft_start|>d<|draft_end|>\nThe answer."
    ans = events_of([raw])[-1]
    assert isinstance(ans, Finished) and ans.answer.answer == "The answer."
    raw = "<|query_report_start|>r<|query_report_end|>\nDropped."
    ans = events_of([raw])[-1]
    assert isinstance(ans, Finished) and ans.answer.answer == ""


def merged(events: list[Event]) -> list[Event]:
    """Events with adjacent text pieces joined: chunk boundaries may split a delta."""
    out: list[Event] = []
    for e in events:
        last = out[-1] if out else None
        if isinstance(e, AnswerDelta) and isinstance(last, AnswerDelta):
            out[-1] = AnswerDelta(last.text + e.text)
        elif isinstance(e, SectionText) and isinstance(last, SectionText):
            assert e.section == last.section
            out[-1] = SectionText(e.section, last.text + e.text)
        else:
            out.append(e)
    return out


def chunked(text: str, cuts: list[int]) -> list[str]:
    bounds = [0, *sorted(c % (len(text) + 1) for c in cuts), len(text)]
    return [text[a:b] for a, b in itertools.pairwise(bounds)]


@settings(max_examples=300, suppress_health_check=[HealthCheck.too_slow], deadline=None)
@given(
    st.one_of(fragments.map("".join), st.sampled_from(CORPUS_TEXTS)),
    st.lists(st.integers(min_value=0, max_value=10_000), max_size=16),
    st.sampled_from([None, "source_analysis", "language", "answer"]),
    st.sampled_from([None, "stop", "length"]),
)
def test_any_chunking_gives_the_events_of_the_one_shot_parse(
    text: str, cuts: list[int], start: str | None, finish_reason: FinishReason | None
) -> None:
    whole = StreamParser(SOURCES, start=start)
    one = whole.feed(text) + whole.close(finish_reason)
    parts = StreamParser(SOURCES, start=start)
    two: list[Event] = []
    for chunk in chunked(text, cuts):
        two += parts.feed(chunk)
    two += parts.close(finish_reason)
    assert merged(two) == merged(one)
    citations = [e.citation for e in one if isinstance(e, CitationCompleted)]
    assert tuple(citations) == whole.result.citations


def test_corpus_one_char_at_a_time_gives_the_same_events() -> None:
    for text in CORPUS_TEXTS:
        one = events_of([text])
        p = StreamParser(SOURCES)
        two: list[Event] = []
        for ch in text:
            two += p.feed(ch)
        two += p.close()
        assert merged(two) == merged(one)
