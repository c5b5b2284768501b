"""What LangChain users see of the verification: the source's words as ``cited_text``, the
model's quote beside them, annotations pointing where the quote really is, rankings that credit
it there, and no answer text lost to a ref left open."""

from __future__ import annotations

from typing import Any

import pytest
from langchain_core.documents import Document
from lc_support import ScriptedBackend, hash_output, ref

from langchain_pleias import ChatPleias, PleiasReranker
from langchain_pleias._compat import citation_annotations
from langchain_pleias._convert import documents_to_sources, rebuild_answer
from pleias_rag import Source, parse_response
from pleias_rag.sources import source_id

TOWER = Document(
    "The Eiffel Tower was completed in 1889 for the World's Fair.", metadata={"title": "Tower"}
)
BRIDGE = Document("The bridge is not closed on Sundays.", metadata={"title": "Bridge"})
TI, BI = source_id(TOWER.page_content), source_id(BRIDGE.page_content)
QUERY = "Claim: the tower opened in 1890. Is it true?"


def annotations(reply: Any) -> list[dict[str, Any]]:
    (text,) = [b for b in reply.content_blocks if b["type"] == "text"]
    return list(text.get("annotations", []))


def test_cited_text_is_the_source_and_the_quote_stays() -> None:
    raw = hash_output(
        "x",
        "It was done in 1889"
        + ref(TI, "The Eiffel Tower was finished in 1889 for the World's Fair")
        + ". It opened in 1890" + ref(TI, "the tower opened in 1890") + ".",
    )  # fmt: skip
    chat = ChatPleias(model=ScriptedBackend({QUERY: raw}))
    approx, copied = annotations(chat.invoke(QUERY, documents=[TOWER, BRIDGE]))
    assert approx["extras"]["status"] == "approximate"
    assert approx["cited_text"] == "The Eiffel Tower was completed in 1889 for the World's Fair"
    assert approx["extras"]["quote"] == "The Eiffel Tower was finished in 1889 for the World's Fair"
    assert approx["extras"]["changes"] == [
        {"op": "replace", "quote": "finished", "source": "completed"}
    ]
    start, end = approx["extras"]["source_start"], approx["extras"]["source_end"]
    assert TOWER.page_content[start:end] == approx["cited_text"]
    assert copied["extras"]["status"] == "from_query"
    assert copied["cited_text"] == copied["extras"]["quote"] == "the tower opened in 1890"
    assert "query" in copied["extras"]["note"]


def test_misattributed_points_where_the_quote_is_and_ranks_it() -> None:
    raw = hash_output(
        "x",
        "Closed" + ref(TI, "The bridge is not closed on Sundays") + " and open"
        + ref(BI, "open every day of the year") + ".",
    )  # fmt: skip
    backend = ScriptedBackend({"q": raw})
    reply = ChatPleias(model=backend).invoke("q", documents=[TOWER, BRIDGE])
    mis, unverified = annotations(reply)
    assert (mis["extras"]["found_in"], mis["title"], mis["extras"]["cited_id"]) == (
        [BI],
        "Bridge",
        TI,
    )
    assert unverified["extras"]["status"] == "unverified"
    assert unverified["extras"]["cited_id"] == BI and unverified["title"] == "Bridge"
    assert mis["id"] != unverified["id"]  # each citation its own id
    assert reply.response_metadata["cited_source_ids"] == [BI]
    ranked = PleiasReranker(model=backend, keep_unused=True).compress_documents(
        [TOWER, BRIDGE], "q"
    )
    assert [(d.metadata["title"], d.metadata["relevance_score"]) for d in ranked] == [
        ("Bridge", 1.0),
        ("Tower", 0.5),
    ]
    (entry,) = ranked[0].metadata["pleias_citations"]
    assert BRIDGE.page_content[entry["source_start"] : entry["source_end"]] == entry["matched_text"]
    assert entry["status"] == "misattributed"


