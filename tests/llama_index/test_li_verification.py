"""What LlamaIndex users see of the verification: the source's words in ``CitationBlock`` s
and node metadata, the node that really holds a misattributed quote, and no answer text lost
to a ref left open."""

from __future__ import annotations

from typing import Any

from li_support import ScriptedBackend, hash_output, ref
from llama_index.core.base.llms.types import (
    ChatMessage,
    CitableBlock,
    CitationBlock,
    MessageRole,
    TextBlock,
)
from llama_index.core.schema import NodeWithScore, TextNode

from llama_index_pleias import PLEIAS_METADATA_KEY, PleiasLLM, PleiasSynthesizer
from llama_index_pleias.synthesizer import pleias_answer
from pleias_rag import Citation, PleiasAnswer

TOWER = "The Eiffel Tower was completed in 1889 for the World's Fair."
BRIDGE = "The bridge is not closed on Sundays."


def by_text(sources: Any) -> dict[str, Any]:
    return {s.text.split("\n\n")[-1]: s for s in sources}


def script(query: str, sources: Any) -> str:
    s = by_text(sources)
    tower, bridge = s[TOWER], s[BRIDGE]
    return hash_output(
        "x",
        "Done in 1889" + ref(tower, "The Eiffel Tower was finished in 1889 for the World's Fair")
        + ", closed" + ref(tower, "The bridge is not closed on Sundays")
        + f' and open<ref name="{bridge.id}">"open all year" say some, but not all.',
    )  # fmt: skip


def test_synthesizer_shows_source_words_and_credits_the_real_node() -> None:
    nodes = [
        NodeWithScore(node=TextNode(text=TOWER, id_="tower"), score=0.9),
        NodeWithScore(node=TextNode(text=BRIDGE, id_="bridge"), score=0.8),
    ]
    response = PleiasSynthesizer(PleiasLLM(ScriptedBackend(script))).synthesize("q", nodes)
    assert response.response == "Done in 1889[1], closed[1] and open[2] say some, but not all."
    assert response.metadata is not None
    approx, mis, unverified = response.metadata["citations"]
    assert approx["status"] == "approximate" and approx["quote"] != approx["matched_text"]
    assert approx["matched_text"] == TOWER[:-1]
    assert (mis["status"], mis["found_in_node_ids"]) == ("misattributed", ["bridge"])
    assert unverified["status"] == "unverified"
    out = {n.node_id: n for n in response.source_nodes}
    assert sorted(out) == ["bridge", "tower"]  # the bridge node holds the misattributed quote
    for node in out.values():
        for c in node.node.metadata[PLEIAS_METADATA_KEY]["citations"]:
            assert node.node.get_content()[c["node_start"] : c["node_end"]] == c["matched_text"]
    statuses = [c["status"] for c in out["bridge"].node.metadata[PLEIAS_METADATA_KEY]["citations"]]
    assert statuses == ["misattributed"]  # the unverified quote credits nothing


def test_citation_blocks_carry_the_source_words() -> None:
    message = ChatMessage(
        role=MessageRole.USER,
        blocks=[
            CitableBlock(title="Tower", source="t", content=[TextBlock(text=TOWER)]),
            CitableBlock(title="Bridge", source="b", content=[TextBlock(text=BRIDGE)]),
            TextBlock(text="What is closed?"),
        ],
    )
    response = PleiasLLM(ScriptedBackend(script)).chat([message])
    blocks = [b for b in response.message.blocks if isinstance(b, CitationBlock)]
    approx, mis, unverified = blocks
    assert isinstance(approx.cited_content, TextBlock)
    assert approx.cited_content.text == TOWER[:-1]
    loc = approx.additional_location_info
    assert TOWER[loc["start_char_index"] : loc["end_char_index"]] == TOWER[:-1]
    assert (mis.source, mis.title) == ("b", "Bridge")  # where the quote is, not "t"
    assert isinstance(unverified.cited_content, TextBlock)
    assert unverified.cited_content.text == "open all year"  # no source words: the quote
    assert "start_char_index" not in unverified.additional_location_info


def test_metadata_citations_decode_to_the_same_citation_dicts() -> None:
    def every_status(query: str, sources: Any) -> str:
        s = by_text(sources)
        tower, bridge = s[TOWER], s[BRIDGE]
        return hash_output(
            "x",
            "a" + ref(tower, "completed in 1889")
            + " b" + ref(tower, "The Eiffel Tower was finished in 1889 for the World's Fair")
            + " c" + ref(tower, "The bridge is not closed on Sundays")
            + " d" + ref(bridge, "open all year")
            + " e" + ref("eeeeeeeeeeeeeeee", "is not closed on Sundays")
            + " f" + ref(bridge, "the bridge opens at dawn, is that right") + ".",
        )  # fmt: skip

    nodes = [
        NodeWithScore(node=TextNode(text=TOWER, id_="tower"), score=0.9),
        NodeWithScore(node=TextNode(text=BRIDGE, id_="bridge"), score=0.8),
    ]
    query = "Claim: the bridge opens at dawn, is that right?"
    synth = PleiasSynthesizer(PleiasLLM(ScriptedBackend(every_status)))
    response = synth.synthesize(query, nodes)
    assert response.metadata is not None
    answer = pleias_answer(response)
    assert isinstance(answer, PleiasAnswer)
    assert {c.status for c in answer.citations} == {
        "verified", "approximate", "misattributed", "unverified", "unknown_source", "from_query",
    }  # fmt: skip
    # The response metadata holds the core citation dicts, with node keys added...
    cited = response.metadata["citations"]
    expected = [c.to_dict() for c in answer.citations]
    assert [{k: c[k] for k in expected[0]} for c in cited] == expected
    # ... which the core reads back to the same citations.
    back = [Citation.from_dict(c, answer.sources) for c in cited]
    assert back == list(answer.citations)
    # Node metadata: the dicts of the citations each node holds, offsets in its body.
    for node in response.source_nodes:
        for c in node.node.metadata[PLEIAS_METADATA_KEY]["citations"]:
            (same,) = [d for d in expected if d["answer_start"] == c["answer_start"]]
            assert {k: c[k] for k in same} == same
            assert node.node.get_content()[c["node_start"] : c["node_end"]] == c["matched_text"]
