"""Tiny real Pleias-like models on disk, for tests, benchmarks and examples.

Nothing here downloads anything. :func:`build_tokenizer` trains a byte-level BPE tokenizer laid
out like the real ones (``[UNK]`` 0, BOS 1, EOS 2, ``[PAD]`` 3, the dialect's special tokens at
the end of the vocabulary). :func:`build_random_model` saves a random-weight ``LlamaForCausalLM``;
:func:`build_trained_model` saves one trained in seconds to reproduce :data:`TRAINING_EXAMPLES`
word for word under greedy decoding. :func:`cached_random_model` and
:func:`cached_trained_model` keep them under ``$PLEIAS_RAG_TEST_CACHE`` (default
``~/.cache/pleias-rag/test-models``).

torch, transformers and tokenizers are imported inside the functions only.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import shutil
import tempfile
import time
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Final

from .dialects import (
    BOS,
    CONTEXT_WINDOW,
    EOS,
    HASH,
    HASH_ID_MARKERS,
    NUMBERED,
    check_dialect,
    special_tokens,
)
from .errors import InvalidArgument
from .prompt import render_prompt
from .sources import Source, source_id

if TYPE_CHECKING:
    from transformers import PreTrainedModel, PreTrainedTokenizerFast

__all__ = [
    "BASE_TOKENS",
    "FAKE_HASH_ID",
    "TRAINING_EXAMPLES",
    "Example",
    "build_random_model",
    "build_tokenizer",
    "build_trained_model",
    "cache_dir",
    "cached_random_model",
    "cached_trained_model",
    "check_reproduces",
]

UNK: Final = "[UNK]"
PAD: Final = "[PAD]"
# Ids 0..3 of every Pleias tokenizer.
BASE_TOKENS: Final[tuple[str, ...]] = (UNK, BOS, EOS, PAD)

# Bump when what the builders write changes, so stale cached models are not reused.
_FORMAT_VERSION: Final = 3
# Written last into a built folder: its presence marks the folder complete.
_MANIFEST: Final = "pleias-rag-testing.json"

# A little English (and a few other scripts) so the tokenizer merges common words whatever the
# corpus; byte-level BPE encodes any text anyway.
_BUILTIN_TEXT: Final = """\
The quick brown fox jumps over the lazy dog. A journey of a thousand miles begins with a single
step. What is the answer to the question? The sources say that the answer is in the text, and
the model quotes the sources it uses. According to the first source, the city was founded in
1889; the second source gives another date. This is a question about history, science, art and
people. How many people live there? Where is it? When did it happen? Why does it matter?
Hello! How can I help you today? Thank you for your question. I do not know the answer.
There is no information about this in the sources. The query is simple and can be answered
directly. Numbers: 0 1 2 3 4 5 6 7 8 9 10 42 100 2011 2024 3.14 1,000,000.
Punctuation: "quoted text", 'single', (parentheses), [brackets], {braces}, a-b, a/b, 50%, #1.
Le café est très bon, à la française. Die Straße ist schön. El niño está aquí.
Smart quotes “like this” and ‘this’ — with dashes – and an ellipsis (…). Emoji: 🙂 🚀.
"""

# Training hyperparameters of the trained models (part of the cache key).
_TRAINED_CONFIG: Final[dict[str, Any]] = {
    "hidden_size": 128,
    "num_hidden_layers": 2,
    "num_attention_heads": 4,
    "num_key_value_heads": 2,
    "head_dim": 32,
    "intermediate_size": 256,
}
_TRAINED_VOCAB: Final = 1024
_LEARNING_RATE: Final = 3e-3
_DEFAULT_STEPS: Final = 1500
_CHECK_EVERY: Final = 25
# Stop once every target token beats the runner-up logit by this much (teacher forcing).
_MARGIN: Final = 5.0


# --------------------------------------------------------------------------- tokenizer


def _clean_corpus_text(text: str, markers: Sequence[str]) -> str:
    for marker in markers:
        text = text.replace(marker, "\n")
    return text


def build_tokenizer(
    dialect: str, *, corpus: Iterable[str] = (), vocab_size: int = 1024
) -> PreTrainedTokenizerFast:
    """A byte-level BPE tokenizer laid out like the real Pleias ones.

    Ids: ``[UNK]`` 0, ``<|begin_of_text|>`` 1, ``<|end_of_text|>`` 2, ``[PAD]`` 3, BPE tokens
    (trained on ``corpus`` plus a little built-in text, padded with unreachable filler tokens
    when the corpus cannot give enough merges), then the dialect's special tokens in
    :func:`pleias_rag.special_tokens` order, ending at ``vocab_size - 1``. BOS is prepended
    on encoding. In the hash dialect ``<|source_id_start|>``/``<|source_id_end|>`` stay text.
    """
    from tokenizers import (
        AddedToken,
        Tokenizer,
        decoders,
        models,
        pre_tokenizers,
        processors,
        trainers,
    )
    from transformers import PreTrainedTokenizerFast

    dialect = check_dialect(dialect)
    specials = special_tokens(dialect)
    alphabet = pre_tokenizers.ByteLevel.alphabet()
    bpe_size = vocab_size - len(specials)
    if bpe_size < len(BASE_TOKENS) + len(alphabet):
        raise InvalidArgument(
            f"vocab_size {vocab_size} is too small: need at least "
            f"{len(BASE_TOKENS) + len(alphabet) + len(specials)} for the {dialect} dialect"
        )

    tok = Tokenizer(models.BPE(unk_token=UNK))
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=True)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=bpe_size,
        min_frequency=0,
        special_tokens=list(BASE_TOKENS),
        initial_alphabet=alphabet,
        show_progress=False,
    )
    markers = (*BASE_TOKENS, *specials, *HASH_ID_MARKERS)
    texts = [_clean_corpus_text(t, markers) for t in (*corpus, _BUILTIN_TEXT)]
    tok.train_from_iterator(texts, trainer=trainer)

    missing = bpe_size - tok.get_vocab_size(with_added_tokens=True)
    if missing > 0:
        # Unreachable filler entries (letters and digits never merge across the ByteLevel
        # regex, so "Ġfiller123" cannot be produced by encoding); they decode to " filler123".
        data = json.loads(tok.to_str())
        vocab: dict[str, int] = data["model"]["vocab"]
        next_id = max(vocab.values()) + 1
        for i in range(missing):
            vocab[f"\u0120filler{i}"] = next_id + i
        tok = Tokenizer.from_str(json.dumps(data))
    if tok.get_vocab_size(with_added_tokens=True) != bpe_size:
        raise RuntimeError(
            "tokenizer layout is off: BPE part has the wrong size"
        )  # pragma: no cover

    tok.add_special_tokens(
        [AddedToken(t, special=True, normalized=False, single_word=False) for t in specials]
    )
    tok.post_processor = processors.Sequence(
        [
            processors.ByteLevel(trim_offsets=False),
            processors.TemplateProcessing(
                single=f"{BOS}:0 $A:0",
                pair=f"{BOS}:0 $A:0 {BOS}:1 $B:1",
                special_tokens=[(BOS, 1)],
            ),
        ]
    )
    for i, name in enumerate(BASE_TOKENS):
        if tok.token_to_id(name) != i:  # pragma: no cover - trainer contract
            raise RuntimeError(f"{name} got id {tok.token_to_id(name)}, expected {i}")

    fast_class: Any = PreTrainedTokenizerFast  # untyped constructor
    fast: PreTrainedTokenizerFast = fast_class(
        tokenizer_object=tok,
        bos_token=BOS,
        eos_token=EOS,
        pad_token=PAD,
        unk_token=UNK,
        extra_special_tokens=list(specials),
        model_max_length=CONTEXT_WINDOW[dialect],
        clean_up_tokenization_spaces=False,
        padding_side="right",
    )
    return fast


# --------------------------------------------------------------------------- random model


def _model_config(
    dialect: str, vocab_size: int, overrides: Mapping[str, Any] | None
) -> dict[str, Any]:
    cfg: dict[str, Any] = {
        "vocab_size": vocab_size,
        "hidden_size": 64,
        "num_hidden_layers": 2,
        "num_attention_heads": 2,
        "num_key_value_heads": 1,
        "head_dim": 32,
        "intermediate_size": 128,
        "max_position_embeddings": CONTEXT_WINDOW[dialect],
        "tie_word_embeddings": True,
        "rms_norm_eps": 1e-5,
        "rope_theta": 10000.0,
        "hidden_act": "silu",
        "bos_token_id": 1,
        "eos_token_id": 2,
        "pad_token_id": 3,
    }
    for key, value in (overrides or {}).items():
        if key in ("model_type", "architectures", "transformers_version"):
            continue
        cfg["dtype" if key == "torch_dtype" else key] = value
    return cfg


@contextlib.contextmanager
def _seeded(seed: int) -> Iterator[None]:
    """Seed torch inside the block, leaving the caller's RNG state untouched."""
    import torch

    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        yield


