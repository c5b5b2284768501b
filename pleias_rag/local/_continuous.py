"""Continuous batching: rows join the running batch at the next decoding step and leave the
moment they finish, over a KV cache of our own layout.

Theory of operation. The batch is a set of rows decoding together, one token a step, over
one key/value cache whose columns are left-padded per row: column ``j`` of row ``i`` holds a
real token where ``mask[i, j]`` is 1. A row's RoPE position is its count of real tokens,
independent of its column, so rows of any prompt length and age share the cache:

- join: the new requests' prompts are prefilled together in a cache of their own (left
  padded), their first token chosen, then their cache is merged in: the shorter of the two
  caches is left-padded to the longer, and the rows are stacked;
- step: every row's last token goes through the model at once; each row takes its next
  token, and rows that finished (a stop, their own length, their consumer gone) are removed
  from the cache at once, with any leading columns no remaining row uses;
- :class:`Slab` keeps each layer in a buffer with room to grow, so a step writes one column
  instead of copying the whole cache (transformers' ``DynamicLayer`` concatenates).

Errors stay with their request: a failed prefill leaves the running rows untouched and its
joiners are prefilled again in halves until the failing one is alone; a failed step puts the
rows not done into isolation groups, run apart (and halved again on failure) before anything
else joins, so only the row that breaks its batch gets the error. A streamed row run again
sends only what it had not sent yet (see ``Row.replay``).
"""

from __future__ import annotations

import inspect
from collections.abc import Callable, Sequence
from typing import Any

import torch
from transformers.cache_utils import Cache, DynamicLayer

from ._sampling import RowSampler
from ._streaming import Request, Row

_GROW = 256  # spare columns allocated at least, when a slab must grow


