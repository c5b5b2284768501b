"""Token-level prompt building and context budgeting, for any Hugging Face tokenizer.

Markers become their special-token ids; the query and source texts are encoded with
special-token parsing OFF, so a document containing ``<|answer_start|>`` gets ordinary
sub-word tokens and can not inject structure. For clean text the ids equal what the tokenizer
gives for the rendered prompt string.

The prompt must leave room for ``max_new_tokens`` in the context window: sources are packed in
the order given (retrieval order); the first one that does not fit is cut at a word boundary if
a useful part fits, else dropped, and every later one is dropped. The numbered dialect keeps at
most 10 sources (its training limit). No torch here.
"""

from __future__ import annotations

import itertools
import re
import threading
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from .checks import check_int
from .dialects import NUMBERED, NUMBERED_MAX_SOURCES, check_dialect
from .errors import InvalidArgument, PromptTooLong
from .prompt import ZWSP, Segment, prompt_segments
from .sources import Source, SourceGroup, group_sources, make_sources

# A source cut shorter than this many tokens is dropped instead: a fragment does not help.
MIN_SOURCE_TOKENS = 16
# Longest plausible token, in characters: text beyond budget * this can not fit, so very long
# documents are cut before tokenization (tokenizing megabytes to keep a few pages is waste).
_MAX_CHARS_PER_TOKEN = 32
# Blocks are tokenized this many at a time, so a long tail of sources that can not fit is
# never tokenized.
_ENCODE_CHUNK = 8
_WS = re.compile(r"\s")
_MARKER_LIKE = re.compile(r"<\|[^|<>]{1,60}\|>")


class TokenCodec:
    """Thread-safe encoding and decoding of text with special-token parsing off.

    A fast tokenizer's Rust backend is cloned once and never mutated afterwards: transformers
    toggles shared state on the tokenizer per call (``split_special_tokens``, truncation), so
    using the user's object from several threads could mix the settings up. Slow tokenizers
    are called under a lock.

    Args:
        tokenizer: a Hugging Face tokenizer (fast or slow).
    """

    def __init__(self, tokenizer: Any) -> None:
        self.tokenizer = tokenizer
        self._lock = threading.Lock()
        backend = getattr(tokenizer, "backend_tokenizer", None)
        self._rust: Any = None
        if backend is not None and hasattr(backend, "to_str") and hasattr(backend, "from_str"):
            self._rust = _private_backend(backend)
        self.added_vocab: dict[str, int] = {}
        for token_id, added in getattr(tokenizer, "added_tokens_decoder", {}).items():
            self.added_vocab[str(getattr(added, "content", added))] = int(token_id)
        self.bos_prefix: tuple[int, ...] = self._find_prefix()

    def _find_prefix(self) -> tuple[int, ...]:
        """What the tokenizer puts before the text when it adds special tokens (BOS)."""
        if self._rust is not None:
            with_special = list(self._rust.encode("a", add_special_tokens=True).ids)
            without = list(self._rust.encode("a", add_special_tokens=False).ids)
        else:
            with self._lock:
                with_special = list(self.tokenizer.encode("a", add_special_tokens=True))
                without = list(self.tokenizer.encode("a", add_special_tokens=False))
        for i in range(len(with_special) - len(without) + 1):
            if with_special[i : i + len(without)] == without:
                return tuple(with_special[:i])
        return ()

    def marker_id(self, marker: str) -> int | None:
        """The id of a marker that the tokenizer has as one added token, else None."""
        return self.added_vocab.get(marker)

    def encode_batch(self, texts: Sequence[str]) -> list[list[int]]:
        """Token ids of each text, no special tokens added and none parsed."""
        if not texts:
            return []
        if self._rust is not None:
            return [
                list(e.ids) for e in self._rust.encode_batch(list(texts), add_special_tokens=False)
            ]
        with self._lock:
            out = self.tokenizer(list(texts), add_special_tokens=False, split_special_tokens=True)
        return [list(ids) for ids in out["input_ids"]]

    def encode(self, text: str) -> list[int]:
        return self.encode_batch([text])[0]

    def encode_offsets(self, text: str) -> tuple[list[int], list[tuple[int, int]]]:
        """Token ids of ``text`` and each token's character span."""
        if self._rust is not None:
            enc = self._rust.encode(text, add_special_tokens=False)
            return list(enc.ids), [(int(a), int(b)) for a, b in enc.offsets]
        with self._lock:
            out = self.tokenizer(
                text,
                add_special_tokens=False,
                split_special_tokens=True,
                return_offsets_mapping=True,
            )
        return list(out["input_ids"]), [(int(a), int(b)) for a, b in out["offset_mapping"]]

    def decode(self, ids: Sequence[int]) -> str:
        """Text of ``ids``, special tokens kept, no clean-up of spaces."""
        if self._rust is not None:
            return str(self._rust.decode(list(ids), skip_special_tokens=False))
        with self._lock:
            return str(
                self.tokenizer.decode(
                    list(ids), skip_special_tokens=False, clean_up_tokenization_spaces=False
                )
            )