@pytest.mark.parametrize("chunked", [False, True])
def test_text_after_a_ref_left_open_is_kept(chunked: bool) -> None:
    raw = hash_output(
        "x", "Built in 1889" + f'<ref name="{TI}">"completed in 1889" for the fair, and'
        + " that is all."
    )  # fmt: skip
    chat = ChatPleias(model=ScriptedBackend({"q": raw}))
    if chunked:
        text = "".join(c.text for c in chat.stream("q", documents=[TOWER]))
    else:
        text = chat.invoke("q", documents=[TOWER]).text
    assert text == "Built in 1889[1] for the fair, and that is all."


def test_annotations_round_trip_to_the_same_citations() -> None:
    sources = [Source(TOWER.page_content, metadata={"title": "Tower"}), Source(BRIDGE.page_content)]
    raw = hash_output(
        "x",
        "a" + ref(TI, "completed in 1889")
        + " b" + ref(TI, "The Eiffel Tower (…) for the World's Fair")
        + " c" + ref(TI, "The Eiffel Tower was finished in 1889 for the World's Fair")
        + " d" + ref(TI, "The bridge is not closed on Sundays") + " e" + ref(BI, "open all year")
        + " f" + ref("ffffffffffffffff", "the tower opened in 1890") + " g"
        + ref(BI, "the tower opened in 1890") + ".",
    )  # fmt: skip
    ans = parse_response(raw, sources, "hash", query=QUERY)
    statuses = [c.status for c in ans.citations]
    assert statuses == [
        "verified", "verified", "approximate", "misattributed", "unverified", "unknown_source",
        "from_query",
    ]  # fmt: skip
    blocks = citation_annotations(ans)
    back = rebuild_answer(ans.answer, blocks, ans.mentioned_ids, sources)
    assert back.citations == ans.citations


# Every status, and an unknown id whose quote is in a source (found_in, found_start/found_end).
EVERY_STATUS = hash_output(
    "x",
    "a" + ref(TI, "completed in 1889")
    + " b" + ref(TI, "The Eiffel Tower (…) for the World's Fair")
    + " c" + ref(TI, "The Eiffel Tower was finished in 1889 for the World's Fair")
    + " d" + ref(TI, "The bridge is not closed on Sundays") + " e" + ref(BI, "open all year")
    + " f" + ref("ffffffffffffffff", "the tower opened in 1890")
    + " g" + ref("eeeeeeeeeeeeeeee", "is not closed on Sundays")
    + " h" + ref(BI, "the tower opened in 1890") + ".",
)  # fmt: skip


@pytest.mark.parametrize("streamed", [False, True])
def test_reply_annotations_decode_to_the_same_citation_dicts(streamed: bool) -> None:
    chat = ChatPleias(model=ScriptedBackend({QUERY: EVERY_STATUS}))
    docs = [TOWER, BRIDGE]
    if streamed:
        reply: Any = None
        for chunk in chat.stream(QUERY, documents=docs):
            reply = chunk if reply is None else reply + chunk
    else:
        reply = chat.invoke(QUERY, documents=docs)
    sources = documents_to_sources(docs)
    expected = parse_response(EVERY_STATUS, sources, "hash", start="source_analysis", query=QUERY)
    assert {c.status for c in expected.citations} == {
        "verified", "approximate", "misattributed", "unverified", "unknown_source", "from_query",
    }  # fmt: skip
    unknown = [c for c in expected.citations if c.status == "unknown_source" and c.found_in]
    assert unknown and unknown[0].found_start is not None
    # The extras of each standard annotation are the core citation dict...
    blocks = annotations(reply)
    assert [b["extras"] for b in blocks] == [c.to_dict() for c in expected.citations]
    # ... and decoding the reply gives back the same citations, pointing at the documents.
    meta = reply.response_metadata
    back = rebuild_answer(reply.text, blocks, meta["mentioned_source_ids"], sources)
    assert [c.to_dict() for c in back.citations] == [c.to_dict() for c in expected.citations]
    assert back.citations == expected.citations