class Slab(DynamicLayer):  # type: ignore[no-untyped-call]  # transformers is untyped
    """One layer's keys and values ``[batch, heads, columns, dim]`` in a buffer with spare
    columns: ``keys``/``values`` are views of the used part."""

    def __init__(self) -> None:
        super().__init__()  # type: ignore[no-untyped-call]
        self.length = 0
        self.reserve = _GROW  # columns to keep spare when (re)allocating
        self._k: torch.Tensor | None = None
        self._v: torch.Tensor | None = None

    def update(
        self, key_states: torch.Tensor, value_states: torch.Tensor, *args: Any, **kwargs: Any
    ) -> tuple[torch.Tensor, torch.Tensor]:
        n = key_states.shape[-2]
        if self._k is None or self._v is None:
            self.is_initialized = True
            self.device = key_states.device
            self._k = _buffer(key_states, n + self.reserve)
            self._v = _buffer(value_states, n + self.reserve)
        elif self.length + n > self._k.shape[-2]:
            room = self.length + n + max(self.reserve, _GROW, self.length // 2)
            self._k = _moved(self._k, self.length, room)
            self._v = _moved(self._v, self.length, room)
        self._k[:, :, self.length : self.length + n] = key_states
        self._v[:, :, self.length : self.length + n] = value_states
        self.length += n
        self.keys = self._k[:, :, : self.length]
        self.values = self._v[:, :, : self.length]
        return self.keys, self.values

    def get_seq_length(self) -> int:
        return self.length

    def relayout(self, rows: torch.Tensor | None, start: int, width: int) -> None:
        """Keep the batch ``rows`` (all when None) and the columns from ``start``, right
        aligned in ``width`` columns (zeros on the left: masked out)."""
        if self._k is None or self._v is None:
            return
        self._k = _relaid(self._k[:, :, start : self.length], rows, width, self.reserve)
        self._v = _relaid(self._v[:, :, start : self.length], rows, width, self.reserve)
        self.length = width
        self.keys = self._k[:, :, :width]
        self.values = self._v[:, :, :width]

    def stack(self, other: Slab) -> None:
        """Append ``other``'s rows below these (both already ``length`` columns wide)."""
        mine, theirs = (self._k, self._v), (other._k, other._v)
        assert mine[0] is not None and mine[1] is not None
        assert theirs[0] is not None and theirs[1] is not None
        assert other.length == self.length
        n = self.length
        self._k = torch.cat([mine[0][:, :, :n], theirs[0][:, :, :n]])
        self._v = torch.cat([mine[1][:, :, :n], theirs[1][:, :, :n]])
        self._k = _moved(self._k, self.length, self.length + self.reserve)
        self._v = _moved(self._v, self.length, self.length + self.reserve)
        self.keys = self._k[:, :, : self.length]
        self.values = self._v[:, :, : self.length]


def _buffer(like: torch.Tensor, columns: int) -> torch.Tensor:
    b, h, _, d = like.shape
    return torch.zeros((b, h, columns, d), dtype=like.dtype, device=like.device)


def _moved(buf: torch.Tensor, used: int, columns: int) -> torch.Tensor:
    out = _buffer(buf, columns)
    out[:, :, :used] = buf[:, :, :used]
    return out


def _relaid(
    part: torch.Tensor, rows: torch.Tensor | None, width: int, reserve: int
) -> torch.Tensor:
    if rows is not None:
        part = part.index_select(0, rows.to(part.device))
    out = torch.zeros(
        (part.shape[0], part.shape[1], width + reserve, part.shape[3]),
        dtype=part.dtype,
        device=part.device,
    )
    out[:, :, width - part.shape[2] : width] = part
    return out


def supports(model: Any) -> bool:
    """Whether the model's attention can run over :class:`Slab` layers: a decoder whose every
    layer is full attention (Llama, as every Pleias model)."""
    config = getattr(model, "config", None)
    if config is None or getattr(config, "is_encoder_decoder", False):
        return False
    if getattr(config, "sliding_window", None) or getattr(config, "attention_chunk_size", None):
        return False
    types = getattr(config, "layer_types", None)
    return types is None or all(t == "full_attention" for t in types)


class RunningBatch:
    """Rows decoding together over one cache: :meth:`join` prefills, :meth:`step` decodes.

    A method that raises leaves the batch unusable only for :meth:`step`: the caller then
    takes the rows not done out (:meth:`clear`).
    """

    def __init__(self, model: Any, on_step: Callable[[], None]) -> None:
        self.model = model
        self.rows: list[Row] = []
        self._on_step = on_step
        self._cache_arg = _cache_argument(model)
        self._sdpa = getattr(model.config, "_attn_implementation", None) == "sdpa"
        self._layers: list[Slab] = []
        self._mask: torch.Tensor | None = None  # [rows, columns] 1 where a real token is
        self._pos: torch.Tensor | None = None  # [rows] RoPE position of the next token
        self._last: torch.Tensor | None = None  # [rows] the token to feed next
        self._sampler: RowSampler | None = None

    @property
    def device(self) -> torch.device:
        return torch.device(self.model.device)

    def clear(self) -> list[Row]:
        """Empty the batch; the rows not done."""
        left = [r for r in self.rows if not r.done]
        self.rows, self._layers = [], []
        self._mask = self._pos = self._last = None
        self._sampler = None
        return left

    def join(self, rows: Sequence[Row]) -> None:
        """Prefill ``rows`` and add them to the batch (nothing changes when it raises)."""
        rows = [r for r in rows if not r.done and not r.request.cancelled]
        if not rows:
            return
        device = self.device
        width = max(len(r.request.ids) for r in rows)
        ids = torch.full((len(rows), width), rows[0].request.pad_id, dtype=torch.long)
        mask = torch.zeros((len(rows), width), dtype=torch.long)
        for i, row in enumerate(rows):
            n = len(row.request.ids)
            ids[i, width - n :] = torch.tensor(row.request.ids, dtype=torch.long)
            mask[i, width - n :] = 1
        ids, mask = ids.to(device), mask.to(device)
        positions = (mask.cumsum(-1) - 1).clamp_(min=0)
        layers = [Slab() for _ in range(self._num_layers())]
        reserve = _reserve(rows)
        for layer in layers:
            layer.reserve = reserve
        logits = self._forward(ids, mask, positions, layers, keep_last=True)
        tokens = self._choose(rows, logits)
        self._take(rows, tokens)  # their first token
        pos = mask.sum(-1)
        # Merge: the narrower cache is left-padded to the wider one, then rows are stacked.
        if not self.rows:
            self.rows, self._layers, self._mask = list(rows), layers, mask
            self._pos, self._last = pos, tokens
        else:
            assert self._mask is not None and self._pos is not None and self._last is not None
            wide = max(self._mask.shape[1], width)
            if self._mask.shape[1] < wide:
                self._relayout(None, 0, wide)
            if width < wide:
                for layer in layers:
                    layer.relayout(None, 0, wide)
                mask = torch.nn.functional.pad(mask, (wide - width, 0))
            for mine, theirs in zip(self._layers, layers, strict=True):
                mine.reserve = max(mine.reserve, reserve)
                mine.stack(theirs)
            self.rows = [*self.rows, *rows]
            self._mask = torch.cat([self._mask, mask])
            self._pos = torch.cat([self._pos, pos])
            self._last = torch.cat([self._last, tokens])
        self._sampler = None
        self._leave()

    def step(self) -> None:
        """Decode one token for every row; finished rows leave."""
        if not self.rows:
            return
        assert self._mask is not None and self._pos is not None and self._last is not None
        ones = torch.ones((len(self.rows), 1), dtype=self._mask.dtype, device=self._mask.device)
        mask = torch.cat([self._mask, ones], dim=1)
        # One new token a row attends to every real column: for SDPA that is the 4D mask
        # itself, which transformers would otherwise rebuild from the 2D one at every step.
        given = mask[:, None, None, :].bool() if self._sdpa else mask
        logits = self._forward(self._last[:, None], given, self._pos[:, None], self._layers)
        tokens = self._choose(self.rows, logits)
        self._mask = mask
        self._pos = self._pos + 1
        self._last = tokens
        self._take(self.rows, tokens)
        self._leave()

    # -- internals ------------------------------------------------------------------------

    def _num_layers(self) -> int:
        config = self.model.config
        text = (
            config.get_text_config(decoder=True) if hasattr(config, "get_text_config") else config
        )
        return int(text.num_hidden_layers)

    def _forward(
        self,
        ids: torch.Tensor,
        mask: torch.Tensor,
        positions: torch.Tensor,
        layers: list[Slab],
        *,
        keep_last: bool = False,
    ) -> torch.Tensor:
        kwargs: dict[str, Any] = {self._cache_arg: Cache(layers=list(layers))}
        if keep_last:
            kwargs["logits_to_keep"] = 1  # the prompt's other positions need no logits
        with torch.inference_mode():
            out = self.model(
                input_ids=ids, attention_mask=mask, position_ids=positions, use_cache=True, **kwargs
            )
        self._on_step()
        logits: torch.Tensor = out.logits
        return logits[:, -1, :].float()

    def _choose(self, rows: list[Row], logits: torch.Tensor) -> torch.Tensor:
        """Each row's next token: its sampler's draw, or the most likely one."""
        if rows is self.rows:
            if self._sampler is None:
                self._sampler = RowSampler(rows, logits.device)
            sampler = self._sampler
        else:
            sampler = RowSampler(rows, logits.device)
        with torch.inference_mode():
            # max's indices: argmax's, in half the time on a CPU (65,536-token rows)
            return sampler.apply(logits).max(-1).indices

    @staticmethod
    def _take(rows: list[Row], tokens: torch.Tensor) -> None:
        for row, token in zip(rows, tokens.tolist(), strict=True):
            if row.done:
                continue
            if row.request.cancelled:
                row.done = True  # its consumer left: nothing more to send
                continue
            try:
                row.step(int(token))
            except Exception as exc:  # this row's own decoding: it alone fails
                row.fail(exc)

    def _leave(self) -> None:
        """Remove the finished rows from the cache, and the columns nobody uses any more."""
        keep = [i for i, r in enumerate(self.rows) if not r.done]
        if len(keep) == len(self.rows):
            return
        if not keep:
            self.clear()
            return
        assert self._mask is not None and self._pos is not None and self._last is not None
        index = torch.tensor(keep, device=self._mask.device)
        mask = self._mask.index_select(0, index)
        start = int(mask.any(0).to(torch.int8).argmax())  # first column a row still uses
        width = mask.shape[1] - start
        self._relayout(index, start, width)
        self.rows = [self.rows[i] for i in keep]
        self._mask = mask[:, start:]
        self._pos = self._pos.index_select(0, index)
        self._last = self._last.index_select(0, index)
        self._sampler = None

    def _relayout(self, rows: torch.Tensor | None, start: int, width: int) -> None:
        for layer in self._layers:
            layer.relayout(rows, start, width)
        if rows is None and self._mask is not None and self._mask.shape[1] < width:
            self._mask = torch.nn.functional.pad(self._mask, (width - self._mask.shape[1], 0))


def _reserve(rows: Sequence[Row]) -> int:
    """Spare columns to allocate: what the longest row may still generate, at most 512 (a
    slab grows by half when full: most answers stop far before their max_new_tokens)."""
    left = max(r.request.settings.max_new_tokens - r.tokens for r in rows)
    return max(16, min(left, 512))


def _cache_argument(model: Any) -> str:
    """The forward keyword of the cache (``cache`` in recent transformers), read from the
    class: the instance's ``forward`` may be wrapped."""
    try:
        params = inspect.signature(type(model).forward).parameters
    except (TypeError, ValueError):
        return "past_key_values"
    return "cache" if "cache" in params else "past_key_values"


class Scheduler:
    """Runs requests with continuous batching; the worker loop feeds it and steps it.

    Args:
        model: the loaded model.
        on_step: called after every forward pass (for the worker's step count).
        on_batch: called with the number of rows generating together after each join.
    """

    def __init__(
        self, model: Any, on_step: Callable[[], None], on_batch: Callable[[int], None]
    ) -> None:
        self.batch = RunningBatch(model, on_step)
        self._on_batch = on_batch
        self._isolated: list[list[Row]] = []  # groups to run apart, last first

    @property
    def idle(self) -> bool:
        return not self.batch.rows and not self._isolated

    @property
    def requests(self) -> list[Request]:
        rows = [*self.batch.rows, *(r for group in self._isolated for r in group)]
        return [r.request for r in rows]

    def room(self) -> int:
        """How many requests may join now (none while failed rows run in isolation)."""
        if self._isolated or not self.batch.rows:
            return 0
        limit = min(r.request.max_batch_size for r in self.batch.rows)
        return max(0, limit - len(self.batch.rows))

    def admit(self, requests: Sequence[Request]) -> None:
        """Prefill ``requests`` into the running batch (halving joiners that fail)."""
        self._join([Row(r) for r in requests])

    def step(self) -> None:
        """One decoding step of the running batch, or of the next isolation group."""
        if not self.batch.rows and self._isolated:
            self._join(self._isolated.pop())
        if not self.batch.rows:
            return
        try:
            self.batch.step()
        except Exception as exc:
            self._isolate(self.batch.clear(), exc)

    def fail_all(self, exc: BaseException) -> None:
        """Fail every row (a BaseException in generation: the thread is ending)."""
        for row in [*self.batch.clear(), *(r for g in self._isolated for r in g)]:
            row.fail(exc)
        self._isolated = []

    def _join(self, rows: list[Row]) -> None:
        work = [rows]
        while work:
            group = work.pop()
            self._on_batch(len(self.batch.rows) + len(group))  # rows generating together
            try:
                self.batch.join(group)
            except Exception as exc:
                work.extend(_halves([r for r in group if not r.done], exc))
                continue
            except BaseException as exc:  # the thread is ending: nobody may wait for these
                for row in [*group, *(r for g in work for r in g)]:
                    row.fail(exc)
                raise

    def _isolate(self, rows: list[Row], exc: Exception) -> None:
        self._isolated.extend(_halves(rows, exc))


def _halves(rows: list[Row], exc: Exception) -> list[list[Row]]:
    """The rows of a failed group to run again, as two groups (a stack: the first half
    last, so it runs first); a row left alone is the cause, and fails."""
    rows = [r for r in rows if not r.request.cancelled]
    if len(rows) <= 1:
        for row in rows:
            row.fail(exc)
        return []
    half = (len(rows) + 1) // 2
    return [[r.again(exc) for r in rows[half:]], [r.again(exc) for r in rows[:half]]]
