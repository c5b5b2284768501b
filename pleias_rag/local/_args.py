"""The seed of a local request's sampling generator."""

from __future__ import annotations

import torch

from ..generation import GenerationSettings


def request_seed(settings: GenerationSettings) -> int:
    """The seed of a request's sampling generator.

    Unseeded sampling draws it from the caller's global torch RNG, so ``torch.manual_seed``
    before the call makes it reproducible too; greedy requests leave the RNG alone.
    """
    if settings.greedy:
        return 0
    if settings.seed is not None:
        return settings.seed
    return int(torch.randint(0, 2**62, (1,)).item())
