"""ChatPleias beyond the standard suites: citations, sources, streaming, errors, tracing."""

from __future__ import annotations

import asyncio
from typing import Any
from uuid import UUID

import pytest
from langchain_core.caches import InMemoryCache
from langchain_core.callbacks import BaseCallbackHandler
from langchain_core.documents import Document
from langchain_core.messages import (
    AIMessage,
    AIMessageChunk,
    BaseMessage,
    HumanMessage,
    SystemMessage,
)
from langchain_core.messages.content import create_plaintext_block
from lc_support import ScriptedBackend, docs_of, example, hash_output, ref
from pydantic import ValidationError

from langchain_pleias import ChatPleias
from pleias_rag.sources import source_id
from pleias_rag.testing import FAKE_HASH_ID


def annotations(message: BaseMessage) -> list[dict[str, Any]]:
    texts = [b for b in message.content_blocks if b["type"] == "text"]
    assert len(texts) == 1
    return [dict(a) for a in texts[0].get("annotations", [])]


def without_index(message: BaseMessage) -> list[Any]:
    """The content blocks of a (merged) chunk as an ``invoke`` reply has them: no index."""
    assert isinstance(message.content, list)
    return [
        {k: v for k, v in b.items() if k != "index"} if isinstance(b, dict) else b
        for b in message.content
    ]


def merged(chunks: list[AIMessageChunk]) -> AIMessageChunk:
    full = chunks[0]
    for chunk in chunks[1:]:
        full = full + chunk
    return full


# --------------------------------------------------------------------------- real model


@pytest.mark.parametrize("dialect", ["hash", "numbered"])
def test_citations_are_standard_annotations(
    dialect: str, hash_model: str, numbered_model: str
) -> None:
    ex = example("cited", dialect)
    docs = docs_of(ex, source="https://example.org/page")
    chat = ChatPleias(model=hash_model if dialect == "hash" else numbered_model, max_tokens=96)
    reply = chat.invoke(ex.query, documents=docs)

    assert reply.text == "The Eiffel Tower was completed in 1889[1]."
    blocks = reply.content_blocks
    assert [b["type"] for b in blocks] == ["reasoning", "text"]
    assert blocks[0]["reasoning"]  # the source analysis (hash) / query analysis sections
    (cite,) = annotations(reply)
    eiffel = docs[0]
    assert cite["type"] == "citation"
    assert cite["id"].startswith("pleias_")  # the citation's own id
    assert cite["extras"]["cited_id"] == source_id(eiffel.page_content)
    assert cite["cited_text"] == "It was completed in 1889 for the World's Fair."
    # The span is the claim; the marker is in extras.
    assert reply.text[cite["start_index"] : cite["end_index"]] == (
        "The Eiffel Tower was completed in 1889"
    )
    assert reply.text[cite["extras"]["answer_start"] : cite["extras"]["answer_end"]] == "[1]"
    assert cite["title"] == "Doc 0"
    assert cite["url"] == "https://example.org/page"
    extras = cite["extras"]
    assert extras["status"] == "verified" and extras["match"] == "exact"
    assert eiffel.page_content[extras["source_start"] : extras["source_end"]] == cite["cited_text"]
    assert extras["written_id"] == (extras["cited_id"] if dialect == "hash" else "1")

    meta = reply.response_metadata
    assert meta["model_provider"] == "pleias"
    assert meta["model_name"] == chat.model
    assert meta["finish_reason"] == "stop"
    assert meta["cited_source_ids"] == [cite["extras"]["cited_id"]]
    assert meta["dropped_source_ids"] == [] and meta["has_answer"] is True
    usage = reply.usage_metadata
    assert usage is not None
    from pleias_rag.local import PleiasModel

    prompt = PleiasModel.from_pretrained(chat.model).encode(
        ex.query, [d.page_content for d in docs], max_new_tokens=96
    )
    assert usage["input_tokens"] == len(prompt.ids)
    assert 0 < usage["output_tokens"] <= 96
    assert usage["total_tokens"] == usage["input_tokens"] + usage["output_tokens"]


