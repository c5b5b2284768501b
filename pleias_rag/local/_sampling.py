"""Per-row sampling inside one batched greedy ``generate``.

transformers samples a whole batch from the global torch RNG with one temperature and top_p,
so a seeded answer would depend on what else is in its batch, and seeding would disturb every
other user of the global RNG. Instead ``generate`` runs greedy and this processor, last in the
chain, samples each sampling row itself with the row's temperature, top_p and private
``torch.Generator``, then leaves only the chosen token for the argmax. Greedy and sampling
requests can so share a batch, and a seed gives the same output whatever its neighbours.
It also applies each row's ``min_new_tokens`` (stop tokens masked until then).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch
from transformers import LogitsProcessor

from ._streaming import Row


def top_p_filter(logits: torch.Tensor, top_p: float) -> torch.Tensor:
    """``logits`` (1-D) with the tokens outside the top-p nucleus set to -inf."""
    if top_p >= 1.0:
        return logits
    sorted_logits, order = torch.sort(logits, descending=False)
    cumulative = sorted_logits.softmax(-1).cumsum(-1)
    remove = cumulative <= (1.0 - top_p)
    remove[-1] = False  # always keep the most likely token
    mask = remove.scatter(0, order, remove)
    return logits.masked_fill(mask, float("-inf"))


class RowSampler(LogitsProcessor):
    """Samples the rows that asked for it, and masks stop tokens below ``min_new_tokens``."""

    def __init__(self, rows: Sequence[Row], device: torch.device) -> None:
        self.rows = list(rows)
        self._short: list[int] = []
        self._index: tuple[torch.Tensor, torch.Tensor] | None = None
        self.generators: list[torch.Generator | None] = []
        for row in self.rows:
            s = row.request.settings
            if s.greedy:
                self.generators.append(None)
                continue
            gen = torch.Generator(device=device)
            gen.manual_seed(row.request.seed)
            self.generators.append(gen)

    def __call__(self, input_ids: torch.LongTensor, scores: torch.FloatTensor) -> Any:
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
        for i, (row, gen) in enumerate(zip(self.rows, self.generators, strict=True)):
            if row.done or gen is None:
                continue
            s = row.request.settings
            logits = top_p_filter(scores[i].float() / s.temperature, s.top_p)
            probs = logits.softmax(-1)
            token = torch.multinomial(probs, 1, generator=gen)
            scores[i] = float("-inf")
            scores[i, token] = 0.0
        return scores
