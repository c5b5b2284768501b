"""The views of an answer (one labelling rule) and the one citation dict they share."""

from __future__ import annotations

import ast
import json
from pathlib import Path

import pleias_rag
from pleias_rag import Citation, Source, parse_response
from pleias_rag.views import citation_label, source_label

TOWER = Source("The Eiffel Tower was completed in 1889 for the World's Fair.")
BRIDGE = Source("The bridge is not closed on Sundays.", metadata={"title": "Bridge"})
QUERY = "Claim: the tower opened in 1890. Is it true?"


def ref(source_id: str, quote: str) -> str:
    return f'<ref name="{source_id}">"{quote}"</ref>'


RAW = (
    "x<|source_analysis_end|><|answer_start|>"
    + "a" + ref(TOWER.id, "completed in 1889")
    + " b" + ref(TOWER.id, "The Eiffel Tower (…) for the World's Fair")
    + " c" + ref(TOWER.id, "The Eiffel Tower was finished in 1889 for the World's Fair")
    + " d" + ref(TOWER.id, "The bridge is not closed on Sundays")
    + " e" + ref(BRIDGE.id, "open all year")
    + " f" + ref("ffffffffffffffff", "the tower opened in 1890")
    + " g" + ref("eeeeeeeeeeeeeeee", "is not closed on Sundays")
    + " h" + ref(BRIDGE.id, "the tower opened in 1890") + ".<|answer_end|>"
)  # fmt: skip


def test_the_citation_dict_round_trips_for_every_status() -> None:
    ans = parse_response(RAW, [TOWER, BRIDGE], "hash", query=QUERY)
    statuses = [c.status for c in ans.citations]
    assert statuses == [
        "verified", "verified", "approximate", "misattributed", "unverified", "unknown_source",
        "unknown_source", "from_query",
    ]  # fmt: skip
    for c in ans.citations:
        data = json.loads(json.dumps(c.to_dict()))  # JSON-ready
        assert Citation.from_dict(data, ans.sources) == c
        assert ans.answer[data["answer_start"] : data["answer_end"]] == c.marker
        if c.credited:  # the words, in the source that holds them
            held = c.credited[0].text[data["source_start"] : data["source_end"]]
            assert held == data["matched_text"] or c.match == "elided"
        else:
            assert data["source_start"] is None
    mis = ans.citations[3].to_dict()
    assert (mis["cited_id"], mis["found_in"]) == (TOWER.id, [BRIDGE.id])
    assert BRIDGE.text[mis["source_start"] : mis["source_end"]] == mis["quote"]
    assert (mis["source_start"], mis["source_end"]) == (mis["found_start"], mis["found_end"])
    found = ans.citations[6].to_dict()
    assert (found["cited_id"], found["written_id"]) == (None, "eeeeeeeeeeeeeeee")
    assert found["source_start"] is None and found["found_start"] is not None


def test_one_label_rule() -> None:
    assert source_label(Source("t", metadata={"title": "T", "url": "https://x"})) == "T — https://x"
    assert source_label(Source("t", metadata={"url": "https://x"})) == "https://x"
    assert source_label(Source("t", metadata={"title": "a.txt", "file": "docs/a.txt"})) == (
        "docs/a.txt"
    )
    assert source_label(Source("t", metadata={"title": "T", "source": "b.pdf"})) == "T — b.pdf"
    assert source_label(Source("Some words " * 20)).endswith("…")
    ans = parse_response(RAW, [TOWER, BRIDGE], "hash", query=QUERY)
    assert citation_label(ans.citations[0]) == TOWER.text
    assert "'ffffffffffffffff'" in citation_label(ans.citations[5])


def test_the_data_module_imports_no_view() -> None:
    tree = ast.parse(Path(pleias_rag.__file__).with_name("answer.py").read_text())
    top = [n for n in tree.body if isinstance(n, (ast.Import, ast.ImportFrom))]
    names = [n.module or "" for n in top if isinstance(n, ast.ImportFrom)]
    assert not any(m.startswith(("views", "html", "plain", "ranking")) for m in names)


def test_the_page_links_only_http_and_relative_urls() -> None:
    from pleias_rag.views import render_page

    quote = "The Eiffel Tower was completed in 1889"
    for url, linked in [
        ("javascript:alert(document.cookie)", False),
        (" JaVa\tScript:alert(1)", False),
        ("data:text/html,<script>x</script>", False),
        ("https://example.org/tower", True),
        ("docs/tower.html", True),
    ]:
        src = Source(TOWER.text, metadata={"title": "Tower", "url": url})
        raw = f"x<|source_analysis_end|><|answer_start|>Yes{ref(src.id, quote)}.<|answer_end|>"
        page = render_page(parse_response(raw, [src], "hash", start="source_analysis"))
        assert ('href="' + url.strip() in page) is linked, url
        hrefs = [h.lower().replace("\t", "") for h in page.split('href="')[1:]]
        assert not any(h.lstrip().startswith(("javascript:", "data:")) for h in hrefs)
        assert "Tower" in page  # the label stays (as text when it is not a safe link)
