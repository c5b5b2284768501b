"""Loading (lazy, shared, thread-safe), dialect/dtype/device choice, settings, bad arguments."""

from __future__ import annotations

import dataclasses
import gc
import json
import shutil
import subprocess
import sys
import threading
import time
import weakref
from pathlib import Path
from typing import Any

import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("transformers")

import pleias_rag  # noqa: E402
from pleias_rag import GenerationSettings  # noqa: E402
from pleias_rag.backend import Backend  # noqa: E402
from pleias_rag.dialects import detect_dialect  # noqa: E402
from pleias_rag.local import (  # noqa: E402
    PleiasModel,
    _loading,
    _resources,
)
from pleias_rag.local._loading import (  # noqa: E402
    SharedCache,
    resolve_device,
    resolve_dtype,
)


@pytest.fixture
def fresh_copy(tiny_random_model_hash: Path, tmp_path: Path) -> Path:
    """A model folder no other test has loaded (its own cache key)."""
    return Path(shutil.copytree(tiny_random_model_hash, tmp_path / "model"))


# --------------------------------------------------------------------------- settings


def test_generation_defaults_are_the_pleias_recommendations() -> None:
    s = GenerationSettings()
    assert (s.max_new_tokens, s.temperature, s.top_p, s.seed, s.stop) == (1024, 0.0, 0.95, None, ())
    assert s.greedy and s.min_new_tokens == 0
    with pytest.raises(dataclasses.FrozenInstanceError):
        s.temperature = 1.0  # type: ignore[misc]


