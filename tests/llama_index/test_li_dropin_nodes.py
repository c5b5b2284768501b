"""Issue #15 rows on source nodes, streaming, metadata and LLM events, through LlamaIndex's
own classes (a scripted backend, no model)."""

from __future__ import annotations

import json
from typing import Any

from li_support import ScriptedBackend, hash_output, ref
from llama_index.core import Document, SummaryIndex
from llama_index.core.base.response.schema import StreamingResponse
from llama_index.core.bridge.pydantic import Field
from llama_index.core.callbacks import CallbackManager, TokenCountingHandler
from llama_index.core.evaluation import FaithfulnessEvaluator
from llama_index.core.instrumentation import get_dispatcher
from llama_index.core.instrumentation.event_handlers import BaseEventHandler
from llama_index.core.instrumentation.events import BaseEvent
from llama_index.core.instrumentation.events.llm import (
    LLMCompletionEndEvent,
    LLMCompletionStartEvent,
)
from llama_index.core.llms import MockLLM
from llama_index.core.schema import NodeWithScore, TextNode

from llama_index_pleias import PLEIAS_METADATA_KEY, PleiasLLM, PleiasQueryEngine, PleiasSynthesizer
from llama_index_pleias.synthesizer import pleias_answer
from pleias_rag import PleiasAnswer

EIFFEL = "The Eiffel Tower is in Paris. It was completed in 1889."
LOUVRE = "The Louvre houses the Mona Lisa. It is a museum."
TEA = "Green tea comes from Camellia sinensis."
FAKE_ID = "0123456789abcdef"


def given() -> list[NodeWithScore]:
    return [
        NodeWithScore(node=TextNode(text=EIFFEL, id_="eiffel"), score=0.9),
        NodeWithScore(node=TextNode(text=LOUVRE, id_="louvre"), score=0.8),
        NodeWithScore(node=TextNode(text=TEA, id_="tea"), score=0.1),
    ]


def by_text(sources: Any) -> dict[str, Any]:
    return {s.text: s for s in sources}


def unknown_then_louvre(query: str, sources: Any) -> str:
    lv = by_text(sources)[LOUVRE]
    return hash_output("", "a" + ref(FAKE_ID, "Paris") + " b" + ref(lv, "It is a museum.") + ".")


def synth(script: Any, **kwargs: Any) -> PleiasSynthesizer:
    return PleiasSynthesizer(PleiasLLM(ScriptedBackend(script)), **kwargs)


def info(node: NodeWithScore) -> dict[str, Any]:
    data: dict[str, Any] = node.node.metadata[PLEIAS_METADATA_KEY]
    return data


# --------------------------------------------------------------------------- row 1


def test_marker_n_is_source_node_n_minus_1_even_after_an_unknown_id() -> None:
    response = synth(unknown_then_louvre).synthesize("q", given())
    assert response.response == "a[1] b[2]."
    first, second = response.source_nodes
    assert info(first)["unknown_source"] and info(first)["marker"] == 1
    assert (second.node_id, info(second)["marker"], info(second)["cited"]) == ("louvre", 2, True)


def test_identical_texts_do_not_share_a_marker_slot() -> None:
    def cite(query: str, sources: Any) -> str:
        e, lv = sources[0], by_text(sources)[LOUVRE]
        return hash_output(
            "", "x" + ref(e, "It was completed in 1889.") + " y" + ref(lv, "It is a museum.")
        )

    a = NodeWithScore(node=TextNode(text=EIFFEL, id_="a"), score=0.5)
    b = NodeWithScore(node=TextNode(text=EIFFEL, id_="b"), score=0.4)
    lv = NodeWithScore(node=TextNode(text=LOUVRE, id_="lv"), score=0.3)
    response = synth(cite).synthesize("q", [a, b, lv])
    assert response.response == "x[1] y[2]"
    # [1] -> a, [2] -> lv; b (same text as a, holds the quote too) comes after the markers.
    assert [n.node_id for n in response.source_nodes] == ["a", "lv", "b"]
    assert [info(n)["marker"] for n in response.source_nodes] == [1, 2, None]