@contextlib.contextmanager
def _one_thread() -> Iterator[None]:
    """Run torch on one thread inside the block.

    Tiny models gain little from more threads, and with busy CPUs (parallel test workers)
    several threads each are many times slower than one.
    """
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(before)


def _save(
    model: PreTrainedModel,
    tokenizer: PreTrainedTokenizerFast,
    path: Path,
    manifest: Mapping[str, Any],
) -> Path:
    from transformers.utils import logging

    hf_logging: Any = logging  # untyped functions
    path.mkdir(parents=True, exist_ok=True)
    bars = hf_logging.is_progress_bar_enabled()
    hf_logging.disable_progress_bar()  # no "Writing model shards" bar in test output
    try:
        model.save_pretrained(path)
        tokenizer.save_pretrained(path)
    finally:
        if bars:
            hf_logging.enable_progress_bar()
    _make_portable(path)
    (path / _MANIFEST).write_text(json.dumps(manifest, indent=2, sort_keys=True) + "\n")
    path.chmod(0o755)  # mkdtemp makes 0700 folders
    for file in path.iterdir():
        file.chmod(0o644)
    return path


def _update_json(file: Path, update: Callable[[dict[str, Any]], None]) -> None:
    data = json.loads(file.read_text(encoding="utf-8"))
    update(data)
    file.write_text(json.dumps(data, indent=2, sort_keys=True) + "\n", encoding="utf-8")


