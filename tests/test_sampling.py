"""RowSampler: batched temperature + top-p with a private generator per row.

The sampler is called directly on hand-made score tensors, with real ``Row`` objects: what
it draws, how often, and that a seeded row does not depend on the rest of its batch.
"""

from __future__ import annotations

import math
from collections import Counter
from typing import cast

import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("transformers")

from pleias_rag.generation import GenerationSettings  # noqa: E402
from pleias_rag.local._sampling import RowSampler  # noqa: E402
from pleias_rag.local._streaming import Request, Row, ThreadSink  # noqa: E402
from pleias_rag.tokens import TokenCodec  # noqa: E402

DEVICES = ["cpu", *(["cuda"] if torch.cuda.is_available() else [])]
STOP_IDS = (0, 1)


class _Codec:
    """The one thing ``Row`` needs of a codec (its incremental decoder's ``decode``)."""

    def decode(self, ids: object) -> str:
        return ""


def make_row(
    temperature: float = 0.0, top_p: float = 1.0, seed: int = 0, min_new_tokens: int = 0
) -> Row:
    settings = GenerationSettings(
        max_new_tokens=max(1, min_new_tokens) + 100,
        temperature=temperature,
        top_p=top_p,
        min_new_tokens=min_new_tokens,
    )
    request = Request(
        ids=(5,),
        settings=settings,
        sink=ThreadSink(),
        codec=cast(TokenCodec, _Codec()),
        stop_ids=STOP_IDS,
        pad_id=2,
        seed=seed,
    )
    return Row(request)


def sampled(scores: torch.Tensor) -> list[int]:
    """The token each row of the processed scores leaves for generate's argmax."""
    return [int(t) for t in scores.argmax(-1).tolist()]


def expected_nucleus(logits: torch.Tensor, temperature: float, top_p: float) -> dict[int, float]:
    """Token -> probability: the temperature softmax renormalised over the top-p nucleus.

    Computed independently of the sampler, in float64; asserts that no cumulative mass lies
    so close to top_p that float32 rounding could move the nucleus boundary.
    """
    probs = torch.softmax(logits.double() / temperature, -1)
    ranked = sorted(range(len(probs)), key=lambda t: -float(probs[t]))
    kept: list[int] = []
    mass = 0.0
    for token in ranked:
        kept.append(token)
        mass += float(probs[token])
        if top_p < 1.0 and mass >= top_p:
            assert mass - top_p > 1e-4, "pick logits with a clear nucleus boundary"
            break
    return {t: float(probs[t]) / mass for t in kept}


def chi2_bound(df: int, z: float = 3.5) -> float:
    """An upper quantile of chi-square(df) (Wilson-Hilferty; z=3.5 is p of about 2e-4)."""
    a = 2.0 / (9.0 * df)
    return df * (1.0 - a + z * math.sqrt(a)) ** 3


def draw_many(
    logits: torch.Tensor,
    temperature: float,
    top_p: float,
    *,
    rows: int,
    steps: int,
    device: str,
    mixed: bool = False,
) -> Counter[int]:
    """Tokens drawn by ``rows`` seeded rows with the same logits over ``steps`` calls.

    ``mixed``: every other row of the batch is a top_p=1.0 row (its draws not counted).
    """
    batch = [make_row(temperature, top_p, seed=1000 + i) for i in range(rows)]
    if mixed:
        batch = [r for i, row in enumerate(batch) for r in (row, make_row(1.0, 1.0, seed=i))]
    sampler = RowSampler(batch, torch.device(device))
    ids = torch.zeros((len(batch), 1), dtype=torch.long, device=device)
    counts: Counter[int] = Counter()
    for _ in range(steps):
        scores = logits.to(device).expand(len(batch), -1).clone()
        out = sampler(cast(torch.LongTensor, ids), cast(torch.FloatTensor, scores))
        assert bool((out.isfinite().sum(-1) == 1).all()), "one token left per sampling row"
        counts.update(sampled(out)[:: 2 if mixed else 1])
    return counts