def test_return_nodes_all_flags_the_uncited_ones() -> None:
    response = synth(unknown_then_louvre, return_nodes="all").synthesize("q", given())
    ids = [n.node_id for n in response.source_nodes]
    assert ids == ["pleias-unknown-1", "louvre", "eiffel", "tea"]
    assert [info(n)["cited"] for n in response.source_nodes] == [True, True, False, False]
    assert [n.score for n in response.source_nodes[2:]] == [0.9, 0.1]


def test_an_answer_citing_nothing_exposes_what_the_model_saw() -> None:
    def plain(query: str, sources: Any) -> str:
        return hash_output("", "Paris has a tower.")

    response = synth(plain).synthesize("q", given())
    assert [n.node_id for n in response.source_nodes] == ["eiffel", "louvre", "tea"]
    assert not any(info(n)["cited"] for n in response.source_nodes)
    result = FaithfulnessEvaluator(llm=MockLLM()).evaluate_response(response=response)
    assert result.contexts == [EIFFEL, LOUVRE, TEA]  # no "Empty Response" error


# --------------------------------------------------------------------------- row 2


def test_streaming_fills_source_nodes_as_each_citation_completes() -> None:
    def two(query: str, sources: Any) -> str:
        e, lv = by_text(sources)[EIFFEL], by_text(sources)[LOUVRE]
        return hash_output(
            "",
            "First" + ref(lv, "It is a museum.") + " and then a long tail of words "
            "so that the stream goes on" + ref(e, "It was completed in 1889.") + " end.",
        )

    response = synth(two, streaming=True).synthesize("q", given())
    assert isinstance(response, StreamingResponse)
    seen: list[list[str]] = []
    for _ in response.response_gen:
        seen.append([n.node_id for n in response.source_nodes])
    assert ["louvre"] in seen  # filled before the second citation (and the end)
    assert seen.index(["louvre"]) < seen.index(["louvre", "eiffel"])
    assert [n.node_id for n in response.source_nodes] == ["louvre", "eiffel"]
    assert isinstance(pleias_answer(response), PleiasAnswer)


# --------------------------------------------------------------------------- row 3


def test_response_metadata_is_json_serializable() -> None:
    response = synth(unknown_then_louvre).synthesize("q", given())
    assert response.metadata is not None
    json.dumps(response.metadata)
    assert "pleias_answer" not in response.metadata
    assert isinstance(pleias_answer(response), PleiasAnswer)

    empty = synth(unknown_then_louvre).synthesize("q", [])
    assert empty.metadata is not None
    json.dumps(empty.metadata)
    assert empty.metadata["dropped_node_ids"] == []

    stream = synth(unknown_then_louvre, streaming=True).synthesize("q", given())
    assert isinstance(stream, StreamingResponse)
    stream.get_response()
    json.dumps(stream.metadata)


# --------------------------------------------------------------------------- row 4


class _Recorder(BaseEventHandler):
    events: list[BaseEvent] = Field(default_factory=list)

    @classmethod
    def class_name(cls) -> str:
        return "Recorder"

    def handle(self, event: BaseEvent, **kwargs: Any) -> None:
        self.events.append(event)


def test_query_engine_emits_llm_callback_and_instrumentation_events() -> None:
    def cite(query: str, sources: Any) -> str:
        return hash_output("", "It is in Paris" + ref(sources[0], "The Eiffel Tower is in Paris."))

    counter = TokenCountingHandler(tokenizer=str.split)
    callbacks = CallbackManager([counter])
    recorder = _Recorder()
    root = get_dispatcher()
    root.add_event_handler(recorder)
    try:
        index = SummaryIndex.from_documents([Document(text=EIFFEL)])
        for streaming in (False, True):
            engine = PleiasQueryEngine.from_retriever(
                index.as_retriever(),
                model=ScriptedBackend(cite),
                streaming=streaming,
                callback_manager=callbacks,
            )
            response = engine.query("Where is the tower?")
            if isinstance(response, StreamingResponse):
                response.get_response()
    finally:
        root.event_handlers.remove(recorder)
    assert len(counter.llm_token_counts) == 2
    for count in counter.llm_token_counts:
        assert count.prompt_token_count > 0 and count.completion_token_count > 0
        assert "Where is the tower?" in count.prompt and EIFFEL in count.prompt
    kinds = [type(e) for e in recorder.events]
    assert kinds.count(LLMCompletionStartEvent) == kinds.count(LLMCompletionEndEvent) == 2