def _make_portable(path: Path) -> None:
    """Let transformers 4 (and servers built on it) read what transformers 5 wrote.

    transformers 5 names the tokenizer class ``TokenizersBackend`` (unknown to 4.x; it
    resolves ``PreTrainedTokenizerFast`` to the same class), writes ``extra_special_tokens``
    as a list (4.x: ``additional_special_tokens``), and ``rope_parameters`` and ``dtype``
    where 4.x reads ``rope_theta`` and ``torch_dtype``.
    """

    def tokenizer_config(data: dict[str, Any]) -> None:
        data["tokenizer_class"] = "PreTrainedTokenizerFast"
        extra = data.get("extra_special_tokens")
        if isinstance(extra, list):  # 4.x wants a dict there; both read this list
            data["additional_special_tokens"] = data.pop("extra_special_tokens")

    def model_config(data: dict[str, Any]) -> None:
        rope = data.get("rope_parameters")
        if isinstance(rope, dict) and "rope_theta" in rope:
            data.setdefault("rope_theta", rope["rope_theta"])
        if "dtype" in data:
            data.setdefault("torch_dtype", data["dtype"])

    if (path / "tokenizer_config.json").is_file():
        _update_json(path / "tokenizer_config.json", tokenizer_config)
    if (path / "config.json").is_file():
        _update_json(path / "config.json", model_config)


def build_random_model(
    path: str | os.PathLike[str],
    dialect: str,
    *,
    config: Mapping[str, Any] | None = None,
    tokenizer: PreTrainedTokenizerFast | None = None,
    seed: int = 0,
) -> Path:
    """Save a random-weight ``LlamaForCausalLM`` and its tokenizer into ``path``.

    Default shape is tiny (hidden 64, 2 layers, 2 heads, 1 kv head, head_dim 32); ``config``
    overrides any key (a real ``config.json`` works: its ``vocab_size`` sizes the tokenizer
    when none is given, and ``torch_dtype``/``dtype`` sets the saved dtype).
    """
    import torch
    from transformers import LlamaConfig, LlamaForCausalLM

    dialect = check_dialect(dialect)
    if tokenizer is None:
        size = int((config or {}).get("vocab_size", 1024))
        tokenizer = build_tokenizer(dialect, vocab_size=size)
    cfg = _model_config(dialect, len(tokenizer), config)
    if cfg["vocab_size"] < len(tokenizer):
        raise InvalidArgument(
            f"config vocab_size {cfg['vocab_size']} is smaller than "
            f"the tokenizer ({len(tokenizer)})"
        )
    dtype = cfg.pop("dtype", None)
    llama_config = LlamaConfig(**cfg)
    with _seeded(seed):
        model: Any = LlamaForCausalLM(llama_config)
    if dtype is not None:
        model = model.to(getattr(torch, dtype) if isinstance(dtype, str) else dtype)
    model.eval()
    manifest = {"kind": "random", "dialect": dialect, "seed": seed, "config": cfg}
    return _save(model, tokenizer, Path(path), manifest)


