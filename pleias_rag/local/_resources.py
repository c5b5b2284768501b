"""What one ``PleiasModel`` loads lazily: its tokenizer bundle and worker.

Tokenizers and weights come from process-wide weak caches, so every object pointing at the
same model (and device, dtype) shares one copy and one generation thread.
"""

from __future__ import annotations

import threading
from collections.abc import Mapping
from typing import Any

import torch

from ._batching import Worker
from ._loading import (
    SharedCache,
    TokenizerBundle,
    cache_key,
    freeze,
    load_model,
    load_tokenizer,
)

TOKENIZERS: SharedCache[TokenizerBundle] = SharedCache()
WORKERS: SharedCache[Worker] = SharedCache()


class Resources:
    """Lazily loaded, shared tokenizer and weights (thread-safe).

    Args:
        name: hub id or folder.
        dialect: forced dialect, or None to detect it.
        device: where the weights go (ignored with ``device_map``).
        dtype: the weights' dtype.
        device_map: a transformers device map, or None.
        revision: hub revision.
        model_kwargs: extra ``from_pretrained`` arguments for the model.
        tokenizer_kwargs: extra ``from_pretrained`` arguments for the tokenizer.
    """

    def __init__(
        self,
        name: str,
        *,
        dialect: str | None,
        device: torch.device,
        dtype: torch.dtype,
        device_map: str | Mapping[str, Any] | None,
        revision: str | None,
        model_kwargs: Mapping[str, Any],
        tokenizer_kwargs: Mapping[str, Any],
    ) -> None:
        self.name = name
        self.dialect = dialect
        self.device = device
        self.dtype = dtype
        self.device_map = device_map
        self.revision = revision
        self.model_kwargs = dict(model_kwargs)
        self.tokenizer_kwargs = dict(tokenizer_kwargs)
        self._lock = threading.Lock()
        self._bundle: TokenizerBundle | None = None
        self._worker: Worker | None = None

    @property
    def worker_loaded(self) -> bool:
        return self._worker is not None

    def bundle(self) -> TokenizerBundle:
        if self._bundle is None:
            key = (cache_key(self.name, self.revision), self.dialect, freeze(self.tokenizer_kwargs))
            bundle = TOKENIZERS.get(
                key,
                lambda: load_tokenizer(
                    self.name,
                    dialect=self.dialect,
                    revision=self.revision,
                    kwargs=self.tokenizer_kwargs,
                ),
            )
            with self._lock:
                if self._bundle is None:
                    self._bundle = bundle
        return self._bundle

    def worker(self) -> Worker:
        """The live shared worker of these weights: a closed or dead one (its thread ended
        by ``close()`` or an exception) is dropped, here and from the shared cache, and a new
        one is built (the weights loaded again)."""
        worker = self._worker
        if worker is not None and worker.alive:
            return worker
        where = str(self.device) if self.device_map is None else freeze(self.device_map)
        key = (
            cache_key(self.name, self.revision),
            where,
            str(self.dtype),
            freeze(self.model_kwargs),
        )
        worker = WORKERS.get(key, self._build_worker, usable=_alive)
        with self._lock:
            if self._worker is None or not self._worker.alive:
                self._worker = worker
            return self._worker

    def _build_worker(self) -> Worker:
        model = load_model(
            self.name,
            device=self.device,
            dtype=self.dtype,
            device_map=self.device_map,
            revision=self.revision,
            kwargs=self.model_kwargs,
        )
        return Worker(model, self.name)


def _alive(worker: Worker) -> bool:
    return worker.alive
