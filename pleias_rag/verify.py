"""Finding a model's quote in a source text, and saying how far it can be trusted.

Three kinds of match *verify* a quote: ``exact``, ``normalized`` (spacing, line-break
hyphens, case, quote and dash styles, zero-width characters: changes that cannot touch a
digit, a sign, a separator, ``%``, a unit or a negation) and ``elided`` (every piece of a quote
shortened with ``(…)`` found in order, each piece long enough to mean something, and no
negation left out between them). A ``fuzzy`` match is only close: it comes with the word
changes, and with a ``problem`` when a change touches a number or a negation. See
:mod:`pleias_rag.meaning` for those words.
"""

from __future__ import annotations

import dataclasses
import difflib
import re
import unicodedata
from collections import Counter
from dataclasses import dataclass
from typing import Literal

from rapidfuzz import fuzz
from rapidfuzz.distance import Indel

from . import meaning

Kind = Literal["exact", "normalized", "elided", "fuzzy", "none"]
VERBATIM_KINDS: frozenset[str] = frozenset({"exact", "normalized", "elided"})

#: Fuzzy matches below this rapidfuzz ``partial_ratio`` (0-100) do not count as close.
FUZZY_THRESHOLD = 85.0
#: Fuzzy matching needs this many normalized characters in the quote.
FUZZY_MIN_CHARS = 12
#: Each piece of an elided quote needs this many words.
MIN_PIECE_WORDS = 3
# Longer quotes are aligned inside a window found by shared 24-char pieces (partial_ratio
# is quadratic in the quote's length); common blocks shorter than _GRAM are noise.
_ANCHOR_ABOVE = 512
_GRAM = 8
_ANCHOR = 24
_MAX_OCCURRENCES = 200

_ZERO_WIDTH = frozenset("\u200b\u200c\u200d\u2060\ufeff\u00ad")
_CHAR_MAP = {
    **dict.fromkeys("“”„‟«»″〝〞＂", '"'),
    **dict.fromkeys("‘’‚‛′‹›`´", "'"),
    **dict.fromkeys("‐‑‒–—―−", "-"),
    "…": "...",
}
# "(…)", "[...]", or a bare "…"/"..." with a space on at least one side: where a model
# shortened its quote ("Pa…ris" is not an elision).
_ELISION = re.compile(
    r"\s*[(\[]\s*(?:…|\.\.\.)\s*[)\]]\s*"
    r"|\s+(?:…|\.\.\.)\s*|(?:…|\.\.\.)(?:\s+|$)|^(?:…|\.\.\.)"
)
# Tuples, not strings: "" (the text's edge) is in every string.
_SIGNS = ("-", "−", "+", "±")
_SEPARATORS = (".", ",")
_PERCENT = ("%", "‰")
_HYPHENS = frozenset("-‐‑")
_APOSTROPHES = frozenset("'’")
# A space before three digits that end a number: a thousands separator ("1 665").
_THOUSANDS = re.compile(r"(?<=\d)[\s\u200b\u200c\u200d\u2060\ufeff\u00ad]+(?=\d{3}(?!\d))")
# Scripts written without spaces, where a letter beside the match is no word boundary.
_NO_SPACES = re.compile(r"[\u0e00-\u0e7f\u3040-\u30ff\u3400-\u9fff\uac00-\ud7af\uf900-\ufaff]")


@dataclass(frozen=True)
class WordChange:
    """One difference between a quote and the source words it was matched to."""

    quote: str
    source: str

    @property
    def op(self) -> str:
        return "insert" if not self.source else "delete" if not self.quote else "replace"

    def to_dict(self) -> dict[str, str]:
        return {"op": self.op, "quote": self.quote, "source": self.source}


