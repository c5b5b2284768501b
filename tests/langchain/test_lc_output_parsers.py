"""PleiasOutputParser: raw Pleias text → PleiasAnswer, whole or streamed."""

from __future__ import annotations

import itertools

import pytest
from langchain_core.documents import Document
from langchain_core.language_models import FakeStreamingListLLM
from lc_support import docs_of, example

from langchain_pleias import PleiasOutputParser
from pleias_rag.answer import PleiasAnswer
from pleias_rag.parser import parse_response


@pytest.mark.parametrize("dialect", ["hash", "numbered"])
def test_parses_raw_output_against_the_documents(dialect: str) -> None:
    ex = example("two_citations", dialect)
    docs = docs_of(ex)
    start = "source_analysis" if dialect == "hash" else None
    answer = PleiasOutputParser(documents=docs, start=start).invoke(ex.output)
    assert isinstance(answer, PleiasAnswer)
    assert answer.answer == (
        "The Moon's gravity causes the tides[1]. The Louvre houses the Mona Lisa[2]."
    )
    assert [c.source.ref for c in answer.citations if c.source] == docs[:2]
    assert [c.status for c in answer.citations] == ["verified", "verified"]


async def test_async_streaming_matches() -> None:
    ex = example("cited")
    parser = PleiasOutputParser(documents=docs_of(ex), start="source_analysis")
    chain = FakeStreamingListLLM(responses=[ex.output]) | parser
    partials = [p async for p in chain.astream(ex.query)]
    assert partials == list(chain.stream(ex.query))
    assert partials[-1] == parser.invoke(ex.output)


def test_streaming_parser_yields_growing_answers() -> None:
    ex = example("cited")
    docs = docs_of(ex)
    parser = PleiasOutputParser(documents=docs, dialect="hash", start="source_analysis")
    chain = FakeStreamingListLLM(responses=[ex.output]) | parser
    partials = list(chain.stream(ex.query))
    assert len(partials) > 3
    texts = [p.answer for p in partials]
    assert len(set(texts[:-1])) == len(texts) - 1  # one partial per growth of the answer
    assert all(b.startswith(a) for a, b in itertools.pairwise(texts))
    assert all(p.finish_reason == "length" for p in partials[:-1])
    final = partials[-1]
    assert final == parser.invoke(ex.output)
    assert final == parse_response(ex.output, final.sources, "hash", start="source_analysis")
    assert final.answer == "The Eiffel Tower was completed in 1889[1]."
    assert final.citations[0].source is not None and final.citations[0].source.ref is docs[0]
    assert final.finish_reason == "stop"


def test_bad_configuration() -> None:
    with pytest.raises(ValueError, match="instance of Document"):
        PleiasOutputParser(documents=["text"])  # type: ignore[list-item]
    # Blank documents are skipped as the chat model skips them (issue 14): no error.
    assert PleiasOutputParser(documents=[Document(" ")]).documents == [Document(" ")]
    with pytest.raises(ValueError, match="diff is not supported"):
        PleiasOutputParser(diff=True)
    with pytest.raises(ValueError, match="unknown dialect"):
        PleiasOutputParser(dialect="chatml")
    with pytest.raises(ValueError, match="unknown section"):
        PleiasOutputParser(start="preamble")
    assert PleiasOutputParser(documents=[Document("x")]).get_format_instructions() == ""
