"""The HTML answer page, rendered by a real headless Chromium (Debian's `chromium`)."""

from __future__ import annotations

import shutil
import struct
import subprocess
from pathlib import Path

import pytest

from pleias_rag import Source, parse_response
from pleias_rag.html import render_page

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
FLAGS = [
    "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
    "--disable-background-networking", "--disable-component-update", "--disable-sync",
]  # fmt: skip

A = Source(
    "The Eiffel Tower was completed in 1889 for the World's Fair.", metadata={"file": "a.txt"}
)
B = Source("It houses the Mona Lisa <and> other works.", metadata={"url": "https://louvre.fr"})
RAW = (
    "Analysis.<|source_analysis_end|><|answer_start|>"
    f'Built in 1889<ref name="{A.id}">"completed in 1889"</ref>; '
    f'it has art<ref name="{B.id}">"completed in 1889"</ref> '
    f'and a painting<ref name="{B.id}">"the Mona Lisa"</ref> '
    f'and no sculpture<ref name="{B.id}">"no sculpture at all"</ref> '
    'and more<ref name="ffffffffffffffff">"nothing"</ref>.<|answer_end|>'
)


def test_page_structure() -> None:
    page = render_page(parse_response(RAW, [A, B]), query="When <was> it built?")
    assert "<title>When &lt;was&gt; it built?</title>" in page
    assert '<a class="verified" href="#src-1">[1]</a>' in page
    assert '<section class="source" id="src-1">' in page
    assert '<mark title="[1]">completed in 1889</mark>' in page
    assert "misattributed" in page and "Unknown sources" in page
    # The misattributed quote is shown where it is (a.txt), with the source it was cited as,
    # named as in every view (source_label: its url here).
    assert "“completed in 1889” (misattributed — cited as https://louvre.fr)" in page
    assert "<h2>[1] a.txt</h2>" in page
    assert '<h2>[2] <a href="https://louvre.fr">https://louvre.fr</a></h2>' in page
    assert '<mark title="[2]">the Mona Lisa</mark>' in page
    assert "Quotes not found in the sources" in page and "“no sculpture at all” (unverified" in page
    assert "&lt;and&gt;" in page and "<and>" not in page  # source text is escaped
    assert page.count("<section") == page.count("</section>")


@pytest.mark.skipif(CHROMIUM is None, reason="needs Debian's chromium (.ci/run installs it)")
def test_page_in_headless_chromium(tmp_path: Path) -> None:
    assert CHROMIUM is not None
    page = tmp_path / "answer.html"
    page.write_text(render_page(parse_response(RAW, [A, B]), query="When?"), encoding="utf-8")
    profile = tmp_path / "profile"
    dom = subprocess.run(
        [CHROMIUM, *FLAGS, f"--user-data-dir={profile}", "--dump-dom", page.as_uri()],
        capture_output=True,
        text=True,
        timeout=120,
    ).stdout
    assert 'href="#src-1"' in dom and "<mark" in dom
    shot = tmp_path / "shot.png"
    subprocess.run(
        [CHROMIUM, *FLAGS, f"--user-data-dir={profile}", f"--screenshot={shot}",
         "--window-size=900,700", page.as_uri()],
        capture_output=True,
        timeout=120,
        check=True,
    )  # fmt: skip
    data = shot.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n"
    width, height = struct.unpack(">II", data[16:24])
    assert (width, height) == (900, 700)
    assert len(data) > 10_000  # a rendered page, not a blank image
