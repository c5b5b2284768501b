"""LlamaIndex spellings: ``llm=`` is taken, unknown keywords are refused (never ignored)."""

from __future__ import annotations

import pytest
from llama_index.core.schema import NodeWithScore, TextNode

from llama_index_pleias import PleiasLLM, PleiasReranker, PleiasSynthesizer
from pleias_rag import Backend, ScriptedEngine


def scripted_llm() -> PleiasLLM:
    return PleiasLLM(
        Backend(
            ScriptedEngine(
                {}, default="a<|source_analysis_end|>\n<|answer_start|>Yes.<|answer_end|>"
            )
        )
    )


def test_unknown_keywords_are_refused() -> None:
    with pytest.raises(TypeError, match="bogus"):
        PleiasLLM("some/model", bogus=5)
    with pytest.raises(TypeError, match="max_new_token"):
        PleiasSynthesizer("some/model", max_new_token=5)  # a typo of max_new_tokens


def test_llm_is_taken_as_the_model() -> None:
    llm = scripted_llm()
    synth = PleiasSynthesizer(llm=llm)
    assert synth.llm is llm  # not the default model from the hub
    nodes = [NodeWithScore(node=TextNode(text="The tower is in Paris."), score=1.0)]
    assert str(synth.synthesize("Where?", nodes)) == "Yes."
    assert PleiasReranker(llm=llm).llm is llm
    with pytest.raises(ValueError, match="not both"):
        PleiasSynthesizer("other/model", llm=llm)


def test_an_empty_response_has_every_metadata_key() -> None:
    synth = PleiasSynthesizer(scripted_llm())
    full = synth.synthesize("Where?", [NodeWithScore(node=TextNode(text="In Paris."))])
    empty = synth.synthesize("Where?", [NodeWithScore(node=TextNode(text=" "))])
    assert full.metadata is not None and empty.metadata is not None
    assert set(empty.metadata) == set(full.metadata)
    assert empty.metadata["dropped_node_ids"] == [] and empty.source_nodes == []
