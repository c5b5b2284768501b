"""Loading plain-text files and splitting them into passages with their positions."""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable
from pathlib import Path

from ..sources import Source

TEXT_SUFFIXES = (".txt", ".md", ".markdown", ".rst", ".text")
_PARAGRAPH = re.compile(r"\n\s*\n")
_SENTENCE_END = re.compile(r"(?<=[.!?])\s+")
_BOMS = (
    (b"\xff\xfe\x00\x00", "UTF-32"),
    (b"\x00\x00\xfe\xff", "UTF-32"),
    (b"\xff\xfe", "UTF-16"),
    (b"\xfe\xff", "UTF-16"),
)


class UnreadableFile(ValueError):
    """A file that is not UTF-8 text (UTF-16, another encoding, or binary)."""


def find_files(path: Path, suffixes: Iterable[str] = TEXT_SUFFIXES) -> list[Path]:
    """Text files at ``path`` (a file, or a folder searched recursively), sorted."""
    if not path.exists():
        raise FileNotFoundError(f"{path} does not exist: give a file or a folder of text files")
    wanted = tuple(s.lower() for s in suffixes)
    if path.is_file():
        return [path]
    return sorted(
        p
        for p in path.rglob("*")
        if p.is_file()
        and p.suffix.lower() in wanted
        and not any(part.startswith(".") for part in p.relative_to(path).parts)
    )


def split_text(text: str, max_words: int = 160) -> list[tuple[int, int]]:
    """Passages of at most ``max_words`` words as (start, end) character spans of ``text``.

    Paragraphs are kept whole and merged while they fit; a longer paragraph is cut at
    sentence ends, and a sentence longer than the limit at word boundaries.
    """
    if max_words < 1:
        raise ValueError(f"passages must hold at least 1 word, got max_words={max_words}")
    pieces: list[tuple[int, int]] = []
    for para in _spans(text, _PARAGRAPH, 0, len(text)):
        if _words(text, para) <= max_words:
            pieces.append(para)
            continue
        for sent in _spans(text, _SENTENCE_END, *para):
            if _words(text, sent) <= max_words:
                pieces.append(sent)
            else:
                pieces.extend(_word_windows(text, sent, max_words))
    merged: list[tuple[int, int]] = []
    for start, end in pieces:
        if merged and _words(text, (merged[-1][0], end)) <= max_words:
            merged[-1] = (merged[-1][0], end)
        else:
            merged.append((start, end))
    return merged


def _spans(text: str, sep: re.Pattern[str], start: int, end: int) -> list[tuple[int, int]]:
    out = []
    pos = start
    for m in sep.finditer(text, start, end):
        out.append((pos, m.start()))
        pos = m.end()
    out.append((pos, end))
    return [(s, e) for s, e in (_trim(text, s, e) for s, e in out) if e > s]


def _trim(text: str, start: int, end: int) -> tuple[int, int]:
    while start < end and text[start].isspace():
        start += 1
    while end > start and text[end - 1].isspace():
        end -= 1
    return start, end


def _words(text: str, span: tuple[int, int]) -> int:
    return len(text[span[0] : span[1]].split())


def _word_windows(text: str, span: tuple[int, int], n: int) -> list[tuple[int, int]]:
    words = [m.span() for m in re.finditer(r"\S+", text[span[0] : span[1]])]
    return [
        (span[0] + words[i][0], span[0] + words[min(i + n, len(words)) - 1][1])
        for i in range(0, len(words), n)
    ]


def why_unreadable(data: bytes) -> str | None:
    """Why ``data`` is not UTF-8 text (None when it is)."""
    for bom, name in _BOMS:
        if data.startswith(bom):
            return (
                f"it is {name} text, and pleias-rag reads UTF-8 "
                f"(convert it: iconv -f {name} -t UTF-8 FILE > NEW_FILE)"
            )
    if b"\x00" in data:
        return "it is binary (it holds NUL bytes), not UTF-8 text"
    try:
        data.decode("utf-8")
    except UnicodeDecodeError as exc:
        return (
            f"it is not UTF-8 text (byte 0x{data[exc.start]:02x} at offset {exc.start}): "
            "convert it to UTF-8 (iconv -f LATIN1 -t UTF-8 FILE > NEW_FILE, for instance)"
        )
    return None


def load_passages(
    path: Path,
    *,
    max_words: int = 160,
    on_skip: Callable[[Path, str], None] | None = None,
) -> list[Source]:
    """Every passage of every text file under ``path``, as sources carrying their position.

    Metadata: ``file`` (path as given), ``start``/``end`` (character offsets in the file),
    ``line`` (1-based line of the start), ``title`` (the file name).

    A file that is not UTF-8 text (UTF-16, Latin-1, binary) raises :class:`UnreadableFile`
    when ``path`` is that file or ``on_skip`` is None; in a folder with ``on_skip`` it is
    left out and ``on_skip(file, reason)`` is called.
    """
    files = find_files(path)
    if not files:
        raise FileNotFoundError(
            f"no text files under {path}: pleias-rag reads {', '.join(TEXT_SUFFIXES)} files"
        )
    out: list[Source] = []
    skipped = 0
    for file in files:
        data = file.read_bytes()
        reason = why_unreadable(data)
        if reason is not None:
            if on_skip is None or file == path:
                raise UnreadableFile(f"cannot read {file}: {reason}")
            on_skip(file, reason)
            skipped += 1
            continue
        text = data.decode("utf-8")
        for start, end in split_text(text, max_words):
            meta = {
                "file": str(file),
                "title": file.name,
                "start": start,
                "end": end,
                "line": text.count("\n", 0, start) + 1,
            }
            out.append(Source(text[start:end], metadata=meta))
    if skipped == len(files):
        raise FileNotFoundError(
            f"no readable text file under {path}: the {skipped} file(s) found are not UTF-8 text"
        )
    if not out:
        raise FileNotFoundError(f"the text files under {path} are empty")
    return out
