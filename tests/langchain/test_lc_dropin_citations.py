"""Issue 14, "citations live in the message": a ``ChatPleias`` reply carries its reasoning and
its standard ``Citation`` annotations in its content, readable without this package; each
annotation spans its claim; the analysis reads like the answer; streaming keeps the blocks'
order; tools and structured output fail saying what to use instead."""

from __future__ import annotations

import itertools
import json
import os
import subprocess
import sys
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from langchain_core.documents import Document
from langchain_core.load import dumpd
from langchain_core.messages import AIMessage, AIMessageChunk, BaseMessage, messages_to_dict
from langchain_core.tools import tool
from lc_support import ScriptedBackend, docs_of, example, hash_output, ref

from langchain_pleias import ChatPleias
from langchain_pleias._convert import documents_to_sources, rebuild_answer
from pleias_rag.sources import Source, source_id
from pleias_rag.views.labels import source_label

EIFFEL = "The Eiffel Tower was completed in 1889[1]."


def text_block(message: BaseMessage) -> dict[str, Any]:
    (block,) = [b for b in message.content_blocks if b["type"] == "text"]
    return dict(block)


def without_index(blocks: Any) -> list[Any]:
    return [{k: v for k, v in b.items() if k != "index"} for b in blocks]


def summed(chunks: list[AIMessageChunk]) -> AIMessageChunk:
    full = chunks[0]
    for chunk in chunks[1:]:
        full = full + chunk
    return full


# --------------------------------------------------------------------------- row 1


_READER = """
import json, sys
from langchain_core.load import loads
from langchain_core.messages import messages_from_dict
data = json.load(sys.stdin)
out = {}
for how, message in (
    ("messages_from_dict", messages_from_dict(data["dicts"])[0]),
    ("loads", loads(data["dumped"])),
):
    blocks = message.content_blocks
    text = [b for b in blocks if b["type"] == "text"]
    out[how] = {
        "types": [b["type"] for b in blocks],
        "text": message.text,
        "annotations": text[0].get("annotations", []) if text else [],
        "reasoning": [b["reasoning"] for b in blocks if b["type"] == "reasoning"],
    }
out["imported"] = sorted(m for m in sys.modules if m.startswith(("langchain_pleias", "pleias")))
print(json.dumps(out))
"""


def test_a_serialized_reply_keeps_its_citations_without_this_package(hash_model: str) -> None:
    ex = example("cited")
    reply = ChatPleias(model=hash_model, max_tokens=96).invoke(ex.query, documents=docs_of(ex))
    # In the content itself: a reasoning block, then the text block with the annotations.
    assert isinstance(reply.content, list)
    assert [b["type"] for b in reply.content if isinstance(b, dict)] == ["reasoning", "text"]
    assert reply.text == EIFFEL
    assert reply.content_blocks == reply.content
    assert "citations" not in reply.additional_kwargs
    assert "reasoning_content" not in reply.additional_kwargs

    payload = json.dumps({"dicts": messages_to_dict([reply]), "dumped": json.dumps(dumpd(reply))})
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    done = subprocess.run(
        [sys.executable, "-c", _READER],
        input=payload,
        capture_output=True,
        text=True,
        env=env,
        cwd="/",
        check=True,
    )
    out = json.loads(done.stdout)
    assert out["imported"] == []  # neither langchain_pleias nor pleias_rag was imported
    expected = text_block(reply)["annotations"]
    for how in ("messages_from_dict", "loads"):
        read = out[how]
        assert read["types"] == ["reasoning", "text"], how
        assert read["text"] == EIFFEL
        assert read["annotations"] == expected
        assert read["annotations"][0]["extras"]["status"] == "verified"
        assert read["reasoning"] == [reply.content_blocks[0]["reasoning"]]


# --------------------------------------------------------------------------- row 2


def test_each_annotation_is_a_standard_citation_of_its_claim(hash_model: str) -> None:
    ex = example("two_citations")
    docs = docs_of(ex, source="https://example.org/page")
    reply = ChatPleias(model=hash_model, max_tokens=128).invoke(ex.query, documents=docs)
    assert (
        reply.text == "The Moon's gravity causes the tides[1]. The Louvre houses the Mona Lisa[2]."
    )
    moon, louvre = text_block(reply)["annotations"]
    assert moon["id"] != louvre["id"]  # one id per citation
    claims = [reply.text[a["start_index"] : a["end_index"]] for a in (moon, louvre)]
    assert claims == ["The Moon's gravity causes the tides", "The Louvre houses the Mona Lisa"]
    markers = [
        reply.text[a["extras"]["answer_start"] : a["extras"]["answer_end"]] for a in (moon, louvre)
    ]
    assert markers == ["[1]", "[2]"]
    for ann, doc in zip((moon, louvre), docs[:2], strict=True):
        assert ann["type"] == "citation"
        assert ann["title"] == doc.metadata["title"] and ann["url"] == "https://example.org/page"
        extras = ann["extras"]
        assert extras["cited_id"] == source_id(doc.page_content)
        assert doc.page_content[extras["source_start"] : extras["source_end"]] == ann["cited_text"]
    # Decoded, the annotations give back the reply's citations.
    sources = documents_to_sources(docs)
    back = rebuild_answer(reply.text, [moon, louvre], [], sources)
    assert [c.to_dict() for c in back.citations] == [moon["extras"], louvre["extras"]]
    assert [c.source.ref for c in back.citations if c.source] == docs[:2]