def test_sources_from_bind_and_from_text_plain_blocks(hash_model: str) -> None:
    ex = example("two_citations")
    docs = docs_of(ex)
    chat = ChatPleias(model=hash_model, max_tokens=128)
    by_kwarg = chat.invoke(ex.query, documents=docs)
    by_bind = chat.bind(documents=docs).invoke(ex.query)
    blocks = [create_plaintext_block(d.page_content, title=d.metadata["title"]) for d in docs]
    by_blocks = chat.invoke([HumanMessage([{"type": "text", "text": ex.query}, *blocks])])
    # Documents given in an earlier turn stay sources; the query is the last human text.
    conversation = [
        HumanMessage(["Read these.", *blocks]),
        AIMessage("Done."),
        SystemMessage("Not shown to the model."),
        HumanMessage(ex.query),
    ]
    by_turns = chat.invoke(conversation)
    expected = "The Moon's gravity causes the tides[1]. The Louvre houses the Mona Lisa[2]."
    for reply in (by_kwarg, by_bind, by_blocks, by_turns):
        assert reply.text == expected
        assert [a["title"] for a in annotations(reply)] == ["Doc 0", "Doc 1"]
        assert [a["extras"]["status"] for a in annotations(reply)] == ["verified"] * 2


def test_misattributed_and_unknown_ids(hash_model: str) -> None:
    chat = ChatPleias(model=hash_model, max_tokens=96)
    ex = example("misattributed")
    water, moon = docs_of(ex)
    reply = chat.invoke(ex.query, documents=[water, moon])
    (cite,) = annotations(reply)
    # The model named the moon document; the annotation points where the quote really is.
    assert cite["extras"]["cited_id"] == source_id(moon.page_content)
    assert cite["title"] == water.metadata["title"]
    assert cite["extras"]["status"] == "misattributed"
    assert cite["extras"]["found_in"] == [source_id(water.page_content)]
    start, end = cite["extras"]["source_start"], cite["extras"]["source_end"]
    assert water.page_content[start:end] == cite["cited_text"]
    assert reply.response_metadata["cited_source_ids"] == [source_id(water.page_content)]

    ex = example("unknown_id")
    reply = chat.invoke(ex.query, documents=docs_of(ex))
    (cite,) = annotations(reply)
    assert cite["extras"]["written_id"] == FAKE_HASH_ID and "title" not in cite
    assert cite["extras"]["status"] == "unknown_source"
    assert reply.response_metadata["cited_source_ids"] == []


def test_streaming_yields_clean_text_then_all_citations(hash_model: str) -> None:
    ex = example("two_citations")
    docs = docs_of(ex)
    chat = ChatPleias(model=hash_model, max_tokens=128)
    invoked = chat.invoke(ex.query, documents=docs)
    chunks = list(chat.stream(ex.query, documents=docs))
    assert len(chunks) > 2
    for chunk in chunks:
        assert "<|" not in chunk.text and "<ref" not in chunk.text and "</ref" not in chunk.text
    assert all(not b.get("annotations") for c in chunks[:-1] for b in c.content_blocks)
    assert all(c.usage_metadata is None for c in chunks[:-1])
    last = chunks[-1]
    assert last.chunk_position == "last" and len(annotations(last)) == 2
    full = merged(chunks)
    assert full.text == invoked.text and without_index(full) == invoked.content
    assert annotations(full) == annotations(invoked)
    assert full.response_metadata["model_name"] == chat.model
    assert full.usage_metadata == invoked.usage_metadata
    assert [b["type"] for b in full.content_blocks] == ["reasoning", "text"]


def test_streaming_v1_output_keeps_one_annotated_text_block(hash_model: str) -> None:
    ex = example("cited")
    chat = ChatPleias(model=hash_model, max_tokens=96, output_version="v1")
    full = merged(list(chat.stream(ex.query, documents=docs_of(ex))))
    assert full.text == "The Eiffel Tower was completed in 1889[1]."
    (cite,) = annotations(full)
    assert cite["cited_text"] == "It was completed in 1889 for the World's Fair."
    invoked = chat.invoke(ex.query, documents=docs_of(ex))
    assert isinstance(invoked.content, list)
    assert annotations(invoked) == [cite]


