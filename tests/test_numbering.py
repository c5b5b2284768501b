"""``pleias_rag.numbering``: markers renumbered to the caller's source numbers, in an answer
and in its stream (deltas, citations and the final answer agree)."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from pleias_rag import AnswerDelta, Citation, CitationCompleted, Finished, Source, make_sources
from pleias_rag.backend import Backend
from pleias_rag.numbering import Numbering, renumber
from pleias_rag.scripted import ScriptedEngine

TEXTS = [
    "The Eiffel Tower is in Paris.",
    "It was completed in 1889.",
    "The Louvre is a museum.",
]
SOURCES = make_sources(TEXTS)


def output(cites: Sequence[int | str]) -> str:
    """An answer citing, in order, the sources at these positions (a str: an unknown id)."""
    refs = []
    for k in cites:
        if isinstance(k, str):
            refs.append(f'Claim <ref name="{k}">"nothing"</ref>.')
        else:
            refs.append(f'Claim <ref name="{SOURCES[k].id}">"{TEXTS[k][:-1]}"</ref>.')
    return "Analysis.<|source_analysis_end|>\n<|answer_start|>" + " ".join(refs) + "<|answer_end|>"


def backend_for(cites: Sequence[int | str], chunk: int = 3) -> Backend:
    return Backend(ScriptedEngine(lambda q, s: output(cites), chunk=chunk))


def numbering() -> Numbering:
    return Numbering({s.id: n for s, n in zip(SOURCES, [10, 20, 30], strict=True)})


def check_markers(answer_text: str, citations: Sequence[Citation]) -> None:
    for c in citations:
        assert answer_text[c.start : c.end] == f"[{c.number}]"


def test_markers_take_the_callers_numbers() -> None:
    answer = backend_for([2, 0, 2]).answer("Q?", SOURCES)
    assert [c.number for c in answer.citations] == [1, 2, 1]  # first-cited order
    renumbered = numbering().answer(answer)
    assert renumbered.answer == "Claim [30]. Claim [10]. Claim [30]."
    assert [c.number for c in renumbered.citations] == [30, 10, 30]
    check_markers(renumbered.answer, renumbered.citations)
    assert [c.source for c in renumbered.citations] == [c.source for c in answer.citations]


def test_an_unknown_id_gets_a_number_after_every_given_source() -> None:
    answer = backend_for([1, "feedfacefeedface", 0]).answer("Q?", SOURCES)
    renumbered = numbering().answer(answer)
    assert renumbered.answer == "Claim [20]. Claim [31]. Claim [10]."
    assert renumbered.citations[1].status == "unknown_source"


def test_renumber_by_offset_moves_every_offset() -> None:
    answer = backend_for([0, 1]).answer("Q?", SOURCES)
    moved = renumber(answer, lambda c: c.number + 99)
    assert moved.answer == "Claim [100]. Claim [101]."
    check_markers(moved.answer, moved.citations)


@settings(max_examples=40, deadline=None)
@given(
    cites=st.lists(st.one_of(st.integers(0, 2), st.just("0123456789abcdef")), max_size=6),
    chunk=st.integers(1, 12),
)
def test_a_renumbered_stream_adds_up_to_the_renumbered_answer(
    cites: list[int | str], chunk: int
) -> None:
    backend = backend_for(cites, chunk)
    events = list(numbering().events(backend.stream("Q?", SOURCES)))
    final = events[-1]
    assert isinstance(final, Finished)
    expected = numbering().answer(backend.answer("Q?", SOURCES))
    assert final.answer == expected
    assert "".join(e.text for e in events if isinstance(e, AnswerDelta)) == expected.answer
    streamed = [e.citation for e in events if isinstance(e, CitationCompleted)]
    assert streamed == list(expected.citations)


def test_async_stream() -> None:
    backend = backend_for([1, 2])

    async def run() -> list[object]:
        return [e async for e in numbering().aevents(backend.astream("Q?", SOURCES))]

    events = asyncio.run(run())
    assert (
        "".join(e.text for e in events if isinstance(e, AnswerDelta)) == "Claim [20]. Claim [30]."
    )


@pytest.mark.parametrize("sources", [[Source("x")], []])
def test_no_citation_is_left_as_it_is(sources: list[Source]) -> None:
    answer = Backend(ScriptedEngine(lambda q, s: output([]))).answer("Q?", sources)
    assert Numbering({}).answer(answer) == answer