def spread_logits(vocab: int, seed: int) -> torch.Tensor:
    """Random logits over ``vocab`` tokens, their order shuffled away from the token ids."""
    gen = torch.Generator().manual_seed(seed)
    return torch.randn(vocab, generator=gen) * 2.0


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize(("temperature", "top_p"), [(1.0, 0.6), (0.5, 0.9), (2.0, 0.3)])
@pytest.mark.parametrize("mixed", [False, True])
def test_never_outside_the_nucleus(
    device: str, temperature: float, top_p: float, mixed: bool
) -> None:
    logits = spread_logits(2000, seed=3)
    nucleus = expected_nucleus(logits, temperature, top_p)
    assert 3 <= len(nucleus) < 1000
    counts = draw_many(logits, temperature, top_p, rows=400, steps=25, device=device, mixed=mixed)
    outside = set(counts) - set(nucleus)
    assert not outside, f"tokens outside the nucleus drawn: {sorted(outside)[:10]}"
    assert len(set(counts)) > len(nucleus) // 2


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize(
    ("temperature", "top_p"), [(1.0, 0.8), (0.7, 0.95), (1.5, 0.5), (1.0, 1.0), (3.0, 1.0)]
)
def test_frequencies_follow_the_renormalised_nucleus(
    device: str, temperature: float, top_p: float
) -> None:
    logits = torch.tensor([3.0, 2.6, 2.2, 1.9, 1.5, 1.0, 0.4, -0.3, -1.0, -2.0, -3.5, -5.0])
    logits = logits[torch.randperm(len(logits), generator=torch.Generator().manual_seed(1))]
    nucleus = expected_nucleus(logits, temperature, top_p)
    draws = 30_000
    counts = draw_many(logits, temperature, top_p, rows=1000, steps=30, device=device)
    assert set(counts) <= set(nucleus)
    # Chi-square over the nucleus, bins with an expected count under 5 merged into one.
    stat, tail_obs, tail_exp, bins = 0.0, 0, 0.0, 0
    for token, p in nucleus.items():
        expected = p * draws
        if expected < 5:
            tail_obs, tail_exp = tail_obs + counts[token], tail_exp + expected
            continue
        stat += (counts[token] - expected) ** 2 / expected
        bins += 1
    if tail_exp > 0:
        stat += (tail_obs - tail_exp) ** 2 / tail_exp
        bins += 1
    assert bins >= 2
    assert stat < chi2_bound(bins - 1), (stat, counts, nucleus)


@pytest.mark.parametrize("device", DEVICES)
def test_frequencies_depend_on_the_temperature(device: str) -> None:
    """The same logits at two temperatures: each matches its own law, not the other's."""
    logits = torch.tensor([2.0, 1.0, 0.0, -1.0])
    cold = draw_many(logits, 0.5, 1.0, rows=500, steps=20, device=device)
    hot = draw_many(logits, 2.0, 1.0, rows=500, steps=20, device=device)
    p_cold = torch.softmax(logits.double() / 0.5, -1)
    p_hot = torch.softmax(logits.double() / 2.0, -1)
    assert abs(cold[0] / 10_000 - float(p_cold[0])) < 0.02
    assert abs(hot[0] / 10_000 - float(p_hot[0])) < 0.02
    assert float(p_cold[0]) - float(p_hot[0]) > 0.3


@pytest.mark.parametrize("device", DEVICES)
def test_the_most_likely_token_is_always_kept(device: str) -> None:
    """A top_p below the first token's mass leaves only that token, so it is always drawn."""
    logits = torch.tensor([0.0, 4.0, 1.0, 2.0])  # token 1 has about 0.84 of the mass
    counts = draw_many(logits, 1.0, 0.05, rows=200, steps=5, device=device)
    assert counts == Counter({1: 1000})


@pytest.mark.parametrize("device", DEVICES)
def test_top_p_one_cuts_nothing(device: str) -> None:
    """top_p=1.0 draws even the least likely token; a top_p just below 1 never does."""
    logits = torch.tensor([6.0, 2.0, 1.5, 1.0, 0.5, 0.0, 0.9])  # token 5: about 0.2 %
    counts = draw_many(logits, 1.0, 1.0, rows=1000, steps=10, device=device)
    assert set(counts) == set(range(7))
    counts = draw_many(logits, 1.0, 0.997, rows=1000, steps=10, device=device)
    assert 5 not in counts
    assert set(counts) == {0, 1, 2, 3, 4, 6}


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("top_p", [0.9, 1.0])
def test_a_tiny_change_of_the_logits_seldom_changes_the_draw(device: str, top_p: float) -> None:
    """A model's logits for a row differ by float noise from one batch to another (padding,
    kernels): with the same seed, the token must then almost always stay the same. (An
    inverse-CDF pick in the sorted order changed about 1 draw in 10 here.)"""
    gen = torch.Generator().manual_seed(0)
    logits = torch.randn(65536, generator=gen)
    nudged = logits + 1e-5 * torch.randn(65536, generator=gen)
    n = 300

    def draw(values: torch.Tensor) -> list[int]:
        rows = [make_row(1.0, top_p, seed=s) for s in range(n)]
        sampler = RowSampler(rows, torch.device(device))
        ids = torch.zeros((n, 1), dtype=torch.long, device=device)
        scores = values.to(device).expand(n, -1).clone()
        return sampled(sampler(cast(torch.LongTensor, ids), cast(torch.FloatTensor, scores)))

    first, second = draw(logits), draw(nudged)
    assert len(set(first)) > n // 2  # really sampled from a wide distribution
    assert sum(a != b for a, b in zip(first, second, strict=True)) <= 3