def test_merged_applies_and_validates_overrides() -> None:
    s = GenerationSettings()
    m = s.merged(max_new_tokens=10, temperature=0.7, stop="END", seed=3)
    assert (m.max_new_tokens, m.temperature, m.stop, m.seed) == (10, 0.7, ("END",), 3)
    assert not m.greedy
    assert m.merged(seed=None, stop=None, top_p=None) == dataclasses.replace(m, seed=None, stop=())
    assert s.merged() is s
    assert s.merged(stop=["a", "b"]).stop == ("a", "b")


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        ({"max_tokens": 5}, "unknown generation argument 'max_tokens'"),
        ({"repetition_penalty": 1.2}, "unknown generation argument 'repetition_penalty'"),
        ({"max_new_tokens": 0}, "max_new_tokens must be >= 1"),
        ({"max_new_tokens": 2.5}, "max_new_tokens must be an int"),
        ({"max_new_tokens": True}, "max_new_tokens must be an int"),
        ({"temperature": -0.1}, "temperature must be >= 0"),
        ({"temperature": "hot"}, "temperature must be a number"),
        ({"top_p": 0}, r"top_p must be in \(0.0, 1.0\]"),
        ({"top_p": 1.5}, r"top_p must be in \(0.0, 1.0\]"),
        ({"seed": -1}, "seed must be >= 0"),
        ({"seed": "x"}, "seed must be an int"),
        ({"stop": [""]}, "stop strings must be non-empty str"),
        ({"stop": 5}, "stop must be a str or a list of str"),
        ({"min_new_tokens": 2000}, "min_new_tokens=2000 is above max_new_tokens=1024"),
    ],
)
def test_bad_generation_arguments(overrides: dict[str, Any], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        GenerationSettings().merged(**overrides)


# --------------------------------------------------------------------------- choices


def test_dtype_choice(monkeypatch: pytest.MonkeyPatch) -> None:
    cpu = torch.device("cpu")
    monkeypatch.setattr(_loading, "cpu_has_native_bf16", lambda: True)
    assert resolve_dtype(None, cpu) == resolve_dtype("auto", cpu) == torch.bfloat16
    monkeypatch.setattr(_loading, "cpu_has_native_bf16", lambda: False)
    assert resolve_dtype("auto", cpu) == torch.float32
    assert resolve_dtype("bf16", cpu) == resolve_dtype(torch.bfloat16, cpu) == torch.bfloat16
    assert resolve_dtype("float16", cpu) == resolve_dtype("torch.float16", cpu) == torch.float16
    assert resolve_dtype("FP32", cpu) == torch.float32
    with pytest.raises(ValueError, match="dtype 'int8' is not supported"):
        resolve_dtype("int8", cpu)
    with pytest.raises(ValueError, match="is not supported"):
        resolve_dtype(torch.int64, cpu)


def test_device_choice() -> None:
    assert resolve_device("cpu") == torch.device("cpu")
    assert resolve_device(None).type == ("cuda" if torch.cuda.is_available() else "cpu")
    with pytest.raises(ValueError, match="is not a torch device"):
        resolve_device("gpu0")
    if not torch.cuda.is_available():
        with pytest.raises(ValueError, match="CUDA is not available"):
            resolve_device("cuda")


def test_dialect_detection() -> None:
    assert detect_dialect({"<|source_id|>": 1, "<|answer_start|>": 2}, "m") == "numbered"
    assert detect_dialect({"<|language_start|>": 1}, "m") == "numbered"
    both = {"<|source_analysis_start|>": 1, "<|answer_start|>": 2}
    assert detect_dialect(both, "m") == "hash"
    with pytest.raises(ValueError, match="pass dialect='hash'"):
        detect_dialect({"hello": 1}, "gpt2")


def test_models_detect_their_dialect(
    tiny_random_model_hash: Path, tiny_random_model_numbered: Path
) -> None:
    assert PleiasModel.from_pretrained(tiny_random_model_hash).dialect == "hash"
    assert PleiasModel.from_pretrained(tiny_random_model_numbered).dialect == "numbered"
    forced = PleiasModel.from_pretrained(tiny_random_model_numbered, dialect="hash")
    assert forced.dialect == "hash"  # hash markers exist in numbered tokenizers too
    with pytest.raises(ValueError, match="needs the markers"):
        PleiasModel.from_pretrained(tiny_random_model_hash, dialect="numbered").count_tokens("x")


def test_missing_eos_and_pad_are_fixed(fresh_copy: Path) -> None:
    config_path = fresh_copy / "tokenizer_config.json"
    config = json.loads(config_path.read_text())
    for key in ("eos_token", "pad_token", "bos_token"):
        config.pop(key, None)
    config_path.write_text(json.dumps(config))
    model = PleiasModel.from_pretrained(fresh_copy)
    assert model.tokenizer.eos_token == "<|end_of_text|>"
    assert model.tokenizer.pad_token == "[PAD]"
    bundle = model._res.bundle()
    assert (bundle.eos_id, bundle.pad_id) == (2, 3)
    assert bundle.stop_ids[0] == 2 and model.tokenizer.convert_tokens_to_ids(
        "<|answer_end|>") in bundle.stop_ids  # fmt: skip
    assert model.answer("q?", ["s"], max_new_tokens=3).completion_tokens in (1, 2, 3)


# --------------------------------------------------------------------------- loading


def test_loading_is_lazy_and_shared(fresh_copy: Path) -> None:
    workers = len(_resources.WORKERS)
    a = PleiasModel.from_pretrained(fresh_copy)
    b = PleiasModel(str(fresh_copy) + "/", dtype="float32")  # same folder, other spelling
    assert len(_resources.WORKERS) == workers  # nothing loaded yet
    assert a.dialect == "hash"  # the tokenizer only
    assert not a._res.worker_loaded
    assert len(_resources.WORKERS) == workers
    if a.dtype == torch.float32:
        assert a.model is b.model  # one copy of the weights
    # "auto" is bf16 on a CPU with AVX512-BF16/AMX, fp32 elsewhere: ask for the other one.
    other_dtype = "float32" if a.dtype == torch.bfloat16 else "bfloat16"
    other = PleiasModel.from_pretrained(fresh_copy, dtype=other_dtype)
    assert other.model is not a.model
    assert other.model.dtype == getattr(torch, other_dtype)
    assert isinstance(a, Backend)
    as_backend: Backend = a  # mypy checks that PleiasModel has the Backend interface
    assert as_backend.model_name == str(fresh_copy)


def test_concurrent_first_use_loads_once(fresh_copy: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    calls = {"model": 0, "tokenizer": 0}
    real_model, real_tok = _loading.load_model, _loading.load_tokenizer

    def counting_model(*args: Any, **kwargs: Any) -> Any:
        calls["model"] += 1
        time.sleep(0.2)  # a slow load: the other threads must wait for it, not start theirs
        return real_model(*args, **kwargs)

    def counting_tok(*args: Any, **kwargs: Any) -> Any:
        calls["tokenizer"] += 1
        return real_tok(*args, **kwargs)

    monkeypatch.setattr(_resources, "load_model", counting_model)
    monkeypatch.setattr(_resources, "load_tokenizer", counting_tok)
    objects = [PleiasModel.from_pretrained(fresh_copy) for _ in range(8)]
    got: list[Any] = [None] * 8

    def use(i: int) -> None:
        objects[i].count_tokens("x")
        got[i] = objects[i].model

    threads = [threading.Thread(target=use, args=(i,)) for i in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert calls == {"model": 1, "tokenizer": 1}
    assert all(m is got[0] for m in got)


def test_weights_are_freed_with_the_last_user(fresh_copy: Path) -> None:
    model = PleiasModel.from_pretrained(fresh_copy)
    model.answer("q?", [], max_new_tokens=2)
    ref = weakref.ref(model.model)
    thread = model.worker._thread
    del model
    gc.collect()
    thread.join(timeout=30)
    assert not thread.is_alive()
    gc.collect()
    assert ref() is None


def test_shared_cache_builds_each_key_once() -> None:
    class Item:
        pass

    cache: SharedCache[Item] = SharedCache()
    built: list[str] = []

    def factory(key: str) -> Any:
        def build() -> Item:
            built.append(key)
            time.sleep(0.05)
            return Item()

        return build

    keep: list[Item] = []
    lock = threading.Lock()

    def get(key: str) -> None:
        item = cache.get(key, factory(key))
        with lock:
            keep.append(item)

    threads = [threading.Thread(target=get, args=("ab"[i % 2],)) for i in range(10)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sorted(built) == ["a", "b"]
    assert len({id(i) for i in keep}) == 2

    def failing() -> Item:
        raise OSError("disk")

    with pytest.raises(OSError, match="disk"):
        cache.get("c", failing)
    assert cache.get("c", Item) is not None  # a failed build is retried


# --------------------------------------------------------------------------- errors


def test_missing_folder_is_a_clear_error(tmp_path: Path) -> None:
    model = PleiasModel.from_pretrained(tmp_path / "nowhere")
    with pytest.raises(OSError, match="no model folder at"):
        model.count_tokens("x")
    with pytest.raises(OSError, match="is it a complete HF save"):
        PleiasModel.from_pretrained(tmp_path).count_tokens("x")


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"dialect": "chat"}, "unknown dialect 'chat'"),
        ({"dtype": "int4"}, "dtype 'int4' is not supported"),
        ({"device": "tpu9"}, "is not a torch device"),
        ({"device": "cpu", "device_map": "auto"}, "give device or device_map, not both"),
        ({"max_batch_size": 0}, "max_batch_size must be >= 1"),
        ({"max_batch_size": "8"}, "max_batch_size must be an int"),
        ({"batch_window": -1}, r"batch_window must be in \[0, 1\]"),
        ({"context_window": 1}, "context_window must be >= 2"),
        ({"max_sources": -2}, "max_sources must be >= 0"),
        ({"generation": 3}, "generation must be a GenerationSettings or a dict"),
        ({"generation": {"temp": 1}}, "unknown generation argument 'temp'"),
    ],
)
def test_bad_model_arguments(
    tiny_random_model_hash: Path, kwargs: dict[str, Any], message: str
) -> None:
    with pytest.raises(ValueError, match=message):
        PleiasModel.from_pretrained(tiny_random_model_hash, **kwargs)


