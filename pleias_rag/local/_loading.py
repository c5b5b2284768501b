"""Loading Pleias models: device and dtype choice, dialect detection, shared weights.

Weights are loaded once per (model, revision, device, dtype, device_map, kwargs) in the process,
whatever the number of :class:`~pleias_rag.local.PleiasModel` objects that point at them. The
cache holds them weakly: they are freed when the last user goes away.
"""

from __future__ import annotations

import os
import platform
import threading
import weakref
from collections.abc import Callable, Hashable, Mapping
from dataclasses import dataclass
from typing import Any, Generic, TypeVar, cast

import torch

from ..dialects import CONTEXT_WINDOW, EOS, Dialect, tokenizer_dialect
from ..errors import InvalidArgument
from ..tokens import TokenCodec

T = TypeVar("T")

_DTYPES: Mapping[str, torch.dtype] = {
    "bf16": torch.bfloat16,
    "bfloat16": torch.bfloat16,
    "fp16": torch.float16,
    "float16": torch.float16,
    "half": torch.float16,
    "fp32": torch.float32,
    "float32": torch.float32,
    "float": torch.float32,
}
_PAD_NAMES = ("[PAD]", "<pad>", "<|pad|>")


class SharedCache(Generic[T]):
    """A thread-safe, weak-valued cache: one object per key while anyone holds it.

    Two threads asking for the same missing key build it once; different keys build in
    parallel. An item ``usable`` says is no longer usable (a closed worker) is dropped and
    built again.
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._items: weakref.WeakValueDictionary[Hashable, Any] = weakref.WeakValueDictionary()
        self._building: dict[Hashable, threading.Lock] = {}

    def get(
        self,
        key: Hashable,
        factory: Callable[[], T],
        usable: Callable[[T], bool] | None = None,
    ) -> T:
        with self._lock:
            item = self._usable(key, usable)
            if item is not None:
                return item
            key_lock = self._building.setdefault(key, threading.Lock())
        with key_lock:
            with self._lock:
                item = self._usable(key, usable)
                if item is not None:
                    return item
            try:
                item = factory()
                with self._lock:
                    self._items[key] = item
            finally:
                with self._lock:
                    self._building.pop(key, None)
            return item

    def _usable(self, key: Hashable, usable: Callable[[T], bool] | None) -> T | None:
        """The item of ``key`` (under the lock), evicted when no longer usable."""
        item: T | None = cast("T | None", self._items.get(key))
        if item is not None and usable is not None and not usable(item):
            del self._items[key]
            return None
        return item

    def __len__(self) -> int:
        with self._lock:
            return len(self._items)


def resolve_device(device: str | torch.device | None) -> torch.device:
    """``device`` as a ``torch.device``; None picks CUDA when available, else CPU."""
    if device is None:
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        dev = torch.device(device)
    except (RuntimeError, TypeError) as exc:
        raise InvalidArgument(
            f"device {device!r} is not a torch device: use 'cpu', 'cuda', 'cuda:1'..."
        ) from exc
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise InvalidArgument(f"device {device!r} asked for, but CUDA is not available: use 'cpu'")
    return dev


def cpu_has_native_bf16() -> bool:
    """Whether this CPU computes bf16 natively (AVX512-BF16, AMX, or Arm BF16)."""
    checks = ("_is_avx512_bf16_supported", "_is_amx_tile_supported")
    for name in checks:
        fn = getattr(torch.cpu, name, None)
        if fn is not None:
            try:
                if fn():
                    return True
            except RuntimeError:  # pragma: no cover - depends on the torch build
                pass
    if platform.machine().lower() in ("aarch64", "arm64"):
        return "bf16" in _cpu_flags()
    return bool({"avx512_bf16", "amx_bf16"} & _cpu_flags())


def _cpu_flags() -> set[str]:
    try:
        with open("/proc/cpuinfo", encoding="utf-8", errors="replace") as fh:
            for line in fh:
                if line.lower().startswith(("flags", "features")):
                    return set(line.split(":", 1)[1].split())
    except OSError:
        pass
    return set()


def resolve_dtype(dtype: str | torch.dtype | None, device: torch.device) -> torch.dtype:
    """The dtype to load in; None or ``"auto"`` picks bf16 where it is fast, else fp32.

    bf16 on CUDA (fp16 on GPUs without bf16) and on CPUs with native bf16; fp32 elsewhere,
    where bf16 is emulated and slower.
    """
    if dtype is None or dtype == "auto":
        if device.type == "cuda":
            return torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16
        if device.type == "cpu" and cpu_has_native_bf16():
            return torch.bfloat16
        return torch.float32
    if isinstance(dtype, torch.dtype):
        if dtype in _DTYPES.values():
            return dtype
    elif isinstance(dtype, str) and dtype.lower().removeprefix("torch.") in _DTYPES:
        return _DTYPES[dtype.lower().removeprefix("torch.")]
    raise InvalidArgument(
        f"dtype {dtype!r} is not supported: use 'auto', 'bfloat16', 'float16' or 'float32'"
    )


@dataclass(eq=False)
class TokenizerBundle:
    """A loaded tokenizer and what the engine derives from it (shared like the weights)."""

    tokenizer: Any
    codec: TokenCodec
    dialect: Dialect
    eos_id: int
    pad_id: int
    stop_ids: tuple[int, ...]
    context_window: int


def load_tokenizer(
    name: str,
    *,
    dialect: str | None,
    revision: str | None,
    kwargs: Mapping[str, Any],
) -> TokenizerBundle:
    """Load the tokenizer and config of ``name``; fix eos/pad; detect or check the dialect."""
    from transformers import AutoConfig, AutoTokenizer

    _check_folder(name)
    try:
        tokenizer = AutoTokenizer.from_pretrained(name, revision=revision, **kwargs)
        config = AutoConfig.from_pretrained(name, revision=revision, **kwargs)
    except OSError as exc:
        raise OSError(f"{_load_hint(name)}\n(transformers said: {exc})") from exc
    vocab: dict[str, int] = tokenizer.get_vocab()
    chosen = tokenizer_dialect(vocab, name, dialect)
    # Early Pleias tokenizer configs set neither eos nor pad.
    eos_id = _token_id(tokenizer.eos_token_id, vocab.get(EOS), _first(config.eos_token_id))
    if eos_id is None:
        raise InvalidArgument(f"the tokenizer of {name!r} has no end-of-text token ({EOS})")
    if tokenizer.eos_token_id is None:
        tokenizer.eos_token = tokenizer.convert_ids_to_tokens(eos_id)
    pad_id = _token_id(
        tokenizer.pad_token_id, *(vocab.get(p) for p in _PAD_NAMES), config.pad_token_id, eos_id
    )
    assert pad_id is not None
    if tokenizer.pad_token_id is None:
        tokenizer.pad_token = tokenizer.convert_ids_to_tokens(pad_id)
    tokenizer.padding_side = "left"
    stops = [eos_id]
    for extra in (vocab.get("<|answer_end|>"), *_as_list(config.eos_token_id)):
        if extra is not None and extra not in stops:
            stops.append(int(extra))
    window = getattr(config, "max_position_embeddings", None) or CONTEXT_WINDOW[chosen]
    return TokenizerBundle(
        tokenizer=tokenizer,
        codec=TokenCodec(tokenizer),
        dialect=chosen,
        eos_id=eos_id,
        pad_id=pad_id,
        stop_ids=tuple(stops),
        context_window=int(window),
    )


def load_model(
    name: str,
    *,
    device: torch.device,
    dtype: torch.dtype,
    device_map: str | Mapping[str, Any] | None,
    revision: str | None,
    kwargs: Mapping[str, Any],
) -> Any:
    """Load the weights in eval mode, on ``device`` (or spread by ``device_map``)."""
    from transformers import AutoModelForCausalLM

    _check_folder(name)
    extra = dict(kwargs)
    if device_map is not None:
        extra["device_map"] = device_map
    try:
        model: Any = AutoModelForCausalLM.from_pretrained(
            name, revision=revision, dtype=dtype, **extra
        )
    except OSError as exc:
        raise OSError(f"{_load_hint(name)}\n(transformers said: {exc})") from exc
    if device_map is None:
        model = model.to(device)
    model.eval()
    return model


def _check_folder(name: str) -> None:
    """Fail clearly on a local folder that is not a saved model (transformers is cryptic)."""
    if os.path.isdir(name):
        files = set(os.listdir(name))
        if "config.json" not in files or not files & {"tokenizer.json", "tokenizer_config.json"}:
            raise OSError(_load_hint(name) + " (config.json or the tokenizer files are missing)")


def _load_hint(name: str) -> str:
    if os.path.isdir(name):
        return f"could not load a model from the folder {name!r}: is it a complete HF save?"
    if _looks_like_path(name):
        return f"no model folder at {name!r}: check the path (it does not exist or is a file)"
    return (
        f"could not load {name!r}: not a local folder, and the Hugging Face hub did not give "
        "it. Without network access, download it elsewhere (`hf download "
        f"{name} --local-dir ./model`) and pass the folder"
    )


def _first(value: Any) -> int | None:
    items = _as_list(value)
    return items[0] if items else None


def _as_list(value: Any) -> list[int]:
    if value is None:
        return []
    if isinstance(value, (list, tuple)):
        return [int(v) for v in value]
    return [int(value)]


def _token_id(*candidates: Any) -> int | None:
    for c in candidates:
        if c is not None:
            return int(c)
    return None


def cache_key(name: str, revision: str | None) -> str:
    """The identity of a model name: a local folder's real path, else the hub id."""
    if os.path.isdir(name):
        return os.path.realpath(name)
    return f"{name}@{revision or 'main'}"


def freeze(value: Any) -> Hashable:
    """A hashable stand-in for nested kwargs (for cache keys)."""
    if isinstance(value, Mapping):
        return tuple(sorted((str(k), freeze(v)) for k, v in value.items()))
    if isinstance(value, (list, tuple, set, frozenset)):
        return tuple(freeze(v) for v in value)
    try:
        hash(value)
    except TypeError:
        return repr(value)
    return value  # type: ignore[no-any-return]


def _looks_like_path(name: str) -> bool:
    """A name that can only be a path: a hub id is ``name`` or ``owner/name``."""
    return (
        os.path.isabs(name)
        or name.startswith((".", "~"))
        or name.count("/") > 1
        or os.sep in name.replace("/", "")
        or os.path.exists(name)
    )