async def test_async_paths_match_and_do_not_block_the_loop(hash_model: str) -> None:
    ex = example("cited")
    docs = docs_of(ex)
    chat = ChatPleias(model=hash_model, max_tokens=96)
    ticks = 0
    done = False

    async def ticker() -> None:
        nonlocal ticks
        while not done:
            ticks += 1
            await asyncio.sleep(0.001)

    task = asyncio.create_task(ticker())
    reply = await chat.ainvoke(ex.query, documents=docs)
    chunks = [c async for c in chat.astream(ex.query, documents=docs)]
    done = True
    await task
    assert ticks > 5  # the loop kept running during generation
    assert reply.text == merged(chunks).text == "The Eiffel Tower was completed in 1889[1]."
    assert annotations(reply) == annotations(merged(chunks))


def test_no_answer_section_falls_back_to_the_stripped_output(hash_model: str) -> None:
    ex = example("cited")
    chat = ChatPleias(model=hash_model, max_tokens=12)
    reply = chat.invoke(ex.query, documents=docs_of(ex))
    assert reply.text and "<|" not in reply.text and "**" in reply.text
    assert reply.response_metadata["has_answer"] is False
    assert reply.response_metadata["finish_reason"] == "length"
    assert annotations(reply) == []
    assert merged(list(chat.stream(ex.query, documents=docs_of(ex)))).text == reply.text


def test_no_sources_still_answers(hash_model: str) -> None:
    chat = ChatPleias(model=hash_model, max_tokens=96)
    reply = chat.invoke("What is the capital of France?")
    assert reply.text == "The capital of France is Paris."
    assert reply.response_metadata["cited_source_ids"] == []


def test_tokens_counted_with_the_models_tokenizer(hash_model: str) -> None:
    from pleias_rag.local import PleiasModel

    chat = ChatPleias(model=hash_model)
    engine = PleiasModel.from_pretrained(hash_model)
    text = "The Eiffel Tower was completed in 1889."
    assert chat.get_num_tokens(text) == engine.count_tokens(text) > 0
    block = create_plaintext_block(text)
    assert chat.get_num_tokens_from_messages([HumanMessage(["Hello", block])]) == len(
        engine.encode("Hello", [text]).ids
    )


def test_a_backend_is_not_touched_by_construction() -> None:
    reads: list[str] = []

    class Watched(ScriptedBackend):
        @property
        def dialect(self) -> str:  # type: ignore[override]
            reads.append("dialect")  # a local engine loads its tokenizer here
            return "hash"

    backend = Watched({}, default=hash_output("x", "Hi."))
    chat = ChatPleias(model=backend, max_tokens=64)
    assert chat._get_ls_params()["ls_model_name"] == "scripted-pleias"
    assert reads == []
    assert chat.invoke("Hello").text == "Hi."


# --------------------------------------------------------------------------- no model needed


def test_constructing_is_cheap_and_lazy() -> None:
    chat = ChatPleias(model="no-such-org/no-such-model", timeout=5, max_retries=1, api_key="x")
    assert chat._backend is None
    assert chat._get_ls_params(stop=["x"]) == {
        "ls_provider": "pleias",
        "ls_model_name": "no-such-org/no-such-model",
        "ls_model_type": "chat",
        "ls_temperature": 0.0,
        "ls_stop": ["x"],
    }


def test_bad_settings_are_rejected() -> None:
    with pytest.raises(ValidationError, match="max_new_token"):
        ChatPleias(model="m", max_new_token=5)
    with pytest.raises(ValidationError, match="not both"):
        ChatPleias(model="m", max_tokens=5, max_new_tokens=6)
    with pytest.raises(ValidationError):
        ChatPleias(model="m", temperature=-1)
    with pytest.raises(ValidationError, match="model is empty"):
        ChatPleias(model=" ")
    with pytest.raises(ValidationError, match="unknown dialect"):
        ChatPleias(model="m", dialect="chatml")
    with pytest.raises(ValidationError, match="a pleias_rag Backend"):
        ChatPleias(model=object())
    assert ChatPleias(model="m", max_new_tokens=7).max_tokens == 7