def run_steps(rows: list[Row], position: int, steps: list[torch.Tensor], device: str) -> list[int]:
    """Tokens of ``rows[position]`` over ``steps`` (each: that row's logits for one step).

    The other rows get their own random logits; a row whose request says so finishes early.
    """
    sampler = RowSampler(rows, torch.device(device))
    ids = torch.zeros((len(rows), 1), dtype=torch.long, device=device)
    noise = torch.Generator().manual_seed(len(rows) * 31 + position)
    tokens = []
    for k, logits in enumerate(steps):
        scores = torch.randn((len(rows), logits.shape[-1]), generator=noise) * 3.0
        scores[position] = logits
        out = sampler(cast(torch.LongTensor, ids), cast(torch.FloatTensor, scores.to(device)))
        picks = sampled(out)
        tokens.append(picks[position])
        for i, row in enumerate(rows):
            if not row.done:
                row.tokens += 1
                if i != position and row.request.seed % 3 == 0 and k == 4:
                    row.done = True  # a neighbour finishing changes the set of sampled rows
    return tokens


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("top_p", [0.9, 1.0])
def test_a_seed_gives_the_same_tokens_whatever_its_neighbours(device: str, top_p: float) -> None:
    vocab = 4096
    gen = torch.Generator().manual_seed(11)
    # Rounded: many tied logits, also at the nucleus boundary.
    steps = [(torch.randn(vocab, generator=gen) * 1.5).round(decimals=1) for _ in range(12)]

    def target() -> Row:
        return make_row(temperature=0.9, top_p=top_p, seed=42)

    def neighbours(n: int, salt: int) -> list[Row]:
        out = []
        for j in range(n):
            if j % 3 == 1:
                out.append(make_row())  # greedy
            else:
                neighbour_p = 1.0 if j % 4 == 0 else 0.5 + 0.1 * (j % 5)
                out.append(make_row(0.5 + 0.25 * j, neighbour_p, seed=salt * 100 + j))
        return out

    alone = run_steps([target()], 0, steps, device)
    assert len(set(alone)) > 3  # it really samples
    for n, position, salt in [(1, 0, 1), (1, 1, 2), (7, 3, 3), (7, 7, 4), (15, 0, 5)]:
        rows = neighbours(n, salt)
        rows.insert(position, target())
        assert run_steps(rows, position, steps, device) == alone, (n, position)
    other = run_steps([make_row(temperature=0.9, top_p=top_p, seed=43)], 0, steps, device)
    assert other != alone


@pytest.mark.parametrize("device", DEVICES)
def test_greedy_and_done_rows_are_untouched(device: str) -> None:
    rows = [make_row(), make_row(1.0, 0.9, seed=1), make_row(), make_row(0.7, 1.0, seed=2)]
    rows.append(make_row(1.0, 0.5, seed=3))
    rows[4].done = True
    sampler = RowSampler(rows, torch.device(device))
    scores = torch.randn((5, 300), generator=torch.Generator().manual_seed(0)).to(device)
    before = scores.clone()
    ids = torch.zeros((5, 1), dtype=torch.long, device=device)
    out = sampler(cast(torch.LongTensor, ids), cast(torch.FloatTensor, scores))
    for i in (0, 2, 4):
        assert torch.equal(out[i], before[i])
    for i in (1, 3):
        assert int(out[i].isfinite().sum()) == 1
        assert float(out[i].max()) == 0.0
    assert sampler.generators[0] is None and sampler.generators[2] is None


@pytest.mark.parametrize("device", DEVICES)
def test_min_new_tokens_masks_stop_tokens_until_reached(device: str) -> None:
    rows = [
        make_row(min_new_tokens=3),  # greedy
        make_row(1.0, 1.0, seed=5, min_new_tokens=3),
        make_row(),  # greedy, no minimum
        make_row(1.0, 1.0, seed=6, min_new_tokens=6),
    ]
    sampler = RowSampler(rows, torch.device(device))
    ids = torch.zeros((4, 1), dtype=torch.long, device=device)
    vocab = 50
    for step in range(8):
        scores = torch.zeros((4, vocab))
        scores[:, list(STOP_IDS)] = 30.0  # a stop token is all but certain when allowed
        before = scores.clone()
        out = sampler(cast(torch.LongTensor, ids), cast(torch.FloatTensor, scores.to(device)))
        picks = sampled(out)
        for i, row in enumerate(rows):
            masked = row.tokens < row.request.settings.min_new_tokens
            if i in (0, 2):  # greedy rows: stop ids at -inf while short, else untouched
                if masked:
                    assert bool((out[i, list(STOP_IDS)] == float("-inf")).all())
                    assert torch.equal(out[i, 2:].cpu(), before[i, 2:])
                else:
                    assert torch.equal(out[i].cpu(), before[i])
            if masked:
                assert picks[i] not in STOP_IDS, (step, i)
            row.tokens += 1
        if step >= 6:  # past every minimum: the stop tokens win again
            assert [picks[i] in STOP_IDS for i in range(4)] == [True] * 4
