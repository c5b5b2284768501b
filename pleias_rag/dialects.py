"""The two Pleias prompt/output dialects and their special tokens."""

from __future__ import annotations

from collections.abc import Container
from typing import Final, Literal

from .errors import InvalidArgument

Dialect = Literal["hash", "numbered"]
OutputDialect = Literal["hash", "numbered", "markdown"]

HASH: Final = "hash"
NUMBERED: Final = "numbered"
MARKDOWN: Final = "markdown"
DIALECTS: Final[tuple[str, ...]] = (HASH, NUMBERED)

BOS: Final = "<|begin_of_text|>"
EOS: Final = "<|end_of_text|>"

# Order matters: ids 65517..65535 of the numbered tokenizers (paper, Fig. 5).
NUMBERED_SPECIAL_TOKENS: Final[tuple[str, ...]] = (
    "<|query_start|>",
    "<|query_end|>",
    "<|source_start|>",
    "<|source_id|>",
    "<|source_end|>",
    "<|language_start|>",
    "<|language_end|>",
    "<|query_analysis_start|>",
    "<|query_analysis_end|>",
    "<|query_report_start|>",
    "<|query_report_end|>",
    "<|source_analysis_start|>",
    "<|source_analysis_end|>",
    "<|source_report_start|>",
    "<|source_report_end|>",
    "<|draft_start|>",
    "<|draft_end|>",
    "<|answer_start|>",
    "<|answer_end|>",
)

HASH_SPECIAL_TOKENS: Final[tuple[str, ...]] = (
    "<|query_start|>",
    "<|query_end|>",
    "<|source_start|>",
    "<|source_end|>",
    "<|source_analysis_start|>",
    "<|source_analysis_end|>",
    "<|answer_start|>",
    "<|answer_end|>",
)

# Written in hash prompts but possibly plain text for the tokenizer (not in its special list).
HASH_ID_MARKERS: Final[tuple[str, ...]] = ("<|source_id_start|>", "<|source_id_end|>")

# Sections of the output, in the order the model writes them.
HASH_SECTIONS: Final[tuple[str, ...]] = ("source_analysis", "answer")
NUMBERED_SECTIONS: Final[tuple[str, ...]] = (
    "language",
    "query_analysis",
    "query_report",
    "source_analysis",
    "source_report",
    "draft",
    "answer",
)
MARKDOWN_SECTIONS: Final[tuple[str, ...]] = ("source_analysis", "answer")

# Context windows (max_position_embeddings) of the released models.
CONTEXT_WINDOW: Final[dict[str, int]] = {HASH: 2048, NUMBERED: 4096}
# Pleias-RAG-350M/1B were trained with 1 to 10 sources.
NUMBERED_MAX_SOURCES: Final = 10


def check_dialect(dialect: str) -> Dialect:
    """Return ``dialect`` if it is a prompt dialect, else raise a ``ValueError``."""
    if dialect == HASH:
        return "hash"
    if dialect == NUMBERED:
        return "numbered"
    raise InvalidArgument(
        f"unknown dialect {dialect!r}: use 'hash' (Pleias-Pico / Pleias-Nano 0.1) "
        "or 'numbered' (Pleias-RAG-350M / Pleias-RAG-1B)"
    )


def special_tokens(dialect: str) -> tuple[str, ...]:
    """The special tokens a tokenizer of this dialect must carry, BOS/EOS excluded."""
    return NUMBERED_SPECIAL_TOKENS if check_dialect(dialect) == NUMBERED else HASH_SPECIAL_TOKENS


def detect_dialect(vocab: Container[str], name: str) -> Dialect:
    """The dialect a tokenizer's vocabulary was made for."""
    if "<|source_id|>" in vocab or "<|language_start|>" in vocab:
        return NUMBERED
    if "<|source_analysis_start|>" in vocab and "<|answer_start|>" in vocab:
        return HASH
    raise InvalidArgument(
        f"cannot tell the dialect of {name!r}: its tokenizer has none of the Pleias markers "
        "(<|source_id|>, <|source_analysis_start|>...). Is it a Pleias RAG model? If it is, "
        "pass dialect='hash' (Pleias-Pico/Nano 0.1) or dialect='numbered' (Pleias-RAG-350M/1B)"
    )


def tokenizer_dialect(vocab: Container[str], name: str, dialect: str | None) -> Dialect:
    """``dialect`` checked against a tokenizer's vocabulary, or detected from it when None."""
    if dialect is None:
        return detect_dialect(vocab, name)
    chosen = check_dialect(dialect)
    missing = [t for t in special_tokens(chosen) if t not in vocab]
    if missing:
        raise InvalidArgument(
            f"dialect {chosen!r} needs the markers {missing}, which the tokenizer of {name!r} "
            "lacks: leave dialect=None to detect it, or use the Pleias model's own tokenizer"
        )
    return chosen