@dataclass(frozen=True)
class QuoteMatch:
    """Where a quote was found in a text, how, and how well (0..1).

    ``text[start:end]`` covers the match (for an elided quote, from its first piece to its
    last; ``spans`` has each piece). ``changes`` are the word differences of a fuzzy match,
    ``problem`` says why a match, or an almost-match, does not verify the quote.
    """

    kind: Kind
    score: float
    start: int | None = None
    end: int | None = None
    spans: tuple[tuple[int, int], ...] = ()
    changes: tuple[WordChange, ...] = ()
    problem: str = ""

    @property
    def found(self) -> bool:
        return self.kind != "none"

    @property
    def verbatim(self) -> bool:
        """Whether this match verifies the quote (exact, normalized or elided)."""
        return self.kind in VERBATIM_KINDS

    def matched_text(self, text: str) -> str:
        """The words of ``text`` this match covers; elided pieces joined with " (…) "."""
        if not self.spans:
            return ""
        return " (…) ".join(text[s:e] for s, e in self.spans)


NOT_FOUND = QuoteMatch("none", 0.0)


def _fold_char(ch: str) -> str:
    mapped = _CHAR_MAP.get(ch)
    if mapped is not None:
        return mapped
    folded = unicodedata.normalize("NFKC", ch)
    # "²", "½", "①" must not become digits: "m²" is not "m2", "10⁶" not "106".
    if folded != ch and not ch.isdecimal() and any(c.isdigit() for c in folded):
        return ch.casefold()
    return folded.casefold()


def _fold(text: str, *, compact: bool) -> tuple[str, list[int]]:
    """Casefolded ``text`` with quote/dash styles unified and zero-width characters gone,
    and the original index of each output character.

    ``compact`` also drops whitespace (OCR spacing: "Eiffel T ower") and hyphens between
    letters ("mas-\\nsive"), but not a space before a group of three digits, a thousands
    separator: "1 665" is neither "1665" nor "1,665" (a match must then keep every number as
    written: see :func:`_same_facts`). Otherwise runs of whitespace become one space.
    """
    groups = {m.end() for m in _THOUSANDS.finditer(text)} if compact else set()
    out: list[str] = []
    index: list[int] = []
    space = -1  # index of the whitespace run before the next char, if any
    hyphen = -1  # index of a hyphen held after a letter, if any
    for i, ch in enumerate(text):
        if ch in _ZERO_WIDTH:
            continue
        if ch.isspace():
            if space < 0:
                space = i
            continue
        for c in _fold_char(ch):
            if hyphen >= 0:
                if compact and c.isalpha():
                    hyphen = space = -1  # a hyphenated line break: the word goes on
                else:
                    out.append("-")
                    index.append(hyphen)
                    hyphen = -1
            if space >= 0 and out and (not compact or (i in groups and out[-1].isdigit())):
                out.append(" ")
                index.append(space)
            space = -1
            if compact and c == "-" and out and out[-1].isalpha():
                hyphen = i
                continue
            out.append(c)
            index.append(i)
    # A hyphen still held ends the text after a letter: a line-break hyphen cut off ("autoregres-").
    return "".join(out), index


def _wordchar(ch: str) -> bool:
    return ch.isalnum() and not _NO_SPACES.match(ch)


def _edges_ok(text: str, start: int, end: int, *, open_end: bool = False) -> bool:
    """Whether ``text[start:end]`` starts and ends on word boundaries, and does not cut a
    number: no "40" out of "-40", "5" out of "10.5", "10" out of "10%", "possible" out of
    "impossible", "toxic" out of "non-toxic", "he can" out of "he can't". ``open_end`` allows
    a cut word at the end (a quote cut off by the output's end), but never a cut number."""
    first, last = text[start], text[end - 1]
    before = text[start - 1] if start > 0 else ""
    after = text[end] if end < len(text) else ""
    before2 = text[start - 2] if start > 1 else ""
    after2 = text[end + 1] if end + 1 < len(text) else ""
    if before and _wordchar(first) and _wordchar(before):
        return False
    if first.isdigit() and (before in _SIGNS or (before in _SEPARATORS and before2.isdigit())):
        return False
    if last.isdigit() and (
        after.isdigit() or after in _PERCENT or (after in _SEPARATORS and after2.isdigit())
    ):
        return False
    if first.isalpha() and _joined_before(text, start):
        return False
    if open_end and not last.isdigit():
        return True
    if after and _wordchar(last) and _wordchar(after):
        return False
    return not (last.isalpha() and _joined_after(text, end))