def _private_backend(backend: Any) -> Any:
    """A clone of a Rust tokenizer that never parses a marker in the text it encodes.

    Every marker-like added token (``<|...|>``) is made special, so ``encode_special_tokens``
    splits it even where the tokenizer config registered it as a plain added token.
    """
    from tokenizers import AddedToken

    rust = type(backend).from_str(backend.to_str())
    rust.no_truncation()
    rust.no_padding()
    markers = [
        AddedToken(
            tok.content,
            single_word=tok.single_word,
            lstrip=tok.lstrip,
            rstrip=tok.rstrip,
            normalized=tok.normalized,
            special=True,
        )
        for tok in rust.get_added_tokens_decoder().values()
        if not tok.special and _MARKER_LIKE.fullmatch(tok.content)
    ]
    if markers:
        rust.add_special_tokens(markers)
    rust.encode_special_tokens = True
    return rust


@dataclass(frozen=True)
class EncodedPrompt:
    """A prompt as it is sent, and what the context budget did to the sources.

    Attributes:
        prompt: the token ids (BOS first when the tokenizer adds one), or the escaped string
            prompt when the backend has no tokenizer.
        sources: the sources in the prompt, in prompt order (original objects, also for the
            truncated ones: a quote from the kept part is found in the full text too).
        dropped_ids: ids of the sources left out (context budget, source limit).
        truncated_ids: ids of the sources cut to fit.
        query: the question the prompt asks.
    """

    prompt: list[int] | str
    sources: tuple[Source, ...] = ()
    dropped_ids: tuple[str, ...] = ()
    truncated_ids: tuple[str, ...] = ()
    query: str = ""

    @property
    def ids(self) -> tuple[int, ...]:
        """The token ids; a string prompt has none."""
        if isinstance(self.prompt, str):
            raise InvalidArgument(
                "this prompt is a string (the backend has no tokenizer), not token ids: read "
                ".prompt, count its tokens with backend.prompt_tokens(), or give the backend "
                "tokenizer= (the model's tokenizer folder)"
            )
        return tuple(self.prompt)

    def __len__(self) -> int:
        return len(self.ids)


@dataclass
class _Block:
    """One part of the prompt as encodable items: special ids and merged text runs."""

    items: list[int | str]
    # Index in ``items`` of the run holding the source text, and where the text starts in it.
    text_item: int = -1
    text_start: int = 0
    text: str = ""
    whole: str = ""  # the source text before any cut (escaped as sent)