@pytest.mark.parametrize(
    ("messages", "kwargs", "error"),
    [
        ([SystemMessage("You are helpful.")], {}, "needs a human message"),
        ([HumanMessage("   ")], {}, "no text"),
        ([HumanMessage([{"type": "image", "url": "http://x/y.png"}])], {}, "text only"),
        ([HumanMessage("q")], {"documents": ["a plain string"]}, r"documents\[0\] is a str"),
        ([HumanMessage("q")], {"documents": Document("one")}, "must be a list"),
        ([HumanMessage(["q", create_plaintext_block(url="http://x")])], {}, "not fetched"),
        ([HumanMessage("q")], {"tools": [{"name": "t"}]}, "unexpected argument"),
    ],
)
def test_bad_inputs_give_clear_errors(
    messages: list[BaseMessage], kwargs: dict[str, Any], error: str
) -> None:
    chat = ChatPleias(model=ScriptedBackend({}, default="x"))
    with pytest.raises(ValueError, match=error):
        chat.invoke(messages, **kwargs)
    with pytest.raises(ValueError, match=error):
        list(chat.stream(messages, **kwargs))


class _Recorder(BaseCallbackHandler):
    def __init__(self) -> None:
        self.params: list[dict[str, Any]] = []

    def on_chat_model_start(
        self,
        serialized: dict[str, Any],
        messages: list[list[BaseMessage]],
        *,
        run_id: UUID,
        **kwargs: Any,
    ) -> None:
        self.params.append(kwargs["invocation_params"])


def test_traces_and_cache_keys_carry_source_ids_not_documents() -> None:
    docs = [Document("First text about bees."), Document("Second text.", metadata={"k": 1})]
    ids = [source_id(d.page_content) for d in docs]
    backend = ScriptedBackend(
        {"q": hash_output("x", "Bees" + ref(ids[0], "First text") + ".")}, default="other"
    )
    cache = InMemoryCache()
    chat = ChatPleias(model=backend, cache=cache)
    recorder = _Recorder()
    chat.invoke("q", documents=docs, config={"callbacks": [recorder]})
    list(chat.stream("q", documents=docs, config={"callbacks": [recorder]}))
    for params in recorder.params:
        assert params["documents"][0] == ids[0]
        assert params["documents"][1].startswith(ids[1] + ":")  # metadata fingerprint
        assert "First text" not in repr(params)
    (llm_string,) = {key[1] for key in cache._cache}
    assert ids[0] in llm_string and "First text" not in llm_string
    # Other documents make another cache entry, not a stale hit.
    reply = chat.invoke("q", documents=[Document("Unrelated.")])
    assert annotations(reply)[0]["extras"]["status"] == "unknown_source"
    assert len(cache._cache) == 2


def test_a_backend_object_is_used_as_is() -> None:
    doc = Document("Honey bees dance.", metadata={"title": "Bees"})
    backend = ScriptedBackend(
        {"How?": hash_output("ok", "They dance" + ref(source_id(doc.page_content), "bees dance"))}
    )
    chat = ChatPleias(model=backend, max_tokens=10, temperature=0.5, seed=3, stop=["STOP"])
    reply = chat.invoke("How?", documents=[doc], top_p=0.9, max_tokens=20)
    assert reply.text == "They dance[1]"
    assert reply.response_metadata["model_name"] == "scripted-pleias"
    kind, (query, sources, gen) = backend.calls[-1]
    assert (kind, query, sources[0].ref) == ("answer", "How?", doc)
    assert gen == {
        "temperature": 0.5,
        "seed": 3,
        "max_new_tokens": 20,
        "top_p": 0.9,
        "stop": ["STOP"],
    }
    assert chat._get_ls_params()["ls_model_name"] == "scripted-pleias"
