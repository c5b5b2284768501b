from pleias_rag import Source, parse_response
from pleias_rag.plain import NONE_CITED, answer_with_sources, sources_list

A = Source("The Eiffel Tower was completed in 1889.", metadata={"title": "Tower", "url": "u"})
B = Source("The Louvre houses the Mona Lisa.")


def test_answer_with_numbered_sources_and_flags() -> None:
    raw = (
        f'<|answer_start|>Built in 1889<ref name="{A.id}">"completed in 1889"</ref>'
        f'<ref name="{A.id}">"Mona Lisa"</ref>, art<ref name="{B.id}">"a Picasso"</ref>'
        ' and<ref name="ffffffffffffffff">"x"</ref>.<|answer_end|>'
    )
    text = answer_with_sources(parse_response(raw, [A, B]))
    assert text == (
        "Built in 1889[1], art[2] and[3].\n\n"
        "Sources:\n"
        '[1] Tower — u: "completed in 1889"; "Mona Lisa" (found in another source)\n'
        '[2] The Louvre houses the Mona Lisa.: "a Picasso" (not found in the source)\n'
        "[3] unknown source 'ffffffffffffffff' (not among the documents): \"x\""
    )


def test_no_citations() -> None:
    ans = parse_response("<|answer_start|>Hello!<|answer_end|>")
    assert sources_list(ans) == NONE_CITED
    assert answer_with_sources(ans, "Shown text") == f"Shown text\n\n{NONE_CITED}"