# --------------------------------------------------------------------------- examples


@dataclass(frozen=True)
class Example:
    """A query, its source texts and exactly what the model should generate after the prompt."""

    query: str
    sources: tuple[str, ...]
    output: str
    name: str = ""

    def source_objects(self) -> list[Source]:
        """The sources as :class:`pleias_rag.Source` objects (default ids)."""
        return [Source(t) for t in self.sources]

    def prompt(self, dialect: str) -> str:
        """The prompt string the model is trained on."""
        return render_prompt(self.query, self.source_objects(), dialect)


_EIFFEL = (
    "The Eiffel Tower is a wrought-iron lattice tower in Paris. "
    "It was completed in 1889 for the World's Fair."
)
_LOUVRE = "The Louvre is the most visited museum in the world. It houses the Mona Lisa."
_MOON = "The Moon orbits the Earth about once every 27 days. Its gravity causes the tides."
_WATER = (
    "At sea level, water boils at 100 degrees Celsius. "
    "On high mountains it boils at a lower temperature."
)
_BEES = "Honey bees tell each other where flowers are with a waggle dance."
_TEA = "Green tea comes from the leaves of Camellia sinensis."
# An id that is in no prompt (hash dialect).
FAKE_HASH_ID: Final = "0123456789abcdef"

_ID = source_id


def _hash_output(analysis: str, answer: str) -> str:
    return f"{analysis}<|source_analysis_end|>\n<|answer_start|>{answer}<|answer_end|>{EOS}"


def _numbered_output(analysis: str, answer: str) -> str:
    return (
        "English\n<|language_end|>\n<|query_analysis_start|>\n"
        f"{analysis}\n<|query_analysis_end|>\n"
        "<|query_report_start|>\nTrivial\n<|query_report_end|>\n"
        f"<|answer_start|>\n{answer}\n<|answer_end|>{EOS}"
    )


def _href(sid: str, quote: str) -> str:
    return f'<ref name="{sid}">"{quote}"</ref>'


def _nref(number: int, quote: str) -> str:
    return f'<ref name="<|source_id|>{number}">{quote}</ref>'


_HASH_EXAMPLES: Final[list[Example]] = [
    Example(
        "When was the Eiffel Tower completed?",
        (_EIFFEL, _LOUVRE),
        _hash_output(
            f"**{_ID(_EIFFEL)}** gives the date. **{_ID(_LOUVRE)}** is about a museum.",
            "The Eiffel Tower was completed in 1889"
            + _href(_ID(_EIFFEL), "It was completed in 1889 for the World's Fair.")
            + ".",
        ),
        "cited",
    ),
    Example(
        "What causes the tides, and what is in the Louvre?",
        (_MOON, _LOUVRE, _TEA),
        _hash_output(
            f"1. **{_ID(_MOON)}** explains the tides.\n2. **{_ID(_LOUVRE)}** names a painting.",
            "The Moon's gravity causes the tides"
            + _href(_ID(_MOON), "Its gravity causes the tides.")
            + ". The Louvre houses the Mona Lisa"
            + _href(_ID(_LOUVRE), "It houses the Mona Lisa.")
            + ".",
        ),
        "two_citations",
    ),
    Example(
        "At what temperature does water boil?",
        (_WATER, _MOON),
        _hash_output(
            f"**{_ID(_WATER)}** gives the boiling point.",
            "Water boils at 100 degrees Celsius at sea level"
            + _href(_ID(_MOON), "At sea level, water boils at 100 degrees Celsius.")
            + ".",
        ),
        "misattributed",
    ),
    Example(
        "How do bees show where flowers are?",
        (_BEES,),
        _hash_output(
            f"**{_ID(_BEES)}** describes the dance.",
            "Bees use a waggle dance" + _href(FAKE_HASH_ID, "with a waggle dance") + ".",
        ),
        "unknown_id",
    ),
    Example(
        "What is the capital of France?",
        (),
        _hash_output(
            "No sources are given, so the answer comes from general knowledge.",
            "The capital of France is Paris.",
        ),
        "no_sources",
    ),
    Example(
        "Hello",
        (),
        _hash_output("The query is a greeting.", "Hello! How can I help you today?"),
        "hello",
    ),
]

