"""PleiasLLM: metadata, completion, chat with citable blocks, streaming, real async."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
from li_support import ScriptedBackend, hash_output, ref
from llama_index.core.base.llms.base import BaseLLM
from llama_index.core.base.llms.types import (
    ChatMessage,
    CitableBlock,
    CitationBlock,
    ImageBlock,
    MessageRole,
    TextBlock,
)
from llama_index.core.schema import NodeWithScore, TextNode

from llama_index_pleias import PleiasLLM
from pleias_rag import PleiasAnswer, Source

EIFFEL_ANSWER = "The Eiffel Tower was completed in 1889[1]."


def cite_first(query: str, sources: Any) -> str:
    first = sources[0]
    return hash_output(f"**{first.id}** answers.", "Yes" + ref(first, first.text[:10]) + ".")


def test_base_llm_in_mro() -> None:
    names = [b.__name__ for b in PleiasLLM.__mro__]
    assert BaseLLM.__name__ in names


def test_construction_loads_nothing() -> None:
    llm = PleiasLLM("/no/such/model", max_new_tokens=7)
    assert llm.model == "/no/such/model"
    assert llm.class_name() == "PleiasLLM"
    assert PleiasLLM().model == "PleIAs/Pleias-RAG-350M"
    with pytest.raises(TypeError, match="model must be"):
        PleiasLLM(object())  # type: ignore[arg-type]


def test_metadata_comes_from_the_model(hash_llm: PleiasLLM, tiny_trained_model_hash: Any) -> None:
    md = hash_llm.metadata
    assert md.context_window == 2048
    assert md.num_output == hash_llm.max_new_tokens
    assert md.model_name == str(tiny_trained_model_hash)
    assert not md.is_chat_model
    assert not md.is_function_calling_model


def test_complete_gives_clean_text_and_checked_citations(
    hash_llm: PleiasLLM, hash_examples: dict[str, Any]
) -> None:
    ex = hash_examples["cited"]
    response = hash_llm.complete(ex.query, sources=list(ex.sources))
    assert response.text == EIFFEL_ANSWER
    assert isinstance(response.raw["pleias_answer"], PleiasAnswer)
    usage = response.raw["usage"]  # what LlamaIndex's TokenCountingHandler reads
    assert usage["prompt_tokens"] == response.raw["pleias_answer"].prompt_tokens > 0
    (c,) = response.additional_kwargs["citations"]
    assert c["status"] == "verified"
    assert ex.sources[0][c["source_start"] : c["source_end"]] == c["quote"]
    assert response.additional_kwargs["finish_reason"] == "stop"


def test_numbered_dialect(numbered_llm: PleiasLLM, numbered_examples: dict[str, Any]) -> None:
    ex = numbered_examples["two_citations"]
    response = numbered_llm.complete(ex.query, sources=list(ex.sources))
    assert response.text == (
        "The Moon's gravity causes the tides[1]. The Louvre houses the Mona Lisa[2]."
    )
    assert [c["status"] for c in response.additional_kwargs["citations"]] == ["verified"] * 2


def test_per_call_kwargs_reach_the_model(hash_llm: PleiasLLM, hash_examples: Any) -> None:
    ex = hash_examples["cited"]
    short = hash_llm.complete(ex.query, sources=list(ex.sources), max_new_tokens=4)
    assert short.additional_kwargs["finish_reason"] == "length"
    assert short.raw["pleias_answer"].completion_tokens in (None, 4)


def test_generation_settings_are_merged() -> None:
    backend = ScriptedBackend(cite_first)
    llm = PleiasLLM(backend, max_new_tokens=50, seed=3)
    llm.complete("q", sources=["some text here"], temperature=0.5, max_tokens=7, stop=["X"])
    assert backend.calls[-1][3] == {
        "max_new_tokens": 7,
        "temperature": 0.5,
        "seed": 3,
        "stop": ["X"],
    }
    with pytest.raises(TypeError, match="unexpected keyword argument 'foo'"):
        llm.complete("q", foo=1)


def test_sources_of_every_kind() -> None:
    backend = ScriptedBackend(cite_first)
    llm = PleiasLLM(backend)
    node = TextNode(text="node text")
    block = CitableBlock(title="T", source="https://example.org", content="block text")
    llm.complete("q", sources=["plain", Source("src"), node, NodeWithScore(node=node), block])
    texts = [s.text for s in backend.calls[-1][2]]
    assert texts == ["plain", "src", "node text", "node text", "block text"]
    with pytest.raises(TypeError, match="not a single string"):
        llm.complete("q", sources="plain")
    with pytest.raises(ValueError, match="node without text"):
        llm.complete("q", sources=[TextNode(text="  ")])


def test_stream_complete(hash_llm: PleiasLLM, hash_examples: dict[str, Any]) -> None:
    ex = hash_examples["cited"]
    chunks = list(hash_llm.stream_complete(ex.query, sources=list(ex.sources)))
    assert len(chunks) > 3
    assert "".join(c.delta or "" for c in chunks) == EIFFEL_ANSWER
    assert all(c.text.startswith(chunks[0].text) for c in chunks)
    assert chunks[-1].text == EIFFEL_ANSWER
    assert chunks[-1].additional_kwargs["citations"][0]["status"] == "verified"
    assert all(not c.additional_kwargs for c in chunks[:-1])


async def test_acomplete_leaves_the_event_loop_free(
    hash_llm: PleiasLLM, hash_examples: dict[str, Any]
) -> None:
    ex = hash_examples["two_citations"]
    ticks = 0

    async def ticker() -> None:
        nonlocal ticks
        while True:
            ticks += 1
            await asyncio.sleep(0)

    task = asyncio.create_task(ticker())
    await asyncio.sleep(0)
    before = ticks
    response = await hash_llm.acomplete(ex.query, sources=list(ex.sources))
    during = ticks - before
    task.cancel()
    assert response.text.startswith("The Moon's gravity causes the tides[1].")
    assert during > 5, "the event loop was blocked during generation"


async def test_astream_complete(hash_llm: PleiasLLM, hash_examples: dict[str, Any]) -> None:
    ex = hash_examples["cited"]
    gen = await hash_llm.astream_complete(ex.query, sources=list(ex.sources))
    chunks = [c async for c in gen]
    assert "".join(c.delta or "" for c in chunks) == EIFFEL_ANSWER
    assert chunks[-1].additional_kwargs["citations"][0]["status"] == "verified"


def _citable(text: str, title: str, url: str) -> CitableBlock:
    return CitableBlock(title=title, source=url, content=[TextBlock(text=text)])


def test_chat_reads_citable_blocks_and_returns_citation_blocks(
    hash_llm: PleiasLLM, hash_examples: dict[str, Any]
) -> None:
    ex = hash_examples["cited"]
    message = ChatMessage(
        role=MessageRole.USER,
        blocks=[
            _citable(ex.sources[0], "Eiffel", "https://example.org/eiffel"),
            _citable(ex.sources[1], "Louvre", "https://example.org/louvre"),
            TextBlock(text=ex.query),
        ],
    )
    response = hash_llm.chat([message])
    assert response.message.role == MessageRole.ASSISTANT
    assert response.message.content == EIFFEL_ANSWER
    (citation,) = [b for b in response.message.blocks if isinstance(b, CitationBlock)]
    assert citation.source == "https://example.org/eiffel"
    assert citation.title == "Eiffel"
    loc = citation.additional_location_info
    assert isinstance(citation.cited_content, TextBlock)
    assert ex.sources[0][loc["start_char_index"] : loc["end_char_index"]] == (
        citation.cited_content.text
    )
    assert EIFFEL_ANSWER[loc["answer_start_index"] : loc["answer_end_index"]] == "[1]"
    assert response.additional_kwargs["citations"][0]["status"] == "verified"


def test_chat_answers_the_last_user_message_with_all_citable_blocks() -> None:
    backend = ScriptedBackend(cite_first)
    llm = PleiasLLM(backend)
    messages = [
        ChatMessage(role=MessageRole.SYSTEM, content="ignored"),
        ChatMessage(
            role=MessageRole.USER,
            blocks=[_citable("First doc.", "A", "a"), TextBlock(text="first?")],
        ),
        ChatMessage(role=MessageRole.ASSISTANT, content="An answer."),
        ChatMessage(
            role=MessageRole.USER,
            blocks=[_citable("Second doc.", "B", "b"), TextBlock(text="second?")],
        ),
    ]
    response = llm.chat(messages)
    _, query, sources, _ = backend.calls[-1]
    assert query == "second?"
    assert [s.text for s in sources] == ["First doc.", "Second doc."]
    assert [s.title for s in sources] == ["A", "B"]
    (citation,) = [b for b in response.message.blocks if isinstance(b, CitationBlock)]
    assert citation.source == "a"


def test_chat_errors_are_clear() -> None:
    llm = PleiasLLM(ScriptedBackend(cite_first))
    with pytest.raises(ValueError, match="user message"):
        llm.chat([ChatMessage(role=MessageRole.ASSISTANT, content="hi")])
    image_only = CitableBlock(
        title="img", source="x", content=[ImageBlock(url="https://example.org/a.png")]
    )
    with pytest.raises(ValueError, match="has no text"):
        llm.chat([ChatMessage(role=MessageRole.USER, blocks=[image_only, TextBlock(text="q")])])


def test_stream_chat_ends_with_citation_blocks() -> None:
    llm = PleiasLLM(ScriptedBackend(cite_first))
    message = ChatMessage(
        role=MessageRole.USER, blocks=[_citable("Doc text here.", "D", "d"), TextBlock(text="q")]
    )
    chunks = list(llm.stream_chat([message]))
    assert "".join(c.delta or "" for c in chunks) == "Yes[1]."
    assert chunks[-1].message.content == "Yes[1]."
    assert any(isinstance(b, CitationBlock) for b in chunks[-1].message.blocks)


async def test_async_chat() -> None:
    backend = ScriptedBackend(cite_first)
    llm = PleiasLLM(backend)
    message = ChatMessage(
        role=MessageRole.USER, blocks=[_citable("Doc text here.", "D", "d"), TextBlock(text="q")]
    )
    response = await llm.achat([message])
    assert response.message.content == "Yes[1]."
    gen = await llm.astream_chat([message])
    chunks = [c async for c in gen]
    assert chunks[-1].message.content == "Yes[1]."
    assert [c[0] for c in backend.calls] == ["aanswer", "astream"]


def test_no_answer_section_falls_back_to_visible_text() -> None:
    llm = PleiasLLM(ScriptedBackend(lambda q, s: "Just some thinking that was cut"))
    response = llm.complete("q", sources=["text"])
    assert response.text == "Just some thinking that was cut"
    assert response.additional_kwargs["citations"] == []
    chunks = list(llm.stream_complete("q", sources=["text"]))
    assert "".join(c.delta or "" for c in chunks) == "Just some thinking that was cut"


def test_settings_copies_and_serialization() -> None:
    backend = ScriptedBackend(cite_first)
    llm = PleiasLLM(backend, temperature=0.2)
    tuned = llm.with_settings(max_new_tokens=9)
    assert (tuned.max_new_tokens, tuned.temperature) == (9, 0.2)
    assert tuned.backend is backend and llm.max_new_tokens == 1024
    with pytest.raises(TypeError, match="unknown PleiasLLM settings"):
        llm.with_settings(beam_width=2)
    with pytest.raises(ValueError):
        llm.with_settings(temperature=-1.0)
    data = PleiasLLM("some/model", seed=4).to_dict()
    assert data["class_name"] == "PleiasLLM"
    assert PleiasLLM.from_dict(data).seed == 4