def test_a_claim_runs_from_the_previous_marker_or_the_sentence_start() -> None:
    doc = "The tower is in Paris. It was completed in 1889 for the fair."
    sid = source_id(doc)
    answer = (
        "Intro. It is in Paris" + ref(sid, "The tower is in Paris")
        + ", finished in 1889" + ref(sid, "It was completed in 1889")
        + ref("ffffffffffffffff", "for the fair") + "."
    )  # fmt: skip
    backend = ScriptedBackend({"q": hash_output("x", answer)})
    reply = ChatPleias(model=backend).invoke("q", documents=[Document(doc)])
    assert reply.text == "Intro. It is in Paris[1], finished in 1889[1][2]."
    anns = text_block(reply)["annotations"]
    assert len({a["id"] for a in anns}) == 3
    claims = [reply.text[a["start_index"] : a["end_index"]] for a in anns]
    # Not "Intro.": the sentence starts after it; the adjacent markers share their claim.
    assert claims == ["It is in Paris", "finished in 1889", "finished in 1889"]


# --------------------------------------------------------------------------- row 3


@pytest.mark.parametrize("dialect", ["hash", "numbered"])
def test_the_reasoning_names_sources_by_their_titles(
    dialect: str, hash_model: str, numbered_model: str
) -> None:
    ex = example("cited", dialect)
    chat = ChatPleias(model=hash_model if dialect == "hash" else numbered_model, max_tokens=96)
    reply = chat.invoke(ex.query, documents=docs_of(ex))
    reasoning = reply.content_blocks[0]["reasoning"]
    # The analysis named the sources by their ids (or <|source_id|>N): titles instead, the
    # same while it streams (the answer's [n] are not known then).
    assert "<|" not in reasoning
    assert not any(source_id(t) in reasoning for t in ex.sources)
    assert "Doc 0" in reasoning and "Doc 1" in reasoning
    untitled = chat.invoke(ex.query, documents=[Document(t) for t in ex.sources])
    shown = untitled.content_blocks[0]["reasoning"]
    assert "source 1" not in shown  # no title: its first words, never a number
    assert source_label(Source(ex.sources[0])) in shown


def test_the_reasoning_never_numbers_sources_against_the_answer() -> None:
    """Untitled sources (the tutorial chain's system context) cited in another order than
    given: the reasoning must not call the second one "source 2" while the answer calls it
    [1]; it writes each source's label, the same in the stream."""
    bees, ants = Document("Honey bees dance."), Document("Ants walk in lines.")
    ia, ib = source_id(bees.page_content), source_id(ants.page_content)
    raw = hash_output(
        f"**{ib}** is about ants, **{ia}** about bees.",
        "Ants walk" + ref(ib, "Ants walk") + ". Bees dance" + ref(ia, "bees dance") + ".",
    )
    chat = ChatPleias(model=ScriptedBackend({"q": raw}))
    reply = chat.invoke("q", documents=[bees, ants])
    assert reply.text == "Ants walk[1]. Bees dance[2]."
    reasoning = reply.content_blocks[0]["reasoning"]
    assert reasoning == "**Ants walk in lines.** is about ants, **Honey bees dance.** about bees."
    assert "source" not in reasoning
    streamed = summed(list(chat.stream("q", documents=[bees, ants])))
    assert streamed.content_blocks[0]["reasoning"] == reasoning


# --------------------------------------------------------------------------- row 4


def test_reasoning_tokens_count_the_analysis(hash_model: str) -> None:
    ex = example("cited")
    chat = ChatPleias(model=hash_model, max_tokens=96)
    reply = chat.invoke(ex.query, documents=docs_of(ex))
    usage = reply.usage_metadata
    assert usage is not None
    # The analysis as the model wrote it (the trained output, before its end marker).
    raw = ex.output.split("<|source_analysis_end|>")[0].strip()
    assert raw.startswith("**3d7e01b5f07bd1f4**")
    reasoning = usage.get("output_token_details", {}).get("reasoning")
    assert reasoning == chat.get_num_tokens(raw)
    assert 0 < reasoning < usage["output_tokens"]


# --------------------------------------------------------------------------- row 5


