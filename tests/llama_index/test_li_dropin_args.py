"""LlamaIndex spellings: ``llm=`` is taken, unknown keywords are refused (never ignored)."""

from __future__ import annotations

from typing import Any

import pytest
from li_support import ScriptedBackend, hash_output, ref
from llama_index.core.schema import NodeWithScore, QueryBundle, TextNode

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


def test_reranker_and_synthesizer_resolve_the_model_alike() -> None:
    llm = scripted_llm()
    for component in (PleiasSynthesizer, PleiasReranker):
        with pytest.raises(ValueError, match="not both"):
            component("other/model", llm=llm)
        assert component(llm, llm=llm).llm is llm  # the same model twice is no conflict
        assert component(llm="some/model").llm.model == "some/model"
        assert component("some/model").llm.model == "some/model"
    # The synthesizer's extra keywords are settings of a copy; the reranker's are its own.
    assert PleiasSynthesizer(llm=llm, max_new_tokens=9).llm.max_new_tokens == 9
    assert PleiasReranker(llm=llm, max_new_tokens=9).llm is llm


async def test_reranker_sync_and_async_agree() -> None:
    def script(query: str, sources: Any) -> str:
        return hash_output(
            f"**{sources[1].id}** helps.", "In Paris" + ref(sources[0], "Paris") + "."
        )

    reranker = PleiasReranker(PleiasLLM(ScriptedBackend(script)), analysis_only=False)
    texts = ("The tower is in Paris.", "It is tall.", "Unrelated.")
    nodes = [NodeWithScore(node=TextNode(text=t, id_=t)) for t in texts]
    ranked = reranker.postprocess_nodes(nodes, query_str="Where?")
    aranked = await reranker.apostprocess_nodes(nodes, query_bundle=QueryBundle("Where?"))
    expected = [("The tower is in Paris.", 1.0), ("It is tall.", 0.5)]
    assert [(n.node_id, n.score) for n in ranked] == expected
    assert [(n.node_id, n.score) for n in aranked] == expected


def test_an_empty_response_has_every_metadata_key() -> None:
    synth = PleiasSynthesizer(scripted_llm())
    full = synth.synthesize("Where?", [NodeWithScore(node=TextNode(text="In Paris."))])
    empty = synth.synthesize("Where?", [NodeWithScore(node=TextNode(text=" "))])
    assert full.metadata is not None and empty.metadata is not None
    assert set(empty.metadata) == set(full.metadata)
    assert empty.metadata["dropped_node_ids"] == [] and empty.source_nodes == []


def test_token_counting_handler_counts_pleias_calls(
    hash_llm: PleiasLLM, hash_examples: dict[str, object]
) -> None:
    from llama_index.core.callbacks import CallbackManager, TokenCountingHandler
    from llama_index.core.llms import ChatMessage

    counter = TokenCountingHandler(tokenizer=str.split)
    llm = hash_llm.model_copy()
    llm.callback_manager = CallbackManager([counter])
    ex = hash_examples["cited"]
    done = llm.complete(ex.query, sources=list(ex.sources))  # type: ignore[attr-defined]
    answer = done.raw["pleias_answer"]
    assert counter.prompt_llm_token_count == answer.prompt_tokens > 0
    assert counter.completion_llm_token_count == answer.completion_tokens > 0
    llm.chat([ChatMessage(role="user", content="Hello?")])
    for _ in llm.stream_complete(ex.query, sources=list(ex.sources)):  # type: ignore[attr-defined]
        pass
    assert len(counter.llm_token_counts) == 3
    assert counter.llm_token_counts[2].prompt_token_count == answer.prompt_tokens
