"""PleiasSynthesizer with a scripted backend: node mapping, annotations, bad inputs, streaming."""

from __future__ import annotations

from typing import Any

import pytest
from li_support import ScriptedBackend, hash_output, ref
from llama_index.core.base.response.schema import (
    AsyncStreamingResponse,
    Response,
    StreamingResponse,
)
from llama_index.core.schema import (
    Document,
    ImageNode,
    MediaResource,
    MetadataMode,
    NodeWithScore,
    TextNode,
)

from llama_index_pleias import PLEIAS_METADATA_KEY, PleiasLLM, PleiasSynthesizer
from llama_index_pleias.synthesizer import pleias_answer
from pleias_rag import PleiasAnswer

EIFFEL = "The Eiffel Tower is in Paris. It was completed in 1889."
LOUVRE = "The Louvre houses the Mona Lisa. It is a museum."
TEA = "Green tea comes from Camellia sinensis."
FAKE_ID = "0123456789abcdef"


def nodes() -> list[NodeWithScore]:
    return [
        NodeWithScore(node=TextNode(text=EIFFEL, metadata={"title": "Eiffel"}), score=0.9),
        NodeWithScore(node=TextNode(text=LOUVRE, metadata={"title": "Louvre"}), score=0.8),
        NodeWithScore(node=TextNode(text=TEA), score=0.1),
    ]


def two_citations(query: str, sources: Any) -> str:
    """Cites the Louvre first, then the Eiffel Tower; mentions the Eiffel Tower in the analysis."""
    by_text = {s.text.split("\n\n")[-1]: s for s in sources}
    e, lv = by_text[EIFFEL], by_text[LOUVRE]
    return hash_output(
        f"**{e.id}** gives the date.",
        "The Louvre has the Mona Lisa"
        + ref(lv, "The Louvre houses the Mona Lisa.")
        + " and the tower dates from 1889"
        + ref(e, "It was completed in 1889.")
        + ".",
    )


def synth(script: Any = two_citations, **kwargs: Any) -> tuple[PleiasSynthesizer, ScriptedBackend]:
    backend = ScriptedBackend(script)
    return PleiasSynthesizer(PleiasLLM(backend), **kwargs), backend


def test_construction_needs_no_model_and_no_settings() -> None:
    synthesizer = PleiasSynthesizer("/no/such/model", max_new_tokens=9)
    assert synthesizer.llm.max_new_tokens == 9
    assert not synthesizer.streaming


def test_only_cited_nodes_come_back_as_annotated_copies() -> None:
    synthesizer, _ = synth()
    given = nodes()
    response = synthesizer.synthesize("What is where?", given)
    assert isinstance(response, Response)
    assert response.response == "The Louvre has the Mona Lisa[1] and the tower dates from 1889[2]."
    assert [n.node_id for n in response.source_nodes] == [given[1].node_id, given[0].node_id]
    assert [n.score for n in response.source_nodes] == [0.8, 0.9]
    for out, original in zip(response.source_nodes, (given[1], given[0]), strict=True):
        assert out is not original and out.node is not original.node
        assert PLEIAS_METADATA_KEY not in original.node.metadata
        info = out.node.metadata[PLEIAS_METADATA_KEY]
        assert info["node_id"] == original.node_id
        (c,) = info["citations"]
        assert c["status"] == "verified"
        assert out.node.get_content()[c["node_start"] : c["node_end"]] == c["quote"]
        assert PLEIAS_METADATA_KEY in out.node.excluded_llm_metadata_keys
        assert PLEIAS_METADATA_KEY in out.node.excluded_embed_metadata_keys
        for mode in (MetadataMode.LLM, MetadataMode.EMBED):
            assert "citations" not in out.node.get_content(metadata_mode=mode)
    louvre_info = response.source_nodes[0].node.metadata[PLEIAS_METADATA_KEY]
    assert (louvre_info["rank"], louvre_info["relevance_score"]) == (0, 1.0)

    meta = response.metadata
    assert meta is not None
    assert meta["cited_node_ids"] == [given[1].node_id, given[0].node_id]
    assert meta["mentioned_node_ids"] == [given[0].node_id, given[1].node_id]
    assert [c["node_ids"] for c in meta["citations"]] == [[given[1].node_id], [given[0].node_id]]
    assert meta["source_analysis"].endswith("gives the date.")
    assert meta["finish_reason"] == "stop"
    assert "<ref" in meta["raw"]
    assert "pleias_answer" not in meta  # JSON-ready metadata: the answer is an attribute
    assert isinstance(pleias_answer(response), PleiasAnswer)
    assert meta["skipped_node_ids"] == [] and meta["dropped_node_ids"] == []


