"""CitationGroundingEvaluator: deterministic, no judge LLM."""

from __future__ import annotations

import copy
from typing import Any

import pytest
from li_support import ScriptedBackend, hash_output, ref
from llama_index.core.base.response.schema import Response
from llama_index.core.evaluation import BaseEvaluator
from llama_index.core.schema import NodeWithScore, TextNode

from llama_index_pleias import CitationGroundingEvaluator, PleiasLLM, PleiasSynthesizer
from pleias_rag import Source
from pleias_rag.testing import TRAINING_EXAMPLES

EXAMPLES = {ex.name: ex for ex in TRAINING_EXAMPLES["hash"]}


def test_is_an_evaluator() -> None:
    assert isinstance(CitationGroundingEvaluator(), BaseEvaluator)
    with pytest.raises(ValueError, match="threshold"):
        CitationGroundingEvaluator(threshold=2)


@pytest.mark.parametrize(
    ("name", "passing", "reason"),
    [
        ("cited", True, "quote found (exact"),
        ("two_citations", True, "quote found (exact"),
        ("misattributed", False, "misattributed: the quote is in 0"),
        ("unknown_id", False, "is not one of the sources"),
        ("no_sources", False, "no citations"),
    ],
)
def test_raw_outputs_against_contexts(name: str, passing: bool, reason: str) -> None:
    ex = EXAMPLES[name]
    result = CitationGroundingEvaluator().evaluate(
        query=ex.query, response=ex.output, contexts=list(ex.sources)
    )
    assert result.passing is passing
    assert result.score == (1.0 if passing else 0.0)
    assert reason in (result.feedback or "")
    assert len(result.checks) == ex.output.count("<ref")


def test_options() -> None:
    ex = EXAMPLES["no_sources"]
    lenient = CitationGroundingEvaluator(require_citations=False)
    result = lenient.evaluate(response=ex.output, contexts=[])
    assert (result.passing, result.score) == (True, 1.0)
    text = "The tower was completed in 1889 for the fair."
    close = hash_output(
        "", "x" + ref(_id(text), "The tower was completed in 1889 for a fair") + "."
    )
    assert not CitationGroundingEvaluator().evaluate(response=close, contexts=[text]).passing
    lenient_fuzzy = CitationGroundingEvaluator(fuzzy=True)
    assert lenient_fuzzy.evaluate(response=close, contexts=[text]).passing
    # A changed number is never grounded, fuzzy or not.
    raw = hash_output("", "x" + ref(_id(text), "was completed in 1898 for the fair") + ".")
    result = lenient_fuzzy.evaluate(response=raw, contexts=[text])
    assert not result.passing and "'1898'" in (result.feedback or "")
    half = CitationGroundingEvaluator(threshold=0.5)
    two = hash_output("", "a" + ref(_id(text), "the fair") + " b" + ref(_id(text), "nothing") + ".")
    result = half.evaluate(response=two, contexts=[text])
    assert (result.passing, result.score) == (True, 0.5)
    assert [c["grounded"] for c in result.checks] == [True, False]
    invalid = CitationGroundingEvaluator().evaluate(response="x")
    assert invalid.invalid_result and not invalid.passing


def _id(text: str) -> str:
    from pleias_rag import source_id

    return source_id(text)


def _synthesized() -> tuple[Response, list[NodeWithScore]]:
    def script(query: str, sources: Any) -> str:
        a, b = sources
        return hash_output("", "x" + ref(a, "first source") + " y" + ref(b, "second source") + ".")

    synthesizer = PleiasSynthesizer(PleiasLLM(ScriptedBackend(script)))
    nodes = [
        NodeWithScore(node=TextNode(text="This is the first source.")),
        NodeWithScore(node=TextNode(text="And the second source.")),
    ]
    response = synthesizer.synthesize("q", nodes)
    assert isinstance(response, Response)
    return response, nodes


async def test_responses_are_checked_against_their_nodes() -> None:
    response, nodes = _synthesized()
    evaluator = CitationGroundingEvaluator()
    good = evaluator.evaluate_response(query="q", response=response)
    assert (good.passing, good.score) == (True, 1.0)
    assert [c["cited"] for c in good.checks] == [[nodes[0].node_id], [nodes[1].node_id]]
    assert (await evaluator.aevaluate_response(response=response)).passing

    tampered = copy.deepcopy(response)
    tampered.metadata["citations"][1]["quote"] = "a quote nobody wrote"  # type: ignore[index]
    result = evaluator.evaluate_response(response=tampered)
    assert (result.passing, result.score) == (False, 0.5)
    assert "[2] NOT grounded" in (result.feedback or "")

    missing = copy.deepcopy(response)
    missing.source_nodes = missing.source_nodes[:1]
    result = evaluator.evaluate_response(response=missing)
    assert "not in the response's source nodes" in (result.feedback or "")

    foreign = evaluator.evaluate_response(response=Response("plain", source_nodes=nodes))
    assert foreign.invalid_result and not foreign.passing
    assert evaluator.evaluate_response(response=None).invalid_result


# --------------------------------------------------------------------------- dialect, async

TOWER = "The Eiffel Tower was completed in 1889 for the World's Fair."
# A hash model that wrote a position for an id: numbered reading grounds it, hash does not.
AS_HASH = hash_output("Analysis.", 'In 1889<ref name="1">"was completed in 1889"</ref>.')


def test_a_raw_output_is_read_in_the_dialect_the_evaluator_knows() -> None:
    guessed = CitationGroundingEvaluator().evaluate(response=AS_HASH, contexts=[TOWER])
    assert guessed.passing  # detected: a position that is no source's id
    for evaluator, kwargs in [
        (CitationGroundingEvaluator(dialect="hash"), {}),
        (CitationGroundingEvaluator(), {"dialect": "hash"}),
        (CitationGroundingEvaluator(llm=PleiasLLM(ScriptedBackend(lambda q, s: ""))), {}),
        (CitationGroundingEvaluator(llm=PleiasLLM("some/model", dialect="hash")), {}),
    ]:
        result = evaluator.evaluate(response=AS_HASH, contexts=[TOWER], **kwargs)
        assert not result.passing and "is not one of the sources" in result.feedback
    node = NodeWithScore(node=TextNode(text=TOWER), score=1.0)
    response = Response(response=AS_HASH, source_nodes=[node], metadata={"dialect": "hash"})
    assert not CitationGroundingEvaluator().evaluate_response(response=response).passing
    with pytest.raises(ValueError, match="unknown dialect"):
        CitationGroundingEvaluator(dialect="xml")


async def test_async_evaluation_checks_quotes_off_the_event_loop(
    check_threads: list[int],
) -> None:
    import threading

    loop_thread = threading.get_ident()
    raw = hash_output("Analysis.", f"In 1889{ref(Source(TOWER), 'was completed in 1889')}.")
    result = await CitationGroundingEvaluator().aevaluate(response=raw, contexts=[TOWER])
    node = NodeWithScore(node=TextNode(text=TOWER), score=1.0)
    response = Response(response=raw, source_nodes=[node])
    by_response = await CitationGroundingEvaluator().aevaluate_response(response=response)
    assert result.passing and by_response.passing
    assert check_threads and loop_thread not in check_threads