def test_device_map_without_accelerate_is_a_clear_error(tiny_random_model_hash: Path) -> None:
    import importlib.util

    if importlib.util.find_spec("accelerate") is not None:
        model = PleiasModel.from_pretrained(tiny_random_model_hash, device_map="cpu")
        assert model.answer("q?", [], max_new_tokens=2).completion_tokens in (1, 2)
        return
    with pytest.raises(ValueError, match="device_map needs the accelerate package"):
        PleiasModel.from_pretrained(tiny_random_model_hash, device_map="auto")


def test_bad_call_arguments(tiny_random_model_hash: Path) -> None:
    model = PleiasModel.from_pretrained(tiny_random_model_hash, generation={"max_new_tokens": 4})
    assert model.settings.max_new_tokens == 4
    with pytest.raises(ValueError, match="unknown generation argument 'max_length'"):
        model.answer("q?", [], max_length=5)
    with pytest.raises(ValueError, match="not one str"):
        model.answer("q?", "one source")
    with pytest.raises(ValueError, match="query is empty"):
        model.stream("", [])
    with pytest.raises(ValueError, match="query must be a str"):
        model.answer(None, [])  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="source 1 is a int"):
        model.answer("q?", ["fine", 3])  # type: ignore[list-item]
    with pytest.raises(ValueError, match="temperature must be >= 0"):
        model.astream("q?", [], temperature=-1)
    with pytest.raises(ValueError, match=r"item 1 must be a \(query, sources\) pair"):
        model.answer_batch([("q?", []), ("q?", [], "extra")])  # type: ignore[list-item]
    with pytest.raises(ValueError, match="list of \\(query, sources\\) pairs"):
        model.answer_batch("q?")
    with pytest.raises(ValueError, match="context window of 2048"):
        model.answer("q?", [], max_new_tokens=5000)
    assert model.answer_batch([]) == []
    assert model.answer_batch(["just a query"])[0].completion_tokens == 4


def test_import_does_not_load_torch() -> None:
    code = (
        "import sys, pleias_rag; assert 'torch' not in sys.modules; "
        "pleias_rag.GenerationSettings; assert 'torch' not in sys.modules; "
        "pleias_rag.PleiasModel; assert 'torch' in sys.modules; print('ok')"
    )
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert proc.stdout.strip() == "ok", proc.stderr
    with pytest.raises(AttributeError, match="no attribute 'Nope'"):
        pleias_rag.Nope  # noqa: B018
