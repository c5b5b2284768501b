"""Finding a model's quote in a source text: exact, normalized, piecewise over elisions, fuzzy."""

from __future__ import annotations

import re
import unicodedata
from dataclasses import dataclass
from typing import Literal

from rapidfuzz import fuzz

Kind = Literal["exact", "normalized", "fuzzy", "none"]

#: Fuzzy matches below this rapidfuzz ``partial_ratio`` (0-100) do not count as found.
FUZZY_THRESHOLD = 85.0

_ZERO_WIDTH = {"\u200b", "\u200c", "\u200d", "\u2060", "\ufeff", "\u00ad"}
_CHAR_MAP = {
    **dict.fromkeys("“”„‟«»″〝〞＂", '"'),
    **dict.fromkeys("‘’‚‛′‹›`´", "'"),
    **dict.fromkeys("‐‑‒–—―−", "-"),
    "…": "...",
}
# "(…)", "[...]", a bare "…" or " ... ": where a model shortened its quote.
_ELISION = re.compile(r"\s*(?:[(\[]\s*(?:…|\.\.\.)\s*[)\]]|…|\s\.\.\.\s)\s*")


@dataclass(frozen=True)
class QuoteMatch:
    """Where a quote was found in a text: ``text[start:end]``, how, and how well (0..1)."""

    kind: Kind
    score: float
    start: int | None = None
    end: int | None = None

    @property
    def found(self) -> bool:
        return self.kind != "none"


NOT_FOUND = QuoteMatch("none", 0.0)
_RANK = {"exact": 0, "normalized": 1, "fuzzy": 2, "none": 3}


def _normalize(text: str, *, alnum_only: bool) -> tuple[str, list[int]]:
    """Casefolded text with quotes/dashes unified and spaces collapsed, and the original index of
    each output char. ``alnum_only`` also drops everything but letters and digits, which makes
    OCR spacing ("199 0s") and line-break hyphens ("mas-\\nsive") irrelevant."""
    out: list[str] = []
    index: list[int] = []
    space = False
    for i, ch in enumerate(text):
        if ch in _ZERO_WIDTH:
            continue
        mapped = _CHAR_MAP.get(ch)
        if mapped is None:
            mapped = unicodedata.normalize("NFKC", ch).casefold()
        for c in mapped:
            if alnum_only:
                if c.isalnum():
                    out.append(c)
                    index.append(i)
            elif c.isspace():
                space = bool(out)
            else:
                if space:
                    out.append(" ")
                    index.append(i)
                    space = False
                out.append(c)
                index.append(i)
    return "".join(out), index


class SourceText:
    """A source text with its normalized forms computed once, for matching many quotes."""

    def __init__(self, text: str) -> None:
        self.text = text
        self._norm: dict[bool, tuple[str, list[int]]] = {}

    def norm(self, alnum_only: bool) -> tuple[str, list[int]]:
        if alnum_only not in self._norm:
            self._norm[alnum_only] = _normalize(self.text, alnum_only=alnum_only)
        return self._norm[alnum_only]

    def find_close(self, quote: str, start: int = 0) -> QuoteMatch:
        """An exact or normalized match at or after ``start`` (no fuzzy matching)."""
        i = self.text.find(quote, start)
        if i >= 0:
            return QuoteMatch("exact", 1.0, i, i + len(quote))
        for alnum_only in (False, True):
            q, _ = _normalize(quote, alnum_only=alnum_only)
            if len(q) < (1 if not alnum_only else 8):
                continue  # too little left to say anything
            norm, index = self.norm(alnum_only)
            lo = _first_at_or_after(index, start)
            j = norm.find(q, lo)
            if j >= 0:
                return QuoteMatch("normalized", 1.0, index[j], index[j + len(q) - 1] + 1)
        return NOT_FOUND

    def find_fuzzy(self, quote: str, start: int = 0) -> QuoteMatch:
        q, _ = _normalize(quote, alnum_only=False)
        norm, index = self.norm(False)
        lo = _first_at_or_after(index, start)
        if not q or lo >= len(norm):
            return NOT_FOUND
        # A quote longer than its source cannot be in it, whatever partial_ratio says.
        if len(q) > 1.15 * (len(norm) - lo) + 5:
            return NOT_FOUND
        al = fuzz.partial_ratio_alignment(q, norm[lo:], score_cutoff=FUZZY_THRESHOLD)
        if al is None or al.dest_end <= al.dest_start:
            return NOT_FOUND
        s, e = lo + al.dest_start, lo + al.dest_end
        return QuoteMatch("fuzzy", round(al.score / 100.0, 4), index[s], index[e - 1] + 1)

    def locate(self, quote: str, *, fuzzy: bool = True) -> QuoteMatch:
        """Best match of ``quote`` in this text; elided quotes are matched piece by piece."""
        quote = quote.strip()
        if not quote:
            return NOT_FOUND
        whole = self.find_close(quote)
        if whole.found:
            return whole
        pieces = [p for p in _ELISION.split(quote) if p.strip()]
        if len(pieces) > 1:
            piecewise = self._locate_pieces(pieces, fuzzy=fuzzy)
            if piecewise.found:
                return piecewise
        return self.find_fuzzy(quote) if fuzzy else NOT_FOUND

    def _locate_pieces(self, pieces: list[str], *, fuzzy: bool) -> QuoteMatch:
        pos = 0
        matches: list[QuoteMatch] = []
        for piece in pieces:
            m = self.find_close(piece.strip(), pos)
            if not m.found and fuzzy:
                m = self.find_fuzzy(piece.strip(), pos)
            if not m.found or m.end is None:
                return NOT_FOUND
            matches.append(m)
            pos = m.end
        kind = max((m.kind for m in matches), key=_RANK.__getitem__)
        weights = [len(p) for p in pieces]
        score = sum(m.score * w for m, w in zip(matches, weights, strict=True)) / sum(weights)
        return QuoteMatch(kind, round(score, 4), matches[0].start, matches[-1].end)


def _first_at_or_after(index: list[int], start: int) -> int:
    """First position in a normalized string whose original index is >= start."""
    if start <= 0:
        return 0
    lo, hi = 0, len(index)
    while lo < hi:
        mid = (lo + hi) // 2
        if index[mid] < start:
            lo = mid + 1
        else:
            hi = mid
    return lo


def locate_quote(quote: str, text: str, *, fuzzy: bool = True) -> QuoteMatch:
    """Find ``quote`` in ``text``: see :class:`SourceText`."""
    return SourceText(text).locate(quote, fuzzy=fuzzy)