def _joined_before(text: str, start: int) -> bool:
    """Whether the word at ``start`` goes on to the left: a hyphenated compound ("non-toxic",
    also broken over a line: "mas-\nsive") or a French negation ("n'est")."""
    i = start - 1
    if i < 1:
        return False
    if text[i].isspace():
        while i > 0 and text[i].isspace():
            i -= 1
        return text[i] in _HYPHENS and i > 0 and text[i - 1].isalpha()
    if text[i] in _HYPHENS:
        return text[i - 1].isalpha()
    if text[i] in _APOSTROPHES:
        return text[i - 1] in "nN" and (i < 2 or not text[i - 2].isalpha())
    return False


def _joined_after(text: str, end: int) -> bool:
    """Whether the word ending at ``end`` goes on to the right: a hyphenated compound
    ("toxic-free", "mas-\nsive") or an English negation ("can't")."""
    if end >= len(text):
        return False
    ch = text[end]
    if ch in _HYPHENS:
        j = end + 1
        while j < len(text) and text[j].isspace():
            j += 1
        return j < len(text) and text[j].isalpha()
    nxt = text[end + 1 : end + 2]
    return ch in _APOSTROPHES and nxt in ("t", "T") and not text[end + 2 : end + 3].isalpha()


def _same_facts(quote: str, found: str) -> bool:
    """Whether a normalized match kept every fact word: its negations, its numbers as
    written (signs, separators, digit groups) and its units' case."""
    return (
        meaning.negations(quote) == meaning.negations(found)
        and meaning.numbers(quote) == meaning.numbers(found)
        and meaning.units(quote) == meaning.units(found)
    )


def elision_pieces(quote: str) -> list[str]:
    """The pieces of a quote shortened with ``(…)`` (one piece when it is not)."""
    return [p.strip() for p in _ELISION.split(quote) if p.strip()]


