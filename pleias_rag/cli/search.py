"""An in-memory BM25 index over passages: no server, no embedding model to download."""

from __future__ import annotations

import re
from collections.abc import Sequence

from ..errors import InvalidArgument
from ..sources import Source

# What bm25s counts as a word (its default token pattern): two word characters or more.
WORD = re.compile(r"(?u)\b\w\w+\b")


def has_word(text: str) -> bool:
    """Whether BM25 can search with ``text``: it has a word of two letters or more."""
    return WORD.search(text) is not None


class BM25Index:
    """BM25 (via ``bm25s``) over the sources' texts."""

    def __init__(self, sources: Sequence[Source]) -> None:
        import bm25s

        if not sources:
            raise InvalidArgument("nothing to index: give at least one source")
        if not any(has_word(s.text) for s in sources):
            raise InvalidArgument("nothing to index: no source has a word of two letters or more")
        self.sources = list(sources)
        self._bm25s = bm25s
        self._index = bm25s.BM25()
        self._index.index(self._tokenize([s.text for s in self.sources]), show_progress=False)

    def _tokenize(self, texts: list[str]) -> object:
        return self._bm25s.tokenize(texts, lower=True, stopwords=None, show_progress=False)

    def search(self, query: str, k: int = 5) -> list[tuple[Source, float]]:
        """The ``k`` best passages and their scores, best first; zero scores are left out."""
        k = max(1, min(k, len(self.sources)))
        if not has_word(query):
            return []
        docs, scores = self._index.retrieve(self._tokenize([query]), k=k, show_progress=False)
        return [
            (self.sources[int(i)], float(s))
            for i, s in zip(docs[0], scores[0], strict=True)
            if s > 0
        ]
