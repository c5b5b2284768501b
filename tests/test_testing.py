"""``pleias_rag.testing``: tokenizer layout, model loading, memorization and the cache."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
import threading
from pathlib import Path
from typing import Any

import pytest

import pleias_rag.testing as testing
from pleias_rag import Source, prompt_ids, render_prompt, source_id, special_tokens
from pleias_rag.dialects import HASH_ID_MARKERS, NUMBERED_SPECIAL_TOKENS
from pleias_rag.testing import TRAINING_EXAMPLES, build_tokenizer

pytest.importorskip("torch")
pytest.importorskip("transformers")

DIALECTS = ("hash", "numbered")

ROUND_TRIP_TEXTS = [
    "Hello world",
    "  leading and trailing spaces  ",
    "line one\nline two\n\n\ttabbed\r\nwindows",
    "café, é, naïve, Straße, 中文, Ελληνικά",
    "emoji 🙂🚀 and a family 👨‍👩‍👧",
    'quotes "straight" “curly” ‘single’ (…) — – ...',
    "numbers 1889, 3.14 and 1,000,000",
    "<|source_id_start|>abc<|source_id_end|> looks like a marker",
]


@pytest.fixture(scope="module", params=DIALECTS)
def tokenizer(request: pytest.FixtureRequest) -> Any:
    return build_tokenizer(request.param)


# --------------------------------------------------------------------------- tokenizer


@pytest.mark.parametrize("dialect", DIALECTS)
@pytest.mark.parametrize("vocab_size", [1024, 65536])
def test_tokenizer_layout(dialect: str, vocab_size: int) -> None:
    tok = build_tokenizer(dialect, vocab_size=vocab_size)
    assert len(tok) == vocab_size
    assert tok.convert_ids_to_tokens([0, 1, 2, 3]) == [
        "[UNK]",
        "<|begin_of_text|>",
        "<|end_of_text|>",
        "[PAD]",
    ]
    assert (tok.unk_token_id, tok.bos_token_id, tok.eos_token_id, tok.pad_token_id) == (0, 1, 2, 3)
    specials = special_tokens(dialect)
    first = vocab_size - len(specials)
    assert tok.convert_tokens_to_ids(list(specials)) == list(range(first, vocab_size))
    for token in specials:
        assert tok(token, add_special_tokens=False)["input_ids"] == [
            tok.convert_tokens_to_ids(token)
        ]
        assert token in tok.all_special_tokens
    assert tok.model_max_length == (2048 if dialect == "hash" else 4096)


def test_numbered_special_tokens_at_real_ids() -> None:
    tok = build_tokenizer("numbered", vocab_size=65536)
    assert tok.convert_ids_to_tokens(list(range(65517, 65536))) == list(NUMBERED_SPECIAL_TOKENS)
    text = "<|query_start|>Hi<|query_end|>\n<|source_start|><|source_id|>1 text<|source_end|>"
    ids = tok(text)["input_ids"]
    assert ids[0] == 1
    assert ids[1] == 65517
    assert 65520 in ids  # <|source_id|>
    assert tok.decode(ids[1:], skip_special_tokens=False) == text


def test_hash_source_id_markers_are_text() -> None:
    tok = build_tokenizer("hash")
    for marker in HASH_ID_MARKERS:
        assert marker not in tok.get_vocab()
        assert marker not in tok.all_special_tokens
        ids = tok(marker, add_special_tokens=False)["input_ids"]
        assert len(ids) > 1
        assert not set(ids) & set(tok.all_special_ids)
        assert tok.decode(ids, skip_special_tokens=True) == marker


def test_bos_is_added(tokenizer: Any) -> None:
    assert tokenizer("x")["input_ids"][0] == 1
    assert tokenizer("x", add_special_tokens=False)["input_ids"][0] != 1
    assert 2 not in tokenizer("x")["input_ids"]  # no EOS appended


@pytest.mark.parametrize("text", ROUND_TRIP_TEXTS)
def test_round_trip(tokenizer: Any, text: str) -> None:
    ids = tokenizer(text)["input_ids"]
    assert tokenizer.decode(ids, skip_special_tokens=True) == text
    assert tokenizer.decode(ids, skip_special_tokens=False) == "<|begin_of_text|>" + text
    plain = tokenizer(text, add_special_tokens=False)["input_ids"]
    assert tokenizer.decode(plain) == text
    assert 0 not in plain  # byte-level: nothing is unknown


@pytest.mark.parametrize("vocab_size", [1024, 65536])
@pytest.mark.parametrize("dialect", DIALECTS)
def test_special_tokens_decode_as_text(dialect: str, vocab_size: int) -> None:
    tok = build_tokenizer(dialect, vocab_size=vocab_size)
    for ex in TRAINING_EXAMPLES[dialect]:
        prompt = ex.prompt(dialect)
        assert tok.decode(tok(prompt)["input_ids"][1:], skip_special_tokens=False) == prompt
        out = tok(ex.output, add_special_tokens=False)["input_ids"]
        assert out[-1] == 2
        assert tok.decode(out, skip_special_tokens=False) == ex.output


def test_corpus_adds_merges() -> None:
    text = "Supercalifragilisticexpialidocious " * 5
    plain = build_tokenizer("hash")(text, add_special_tokens=False)["input_ids"]
    trained = build_tokenizer("hash", corpus=[text])(text, add_special_tokens=False)["input_ids"]
    assert len(trained) < len(plain)


def test_vocab_too_small() -> None:
    with pytest.raises(ValueError, match="too small"):
        build_tokenizer("numbered", vocab_size=100)


# --------------------------------------------------------------------------- examples


@pytest.mark.parametrize("dialect", DIALECTS)
def test_examples_are_well_formed(dialect: str) -> None:
    examples = TRAINING_EXAMPLES[dialect]
    assert 5 <= len(examples) <= 8
    names = {ex.name for ex in examples}
    assert {"cited", "misattributed", "unknown_id", "no_sources", "hello"} <= names
    tok = build_tokenizer(dialect, corpus=[t for ex in examples for t in (*ex.sources, ex.output)])
    for ex in examples:
        assert ex.output.endswith("<|answer_end|><|end_of_text|>")
        assert len(tok(ex.output, add_special_tokens=False)["input_ids"]) < 130
        assert len(ex.sources) <= 3
        if dialect == "numbered":
            assert ex.output.startswith("English\n<|language_end|>\n<|query_analysis_start|>\n")
            assert "<|query_report_start|>\nTrivial\n<|query_report_end|>\n" in ex.output
        else:
            assert ex.output.count("<|source_analysis_end|>\n<|answer_start|>") == 1
    hello = next(ex for ex in examples if ex.name == "hello")
    assert hello.query == "Hello"
    assert hello.sources == ()
    assert not next(ex for ex in examples if ex.name == "no_sources").sources
    assert sum(len(ex.sources) >= 2 for ex in examples) >= 2


def _refs(output: str, dialect: str) -> list[tuple[str, str]]:
    """``(cited id, quote)`` pairs of an example output."""
    import re

    if dialect == "hash":
        return re.findall(r'<ref name="([0-9a-f]{16})">"(.*?)"</ref>', output)
    return re.findall(r'<ref name="<\|source_id\|>(\d+)">(.*?)</ref>', output)


@pytest.mark.parametrize("dialect", DIALECTS)
def test_example_citations(dialect: str) -> None:
    seen = set()
    for ex in TRAINING_EXAMPLES[dialect]:
        ids = prompt_ids([Source(t) for t in ex.sources], dialect)
        for cited, quote in _refs(ex.output, dialect):
            holders = [sid for sid, group in ids.items() if quote in group.text]
            if cited not in ids:
                seen.add("unknown")
                assert ex.name == "unknown_id"
            elif cited not in holders:
                seen.add("misattributed")
                assert ex.name == "misattributed"
                assert holders  # the quote is real, in another source
            else:
                seen.add("ok")
        if dialect == "hash":
            for text in ex.sources:
                if f"**{source_id(text)}**" in ex.output:
                    seen.add("bold")
    assert {"ok", "unknown", "misattributed"} <= seen
    if dialect == "hash":
        assert "bold" in seen


# --------------------------------------------------------------------------- random model


@pytest.mark.slow
@pytest.mark.parametrize("dialect", DIALECTS)
def test_random_model_loads_and_generates(dialect: str, request: pytest.FixtureRequest) -> None:
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    path: Path = request.getfixturevalue(f"tiny_random_model_{dialect}")
    assert os.environ.get("HF_HUB_OFFLINE") == "1"
    model = AutoModelForCausalLM.from_pretrained(path)
    tok = AutoTokenizer.from_pretrained(path)
    cfg = model.config
    assert type(model).__name__ == "LlamaForCausalLM"
    assert (cfg.hidden_size, cfg.num_hidden_layers, cfg.head_dim) == (64, 2, 32)
    assert (cfg.num_attention_heads, cfg.num_key_value_heads) == (2, 1)
    assert cfg.max_position_embeddings == (2048 if dialect == "hash" else 4096)
    assert cfg.vocab_size == len(tok) == 1024
    assert cfg.tie_word_embeddings
    assert (cfg.bos_token_id, cfg.eos_token_id, cfg.pad_token_id) == (1, 2, 3)
    assert tok.convert_tokens_to_ids("<|answer_end|>") == 1023
    ids = tok(render_prompt("What is this?", [Source("Some text.")], dialect), return_tensors="pt")
    with torch.no_grad():
        out = model.generate(**ids, do_sample=False, max_new_tokens=5, pad_token_id=3)
    assert out.shape[1] > ids["input_ids"].shape[1]
    assert json.loads((path / "tokenizer_config.json").read_text())["tokenizer_class"] == (
        "PreTrainedTokenizerFast"
    )


@pytest.mark.slow
def test_random_models_load_in_a_fresh_offline_process(
    tiny_random_model_hash: Path, tiny_random_model_numbered: Path, tmp_path: Path
) -> None:
    script = textwrap.dedent(
        """
        import sys
        from transformers import AutoModelForCausalLM, AutoTokenizer
        for path in sys.argv[1:]:
            model = AutoModelForCausalLM.from_pretrained(path)
            tok = AutoTokenizer.from_pretrained(path)
            ids = tok("<|query_start|>Hello<|query_end|>\\n", return_tensors="pt")
            out = model.generate(**ids, do_sample=False, max_new_tokens=3, pad_token_id=3)
            print(tok.decode(out[0], skip_special_tokens=False)[:40])
        """
    )
    env = {
        **os.environ,
        "HF_HUB_OFFLINE": "1",
        "TRANSFORMERS_OFFLINE": "1",
        "HF_HOME": str(tmp_path / "hf-home"),  # an empty hub cache: nothing to fall back on
    }
    result = subprocess.run(
        [
            sys.executable,
            "-c",
            script,
            str(tiny_random_model_hash),
            str(tiny_random_model_numbered),
        ],
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.count("<|begin_of_text|><|query_start|>Hello") == 2


def test_random_model_config_overrides(tmp_path: Path) -> None:
    import torch
    from transformers import AutoConfig, AutoModelForCausalLM, AutoTokenizer

    config = {
        "architectures": ["LlamaForCausalLM"],
        "model_type": "llama",
        "vocab_size": 65536,
        "hidden_size": 32,
        "num_attention_heads": 1,
        "num_key_value_heads": 1,
        "head_dim": 32,
        "intermediate_size": 64,
        "num_hidden_layers": 1,
        "torch_dtype": "bfloat16",
        "rope_theta": 10000.0,
    }
    path = testing.build_random_model(tmp_path / "m", "numbered", config=config)
    cfg = AutoConfig.from_pretrained(path)
    assert cfg.vocab_size == 65536
    assert cfg.max_position_embeddings == 4096
    model = AutoModelForCausalLM.from_pretrained(path, dtype="auto")
    assert model.dtype == torch.bfloat16
    assert model.get_input_embeddings().weight.shape == (65536, 32)
    tok = AutoTokenizer.from_pretrained(path)
    assert tok.convert_ids_to_tokens([65517, 65535]) == ["<|query_start|>", "<|answer_end|>"]


def test_random_model_is_deterministic(tmp_path: Path) -> None:
    tok = build_tokenizer("hash")
    a = testing.build_random_model(tmp_path / "a", "hash", tokenizer=tok)
    b = testing.build_random_model(tmp_path / "b", "hash", tokenizer=tok)
    assert (a / "model.safetensors").read_bytes() == (b / "model.safetensors").read_bytes()
    assert (a / "tokenizer.json").read_text() == (b / "tokenizer.json").read_text()


# --------------------------------------------------------------------------- trained model


@pytest.mark.slow
def test_trained_model_reproduces_examples(tiny_trained_model: tuple[str, Path]) -> None:
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    dialect, path = tiny_trained_model
    model = AutoModelForCausalLM.from_pretrained(path)
    tok = AutoTokenizer.from_pretrained(path)
    assert model.dtype == torch.float32
    for ex in TRAINING_EXAMPLES[dialect]:
        prompt = render_prompt(ex.query, [Source(t) for t in ex.sources], dialect)
        ids = tok(prompt, return_tensors="pt")
        assert ids["input_ids"][0, 0].item() == 1
        with torch.no_grad():
            out = model.generate(**ids, do_sample=False, max_new_tokens=200, pad_token_id=3)
        new = out[0, ids["input_ids"].shape[1] :].tolist()
        assert new[-1] == 2, ex.name
        assert tok.decode(new, skip_special_tokens=False) == ex.output, ex.name
        assert new == tok(ex.output, add_special_tokens=False)["input_ids"]


@pytest.mark.slow
def test_trained_model_manifest(tiny_trained_model: tuple[str, Path]) -> None:
    dialect, path = tiny_trained_model
    manifest = json.loads((path / "pleias-rag-testing.json").read_text())
    assert manifest["kind"] == "trained"
    assert manifest["dialect"] == dialect
    assert [ex["query"] for ex in manifest["examples"]] == [
        ex.query for ex in TRAINING_EXAMPLES[dialect]
    ]


# --------------------------------------------------------------------------- cache


def _refuse(*args: object, **kwargs: object) -> Path:
    raise AssertionError("the cache should have been used")


@pytest.mark.slow
def test_cached_trained_model_is_reused(
    tiny_trained_model_hash: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    before = (tiny_trained_model_hash / "model.safetensors").stat().st_mtime_ns
    monkeypatch.setattr(testing, "build_trained_model", _refuse)
    assert testing.cached_trained_model("hash") == tiny_trained_model_hash
    assert (
        testing.cached_trained_model("hash", TRAINING_EXAMPLES["hash"]) == tiny_trained_model_hash
    )
    assert (tiny_trained_model_hash / "model.safetensors").stat().st_mtime_ns == before


def test_cache_dir_from_env(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PLEIAS_RAG_TEST_CACHE", str(tmp_path / "c"))
    assert testing.cache_dir() == tmp_path / "c"
    monkeypatch.delenv("PLEIAS_RAG_TEST_CACHE")
    assert testing.cache_dir() == Path.home() / ".cache" / "pleias-rag" / "test-models"


def test_cached_random_model_builds_once(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PLEIAS_RAG_TEST_CACHE", str(tmp_path))
    calls: list[Path] = []
    real = testing.build_random_model

    def counting(path: Any, dialect: str, **kwargs: Any) -> Path:
        calls.append(Path(path))
        return real(path, dialect, **kwargs)

    monkeypatch.setattr(testing, "build_random_model", counting)
    results: list[Path] = []
    threads = [
        threading.Thread(target=lambda: results.append(testing.cached_random_model("hash")))
        for _ in range(3)
    ]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(calls) == 1
    assert len(set(results)) == 1 and len(results) == 3
    path = results[0]
    assert path.parent == tmp_path
    assert (path / "pleias-rag-testing.json").is_file()
    assert not [p for p in tmp_path.iterdir() if ".tmp-" in p.name]  # the temp dir was renamed
    monkeypatch.setattr(testing, "build_random_model", _refuse)
    assert testing.cached_random_model("hash") == path
    # A different dialect or config is a different folder.
    monkeypatch.setattr(testing, "build_random_model", counting)
    other = testing.cached_random_model("hash", config={"num_hidden_layers": 1})
    assert other != path and len(calls) == 2


def test_failed_build_leaves_nothing(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    def broken(path: Any, dialect: str, **kwargs: Any) -> Path:
        Path(path, "half-written").write_text("x")
        raise RuntimeError("boom")

    monkeypatch.setattr(testing, "build_random_model", broken)
    with pytest.raises(RuntimeError, match="boom"):
        testing.cached_random_model("numbered", root=tmp_path)
    assert [p.name for p in tmp_path.iterdir() if not p.name.endswith(".lock")] == []


def test_core_imports_without_torch() -> None:
    code = (
        "import sys; import pleias_rag, pleias_rag.testing; "
        "assert 'torch' not in sys.modules and 'transformers' not in sys.modules"
    )
    subprocess.run([sys.executable, "-c", code], check=True, timeout=120)