_NUMBERED_EXAMPLES: Final[list[Example]] = [
    Example(
        "When was the Eiffel Tower completed?",
        (_EIFFEL, _LOUVRE),
        _numbered_output(
            "The query asks for a date. <|source_id|>1 gives it; <|source_id|>2 is about a museum.",
            "The Eiffel Tower was completed in 1889"
            + _nref(1, "It was completed in 1889 for the World's Fair.")
            + ".",
        ),
        "cited",
    ),
    Example(
        "What causes the tides, and what is in the Louvre?",
        (_MOON, _LOUVRE, _TEA),
        _numbered_output(
            "Two questions: <|source_id|>1 explains the tides and <|source_id|>2 names a painting.",
            "The Moon's gravity causes the tides"
            + _nref(1, "Its gravity causes the tides.")
            + ". The Louvre houses the Mona Lisa"
            + _nref(2, "It houses the Mona Lisa.")
            + ".",
        ),
        "two_citations",
    ),
    Example(
        "At what temperature does water boil?",
        (_WATER, _MOON),
        _numbered_output(
            "The query asks for a boiling point, given in <|source_id|>1.",
            "Water boils at 100 degrees Celsius at sea level"
            + _nref(2, "At sea level, water boils at 100 degrees Celsius.")
            + ".",
        ),
        "misattributed",
    ),
    Example(
        "How do bees show where flowers are?",
        (_BEES,),
        _numbered_output(
            "The query is about bees, and <|source_id|>1 describes their dance.",
            "Bees use a waggle dance" + _nref(7, "with a waggle dance") + ".",
        ),
        "unknown_id",
    ),
    Example(
        "What is the capital of France?",
        (),
        _numbered_output(
            "No sources are given, so the answer comes from general knowledge.",
            "The capital of France is Paris.",
        ),
        "no_sources",
    ),
    Example(
        "Hello",
        (),
        _numbered_output("The query is a greeting.", "Hello! How can I help you today?"),
        "hello",
    ),
]

TRAINING_EXAMPLES: Final[dict[str, list[Example]]] = {
    HASH: _HASH_EXAMPLES,
    NUMBERED: _NUMBERED_EXAMPLES,
}


# --------------------------------------------------------------------------- trained model


def _example_ids(
    tokenizer: PreTrainedTokenizerFast, example: Example, dialect: str
) -> tuple[list[int], list[int]]:
    prompt = list(tokenizer(example.prompt(dialect))["input_ids"])
    output = list(tokenizer(example.output, add_special_tokens=False)["input_ids"])
    if not output or output[-1] != tokenizer.eos_token_id:
        output.append(int(tokenizer.eos_token_id))
    return prompt, output


def check_reproduces(
    model: PreTrainedModel,
    tokenizer: PreTrainedTokenizerFast,
    dialect: str,
    examples: Sequence[Example] | None = None,
) -> list[str]:
    """Greedy-decode every example; return a message per example that does not come out exactly."""
    import torch

    dialect = check_dialect(dialect)
    examples = TRAINING_EXAMPLES[dialect] if examples is None else examples
    failures: list[str] = []
    lm: Any = model
    lm.eval()
    with torch.no_grad():
        for ex in examples:
            prompt, target = _example_ids(tokenizer, ex, dialect)
            ids = torch.tensor([prompt])
            out = lm.generate(
                input_ids=ids,
                attention_mask=torch.ones_like(ids),
                do_sample=False,
                max_new_tokens=len(target) + 8,
                eos_token_id=tokenizer.eos_token_id,
                pad_token_id=tokenizer.pad_token_id,
            )
            got = out[0, len(prompt) :].tolist()
            if got != target:
                text = tokenizer.decode(got, skip_special_tokens=False)
                failures.append(f"{ex.name or ex.query!r}: got {text!r}, want {ex.output!r}")
    return failures