@pytest.mark.parametrize("dialect", ["hash", "numbered"])
def test_stream_adds_up_to_invoke_in_the_same_block_order(
    dialect: str, hash_model: str, numbered_model: str
) -> None:
    ex = example("two_citations", dialect)
    chat = ChatPleias(model=hash_model if dialect == "hash" else numbered_model, max_tokens=128)
    invoked = chat.invoke(ex.query, documents=docs_of(ex))
    chunks = list(chat.stream(ex.query, documents=docs_of(ex)))
    kinds = [b["type"] for c in chunks for b in c.content_blocks]
    # The reasoning block opens first, then the answer text; citations at the end.
    assert kinds[0] == "reasoning" and kinds.index("text") > 0
    assert all(not b.get("annotations") for c in chunks[:-1] for b in c.content_blocks)
    full = summed(chunks)
    assert full.text == invoked.text
    assert without_index(full.content) == invoked.content
    assert without_index(full.content_blocks) == invoked.content_blocks
    assert full.usage_metadata == invoked.usage_metadata
    assert full.additional_kwargs == invoked.additional_kwargs
    # The analysis streams while it is generated: most of it before the first answer text.
    reasoning = [
        (n, b["reasoning"])
        for n, c in enumerate(chunks)
        for b in c.content_blocks
        if b["type"] == "reasoning" and b["reasoning"]
    ]
    first_text = next(n for n, c in enumerate(chunks) if c.text)
    early = "".join(r for n, r in reasoning if n < first_text)
    assert len([n for n, _ in reasoning if n < first_text]) > 3
    assert len(early) > 0.8 * len(invoked.content_blocks[0]["reasoning"])


async def test_astream_adds_up_to_ainvoke(hash_model: str) -> None:
    ex = example("cited")
    chat = ChatPleias(model=hash_model, max_tokens=96)
    invoked = await chat.ainvoke(ex.query, documents=docs_of(ex))
    chunks = [c async for c in chat.astream(ex.query, documents=docs_of(ex))]
    assert without_index(summed(chunks).content) == invoked.content


def test_invoke_with_streaming_gives_the_same_blocks(hash_model: str) -> None:
    ex = example("cited")
    plain = ChatPleias(model=hash_model, max_tokens=96).invoke(ex.query, documents=docs_of(ex))
    chat = ChatPleias(model=hash_model, max_tokens=96, streaming=True)
    streamed = chat.invoke(ex.query, documents=docs_of(ex))
    assert isinstance(streamed, AIMessage)
    assert without_index(streamed.content) == plain.content


# --------------------------------------------------------------------------- row 6


def test_bind_tools_says_what_to_use_instead() -> None:
    @tool
    def search(query: str) -> str:
        """Search."""
        return query

    chat = ChatPleias(model=ScriptedBackend({}))
    with pytest.raises(NotImplementedError) as err:
        chat.bind_tools([search])
    assert "create_pleias_rag_tool" in str(err.value) and "tools" in str(err.value)

    from langchain.agents import create_agent

    with pytest.raises(NotImplementedError) as err:
        agent = create_agent(model=chat, tools=[search])
        agent.invoke({"messages": [("user", "hi")]})
    assert "create_pleias_rag_tool" in str(err.value)


def test_with_structured_output_says_what_to_use_instead() -> None:
    chat = ChatPleias(model=ScriptedBackend({}))
    with pytest.raises(NotImplementedError) as err:
        chat.with_structured_output({"title": "Answer", "type": "object", "properties": {}})
    message = str(err.value)
    assert "structured output" in message and "citations" in message
    assert "create_pleias_rag_tool" in message


@settings(max_examples=200, deadline=None)
@given(st.lists(st.integers(min_value=0, max_value=400), max_size=12), st.booleans())
def test_the_reasoning_stream_renders_as_the_whole_under_any_chunking(
    cuts: list[int], numbered: bool
) -> None:
    from langchain_pleias._compat import ReasoningStream, readable_analysis
    from pleias_rag import SectionText, StreamParser

    sources = [Source("The tides.", metadata={"title": "Tides"}), Source("The Louvre.")]
    a, b = ("<|source_id|> 1", "<|source_id|>2") if numbered else (sources[0].id, sources[1].id)
    raw = (
        f"\n**{a}** explains the tides;{b} names a museum\n\n and x{a} is no id."
        "<|source_analysis_end|>\n<|answer_start|>Yes.<|answer_end|>"
    )
    bounds = [0, *sorted(c % (len(raw) + 1) for c in cuts), len(raw)]
    parser = StreamParser(sources, "hash", start="source_analysis")
    stream, shown = ReasoningStream(sources), ""
    for lo, hi in itertools.pairwise(bounds):
        for event in parser.feed(raw[lo:hi]):
            if isinstance(event, SectionText):
                shown += stream.feed(event.section, event.text)
    parser.close()
    answer = parser.result
    assert shown + stream.rest(answer) == readable_analysis(answer)
    assert "Tides" in readable_analysis(answer) and "The Louvre." in readable_analysis(answer)
