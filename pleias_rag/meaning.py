"""The words that carry a claim's facts: numbers, signs, units, negations.

Quote verification may forgive spacing, case and quote styles, but never a change to one of
these: "1889" is not "1898", "-40" is not "40", "5 mg" is not "5 g", "never approved" is not
"approved". This module says which words those are, in the languages Pleias models answer in.
"""

from __future__ import annotations

import re
from collections.abc import Sequence


def _wordset(text: str) -> frozenset[str]:
    return frozenset(text.split())


# Negations of English, French, German, Italian, Spanish, Portuguese, Dutch and Latin; "n't"
# and "n'" forms are matched by their shape (see is_negation).
NEGATIONS = _wordset(
    """
    not no never none nobody nothing neither nor nowhere cannot without nope
    ne pas jamais aucun aucune rien ni sans non
    nicht kein keine keinen keinem keiner keines nie niemals nichts ohne weder
    mai nessun nessuno nessuna niente nulla senza né
    nunca jamás ningún ninguno ninguna nada sin tampoco
    não nenhum nenhuma sem
    niet geen nooit niets zonder
    nec neque nihil numquam nullus haud
    """
)
# Words that are numbers, or scale one (a change to them is a change of quantity).
NUMBER_WORDS = _wordset(
    """
    zero one two three four five six seven eight nine ten eleven twelve thirteen fourteen
    fifteen sixteen seventeen eighteen nineteen twenty thirty forty fifty sixty seventy eighty
    ninety hundred hundreds thousand thousands million millions billion billions trillion
    dozen dozens half quarter twice thrice double triple first second third fourth fifth
    percent per cent
    un une deux trois quatre cinq six sept huit neuf dix cent cents mille million milliard
    milliards moitié
    eins zwei drei vier fünf sechs sieben acht neun zehn hundert tausend millionen milliarde
    uno due tre quattro cinque sei sette otto nove dieci mila milioni miliardo
    dos tres cuatro cinco seis siete ocho nueve diez mil millones
    """
)
# Unit words too long to be ordinary words by accident ("m", "in", "a" are caught by sitting
# next to a number instead).
UNITS = _wordset(
    """
    mm cm km µm nm mg kg µg ml cl dl kwh mwh gwh kw mw gw hz khz mhz ghz kb mb gb tb ppm ppb
    db kcal mph kph rpm ft lb lbs oz sq °c °f
    """
)
_SYMBOLS = frozenset("%‰$€£¥₹°±+-<>=×/")

#: Words and symbols, numbers kept whole with their separators: "1,665", "10.5", "don't";
#: a degree sign with its scale: "°C".
WORD = re.compile(r"\d+(?:[.,]\d+)*|°[^\W\d_]*|\w+(?:['’]\w+)*|[^\w\s]")
# A number as written: its sign, and the separators and spaces between its digit groups
# ("- 40" is not "-40", "3, 500" not "3,500", "12 34" not "1234").
_NUMBER = re.compile(r"(?<!\w)(?:[-+±]\s*)?\d+(?:\s*[.,]\s*\d+|\s+\d+)*")
# Units whose case is their meaning: an SI prefix and unit ("mW"/"MW", "Mb"/"MB", "ms"/"Ms").
_CASED_UNIT = re.compile(
    r"(?!(?i:am|pm)$)(?i:[pnµumckMGT]?(?:Wh|W|B|b|bit|bps|g|m|s|Hz|V|A|J|N|Pa|L|l|t|eV|F|K))"
)
_INVISIBLE = dict.fromkeys(map(ord, "\u200b\u200c\u200d\u2060\ufeff\u00ad"))
_DASHES = str.maketrans(dict.fromkeys("‐‑‒–—―−", "-"))
# Prefixes that make a word its opposite ("possible"/"impossible"), and words that only look
# prefixed: "inform" is not the opposite of "form".
_NEGATING_PREFIXES = ("non-", "non", "un", "dis", "in", "im", "il", "ir")
_NOT_NEGATED = _wordset(
    """
    inform income inside indeed instead install intend invest invent insert inspire involve
    intake inland inject invade incline include inbound indent induce inflame index intern
    impress import impose impart impair impact impale implant impound impeach
    discover display dismiss disease discount dispose discuss dispatch distress dispense
    until unite union
    """
)

# Too little to carry a claim: fewer letters and digits than this, or only stopwords.
MIN_ALNUM = 3
STOPWORDS = _wordset(
    """
    a an the of to in on at by for and or but is are was were be been it its this that these
    those as with from he she they we you i his her their our your
    le la les l de des du d et ou un une est en au aux il elle
    der die das den dem des ein eine und oder ist im zu von mit
    il lo gli i di da e o è
    el los las y es del
    """
)


def words(text: str) -> list[str]:
    """``text`` as casefolded words and symbols (curly apostrophes made straight)."""
    return [w.casefold().replace("’", "'") for w in WORD.findall(text)]


def is_negation(word: str) -> bool:
    w = word.casefold().replace("’", "'")
    return w in NEGATIONS or w.endswith("n't") or w.startswith("n'")


def has_digit(word: str) -> bool:
    return any(c.isdigit() for c in word)


def negations(text: str) -> list[str]:
    """The negation words of ``text``, in order."""
    return [w for w in words(text) if is_negation(w)]


def protected(tokens: Sequence[str]) -> list[bool]:
    """For each word, whether changing it can change a fact: a number, a number word, a
    negation, a unit, a symbol such as ``%`` or a sign, or any word right beside a number or
    a number word (its unit, its sign, its scale)."""
    digit = [has_digit(t) or t in NUMBER_WORDS for t in tokens]
    out = []
    for i, t in enumerate(tokens):
        near = (i > 0 and digit[i - 1]) or (i + 1 < len(tokens) and digit[i + 1])
        out.append(
            digit[i] or near or t in NUMBER_WORDS or t in UNITS or t in _SYMBOLS or is_negation(t)
        )
    return out


def numbers(text: str) -> list[str]:
    """The numbers of ``text`` as written, with their signs and the separators and spaces
    between digit groups (whitespace runs made one space, dash styles one ``-``)."""
    plain = text.translate(_INVISIBLE).translate(_DASHES)
    return [" ".join(m.group().split()) for m in _NUMBER.finditer(plain)]


def units(text: str) -> list[str]:
    """The units written right after a number, case kept ("mW" is not "MW", "Mb" not "MB",
    "m" not "M"), and degree scales ("°C")."""
    tokens = WORD.findall(text.translate(_INVISIBLE))
    out = []
    for i, t in enumerate(tokens):
        after_number = i > 0 and has_digit(tokens[i - 1]) and _CASED_UNIT.fullmatch(t)
        if after_number or t.startswith("°"):
            out.append(t)
    return out


def negated_pair(a: str, b: str) -> bool:
    """Whether one word is the other made its opposite by a prefix: "possible" and
    "impossible", "toxic" and "nontoxic", "finished" and "unfinished"."""
    short, long = sorted((a.casefold(), b.casefold()), key=len)
    if len(short) < 4 or long in _NOT_NEGATED:
        return False
    return any(long == p + short for p in _NEGATING_PREFIXES)


def too_short(text: str) -> bool:
    """Whether ``text`` is too short to carry a claim: a letter, a lone stopword..."""
    ws = [w for w in words(text) if w[0].isalnum()]
    if sum(len(w) for w in ws) < MIN_ALNUM:
        return True
    return all(w in STOPWORDS for w in ws)


def word_count(text: str) -> int:
    return sum(1 for w in WORD.findall(text) if w[0].isalnum())
