"""Sources recovered from the corpus prompts (01-05), to verify the real outputs' quotes."""

from __future__ import annotations

import re
from pathlib import Path

from pleias_rag import Source

_NUMBERED = re.compile(r"<\|source_start\|><\|source_id\|>(\d+) (.*?)<\|source_end\|>", re.S)
_HASH = re.compile(
    r"<\|source_start\|><\|source_id_start\|>(.*?)<\|source_id_end\|>(.*?)<\|source_end\|>", re.S
)
_QUERY = re.compile(r"<\|query_start\|>(.*?)<\|query_end\|>", re.S)
_MARKDOWN = re.compile(
    r"^\*\*([0-9a-z]{16})\*\*\n(.*?)(?=^\*\*[0-9a-z]{16}\*\*$|^### )", re.S | re.M
)


def corpus_sources(prompt: Path) -> list[Source]:
    """Sources of a corpus prompt, in prompt order (numbered, hash or markdown prompts).

    Numbered prompts elide some sources as "(…)": positions not printed get a placeholder
    so that ``<|source_id|>N`` still means the N-th source. Markdown prompts repeat an id for
    several chunks; their texts are joined under that id.
    """
    text = prompt.read_text()
    numbered = _NUMBERED.findall(text)
    if numbered:
        by_pos = {int(n): body for n, body in numbered}
        return [
            Source(by_pos.get(i, f"(source {i} elided in the corpus prompt)"))
            for i in range(1, max(by_pos) + 1)
        ]
    hashed = _HASH.findall(text)
    if hashed:
        return [Source(body, id=sid) for sid, body in hashed]
    joined: dict[str, list[str]] = {}
    for sid, body in _MARKDOWN.findall(text):
        joined.setdefault(sid, []).append(body.strip())
    return [Source("\n".join(parts), id=sid) for sid, parts in joined.items()]


def corpus_query(prompt: Path) -> str:
    """The question of a corpus prompt ("" for markdown prompts, which have none marked)."""
    m = _QUERY.search(prompt.read_text())
    return m.group(1) if m else ""


CORPUS = Path(__file__).resolve().parents[1].parent / "shared" / "corpus" / "pleias-outputs"
CORPUS_FILES = sorted(CORPUS.glob("[0-9][0-9].txt"))
CORPUS_2 = CORPUS.parent / "pleias-outputs-2"
CORPUS_2_FILES = sorted(CORPUS_2.glob("[0-9][0-9].txt"))