def _train(
    model: Any,
    batch: Sequence[tuple[list[int], list[int]]],
    pad_id: int,
    *,
    steps: int,
    lr: float,
    until: Callable[[], bool],
) -> int | None:
    """Full-batch AdamW until the margin criterion and ``until()`` hold.

    Returns the number of steps used, or ``None`` if ``steps`` were not enough.
    """
    import torch

    width = max(len(p) + len(o) for p, o in batch)
    input_ids = torch.full((len(batch), width), pad_id, dtype=torch.long)
    attention = torch.zeros((len(batch), width), dtype=torch.long)
    labels = torch.full((len(batch), width), -100, dtype=torch.long)
    for row, (prompt, output) in enumerate(batch):
        seq = prompt + output
        input_ids[row, : len(seq)] = torch.tensor(seq)
        attention[row, : len(seq)] = 1
        labels[row, len(prompt) : len(seq)] = torch.tensor(output)
    # Position t predicts token t+1.
    targets = labels[:, 1:]
    mask = targets != -100

    optimizer = torch.optim.AdamW(model.parameters(), lr=lr, weight_decay=0.0)
    model.train()
    for step in range(1, steps + 1):
        result = model(input_ids=input_ids, attention_mask=attention, labels=labels)
        optimizer.zero_grad(set_to_none=True)
        result.loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        optimizer.step()
        if step % _CHECK_EVERY == 0:
            model.eval()
            with torch.no_grad():
                logits = model(input_ids=input_ids, attention_mask=attention).logits[:, :-1]
            model.train()
            safe = targets.clamp(min=0)
            right = logits.gather(-1, safe.unsqueeze(-1)).squeeze(-1)
            others = logits.scatter(-1, safe.unsqueeze(-1), float("-inf")).amax(-1)
            margin = (right - others)[mask].min().item()
            if margin >= _MARGIN:
                model.eval()
                if until():
                    return step
                model.train()
    model.eval()
    return None


def _all_texts(examples: Sequence[Example]) -> list[str]:
    return [t for ex in examples for t in (ex.query, *ex.sources, ex.output)]


def build_trained_model(
    path: str | os.PathLike[str],
    dialect: str,
    *,
    examples: Sequence[Example] | None = None,
    steps: int = _DEFAULT_STEPS,
    seed: int = 0,
) -> Path:
    """Train a tiny Llama until greedy decoding reproduces every example; save it into ``path``.

    The tokenizer is :func:`build_tokenizer` trained on the examples' texts. Training is
    full-batch AdamW on the output tokens only, for at most ``steps`` steps; raises
    ``RuntimeError`` if some example still does not come out exactly.
    """
    from transformers import LlamaConfig, LlamaForCausalLM

    dialect = check_dialect(dialect)
    examples = list(TRAINING_EXAMPLES[dialect] if examples is None else examples)
    if not examples:
        raise InvalidArgument("no examples to train on")
    started = time.perf_counter()
    tokenizer = build_tokenizer(dialect, corpus=_all_texts(examples), vocab_size=_TRAINED_VOCAB)
    cfg = _model_config(dialect, len(tokenizer), _TRAINED_CONFIG)
    batch = [_example_ids(tokenizer, ex, dialect) for ex in examples]
    with _seeded(seed), _one_thread():
        model: Any = LlamaForCausalLM(LlamaConfig(**cfg))
        model.float()
        used = _train(
            model,
            batch,
            int(tokenizer.pad_token_id),
            steps=steps,
            lr=_LEARNING_RATE,
            until=lambda: not check_reproduces(model, tokenizer, dialect, examples),
        )
        if used is None:  # the margin was never reached: accept the model if it is exact anyway
            failures = check_reproduces(model, tokenizer, dialect, examples)
            if failures:
                raise RuntimeError(
                    f"the tiny {dialect} model did not learn its examples in {steps} steps:\n"
                    + "\n".join(failures)
                )
            used = steps
    manifest = {
        "kind": "trained",
        "dialect": dialect,
        "seed": seed,
        "config": cfg,
        "steps": used,
        "seconds": round(time.perf_counter() - started, 2),
        "examples": [asdict(ex) for ex in examples],
    }
    return _save(model, tokenizer, Path(path), manifest)


# --------------------------------------------------------------------------- cache


def cache_dir() -> Path:
    """The cache folder: ``$PLEIAS_RAG_TEST_CACHE`` or ``~/.cache/pleias-rag/test-models``."""
    env = os.environ.get("PLEIAS_RAG_TEST_CACHE")
    return Path(env).expanduser() if env else Path.home() / ".cache" / "pleias-rag" / "test-models"


def _versions() -> dict[str, str]:
    import tokenizers
    import torch
    import transformers

    return {
        "torch": torch.__version__,
        "transformers": transformers.__version__,
        "tokenizers": tokenizers.__version__,
    }


