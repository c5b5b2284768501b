from pleias_rag import Source, parse_response
from pleias_rag.ranking import cited_uses, source_uses

A, B, C, D = (Source(t) for t in ("Alpha text here.", "Beta text here.", "Gamma.", "Delta."))


def test_cited_then_mentioned_then_unused() -> None:
    raw = (
        f"**{C.id}** and **{B.id}** matter.<|source_analysis_end|><|answer_start|>"
        f'x<ref name="{B.id}">"Beta text"</ref> y<ref name="{A.id}">"Gamma."</ref>.<|answer_end|>'
    )
    ans = parse_response(raw, [A, B, C, D])
    uses = source_uses(ans)
    # The quote cited as A is C's: C gets the credit, A only counts as mentioned.
    assert [u.source for u in uses] == [B, C, A, D]
    assert [u.score for u in uses] == [1.0, 1.0, 0.5, 0.0]
    assert [u.rank for u in uses] == [0, 1, 2, 3]
    assert uses[1].citations[0].status == "misattributed"
    (b, c) = cited_uses(ans)
    assert b.annotations()["citations"][0]["source_start"] == 0
    assert b.annotations()["citations"][0]["quote"] == "Beta text"
    assert c.source is C
    (entry,) = c.annotations()["citations"]
    assert C.text[entry["source_start"] : entry["source_end"]] == entry["matched_text"] == "Gamma."


def test_unknown_ids_never_attach_to_a_source() -> None:
    raw = '<|answer_start|>x<ref name="ffffffffffffffff">"Alpha text"</ref>.'
    ans = parse_response(raw, [A, B])
    assert cited_uses(ans) == []
    assert all(not u.cited for u in source_uses(ans))


def test_approximate_quotes_are_not_credited_as_verified_ones() -> None:
    e = Source("The Eiffel Tower was completed in 1889 for the World's Fair in Paris.")
    raw = (
        f"**{C.id}** matters.<|source_analysis_end|><|answer_start|>"
        f'x<ref name="{e.id}">"The Eiffel Tower was finished in 1889 for the World\'s Fair"</ref>'
        f' y<ref name="{B.id}">"Beta text"</ref>.<|answer_end|>'
    )
    ans = parse_response(raw, [e, B, C])
    assert [c.status for c in ans.citations] == ["approximate", "verified"]
    uses = source_uses(ans)
    # Cited first, but its only quote is close, not its words: after the verified source.
    assert [(u.source, u.score) for u in uses] == [(B, 1.0), (e, 0.75), (C, 0.5)]
    assert [u.source for u in cited_uses(ans)] == [B, e]