class SourceText:
    """A source text with its normalized forms computed once, for matching many quotes."""

    def __init__(self, text: str) -> None:
        self.text = text
        self._folded: dict[bool, tuple[str, list[int]]] = {}

    def folded(self, compact: bool) -> tuple[str, list[int]]:
        if compact not in self._folded:
            self._folded[compact] = _fold(self.text, compact=compact)
        return self._folded[compact]

    # -- verbatim ---------------------------------------------------------------------

    def find_close(self, quote: str, start: int = 0, *, open_end: bool = False) -> QuoteMatch:
        """An exact or normalized match at or after ``start`` (see the module doc)."""
        quote = quote.strip()
        if not quote:
            return NOT_FOUND
        text = self.text
        i = text.find(quote, start)
        for _ in range(_MAX_OCCURRENCES):
            if i < 0:
                break
            if _edges_ok(text, i, i + len(quote), open_end=open_end):
                return QuoteMatch("exact", 1.0, i, i + len(quote), ((i, i + len(quote)),))
            i = text.find(quote, i + 1)
        q, _ = _fold(quote, compact=True)
        if not q:
            return NOT_FOUND
        norm, index = self.folded(True)
        j = norm.find(q, _first_at_or_after(index, start))
        for _ in range(_MAX_OCCURRENCES):
            if j < 0:
                break
            s, e = index[j], index[j + len(q) - 1] + 1
            if quote[-1] in _HYPHENS and text[e : e + 1] in _HYPHENS:
                e += 1  # the quote ends where its source breaks a word over a line
            if _edges_ok(text, s, e, open_end=open_end) and _same_facts(quote, text[s:e]):
                return QuoteMatch("normalized", 1.0, s, e, ((s, e),))
            j = norm.find(q, j + 1)
        return NOT_FOUND

    def _find_elided(self, pieces: list[str]) -> QuoteMatch:
        for piece in pieces:
            if meaning.word_count(piece) < MIN_PIECE_WORDS or meaning.too_short(piece):
                return QuoteMatch("none", 0.0, problem=f"an elided piece is too short: {piece!r}")
        pos = 0
        spans: list[tuple[int, int]] = []
        for piece in pieces:
            m = self.find_close(piece, pos)
            if m.start is None or m.end is None:
                return NOT_FOUND
            if spans:
                gap = self.text[spans[-1][1] : m.start]
                if meaning.negations(gap):
                    left_out = " ".join(meaning.negations(gap))
                    return QuoteMatch(
                        "none", 0.0, problem=f"the elision leaves out a negation ({left_out!r})"
                    )
            spans.append((m.start, m.end))
            pos = m.end
        return QuoteMatch("elided", 1.0, spans[0][0], spans[-1][1], tuple(spans))

    # -- close ------------------------------------------------------------------------

    def find_fuzzy(self, quote: str, start: int = 0) -> QuoteMatch:
        """The closest passage (rapidfuzz ``partial_ratio`` >= :data:`FUZZY_THRESHOLD`),
        widened to whole words, with the word changes and any ``problem``."""
        q, _ = _fold(quote, compact=False)
        norm, index = self.folded(False)
        lo = _first_at_or_after(index, start)
        if len(q) < FUZZY_MIN_CHARS or lo >= len(norm):
            return NOT_FOUND
        # A quote longer than its source cannot be in it, whatever partial_ratio says.
        if len(q) > 1.15 * (len(norm) - lo) + 5:
            return NOT_FOUND
        span = self._align(q, norm, lo) if len(q) > _ANCHOR_ABOVE else None
        if span is None and len(q) <= _ANCHOR_ABOVE:
            al = fuzz.partial_ratio_alignment(q, norm[lo:], score_cutoff=FUZZY_THRESHOLD)
            if al is not None and al.dest_end > al.dest_start:
                span = (lo + al.dest_start, lo + al.dest_end, al.score)
        if span is None:
            return NOT_FOUND
        s, e, score = span
        start_i, end_i = _widen(self.text, index[s], index[e - 1] + 1)
        changes, problem = _compare(quote, self.text[start_i:end_i])
        spans = ((start_i, end_i),)
        return QuoteMatch("fuzzy", round(score / 100.0, 4), start_i, end_i, spans, changes, problem)

    def _align(self, q: str, norm: str, lo: int) -> tuple[int, int, float] | None:
        """Long quotes: where the quote's first and last pieces agree it starts and ends,
        then one Indel alignment inside, trimmed to its solid (8+ char) common blocks."""
        head = _offset(q, norm, lo, range(0, len(q) // 4))
        if head is None:
            return None
        # The end is at most a quarter of the quote's length away from where no edit puts it.
        near = max(lo, head - len(q) // 4 - 64)
        tail = _offset(q, norm, near, range(len(q) - len(q) // 4, len(q) - _ANCHOR + 1))
        if tail is None or tail < head - len(q) // 4 - 64:
            return None
        w0, w1 = max(lo, head - 64), min(len(norm), tail + len(q) + 64)
        window = norm[w0:w1]
        equal = [b for b in Indel.opcodes(q, window) if b.tag == "equal"]
        solid = [b for b in equal if b.dest_end - b.dest_start >= _GRAM] or equal
        if not solid:
            return None
        s, e = w0 + solid[0].dest_start, w0 + solid[-1].dest_end
        score = fuzz.ratio(q, norm[s:e])
        return (s, e, score) if score >= FUZZY_THRESHOLD else None

    # -- all together -----------------------------------------------------------------

    def locate(self, quote: str, *, fuzzy: bool = True, open_end: bool = False) -> QuoteMatch:
        """Best match of ``quote`` in this text: verbatim (exact, normalized, elided), else
        fuzzy when allowed. Quotes too short to carry a claim are never found."""
        quote = quote.strip()
        if not quote:
            return NOT_FOUND
        if meaning.too_short(quote):
            return QuoteMatch("none", 0.0, problem="too short to carry a claim")
        whole = self.find_close(quote, open_end=open_end)
        if whole.found:
            return whole
        pieces = elision_pieces(quote)
        problem = ""
        if len(pieces) > 1:
            elided = self._find_elided(pieces)
            if elided.found:
                return elided
            problem = elided.problem
        elif len(pieces) == 1 and pieces[0] != quote:  # "(…) text" or "text (…)"
            m = self.find_close(pieces[0], open_end=open_end)
            if m.found:
                return m
        if not fuzzy:
            return QuoteMatch("none", 0.0, problem=problem) if problem else NOT_FOUND
        close = self.find_fuzzy(" ".join(pieces) if pieces else quote)
        if not close.found:
            return QuoteMatch("none", 0.0, problem=problem) if problem else NOT_FOUND
        return dataclasses.replace(close, problem=close.problem or problem)


def _offset(q: str, norm: str, lo: int, positions: range) -> int | None:
    """The offset (source position minus quote position) most 24-char pieces of ``q`` taken
    at ``positions`` (64 of them at most) agree on, or None when none occurs."""
    votes: Counter[int] = Counter()
    step = max(1, len(positions) // 64)
    for qpos in positions[::step]:
        gram = q[qpos : qpos + _ANCHOR]
        j = norm.find(gram, lo)
        for _ in range(32):
            if j < 0:
                break
            votes[j - qpos] += 1
            j = norm.find(gram, j + 1)
    return votes.most_common(1)[0][0] if votes else None


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


def _widen(text: str, start: int, end: int) -> tuple[int, int]:
    """``start``/``end`` moved out to whole words."""
    while start > 0 and _wordchar(text[start - 1]) and _wordchar(text[start]):
        start -= 1
    while end < len(text) and _wordchar(text[end]) and _wordchar(text[end - 1]):
        end += 1
    return start, end


def _compare(quote: str, found: str) -> tuple[tuple[WordChange, ...], str]:
    """The word changes from ``found`` to ``quote``, and why they must not be trusted even as
    approximate ("" when they may): a change that touches a number, a unit, a sign or a
    negation."""
    qw, fw = meaning.words(quote), meaning.words(found)
    shown_q, shown_f = meaning.WORD.findall(quote), meaning.WORD.findall(found)
    qp, fp = meaning.protected(qw), meaning.protected(fw)
    changes: list[WordChange] = []
    problem = ""
    for tag, i1, i2, j1, j2 in difflib.SequenceMatcher(a=qw, b=fw, autojunk=False).get_opcodes():
        if tag == "equal":
            continue
        changes.append(WordChange(" ".join(shown_q[i1:i2]), " ".join(shown_f[j1:j2])))
        # An insertion touches the words on both sides of where it goes.
        touched = any(qp[max(0, i1 - (i1 == i2)) : i2 + (i1 == i2)])
        touched = touched or any(fp[max(0, j1 - (j1 == j2)) : j2 + (j1 == j2)])
        # "possible" for "impossible": a prefix that negates is a negation.
        touched = touched or any(meaning.negated_pair(a, b) for a in qw[i1:i2] for b in fw[j1:j2])
        if touched and not problem:
            said = " ".join(qw[i1:i2]) or "nothing"
            has = " ".join(fw[j1:j2]) or "nothing"
            problem = (
                f"a number, unit or negation differs: the quote has {said!r}, the source {has!r}"
            )
    # Changes the casefolded words cannot show: a number's spacing, sign or separators, and
    # a unit's case.
    for what, read in (("a number", meaning.numbers), ("a unit", meaning.units)):
        in_quote, in_source = read(quote), read(found)
        if not problem and in_quote != in_source:
            problem = (
                f"{what} is written differently (case, spacing and signs count): the quote has "
                f"{' '.join(in_quote) or 'none'!r}, the source {' '.join(in_source) or 'none'!r}"
            )
    return tuple(changes), problem


def locate_quote(quote: str, text: str, *, fuzzy: bool = True) -> QuoteMatch:
    """Find ``quote`` in ``text``: see :class:`SourceText`."""
    return SourceText(text).locate(quote, fuzzy=fuzzy)