def test_sources_are_the_nodes_llm_text_in_order() -> None:
    synthesizer, backend = synth()
    synthesizer.synthesize("q", nodes())
    assert [s.text for s in backend.calls[-1][2]] == [
        "title: Eiffel\n\n" + EIFFEL,
        "title: Louvre\n\n" + LOUVRE,
        TEA,
    ]
    body_only, backend = synth(metadata_header=False)
    body_only.synthesize("q", nodes())
    assert [s.text for s in backend.calls[-1][2]] == [EIFFEL, LOUVRE, TEA]


def _cite_1889(query: str, sources: Any) -> str:
    return hash_output("Analysis.", "Done" + ref(sources[0], "It was completed in 1889.") + ".")


def test_the_nodes_text_template_and_excluded_keys_are_honoured() -> None:
    synthesizer, backend = synth(_cite_1889)
    node = TextNode(
        text=EIFFEL,
        metadata={"title": "Eiffel", "secret": "x"},
        excluded_llm_metadata_keys=["secret"],
        text_template="{content}\n(from {metadata_str})",
    )
    response = synthesizer.synthesize("q", [NodeWithScore(node=node, score=1.0)])
    [source] = backend.calls[-1][2]
    assert source.text == node.get_content(metadata_mode=MetadataMode.LLM)
    assert source.text == EIFFEL + "\n(from title: Eiffel)"
    [out] = response.source_nodes
    [c] = out.node.metadata[PLEIAS_METADATA_KEY]["citations"]
    assert c["status"] == "verified"
    assert EIFFEL[c["node_start"] : c["node_end"]] == c["quote"]  # the body's offsets


@pytest.mark.parametrize(
    "header",
    [True, ["title"], lambda node: f"title: {node.metadata.get('title', '')}"],
    ids=["llm-metadata", "keys", "callable"],
)
def test_metadata_header_keeps_offsets_relative_to_the_body(header: Any) -> None:
    synthesizer, backend = synth(metadata_header=header)
    given = nodes()
    response = synthesizer.synthesize("q", given)
    assert backend.calls[-1][2][0].text == "title: Eiffel\n\n" + EIFFEL
    for out in response.source_nodes:
        (c,) = out.node.metadata[PLEIAS_METADATA_KEY]["citations"]
        assert out.node.get_content()[c["node_start"] : c["node_end"]] == c["quote"]
    cits = response.metadata["citations"]  # type: ignore[index]
    assert [EIFFEL[c["node_start"] : c["node_end"]] for c in cits][1] == cits[1]["quote"]


def test_a_quote_from_the_header_gets_no_offsets() -> None:
    def cite_header(query: str, sources: Any) -> str:
        return hash_output("", "x" + ref(sources[0], "title: Eiffel") + ".")

    synthesizer, _ = synth(cite_header, metadata_header=["title"])
    response = synthesizer.synthesize("q", nodes())
    (out,) = response.source_nodes
    (c,) = out.node.metadata[PLEIAS_METADATA_KEY]["citations"]
    assert c["status"] == "verified"
    assert (c["node_start"], c["node_end"]) == (None, None)