def _key(payload: Mapping[str, Any]) -> str:
    builtin = hashlib.sha256(_BUILTIN_TEXT.encode("utf-8")).hexdigest()
    full = {**payload, "format": _FORMAT_VERSION, "builtin": builtin, "versions": _versions()}
    blob = json.dumps(full, sort_keys=True, default=str)
    return hashlib.sha256(blob.encode("utf-8")).hexdigest()[:16]


@contextlib.contextmanager
def _locked(lock_path: Path) -> Iterator[None]:
    try:
        import fcntl
    except ImportError:  # pragma: no cover - not POSIX: rely on the atomic rename alone
        yield
        return
    with open(lock_path, "a+b") as handle:
        fcntl.flock(handle.fileno(), fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle.fileno(), fcntl.LOCK_UN)


def _cached(name: str, build: Callable[[Path], Path], root: str | os.PathLike[str] | None) -> Path:
    root = cache_dir() if root is None else Path(root)
    root.mkdir(parents=True, exist_ok=True)
    final = root / name
    if (final / _MANIFEST).is_file():
        return final
    with _locked(root / f".{name}.lock"):
        if (final / _MANIFEST).is_file():
            return final
        if final.exists():  # an incomplete leftover
            shutil.rmtree(final, ignore_errors=True)
        tmp = Path(tempfile.mkdtemp(prefix=f".{name}.tmp-", dir=root))
        try:
            build(tmp)
            os.rename(tmp, final)
        except BaseException:
            shutil.rmtree(tmp, ignore_errors=True)
            raise
    return final


def load_tokenizer_file(path: str | os.PathLike[str]) -> PreTrainedTokenizerFast:
    """A real Pleias ``tokenizer.json`` (e.g. ``../shared/tokenizers/...``) as a transformers
    tokenizer with its BOS/EOS/PAD/UNK set (their ``tokenizer_config.json`` is not at hand)."""
    from transformers import PreTrainedTokenizerFast

    fast_class: Any = PreTrainedTokenizerFast  # untyped constructor
    fast: PreTrainedTokenizerFast = fast_class(
        tokenizer_file=str(path),
        bos_token=BOS,
        eos_token=EOS,
        pad_token=PAD,
        unk_token=UNK,
    )
    return fast


def cached_random_model(
    dialect: str,
    *,
    config: Mapping[str, Any] | None = None,
    seed: int = 0,
    root: str | os.PathLike[str] | None = None,
    tokenizer_file: str | os.PathLike[str] | None = None,
) -> Path:
    """:func:`build_random_model` once per dialect/config/tokenizer/library versions, then
    its folder. ``tokenizer_file``: a real ``tokenizer.json`` to use instead of a built one.

    Kept under ``root`` (default :func:`cache_dir`), built in a temp folder renamed into
    place, under a file lock so parallel processes build it once.
    """
    dialect = check_dialect(dialect)
    cfg = dict(config or {})
    payload: dict[str, Any] = {"kind": "random", "dialect": dialect, "config": cfg, "seed": seed}
    if tokenizer_file is not None:
        payload["tokenizer_sha256"] = hashlib.sha256(Path(tokenizer_file).read_bytes()).hexdigest()

    def build(p: Path) -> Path:
        tok = None if tokenizer_file is None else load_tokenizer_file(tokenizer_file)
        return build_random_model(p, dialect, config=cfg, seed=seed, tokenizer=tok)

    return _cached(f"random-{dialect}-" + _key(payload), build, root)


def cached_trained_model(
    dialect: str,
    examples: Sequence[Example] | None = None,
    *,
    seed: int = 0,
    root: str | os.PathLike[str] | None = None,
) -> Path:
    """:func:`build_trained_model` once per examples/dialect/settings/versions, then its folder.

    Same caching as :func:`cached_random_model`.
    """
    dialect = check_dialect(dialect)
    exs = list(TRAINING_EXAMPLES[dialect] if examples is None else examples)
    payload = {
        "kind": "trained",
        "dialect": dialect,
        "examples": [asdict(ex) for ex in exs],
        "seed": seed,
        "config": _TRAINED_CONFIG,
        "vocab": _TRAINED_VOCAB,
        "lr": _LEARNING_RATE,
        "steps": _DEFAULT_STEPS,
        "margin": _MARGIN,
    }
    name = f"trained-{dialect}-" + _key(payload)
    return _cached(name, lambda p: build_trained_model(p, dialect, examples=exs, seed=seed), root)
