"""``PleiasModel``: Pleias RAG models run in-process with transformers."""

from __future__ import annotations

import importlib.util
import os
from collections.abc import Mapping
from typing import Any

import torch

from ..backend import Backend
from ..checks import check_int, check_seconds
from ..dialects import check_dialect
from ..errors import InvalidArgument
from ..generation import GenerationSettings
from ._batching import Worker
from ._engine import LocalEngine
from ._loading import resolve_device, resolve_dtype
from ._resources import Resources

SCHEDULING = ("continuous", "static")


class PleiasModel(Backend):
    """A Pleias RAG model run in-process: batched, streaming, thread- and async-safe.

    Loading is lazy (the tokenizer on first need, the weights on first generation) and
    shared: every ``PleiasModel`` of the same model, device and dtype uses one copy of the
    weights and one generation thread, which coalesces concurrent calls into batched
    ``generate`` calls. Generation follows the Pleias recommendations (greedy, no repetition
    penalty, special tokens kept, stop on ``<|answer_end|>`` or EOS).

    Args:
        name_or_path: a hub id (``PleIAs/Pleias-RAG-350M``...) or a local model folder.
        dialect: ``hash`` or ``numbered``; detected from the tokenizer when None.
        device: ``cpu``, ``cuda``, ``cuda:1``...; None picks CUDA when available.
        dtype: ``auto`` (default: bf16 on CUDA and on CPUs with native bf16, fp32 elsewhere),
            ``bfloat16``, ``float16``, ``float32`` or a ``torch.dtype``.
        device_map: passed to transformers to spread the model (``"auto"``...), instead of
            ``device``.
        revision: the hub revision.
        context_window: overrides the config's ``max_position_embeddings``.
        max_sources: most sources per prompt (default 10 for the numbered dialect).
        max_batch_size: most questions generating together.
        batch_window: seconds an idle worker waits for concurrent calls to start together.
        scheduling: ``continuous`` (default): a call arriving while others generate joins
            them at the next decoding step, and each leaves the moment it is done;
            ``static``: one ``generate`` per batch, later calls waiting for its longest row
            (also what models whose cache cannot be merged get).
        generation: default :class:`~pleias_rag.GenerationSettings` (or a dict of them).
        model_kwargs: more ``from_pretrained`` arguments for the model (``attn_implementation``...).
        tokenizer_kwargs: more ``from_pretrained`` arguments for the tokenizer.
    """

    def __init__(
        self,
        name_or_path: str | os.PathLike[str],
        *,
        dialect: str | None = None,
        device: str | torch.device | None = None,
        dtype: str | torch.dtype | None = None,
        device_map: str | Mapping[str, Any] | None = None,
        revision: str | None = None,
        context_window: int | None = None,
        max_sources: int | None = None,
        max_batch_size: int = 8,
        batch_window: float = 0.003,
        scheduling: str = "continuous",
        generation: GenerationSettings | Mapping[str, Any] | None = None,
        model_kwargs: Mapping[str, Any] | None = None,
        tokenizer_kwargs: Mapping[str, Any] | None = None,
    ) -> None:
        if not isinstance(name_or_path, (str, os.PathLike)) or not os.fspath(name_or_path):
            raise InvalidArgument(
                f"name_or_path must be a hub id or a folder path, got {name_or_path!r}"
            )
        if device is not None and device_map is not None:
            raise InvalidArgument("give device or device_map, not both")
        if device_map is not None and importlib.util.find_spec("accelerate") is None:
            raise InvalidArgument(
                "device_map needs the accelerate package: pip install accelerate, "
                "or pass device= instead"
            )
        if scheduling not in SCHEDULING:
            raise InvalidArgument(
                f"scheduling must be one of {', '.join(map(repr, SCHEDULING))}, got {scheduling!r}"
            )
        dev = resolve_device(device)
        self._res = Resources(
            os.fspath(name_or_path),
            dialect=check_dialect(dialect) if dialect is not None else None,
            device=dev,
            dtype=resolve_dtype(dtype, dev),
            device_map=device_map,
            revision=revision,
            model_kwargs=model_kwargs or {},
            tokenizer_kwargs=tokenizer_kwargs or {},
        )
        engine = LocalEngine(
            self._res,
            max_batch_size=check_int("max_batch_size", max_batch_size, 1),
            batch_window=check_seconds("batch_window", batch_window, maximum=1.0),
            continuous=scheduling == "continuous",
        )
        super().__init__(
            engine, generation=generation, context_window=context_window, max_sources=max_sources
        )

    @classmethod
    def from_pretrained(cls, name_or_path: str | os.PathLike[str], **kwargs: Any) -> PleiasModel:
        """A lazily loaded model (see :class:`PleiasModel` for the arguments)."""
        return cls(name_or_path, **kwargs)

    def __repr__(self) -> str:
        r = self._res
        return (
            f"PleiasModel({r.name!r}, dialect={r.dialect!r}, device={str(r.device)!r}, "
            f"dtype={str(r.dtype).removeprefix('torch.')!r})"
        )

    def load(self) -> PleiasModel:
        """Load the tokenizer and weights now instead of on first use; returns self."""
        self._res.bundle()
        self._res.worker()
        return self

    # -- properties --------------------------------------------------------------------

    @property
    def device(self) -> torch.device:
        """Where the inputs go (the first device of a ``device_map``)."""
        if self._res.device_map is not None:
            return torch.device(self._res.worker().model.device)
        return self._res.device

    @property
    def dtype(self) -> torch.dtype:
        return self._res.dtype

    @property
    def tokenizer(self) -> Any:
        return self._res.bundle().tokenizer

    @property
    def model(self) -> Any:
        """The loaded transformers model (loads it); shared, do not modify it."""
        return self._res.worker().model

    @property
    def worker(self) -> Worker:
        """The generation thread of these weights (loads them)."""
        return self._res.worker()