def test_identical_texts_cite_every_node_and_a_repeated_node_once() -> None:
    def cite(query: str, sources: Any) -> str:
        return hash_output("", "x" + ref(sources[0], "It was completed in 1889.") + ".")

    synthesizer, backend = synth(cite)
    a = NodeWithScore(node=TextNode(text=EIFFEL), score=0.5)
    b = NodeWithScore(node=TextNode(text=EIFFEL), score=0.4)
    response = synthesizer.synthesize("q", [a, b, a])
    assert len(backend.calls[-1][2]) == 2
    assert [n.node_id for n in response.source_nodes] == [a.node_id, b.node_id]
    assert response.metadata["citations"][0]["node_ids"] == [a.node_id, b.node_id]  # type: ignore[index]


def test_documents_work_as_nodes() -> None:
    synthesizer, _ = synth()
    docs = [Document(text=t, id_=f"doc-{i}") for i, t in enumerate((EIFFEL, LOUVRE, TEA))]
    response = synthesizer.synthesize("q", [NodeWithScore(node=d) for d in docs])
    assert [n.node_id for n in response.source_nodes] == ["doc-1", "doc-0"]
    for out in response.source_nodes:
        (c,) = out.node.metadata[PLEIAS_METADATA_KEY]["citations"]
        assert out.node.get_content()[c["node_start"] : c["node_end"]] == c["quote"]


def test_unknown_ids_map_to_no_node_and_misattribution_is_flagged() -> None:
    def bad(query: str, sources: Any) -> str:
        lv = sources[1]
        unknown = "a" + ref(FAKE_ID, "It was completed in 1889.")
        wrong = " b" + ref(lv, "It was completed") + "."
        return hash_output("", unknown + wrong)

    synthesizer, _ = synth(bad)
    given = nodes()
    response = synthesizer.synthesize("q", given)
    unknown, wrong = response.metadata["citations"]  # type: ignore[index]
    assert (unknown["status"], unknown["node_ids"]) == ("unknown_source", [])
    assert unknown["found_in_node_ids"] == [given[0].node_id]
    assert (wrong["status"], wrong["node_ids"]) == ("misattributed", [given[1].node_id])
    assert wrong["found_in_node_ids"] == [given[0].node_id]
    # [1] names no node: a placeholder keeps [n] == source_nodes[n-1].
    placeholder, out = response.source_nodes
    assert placeholder.node.get_content() == ""
    info = placeholder.node.metadata[PLEIAS_METADATA_KEY]
    assert (info["unknown_source"], info["marker"], info["source_id"]) == (True, 1, FAKE_ID)
    # [2]'s node is the one holding the quote, with the quote's offsets in it.
    assert out.node_id == given[0].node_id
    (c,) = out.node.metadata[PLEIAS_METADATA_KEY]["citations"]
    assert c["status"] == "misattributed"
    words = out.node.get_content()[c["node_start"] : c["node_end"]]
    assert words == c["matched_text"] == "It was completed"


def test_nodes_without_text_are_skipped_or_refused() -> None:
    synthesizer, backend = synth()
    empty = NodeWithScore(node=TextNode(text="   "))
    image = NodeWithScore(node=ImageNode(image_url="https://example.org/a.png"))
    image_doc = NodeWithScore(
        node=Document(image_resource=MediaResource(url="https://example.org/b.png"))
    )
    captioned = NodeWithScore(node=ImageNode(text=TEA, image_url="https://example.org/c.png"))
    good = nodes()[:2]
    response = synthesizer.synthesize("q", [empty, *good, image, image_doc, captioned])
    assert [s.text for s in backend.calls[-1][2]][2:] == [TEA]
    skipped = [empty.node_id, image.node_id, image_doc.node_id]
    assert response.metadata["skipped_node_ids"] == skipped  # type: ignore[index]
    assert len(response.source_nodes) == 2

    strict, _ = synth(on_invalid_node="raise")
    with pytest.raises(ValueError, match="image node without text"):
        strict.synthesize("q", [*good, image])
    with pytest.raises(ValueError, match="on_invalid_node"):
        PleiasSynthesizer(PleiasLLM(ScriptedBackend(two_citations)), on_invalid_node="ignore")  # type: ignore[arg-type]


