"""Prompt rendering for both dialects, as segments (markers vs user text) and as a string.

A backend that tokenizes (the local engine, a remote server given token ids) encodes each
``marker`` segment as its special-token id and each ``text`` segment with special-token parsing
off, so no query or document can inject structure. A backend that can only send a string uses
:func:`render_prompt`, which escapes marker-like text in user input (see :func:`escape_text`).
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal

from .checks import check_query
from .dialects import HASH, NUMBERED, check_dialect
from .errors import InvalidArgument
from .sources import Source, SourceGroup, group_sources

ZWSP = "\u200b"

# Anything the parser or a tokenizer could read as structure: <|name|>, <ref ...>, </ref>; the
# added tokens of common tokenizers (Pleias's [UNK] and [PAD], BERT's [CLS] [SEP] [MASK],
# SentencePiece's <s> </s> <unk> <pad>...), unknown without the tokenizer; and the markdown
# dialect's #END# stop and ### Answer ### headings. Each match is one character, followed by
# a zero-width space in the escaped text.
_INJECTION = re.compile(
    r"<(?=\|)|<(?=/?\s*ref\b)|<(?=/?(?:s|unk|pad|mask|bos|eos|cls|sep)>)"
    r"|\[(?=(?:PAD|UNK|CLS|SEP|MASK|BOS|EOS)\])"
    r"|\#(?=END\#)|\#(?=\#\#)",
    re.IGNORECASE,
)


@dataclass(frozen=True)
class Segment:
    """A piece of a prompt: a structural ``marker`` or user ``text``."""

    kind: Literal["marker", "text"]
    value: str


def escape_text(text: str) -> str:
    """Make user text safe inside a string prompt.

    A zero-width space (U+200B) is inserted after the first character of: every ``<|``,
    ``<ref``, ``</ref``; the special-looking tokens a tokenizer may have added (``[PAD]``,
    ``[UNK]``, ``[CLS]``, ``[SEP]``, ``[MASK]``, ``[BOS]``, ``[EOS]``, ``<s>``, ``</s>``,
    ``<unk>``, ``<pad>``, ``<mask>``, ``<bos>``, ``<eos>``, ``<cls>``, ``<sep>``, in any case);
    ``#END#``; and every ``###`` (the markdown dialect's ``### Answer ###`` headings). So the
    text can neither become a special token nor look like a citation or a section. The visible
    text is unchanged, and quote verification ignores U+200B, so the model can still quote the
    escaped text. (With a tokenizer, prompts are token ids and need none of this: text is
    encoded with special-token parsing off.)
    """
    return _INJECTION.sub(lambda m: m.group() + ZWSP, text)


def prompt_segments(
    query: str, sources: Sequence[Source] | Sequence[SourceGroup], dialect: str
) -> list[Segment]:
    """The prompt as segments, byte for byte the Pleias format once joined.

    ``sources`` are sent in the order given; sources sharing an id are sent once.
    """
    dialect = check_dialect(dialect)
    query = check_query(query)
    groups = _as_groups(sources)
    segs: list[Segment] = [
        Segment("marker", "<|query_start|>"),
        Segment("text", query),
        Segment("marker", "<|query_end|>"),
        Segment("text", "\n"),
    ]
    for number, group in enumerate(groups, start=1):
        segs.append(Segment("marker", "<|source_start|>"))
        if dialect == HASH:
            segs += [
                Segment("marker", "<|source_id_start|>"),
                Segment("text", group.id),
                Segment("marker", "<|source_id_end|>"),
            ]
        else:
            segs += [Segment("marker", "<|source_id|>"), Segment("text", f"{number} ")]
        segs += [
            Segment("text", group.text),
            Segment("marker", "<|source_end|>"),
            Segment("text", "\n"),
        ]
    if dialect == HASH:
        segs.append(Segment("marker", "<|source_analysis_start|>"))
    else:
        segs += [Segment("marker", "<|language_start|>"), Segment("text", "\n")]
    return segs


def _as_groups(sources: Sequence[Source] | Sequence[SourceGroup]) -> list[SourceGroup]:
    if isinstance(sources, (str, bytes)):
        raise InvalidArgument("sources must be a sequence of Source objects, not a single string")
    if all(isinstance(s, SourceGroup) for s in sources):
        return list(sources)  # type: ignore[arg-type]  # checked just above
    return group_sources(sources)  # type: ignore[arg-type]  # group_sources checks each item


def render_prompt(query: str, sources: Sequence[Source] = (), dialect: str = HASH) -> str:
    """The prompt as one string, user text escaped with :func:`escape_text`."""
    return "".join(
        s.value if s.kind == "marker" else escape_text(s.value)
        for s in prompt_segments(query, sources, dialect)
    )


def prompt_ids(sources: Sequence[Source], dialect: str) -> dict[str, SourceGroup]:
    """What the model writes to cite each source → its group of sources.

    Hash prompts carry the source id; numbered prompts carry the 1-based position.
    """
    groups = group_sources(sources)
    if check_dialect(dialect) == NUMBERED:
        return {str(i): g for i, g in enumerate(groups, start=1)}
    return {g.id: g for g in groups}
