"""Per-row sampling inside one batched greedy ``generate``.

transformers samples a whole batch from the global torch RNG with one temperature and top_p,
so a seeded answer would depend on what else is in its batch, and seeding would disturb every
other user of the global RNG. Instead ``generate`` runs greedy and this processor, last in the
chain, samples the sampling rows itself, then leaves only the chosen token for the argmax.
Greedy and sampling requests can so share a batch, and a seed gives the same output whatever
its neighbours. It also applies each row's ``min_new_tokens`` (stop tokens masked until then).

Temperature and top-p run batched over all sampling rows: one softmax, one sort and cumsum
(of the rows with top_p < 1) and one mask for the batch, where a per-row loop sorted the
whole vocabulary once per row and step. The nucleus is the most likely tokens until their
mass reaches top_p (and any tied with the last), so the most likely token is always kept;
top_p=1.0 cuts nothing. Only the noise is per row: each row's own generator fills its row of
uniform numbers, and the token is argmax(p / E) with E = -log(u) ~ Exp(1), a draw from p
(what torch.multinomial does for one sample). With the noise tied to token ids, float noise
in a row's logits between batches seldom changes its token; an inverse-CDF pick (one number
per row, cheaper) changed it often, since the sorted order of near-equal logits flips.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any, cast

import torch
from transformers import LogitsProcessor

from ._streaming import Row

if TYPE_CHECKING:
    from ..generation import GenerationSettings


class RowSampler(LogitsProcessor):
    """Samples the rows that asked for it, and masks stop tokens below ``min_new_tokens``."""

    def __init__(self, rows: Sequence[Row], device: torch.device) -> None:
        self.rows = list(rows)
        self._short: list[int] = []
        self._index: tuple[torch.Tensor, torch.Tensor] | None = None
        self._active: list[int] = []
        self._batch: _Batch | None = None
        self.generators: list[torch.Generator | None] = []
        for row in self.rows:
            try:
                gen = row.generator(device)
            except (ValueError, TypeError, OverflowError, RuntimeError) as exc:
                row.fail(exc)  # this row alone (settings check the seed: never expected)
                gen = None
            self.generators.append(gen)

    def __call__(self, input_ids: torch.LongTensor, scores: torch.FloatTensor) -> Any:
        return self.apply(scores)

    def apply(self, scores: torch.Tensor) -> torch.Tensor:
        """Modify ``scores`` (one row per row, in place) so their argmax is each row's token."""
        short = [
            i
            for i, row in enumerate(self.rows)
            if not row.done and row.tokens < row.request.settings.min_new_tokens
        ]
        if short:  # one indexing op for the batch (rows share their stop ids)
            if short != self._short or self._index is None:  # built once, not per step
                self._short = short
                self._index = (
                    torch.tensor(short, device=scores.device)[:, None],
                    torch.tensor(self.rows[0].request.stop_ids, device=scores.device)[None, :],
                )
            scores[self._index] = float("-inf")
        active = [
            i
            for i, (row, gen) in enumerate(zip(self.rows, self.generators, strict=True))
            if not row.done and gen is not None
        ]
        if active:
            self._sample(active, scores)
        return scores

    def _sample(self, active: list[int], scores: torch.Tensor) -> None:
        if active != self._active or self._batch is None:  # rebuilt only when rows finish
            self._active = active
            self._batch = _Batch(
                [self.rows[i].request.settings for i in active],
                active,
                [cast(torch.Generator, self.generators[i]) for i in active],
                scores.device,
            )
        self._batch.sample(scores)


class _Batch:
    """The sampling rows of one step, with their settings as tensors."""

    def __init__(
        self,
        settings: list[GenerationSettings],
        rows: list[int],
        generators: list[torch.Generator],
        device: torch.device,
    ) -> None:
        self.index = torch.tensor(rows, device=device)
        self.temperature = torch.tensor([s.temperature for s in settings], device=device)[:, None]
        self.generators = generators
        # Rows with a nucleus cut (top_p < 1), as positions in this batch, and their top_p.
        cut = [k for k, s in enumerate(settings) if s.top_p < 1.0]
        self.cut: torch.Tensor | None = None  # None: all rows or none (see any_cut)
        if len(cut) < len(settings):
            self.cut = torch.tensor(cut, device=device) if cut else None
        self.any_cut = bool(cut)
        self.top_p = torch.tensor([settings[k].top_p for k in cut], device=device)[:, None]

    def sample(self, scores: torch.Tensor) -> None:
        probs = (scores[self.index].float() / self.temperature).softmax(-1)
        if self.any_cut:
            part = probs if self.cut is None else probs[self.cut]
            ordered = part.sort(dim=-1, descending=True).values
            cumulative = ordered.cumsum(-1)
            # The nucleus: the tokens whose preceding mass is below top_p (at least the first).
            last = cumulative.shape[-1] - 1
            size = torch.searchsorted(cumulative, self.top_p).clamp_(max=last)
            part = part.masked_fill(part < ordered.gather(-1, size), 0.0)
            if self.cut is None:
                probs = part
            else:
                probs[self.cut] = part
        # Exponential race: argmax(p / E), E ~ Exp(1) per token, is a draw from p (what
        # torch.multinomial does for one sample). Each row's noise comes from its generator;
        # u = 0 gives E = inf, so that token cannot win (never a NaN: E > 0 always).
        noise = torch.empty_like(probs)
        for k, gen in enumerate(self.generators):
            noise[k].uniform_(generator=gen)
        tokens = probs.div_(noise.log_().neg_()).argmax(-1, keepdim=True)
        scores[self.index] = float("-inf")
        scores[self.index[:, None], tokens] = 0.0