async def test_nothing_to_answer_from_gives_the_empty_response() -> None:
    synthesizer, backend = synth()
    response = synthesizer.synthesize("q", [])
    assert isinstance(response, Response)
    assert (response.response, response.source_nodes) == ("Empty Response", [])
    only_empty = [NodeWithScore(node=TextNode(text=""))]
    response = await synthesizer.asynthesize("q", only_empty)
    assert response.metadata["skipped_node_ids"] == [only_empty[0].node_id]  # type: ignore[index]
    assert backend.calls == []

    streaming, _ = synth(streaming=True, empty_response="Nothing found.")
    stream = streaming.synthesize("q", [])
    assert isinstance(stream, StreamingResponse)
    assert list(stream.response_gen) == ["Nothing found."]
    astream = await streaming.asynthesize("q", [])
    assert isinstance(astream, AsyncStreamingResponse)
    assert [t async for t in astream.async_response_gen()] == ["Nothing found."]


def test_streaming_yields_text_then_fills_nodes_and_metadata() -> None:
    synthesizer, _ = synth(streaming=True)
    given = nodes()
    response = synthesizer.synthesize("q", given)
    assert isinstance(response, StreamingResponse)
    assert response.source_nodes == [] and response.metadata == {}
    pieces = list(response.response_gen)
    assert len(pieces) > 3
    assert "".join(pieces) == "The Louvre has the Mona Lisa[1] and the tower dates from 1889[2]."
    assert [n.node_id for n in response.source_nodes] == [given[1].node_id, given[0].node_id]
    assert response.metadata["cited_node_ids"] == [given[1].node_id, given[0].node_id]  # type: ignore[index]


async def test_async_synthesis_uses_the_async_backend() -> None:
    synthesizer, backend = synth()
    given = nodes()
    response = await synthesizer.asynthesize("q", given)
    assert [n.node_id for n in response.source_nodes] == [given[1].node_id, given[0].node_id]
    streaming, backend2 = synth(streaming=True)
    stream = await streaming.asynthesize("q", given)
    assert isinstance(stream, AsyncStreamingResponse)
    text = "".join([t async for t in stream.async_response_gen()])
    assert text.endswith("1889[2].")
    assert len(stream.source_nodes) == 2
    assert stream.metadata["cited_node_ids"] == [given[1].node_id, given[0].node_id]  # type: ignore[index]
    assert [c[0] for c in backend.calls + backend2.calls] == ["aanswer", "astream"]


def test_per_call_generation_kwargs_and_additional_nodes() -> None:
    synthesizer, backend = synth(max_new_tokens=33)
    extra = NodeWithScore(node=TextNode(text="extra"))
    response = synthesizer.synthesize(
        "q", nodes(), additional_source_nodes=[extra], max_new_tokens=5, seed=1
    )
    assert backend.calls[-1][3] == {"max_new_tokens": 5, "temperature": 0.0, "seed": 1}
    assert response.source_nodes[-1] is extra
    with pytest.raises(TypeError, match="unexpected keyword"):
        synthesizer.synthesize("q", nodes(), top_k=3)


def test_text_only_interface() -> None:
    synthesizer, _ = synth()
    assert synthesizer.get_response("q", [EIFFEL, LOUVRE]).endswith("1889[2].")  # type: ignore[union-attr]
    streaming, _ = synth(streaming=True)
    assert "".join(streaming.get_response("q", [EIFFEL, LOUVRE])).endswith("1889[2].")  # type: ignore[arg-type]
