"""``Settings.llm = PleiasLLM(...)``: in LlamaIndex's own engines, ``[n]`` names
``response.source_nodes[n-1]``, whatever the nodes hold (metadata headers, blank lines) and
however LlamaIndex packed them; ``CitationQueryEngine``'s ``[N]`` is its "Source N"."""

from __future__ import annotations

import logging
import re
from collections.abc import Sequence
from typing import Any

import pytest
from li_support import ScriptedBackend, hash_output, ref
from llama_index.core import PromptTemplate, VectorStoreIndex
from llama_index.core.base.response.schema import (
    AsyncStreamingResponse,
    Response,
    StreamingResponse,
)
from llama_index.core.chat_engine import CondensePlusContextChatEngine
from llama_index.core.query_engine import CitationQueryEngine
from llama_index.core.response_synthesizers import get_response_synthesizer
from llama_index.core.schema import NodeWithScore, TextNode

from llama_index_pleias import PleiasLLM
from llama_index_pleias._prompts import numbered_passages
from pleias_rag import Source
from pleias_rag.errors import InvalidType

pytestmark = [
    pytest.mark.filterwarnings("ignore::pydantic.warnings.PydanticDeprecationWarning"),
]

# Documents as SimpleDirectoryReader makes them: metadata, paragraphs split by blank lines.
LOUVRE = "The Louvre houses the Mona Lisa.\n\nIt is a museum in Paris."
EIFFEL = "The Eiffel Tower is in Paris.\n\nIt was completed in 1889."
QUESTION = "When was the Eiffel Tower completed?"
KEYWORDS = {"1889": "It was completed in 1889", "Louvre": "The Louvre houses the Mona Lisa"}


def cite_what_it_finds(query: str, sources: Sequence[Source]) -> str:
    """Cites the 1889 sentence where a source has it, else the Louvre one; the answer text
    names what it cites ("1889[n]"), so a test can check the node behind each marker."""
    for word, sentence in KEYWORDS.items():
        holder = next((s for s in sources if sentence in s.text), None)
        if holder is not None:
            return hash_output(f"**{holder.id}** answers.", word + ref(holder, sentence) + ".")
    return hash_output("Nothing.", "I do not know.")


def doc_nodes() -> list[NodeWithScore]:
    # the Louvre first: the cited Eiffel node is the second node
    return [
        NodeWithScore(
            node=TextNode(text=LOUVRE, id_="louvre", metadata={"file": "l.txt"}), score=0.9
        ),
        NodeWithScore(
            node=TextNode(text=EIFFEL, id_="eiffel", metadata={"file": "e.txt"}), score=0.8
        ),
    ]


def markers(response: Any) -> list[tuple[str, int]]:
    found = [(w, int(n)) for w, n in re.findall(r"(1889|Louvre)\[(\d+)\]", str(response))]
    assert found, f"no marker in {str(response)!r}"
    return found


def assert_markers_name_their_nodes(response: Any) -> None:
    for word, n in markers(response):
        assert 1 <= n <= len(response.source_nodes), (word, n, str(response))
        assert KEYWORDS[word] in response.source_nodes[n - 1].node.get_content()


def llm_over() -> tuple[PleiasLLM, ScriptedBackend]:
    backend = ScriptedBackend(cite_what_it_finds)
    return PleiasLLM(backend), backend


@pytest.mark.parametrize(
    "mode", ["compact", "refine", "simple_summarize", "tree_summarize", "accumulate"]
)
def test_each_marker_names_its_source_node(mode: str) -> None:
    llm, _backend = llm_over()
    response = get_response_synthesizer(llm=llm, response_mode=mode).synthesize(
        QUESTION, doc_nodes()
    )
    assert isinstance(response, Response)
    assert_markers_name_their_nodes(response)


def test_a_node_with_metadata_and_paragraphs_is_one_source() -> None:
    llm, backend = llm_over()
    response = get_response_synthesizer(llm=llm, response_mode="compact").synthesize(
        QUESTION, doc_nodes()
    )
    [(_, _, sources, _)] = backend.calls
    assert [s.text for s in sources] == [
        "file: l.txt\n\n" + LOUVRE,
        "file: e.txt\n\n" + EIFFEL,
    ]
    assert str(response) == "1889[2]."


async def test_async_and_streaming_markers_name_their_nodes() -> None:
    llm, _ = llm_over()
    response = await get_response_synthesizer(llm=llm, response_mode="compact").asynthesize(
        QUESTION, doc_nodes()
    )
    assert str(response) == "1889[2]."
    streaming = get_response_synthesizer(llm=llm, response_mode="compact", streaming=True)
    streamed = streaming.synthesize(QUESTION, doc_nodes())
    assert isinstance(streamed, StreamingResponse)
    assert "".join(streamed.response_gen) == "1889[2]."
    astreamed = await streaming.asynthesize(QUESTION, doc_nodes())
    assert isinstance(astreamed, AsyncStreamingResponse)
    assert "".join([t async for t in astreamed.async_response_gen()]) == "1889[2]."