def _blocks(segments: Sequence[Segment], codec: TokenCodec) -> list[_Block]:
    """Split segments into header, one block per source, and tail; merge text runs.

    Text segments and markers that are not tokens of this tokenizer are joined into runs, as
    the tokenizer itself would see them between two special tokens. Such a marker (Pico's
    ``<|source_id_start|>`` is seven plain pieces) is escaped in user text with a zero-width
    space, or a document could spell a header token for token identical to the real one.
    """
    plain = {s.value for s in segments if s.kind == "marker" and codec.marker_id(s.value) is None}
    if plain:
        segments = [
            Segment("text", _escape_plain(s.value, plain)) if s.kind == "text" else s
            for s in segments
        ]
    tail_at = max(i for i, s in enumerate(segments) if s.kind == "marker")
    starts = [
        i
        for i, s in enumerate(segments)
        if s.kind == "marker" and s.value == "<|source_start|>" and i < tail_at
    ]
    bounds = [0, *starts, tail_at, len(segments)]
    blocks: list[_Block] = []
    for lo, hi in itertools.pairwise(bounds):
        part = segments[lo:hi]
        block = _Block(items=[])
        # In a source block the source text is the last text segment before <|source_end|>.
        text_seg = -1
        if lo in starts:
            end = next(
                j for j, s in enumerate(part) if s.kind == "marker" and s.value == "<|source_end|>"
            )
            text_seg = max(j for j in range(end) if part[j].kind == "text")
        run: list[str] = []
        for j, seg in enumerate(part):
            token_id = codec.marker_id(seg.value) if seg.kind == "marker" else None
            if token_id is None:
                if j == text_seg:
                    block.text_item = len(block.items)
                    block.text_start = sum(len(r) for r in run)
                    block.text = block.whole = seg.value
                run.append(seg.value)
                continue
            if run:
                block.items.append("".join(run))
                run = []
            block.items.append(token_id)
        if run:
            block.items.append("".join(run))
        blocks.append(block)
    return blocks


def _escape_plain(text: str, markers: set[str]) -> str:
    for marker in markers:
        if marker in text:
            text = text.replace(marker, "<" + ZWSP + marker[1:])
    return text


def _encode_blocks(blocks: Sequence[_Block], codec: TokenCodec) -> list[list[int]]:
    runs = [item for b in blocks for item in b.items if isinstance(item, str)]
    encoded = iter(codec.encode_batch(runs))
    out: list[list[int]] = []
    for b in blocks:
        ids: list[int] = []
        for item in b.items:
            ids.extend(next(encoded) if isinstance(item, str) else (item,))
        out.append(ids)
    return out


