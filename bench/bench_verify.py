"""Benchmark of quote verification: can a reader trust ``verified``?

    python bench/bench_verify.py [--json out.json] [--seed 0]

Builds a labelled set from the real prompts of ``../shared/corpus`` (part 1: 5 prompts, part
2: 25) and the real outputs' quotes, then runs every case through ``parse_response`` (a
one-ref output citing the source, with every source of the prompt and its query):

- TRUE quotes: real quotes that index.json says are in the cited source; spans of the
  sources verbatim, with OCR spacing, changed whitespace, curly quotes, changed case, zero-width
  characters, a line-break hyphen in the source; correct ``(…)`` elisions.
- ALTERED quotes: a changed digit, a dropped decimal point, a changed or dropped thousands
  separator, a dropped, added or spaced sign, a dash in the source joined to a number as its
  sign, digit groups split or joined, a space after a separator, a dropped ``%``, a changed
  unit or a unit's case changed ("mW"/"MW", also by upper- or lower-casing), an added or dropped
  negation, a named entity swapped, a word inserted or dropped, wrong elisions (pieces out of
  order, a negation elided, a piece from another source) and quotes copied from the query.

Reports the precision of ``verified`` (target 100%: no altered quote verified), the recall on
true quotes (target >= 99%) and the confusion table of statuses, then the cost of checking
long quotes (near-linear in the source length) and how long one blocks an event loop.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import random
import re
import sys
import time
from collections import Counter, defaultdict
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
# Run as a script from a checkout: the package, and the tests' reader of the corpus prompts
# (one parser of that format, shared with the corpus tests), must be importable first.
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "tests"))

from corpus_sources import CORPUS, CORPUS_2, corpus_query, corpus_sources  # noqa: E402

from pleias_rag import Source, parse_response  # noqa: E402
from pleias_rag.meaning import NEGATIONS, STOPWORDS  # noqa: E402
from pleias_rag.verify import locate_quote  # noqa: E402

STATUSES = ("verified", "approximate", "misattributed", "from_query", "unverified")
_WORD = re.compile(r"\S+")
_AUX = re.compile(r"\b(is|was|are|were|can|will|has|have|does|did|could|should)\b")
_NUMBER = re.compile(r"\d+(?:[.,]\d+)*")
_NEGATED = re.compile(r"\b(?:not|never|no|n't|pas|nicht|non)\b")
_UNIT_OR_PERCENT = re.compile(
    r"\d ?(?:mg|kg|km|cm|ms|kb|metres|meters|MW|percent|hours|million)\b|\d%"
)
_UNITS = {
    "mg": "g", "kg": "g", "km": "m", "cm": "mm", "ms": "s", "kb": "mb", "metres": "kilometres",
    "meters": "kilometers", "MW": "GW", "percent": "per mille", "hours": "minutes",
    "million": "billion",
}  # fmt: skip


@dataclass(frozen=True)
class Prompt:
    name: str
    sources: tuple[Source, ...]
    query: str


@dataclass(frozen=True)
class Case:
    """One quote cited as ``sources[cited]`` (the source text may be a variant of the
    prompt's: a line-break hyphen added)."""

    truth: bool
    category: str
    prompt: Prompt
    cited: int
    quote: str


def prompts() -> list[Prompt]:
    out = []
    for folder in (CORPUS / "prompts", CORPUS_2 / "prompts"):
        for path in sorted(folder.glob("*.prompt.txt")):
            sources = [s for s in corpus_sources(path) if "elided in the corpus" not in s.text]
            name = f"{folder.parent.name}/{path.name}"
            out.append(Prompt(name, tuple(sources), corpus_query(path)))
    return out


# --------------------------------------------------------------------------- true quotes


def spans(text: str, rng: random.Random, n: int, lo: int = 6, hi: int = 24) -> Iterator[str]:
    """``n`` random runs of ``lo``..``hi`` whole words of ``text``."""
    words = [m for m in _WORD.finditer(text)]
    if len(words) < lo:
        return
    for _ in range(n):
        size = rng.randint(lo, min(hi, len(words)))
        i = rng.randrange(0, len(words) - size + 1)
        if i and re.search(r"[^\W\d_]-$", words[i - 1].group()):
            i -= 1  # whole words: not the second half of one broken over a line
            size = min(size + 1, len(words) - i)
        yield text[words[i].start() : words[i + size - 1].end()]


def spans_around(text: str, pattern: re.Pattern[str], rng: random.Random, n: int) -> Iterator[str]:
    """Up to ``n`` runs of 5-14 whole words holding a match of ``pattern`` (a number, a
    negation, a unit): where an alteration changes a fact."""
    words = list(_WORD.finditer(text))
    hits = [m.start() for m in pattern.finditer(text)]
    for at in rng.sample(hits, min(n, len(hits))):
        i = next((k for k, w in enumerate(words) if w.end() > at), None)
        if i is None:
            continue
        lo = max(0, i - rng.randint(2, 6))
        hi = min(len(words), i + rng.randint(3, 8))
        if hi - lo >= 5:
            yield text[words[lo].start() : words[hi - 1].end()]


def true_variants(quote: str, rng: random.Random) -> Iterator[tuple[str, str]]:
    yield "verbatim", quote
    words = quote.split(" ")
    letters = [i for i, w in enumerate(words) if len(w) >= 6 and w.isalpha()]
    if letters:
        i = rng.choice(letters)
        k = rng.randint(2, len(words[i]) - 2)
        yield (
            "ocr spacing",
            " ".join([*words[:i], words[i][:k] + " " + words[i][k:], *words[i + 1 :]]),
        )
    yield "whitespace", "  \n".join(quote.split(" ", 2)) if " " in quote else quote
    curly = quote.replace('"', "“", 1).replace('"', "”", 1).replace("'", "’")
    yield "quote style", curly.replace("’", "'") if curly == quote else curly
    yield "case", quote.upper() if rng.random() < 0.5 else quote.lower()
    yield "zero-width", quote.replace(" ", " \u200b", 2)


# Units whose case is their meaning ("mW" milliwatt, "MW" megawatt; "K" kelvin, "k" kilo),
# written after a number.
_CASED_UNIT = re.compile(
    r"(?<![\w.,])\d+(?:[.,]\d+)* ?((?:[kmMGµ]?(?:Wh|W|B|b|g|m|s|Hz|V))|K|mg|kg|km|cm|mm|ms|kb|Mb)"
    r"(?!\w)"
)


def cased_units(quote: str) -> list[str]:
    return _CASED_UNIT.findall(quote)


def fact_sources(text: str, quote: str, rng: random.Random) -> Iterator[tuple[str, str, str]]:
    """Copies of ``text`` where a number of ``quote`` is written otherwise, with the quote
    that joins it back: a dash set apart before it ("— 40" quoted "-40"), its digits split by
    a space ("18 89" quoted "1889"). (category, source text, quote)"""
    at = text.find(quote)
    numbers = [m for m in re.finditer(r"(?<=[^\W\d_] )\d{2,}", quote)]
    if at < 0 or not numbers:
        return
    m = rng.choice(numbers)
    cut = at + m.start()
    yield (
        "dash joined to a number",
        text[:cut] + "— " + text[cut:],
        (quote[: m.start()] + "-" + quote[m.start() :]),
    )
    if m.end() - m.start() >= 3:
        k = rng.randint(1, m.end() - m.start() - 1)
        yield "digit groups joined", text[: cut + k] + " " + text[cut + k :], quote


def hyphenated(text: str, quote: str, rng: random.Random) -> tuple[str, str] | None:
    """A copy of ``text`` with a line-break hyphen inside a long word of ``quote``."""
    at = text.find(quote)
    long = [m for m in re.finditer(r"[^\W\d_]{8,}", quote)]
    if at < 0 or not long:
        return None
    m = rng.choice(long)
    cut = at + m.start() + len(m.group()) // 2
    return text[:cut] + "-\n" + text[cut:], quote


def elision(text: str, rng: random.Random) -> str | None:
    """``A (…) B``: two runs of 3-8 words in order, no negation between them."""
    words = list(_WORD.finditer(text))
    if len(words) < 14:
        return None
    a = rng.randint(3, 8)
    i = rng.randrange(0, len(words) - a - 8)
    gap = rng.randint(1, 5)
    b = rng.randint(3, min(8, len(words) - i - a - gap))
    if b < 3:
        return None
    between = text[words[i + a - 1].end() : words[i + a + gap].start()]
    if any(w.lower().strip(".,;:") in NEGATIONS for w in between.split()):
        return None
    first = text[words[i].start() : words[i + a - 1].end()]
    second = text[words[i + a + gap].start() : words[i + a + gap + b - 1].end()]
    return f"{first} (…) {second}"


# --------------------------------------------------------------------------- altered quotes


def altered(quote: str, prompt: Prompt, rng: random.Random) -> Iterator[tuple[str, str]]:
    numbers = list(_NUMBER.finditer(quote))
    if numbers:
        m = rng.choice(numbers)
        digits = [i for i in range(m.start(), m.end()) if quote[i].isdigit()]
        i = rng.choice(digits)
        new = str((int(quote[i]) + rng.randint(1, 9)) % 10)
        yield "digit changed", quote[:i] + new + quote[i + 1 :]
        if len(digits) >= 2:
            a, b = digits[-2], digits[-1]
            if quote[a] != quote[b]:
                yield "digits swapped", quote[:a] + quote[b] + quote[a] + quote[b + 1 :]
        sep = [i for i in range(m.start(), m.end()) if quote[i] in ".,"]
        if sep:
            i = rng.choice(sep)
            kind = "decimal dropped" if quote[i] == "." else "separator changed"
            other = "" if quote[i] == "." else "."
            yield kind, quote[:i] + other + quote[i + 1 :]
        before = quote[m.start() - 1] if m.start() else ""
        if before in "-−":
            yield "sign dropped", quote[: m.start() - 1] + quote[m.start() :]
        elif before in (" ", ""):
            yield "sign added", quote[: m.start()] + "-" + quote[m.start() :]
        after = quote[m.end() : m.end() + 1]
        if after == "%":
            yield "percent dropped", quote[: m.end()] + quote[m.end() + 1 :]
        sign = before in "-−" and before and not quote[m.start() - 2 : m.start() - 1].isalnum()
        if sign:
            yield "sign spaced", quote[: m.start()] + " " + quote[m.start() :]
        runs = [r for r in re.finditer(r"\d{2,}", quote[m.start() : m.end()])]
        if runs:
            r = rng.choice(runs)
            k = m.start() + r.start() + rng.randint(1, len(r.group()) - 1)
            yield "digit group split", quote[:k] + " " + quote[k:]
        if sep:
            i = rng.choice(sep)
            yield "separator spaced", quote[: i + 1] + " " + quote[i + 1 :]
    unit = _CASED_UNIT.search(quote)
    if unit:
        i = unit.start(1)
        flipped = quote[i].lower() if quote[i].isupper() else quote[i].upper()
        yield "unit case changed", quote[:i] + flipped + quote[i + 1 :]
    for unit, other in _UNITS.items():
        m = re.search(rf"(?<=\d) ?{re.escape(unit)}(?!\w)", quote)
        if m:
            yield (
                "unit changed",
                quote[: m.start()]
                + quote[m.start() : m.end()].replace(unit, other)
                + quote[m.end() :],
            )
    aux = _AUX.search(quote)
    if aux:
        yield "negation added", quote[: aux.end()] + " not" + quote[aux.end() :]
    neg = re.search(r"\b(not|never|no)\s", quote)
    if neg:
        yield "negation dropped", quote[: neg.start()] + quote[neg.end() :]
    words = quote.split(" ")
    caps = [i for i, w in enumerate(words) if i and re.fullmatch(r"[A-Z][a-z]{2,}", w)]
    if caps:
        i = rng.choice(caps)
        pool = sorted(
            {w for s in prompt.sources for w in re.findall(r"\b[A-Z][a-z]{3,}\b", s.text)}
            - {words[i]}
        )
        if pool:
            yield "entity swapped", " ".join([*words[:i], rng.choice(pool), *words[i + 1 :]])
    inner = [i for i, w in enumerate(words[1:-1], 1) if w.lower() not in STOPWORDS and len(w) > 3]
    if inner:
        i = rng.choice(inner)
        yield "word dropped", " ".join(words[:i] + words[i + 1 :])
        extra = rng.choice(["new", "large", "former", "only", "main", "official"])
        yield "word inserted", " ".join([*words[:i], extra, *words[i:]])


def wrong_elisions(text: str, others: list[str], rng: random.Random) -> Iterator[tuple[str, str]]:
    pieces = list(spans(text, rng, 2, 4, 8))
    in_order = len(pieces) == 2 and re.search(
        re.escape(pieces[0]) + ".*" + re.escape(pieces[1]), text, re.S
    )
    if len(pieces) == 2 and not in_order:
        yield "elision out of order", f"{pieces[0]} (…) {pieces[1]}"
    m = re.search(r"((?:\S+\s+){3}\S+)\s+(?:\S+\s+){0,2}?(not|never|no)\s+((?:\S+\s+){3}\S+)", text)
    if m:
        yield "elision hides a negation", f"{m.group(1)} (…) {m.group(3)}"
    if pieces and others:
        other = next(spans(rng.choice(others), rng, 1, 4, 8), None)
        # Not when the cited source has those words too (with other line breaks).
        if other and " ".join(other.split()) not in " ".join(text.split()):
            yield "elision across sources", f"{pieces[0]} (…) {other}"


# --------------------------------------------------------------------------- the set


def build_cases(seed: int = 0, per_source: int = 3) -> list[Case]:
    rng = random.Random(seed)
    cases: list[Case] = []
    for prompt in prompts():
        texts = [s.text for s in prompt.sources]
        for k, src in enumerate(prompt.sources):
            others = [t for j, t in enumerate(texts) if j != k]
            targeted = [
                *spans_around(src.text, _NUMBER, rng, per_source),
                *spans_around(src.text, _NEGATED, rng, per_source),
                *spans_around(src.text, _UNIT_OR_PERCENT, rng, per_source),
            ]
            for span in [*spans(src.text, rng, per_source), *targeted]:
                for category, q in true_variants(span, rng):
                    if category == "case" and cased_units(q) != cased_units(span):
                        # "1300 MW" lower-cased is "1300 mw": a unit's case changed.
                        cases.append(Case(False, "unit case changed", prompt, k, q))
                    else:
                        cases.append(Case(True, category, prompt, k, q))
                for category, text, q in fact_sources(src.text, span, rng):
                    variant = Source(text, id=src.id)
                    moved = Prompt(
                        prompt.name,
                        (*prompt.sources[:k], variant, *prompt.sources[k + 1 :]),
                        prompt.query,
                    )
                    cases.append(Case(False, category, moved, k, q))
                hy = hyphenated(src.text, span, rng)
                if hy is not None:
                    variant = Source(hy[0], id=src.id)
                    moved = Prompt(
                        prompt.name,
                        (*prompt.sources[:k], variant, *prompt.sources[k + 1 :]),
                        prompt.query,
                    )
                    cases.append(Case(True, "line-break hyphen", moved, k, hy[1]))
                for category, q in altered(span, prompt, rng):
                    if q != span and q not in src.text:
                        cases.append(Case(False, category, prompt, k, q))
            for _ in range(per_source):
                e = elision(src.text, rng)
                if e:
                    cases.append(Case(True, "correct elision", prompt, k, e))
            for category, q in wrong_elisions(src.text, others, rng):
                cases.append(Case(False, category, prompt, k, q))
        claim = prompt.query.split("Claim:", 1)[-1].strip().rstrip(".?")
        if claim and all(claim not in t for t in texts) and prompt.sources:
            cases.append(Case(False, "query copy", prompt, 0, claim))
    cases += real_quotes()
    return cases


def real_quotes() -> list[Case]:
    """Quotes of the real outputs of part 2 that its index.json says are in the cited source
    (true) or copied from the query (altered)."""
    index = {e["file"]: e for e in json.loads((CORPUS_2 / "index.json").read_text())}
    out = []
    for name, e in sorted(index.items()):
        if not e.get("has_prompt") or e["dialect"] != "numbered":
            continue
        path = CORPUS_2 / "prompts" / e["prompt_file"]
        prompt = Prompt(f"pleias-outputs-2/{name}", tuple(corpus_sources(path)), corpus_query(path))
        ans = parse_response((CORPUS_2 / name).read_text(), prompt.sources, "numbered")
        verdicts = re.findall(r"ref '[^']*' -> ([^:\[]+?)(?: \[[^\]]*\])?: ", e["notes"])
        for c, verdict in zip(ans.citations, verdicts, strict=False):
            if c.source is None:
                continue
            k = prompt.sources.index(c.source)
            if verdict == "quote found in cited source":
                out.append(Case(True, "real output quote", prompt, k, c.quote))
            elif "copied from the QUERY" in verdict:
                out.append(Case(False, "real query copy", prompt, k, c.quote))
    return out


def status_of(case: Case) -> str:
    src = case.prompt.sources[case.cited]
    raw = f'<|answer_start|>x<ref name="{src.id}">{case.quote}</ref>.<|answer_end|>'
    ans = parse_response(raw, case.prompt.sources, "hash", query=case.prompt.query)
    return ans.citations[0].status


def evaluate(cases: list[Case]) -> dict[str, Any]:
    table: dict[str, Counter[str]] = defaultdict(Counter)
    wrong: list[tuple[str, str]] = []
    missed: list[tuple[str, str]] = []
    t0 = time.perf_counter()
    for case in cases:
        status = status_of(case)
        table[case.category][status] += 1
        if status == "verified" and not case.truth:
            wrong.append((case.category, case.quote))
        if status != "verified" and case.truth:
            missed.append((case.category, case.quote))
    seconds = time.perf_counter() - t0
    verified = sum(t["verified"] for t in table.values())
    true = sum(1 for c in cases if c.truth)
    return {
        "cases": len(cases),
        "true": true,
        "altered": len(cases) - true,
        "precision": (verified - len(wrong)) / verified if verified else 1.0,
        "recall": (true - len(missed)) / true if true else 1.0,
        "wrongly_verified": wrong,
        "missed": missed,
        "table": {k: dict(v) for k, v in table.items()},
        "categories": {c.category: c.truth for c in cases},
        "ms_per_case": 1000 * seconds / max(1, len(cases)),
    }


# --------------------------------------------------------------------------- cost


def cost() -> dict[str, Any]:
    """Seconds to check a 16k-char quote against sources of growing length, and the longest
    stall of an event loop while ``aanswer`` checks one (``RemoteBackend`` on a local fake
    server)."""
    rng = random.Random(1)
    words = [f"w{rng.randrange(5000)}" for _ in range(60000)]
    out: dict[str, Any] = {"source_chars": [], "found_s": [], "absent_s": []}
    for n in (4000, 16000, 64000, 256000):
        text = " ".join(words)[:n]
        quote = text[len(text) // 4 : len(text) // 4 + 16000] if n > 20000 else text[: n // 2]
        quote = quote.replace(" w1", " w9", 2)
        absent = " ".join(f"z{rng.randrange(5000)}" for _ in range(3000))[:16000]
        t = time.perf_counter()
        locate_quote(quote, text)
        found = time.perf_counter() - t
        t = time.perf_counter()
        locate_quote(absent, text)
        out["source_chars"].append(n)
        out["found_s"].append(round(found, 4))
        out["absent_s"].append(round(time.perf_counter() - t, 4))
    out["loop_stall_ms"] = round(asyncio.run(_stall()), 1)
    return out


async def _stall() -> float:
    sys.path.insert(0, str(ROOT / "tests" / "remote"))
    from fake_server import FakeServer, Step

    from pleias_rag.remote import RemoteBackend

    text = " ".join(f"w{i % 3001}y{i % 7}" for i in range(20000))
    quote = text[1000:17000].replace("w5", "w6", 3)
    src = Source(text)
    out = f'x<|source_analysis_end|><|answer_start|>y<ref name="{src.id}">"{quote}"</ref>.'
    gaps: list[float] = []
    with FakeServer([Step(text=out + "<|answer_end|>")]) as fake:
        backend = RemoteBackend(fake.base_url, "fake", dialect="hash")
        done = False

        async def tick() -> None:
            last = time.perf_counter()
            while not done:
                await asyncio.sleep(0.001)
                now = time.perf_counter()
                gaps.append(now - last)
                last = now

        ticker = asyncio.create_task(tick())
        await backend.aanswer("q?", [src])
        done = True
        await ticker
    return 1000 * max(gaps)


def report(res: dict[str, Any], costs: dict[str, Any] | None) -> str:
    lines = [
        f"{res['cases']} cases ({res['true']} true, {res['altered']} altered), "
        f"{res['ms_per_case']:.2f} ms per case",
        f"precision of verified: {100 * res['precision']:.2f}% "
        f"({len(res['wrongly_verified'])} altered quotes verified)",
        f"recall on true quotes: {100 * res['recall']:.2f}% ({len(res['missed'])} missed)",
        "",
        "| category | truth | " + " | ".join(STATUSES) + " |",
        "|---|---|" + "---|" * len(STATUSES),
    ]
    for category, counts in sorted(
        res["table"].items(), key=lambda kv: not res["categories"][kv[0]]
    ):
        truth = "true" if res["categories"][category] else "altered"
        cells = " | ".join(str(counts.get(s, 0)) for s in STATUSES)
        lines.append(f"| {category} | {truth} | {cells} |")
    for category, quote in res["wrongly_verified"][:20]:
        lines.append(f"WRONGLY VERIFIED ({category}): {quote!r}")
    for category, quote in res["missed"][:20]:
        lines.append(f"missed ({category}): {quote[:120]!r}")
    if costs:
        lines += [
            "",
            "| source chars | 16k quote found (s) | 16k quote absent (s) |",
            "|---|---|---|",
        ]
        for n, f, a in zip(costs["source_chars"], costs["found_s"], costs["absent_s"], strict=True):
            lines.append(f"| {n} | {f} | {a} |")
        lines.append(
            f"longest event-loop stall in aanswer with a 16k quote: {costs['loop_stall_ms']} ms"
        )
    return "\n".join(lines)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--per-source", type=int, default=3, help="spans drawn per source")
    p.add_argument("--no-cost", action="store_true", help="skip the long-quote timings")
    p.add_argument("--json", type=Path, help="also write the figures here")
    args = p.parse_args()
    res = evaluate(build_cases(args.seed, args.per_source))
    costs = None if args.no_cost else cost()
    print(report(res, costs))
    if args.json:
        data = {k: v for k, v in res.items() if k not in ("categories",)}
        args.json.write_text(json.dumps({**data, "cost": costs}, indent=1))


if __name__ == "__main__":
    main()