def test_citation_query_engine_markers_are_its_sources(word_embedding: Any) -> None:
    llm, backend = llm_over()
    index = VectorStoreIndex([n.node for n in doc_nodes()], embed_model=word_embedding)
    engine = CitationQueryEngine.from_args(index, llm=llm, similarity_top_k=2)
    response = engine.query(QUESTION)
    assert_markers_name_their_nodes(response)
    for _word, n in markers(response):
        assert response.source_nodes[n - 1].node.get_content().startswith(f"Source {n}:")
    # the "Source N:" header is the engine's label, not the document's text
    assert all(not s.text.startswith("Source") for _, _, ss, _ in backend.calls for s in ss)


def test_citation_query_engine_refine_numbers_on(word_embedding: Any) -> None:
    # one citation chunk per call: the refine step over Source 2 must say [2]
    llm, backend = llm_over()
    index = VectorStoreIndex([n.node for n in doc_nodes()], embed_model=word_embedding)
    engine = CitationQueryEngine.from_args(
        index, llm=llm, similarity_top_k=2, response_mode="refine"
    )
    response = engine.query(QUESTION)
    assert len(backend.calls) == 2
    assert_markers_name_their_nodes(response)


def test_direct_predict_numbers_passages_in_order() -> None:
    llm, _ = llm_over()
    template = PromptTemplate("{context_str}\n{query_str}")
    text = llm.predict(template, context_str=f"{LOUVRE}\n\n{EIFFEL}", query_str=QUESTION)
    assert text == "1889[4]."  # no synthesizer around the call: the 4th paragraph


def test_a_passage_no_node_holds_names_no_node(caplog: pytest.LogCaptureFixture) -> None:
    nodes = ["file: a\n\nAlpha one.\n\nAlpha two.", "Beta."]
    with caplog.at_level(logging.WARNING, logger="llama_index_pleias"):
        passages, numbers = numbered_passages("A summary.\n\nBeta.", nodes)
    assert (passages, numbers) == (["A summary.", "Beta."], [3, 2])
    assert "[3] and up" in caplog.text


def test_a_node_cut_by_repacking_keeps_its_number() -> None:
    nodes = ["file: a\n\nAlpha one.\n\nAlpha two.", "Beta."]
    passages, numbers = numbered_passages("Alpha two.\n\nBeta.", nodes)
    assert (passages, numbers) == (["Alpha two.", "Beta."], [1, 2])
    # simple_summarize: nodes cut to fit and joined by one newline
    passages, numbers = numbered_passages("file: a\nAlpha one.\nBeta.", nodes)
    assert numbers == [1, 2] and passages == ["file: a\nAlpha one.", "Beta."]


@pytest.mark.parametrize("mode", ["context", "condense_plus_context", "condense_question"])
def test_chat_engine_markers_name_their_nodes(mode: str, word_embedding: Any) -> None:
    llm, backend = llm_over()
    index = VectorStoreIndex([n.node for n in doc_nodes()], embed_model=word_embedding)
    engine = index.as_chat_engine(chat_mode=mode, llm=llm, similarity_top_k=2)
    response = engine.chat(QUESTION)  # the first turn has nothing to condense
    assert backend.calls and all(query == QUESTION for _, query, _, _ in backend.calls)
    assert_markers_name_their_nodes(response)
    if mode == "context":
        assert_markers_name_their_nodes(engine.chat(QUESTION))  # a second turn, with history
        return
    # A follow-up would be rewritten by the Pleias model itself, and its answer searched.
    calls = len(backend.calls)
    with pytest.raises(InvalidType, match="condense_chat_engine"):
        engine.chat("And the Louvre?")
    assert len(backend.calls) == calls  # refused before any call


def test_condense_plus_context_without_the_rewrite(word_embedding: Any) -> None:
    llm, _backend = llm_over()
    index = VectorStoreIndex([n.node for n in doc_nodes()], embed_model=word_embedding)
    engine = CondensePlusContextChatEngine.from_defaults(
        index.as_retriever(similarity_top_k=2), llm=llm, skip_condense=True
    )
    engine.chat(QUESTION)
    assert_markers_name_their_nodes(engine.chat("When was it completed, in 1889?"))


def test_simple_chat_engine_keeps_a_plain_chat() -> None:
    llm, backend = llm_over()
    from llama_index.core.chat_engine import SimpleChatEngine

    response = SimpleChatEngine.from_defaults(llm=llm).chat(QUESTION)
    assert str(response) == "I do not know."  # no sources: nothing to cite
    assert [len(sources) for _, _, sources, _ in backend.calls] == [0]