class PromptEncoder:
    """Encodes Pleias prompts to token ids within a context budget.

    Args:
        tokenizer: the model's Hugging Face tokenizer (or a :class:`TokenCodec` of it).
        dialect: ``hash`` or ``numbered``.
        context_window: the model's ``max_position_embeddings``.
        max_sources: most sources kept (default 10 for the numbered dialect, its training
            limit; no limit for hash).
        min_source_tokens: a source cut to fewer tokens than this is dropped instead.
    """

    def __init__(
        self,
        tokenizer: Any,
        dialect: str,
        *,
        context_window: int,
        max_sources: int | None = None,
        min_source_tokens: int = MIN_SOURCE_TOKENS,
    ) -> None:
        self.dialect = check_dialect(dialect)
        self.codec = tokenizer if isinstance(tokenizer, TokenCodec) else TokenCodec(tokenizer)
        self.context_window = check_int("context_window", context_window, 2)
        if max_sources is None and self.dialect == NUMBERED:
            max_sources = NUMBERED_MAX_SOURCES
        self.max_sources = check_int("max_sources", max_sources, 0, optional=True)
        # 0 means never drop a cut source; an empty cut is always dropped (at least 1).
        self.min_source_tokens = max(1, check_int("min_source_tokens", min_source_tokens, 0))

    def count_tokens(self, text: str) -> int:
        """Tokens ``text`` takes inside a prompt."""
        if not isinstance(text, str):
            raise InvalidArgument(f"count_tokens takes a str, got {type(text).__name__}")
        return len(self.codec.encode(text)) if text else 0

    def encode(
        self, query: str, sources: Sequence[Source | str] = (), *, max_new_tokens: int
    ) -> EncodedPrompt:
        """The prompt's ids, leaving ``max_new_tokens`` free in the context window.

        Raises:
            PromptTooLong: the query (with no source at all) and ``max_new_tokens`` do not
                fit the context window.
            InvalidArgument: a bad query or source.
        """
        if isinstance(sources, (str, bytes)):
            raise InvalidArgument("sources must be a list of texts or Source objects, not one str")
        groups = group_sources(make_sources(sources))
        limit = len(groups) if self.max_sources is None else self.max_sources
        over = groups[limit:]
        groups = groups[:limit]
        blocks = _blocks(prompt_segments(query, groups, self.dialect), self.codec)
        header, tail, source_blocks = blocks[0], blocks[-1], blocks[1:-1]
        head_ids, tail_ids = _encode_blocks([header, tail], self.codec)
        budget = self.context_window - max_new_tokens
        fixed = len(self.codec.bos_prefix) + len(head_ids) + len(tail_ids)
        if fixed > budget:
            raise PromptTooLong(fixed, max_new_tokens, self.context_window)
        room = budget - fixed
        ids = [*self.codec.bos_prefix, *head_ids]
        kept: list[SourceGroup] = []
        truncated: list[str] = []
        dropped: list[str] = []
        i = 0
        while i < len(source_blocks):
            chunk = [self._precut(b, room) for b in source_blocks[i : i + _ENCODE_CHUNK]]
            for block, block_ids in zip(chunk, _encode_blocks(chunk, self.codec), strict=True):
                group = groups[i]
                i += 1
                if len(block_ids) <= room and block.text == block.whole:
                    ids += block_ids
                    room -= len(block_ids)
                    kept.append(group)
                    continue
                cut = self._truncate(block, len(block_ids), room)
                if cut is not None:
                    ids += cut
                    kept.append(group)
                    truncated.append(group.id)
                dropped.extend(g.id for g in groups[i - (cut is None) :])
                i = len(source_blocks)
                break
        dropped.extend(g.id for g in over)
        ids += tail_ids
        return EncodedPrompt(
            prompt=ids,
            sources=tuple(s for g in kept for s in g.members),
            dropped_ids=tuple(dropped),
            truncated_ids=tuple(truncated),
            query=query,
        )

    def _precut(self, block: _Block, room: int) -> _Block:
        """The block with its text cut to what could possibly fit, before tokenizing it."""
        most = max(room, 0) * _MAX_CHARS_PER_TOKEN + 1
        if len(block.text) <= most:
            return block
        return _with_text(block, block.text[:most])

    def _truncate(self, block: _Block, cost: int, room: int) -> list[int] | None:
        """The block's ids with its text cut at a word boundary to fit ``room``, or None."""
        run = block.items[block.text_item]
        assert isinstance(run, str)
        run_ids, offsets = self.codec.encode_offsets(run)
        others = cost - len(run_ids)
        text_end = block.text_start + len(block.text)
        after = self.codec.encode(run[text_end:]) if text_end < len(run) else []
        allowed = room - others - len(after)
        for _ in range(4):
            if allowed <= 0:
                return None
            char_end = offsets[min(allowed, len(offsets)) - 1][1] - block.text_start
            text = _word_cut(block.text[: max(char_end, 0)])
            if not text:
                return None
            kept_tokens = sum(
                1 for a, _ in offsets if block.text_start <= a < block.text_start + len(text)
            )
            if kept_tokens < self.min_source_tokens:
                return None
            cut = _with_text(block, text)
            (ids,) = _encode_blocks([cut], self.codec)
            if len(ids) <= room:
                return ids
            allowed -= len(ids) - room  # re-tokenized text came out longer: cut more
        return None


def _word_cut(text: str) -> str:
    """``text`` cut back to its last word boundary (kept whole when that loses over half)."""
    last = None
    for m in _WS.finditer(text):
        last = m.start()
    if last is not None and last >= len(text) // 2:
        text = text[:last]
    return text.rstrip()


def _with_text(block: _Block, text: str) -> _Block:
    run = block.items[block.text_item]
    assert isinstance(run, str)
    end = block.text_start + len(block.text)
    items = list(block.items)
    items[block.text_item] = run[: block.text_start] + text + run[end:]
    return _Block(items, block.text_item, block.text_start, text, block.whole)


def encode_prompt(
    tokenizer: Any,
    query: str,
    sources: Sequence[Source | str] = (),
    dialect: str = "hash",
    *,
    context_window: int,
    max_new_tokens: int,
    max_sources: int | None = None,
) -> EncodedPrompt:
    """One-off :meth:`PromptEncoder.encode` (build a :class:`PromptEncoder` to encode many)."""
    encoder = PromptEncoder(
        tokenizer, dialect, context_window=context_window, max_sources=max_sources
    )
    return encoder.encode(query, sources, max_new_tokens=max_new_tokens)
