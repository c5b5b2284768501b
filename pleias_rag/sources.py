"""Sources given to the model, and the 16-hex ids Pleias models were trained on."""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Iterable, Mapping, Sequence
from collections.abc import Set as AbstractSet
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any

from .errors import InvalidArgument, InvalidType

IdFunction = Callable[[str], str]


def source_id(text: str) -> str:
    """The id Pleias's own application gives a source: the first 16 hex digits of its MD5."""
    if not isinstance(text, str):
        raise InvalidType(f"source text must be a str, got {type(text).__name__}")
    return hashlib.md5(text.encode("utf-8")).hexdigest()[:16]


@dataclass(frozen=True)
class Source:
    """One source as the model sees it.

    Attributes:
        text: the text put in the prompt.
        id: the id written in the prompt (hash dialect) and cited back by the model; empty
            (or None): the hash of the text (:func:`source_id`).
        metadata: arbitrary metadata, kept untouched (title and url are shown when present);
            None is taken as no metadata.
        ref: a back-reference to the framework object the source came from (a LangChain
            ``Document``, a LlamaIndex node...), never read by the core.
    """

    text: str
    id: str = ""
    metadata: Mapping[str, Any] = field(default_factory=lambda: MappingProxyType({}))
    ref: Any = field(default=None, compare=False, repr=False)

    def __post_init__(self) -> None:
        if not isinstance(self.text, str):
            raise InvalidArgument(f"Source.text must be a str, got {type(self.text).__name__}")
        if not self.text.strip():
            raise InvalidArgument(
                "Source.text is empty: give every source some text, or leave it out"
            )
        if self.id is None or self.id == "":
            object.__setattr__(self, "id", source_id(self.text))
        elif not isinstance(self.id, str):
            raise InvalidArgument(
                f"Source.id must be a str, got {self.id!r} ({type(self.id).__name__}): give "
                "str(id), or leave it empty to use the text's hash"
            )
        if self.metadata is None:
            object.__setattr__(self, "metadata", MappingProxyType({}))
        elif not isinstance(self.metadata, Mapping):
            raise InvalidArgument(
                f"Source.metadata must be a mapping (a dict), got "
                f"{type(self.metadata).__name__}: give a dict such as {{'title': ...}}, or none"
            )

    @property
    def title(self) -> str | None:
        value = self.metadata.get("title")
        return str(value) if value is not None else None

    @property
    def url(self) -> str | None:
        for key in ("url", "source_url", "link"):
            value = self.metadata.get(key)
            if isinstance(value, str) and value:
                return value
        return None


def check_ordered(items: object, what: str, entries: str, fix: str) -> None:
    """Refuse ``items`` given as a mapping (its keys would be taken as the ``entries``; the
    message suggests ``fix``) or a set (its order changes from run to run, and with it the
    prompt and the citation numbers); ``what`` starts the message."""
    kind = type(items).__name__
    if isinstance(items, Mapping):
        raise InvalidArgument(
            f"{what}, not a {kind} (its keys would be taken as the {entries}): give {fix}"
        )
    if isinstance(items, AbstractSet):
        raise InvalidArgument(
            f"{what}, not a {kind} (its order changes from run to run, and with it the "
            "prompt and the citation numbers): give a list, e.g. sorted(s)"
        )


def make_sources(
    items: Iterable[str | Source],
    *,
    id_function: IdFunction | None = None,
) -> list[Source]:
    """Build ``Source`` objects from strings or sources, giving ids with ``id_function``.

    ``id_function`` overrides :func:`source_id` for sources that carry no explicit id.
    """
    check_ordered(
        items,
        "sources must be a list of texts or Source objects",
        "texts",
        "list(d.values()), or [Source(text, metadata=...) ...]",
    )
    if isinstance(items, (str, bytes)):
        raise InvalidArgument("sources must be a list of texts or Source objects, not one str")
    return [make_source(item, i, id_function=id_function) for i, item in enumerate(items)]


def make_source(item: object, index: int = 0, *, id_function: IdFunction | None = None) -> Source:
    """``item`` (a str or a ``Source``, the ``index``-th of a list) as a ``Source``."""
    if isinstance(item, Source):
        return item
    if isinstance(item, str):
        if not item.strip():
            raise InvalidArgument(
                f"source {index} is empty: give every source some text, or leave it out"
            )
        return Source(text=item, id=(id_function or source_id)(item))
    raise InvalidArgument(
        f"source {index} is a {type(item).__name__}; give a str or a pleias_rag.Source"
    )


@dataclass(frozen=True)
class SourceGroup:
    """Sources that share one id: the prompt carries their text once."""

    id: str
    text: str
    members: tuple[Source, ...]

    @property
    def first(self) -> Source:
        return self.members[0]


def group_sources(sources: Sequence[Source]) -> list[SourceGroup]:
    """Merge sources with the same id, keeping the order of first appearance.

    Identical texts get the same default id, so a duplicated document is sent once and a
    citation of it maps back to every original. Two different texts under one id are an error.
    """
    groups: dict[str, list[Source]] = {}
    for i, src in enumerate(sources):
        if not isinstance(src, Source):
            raise InvalidArgument(
                f"source {i} is a {type(src).__name__}; give pleias_rag.Source objects"
            )
        members = groups.setdefault(src.id, [])
        if members and members[0].text != src.text:
            raise InvalidArgument(
                f"sources {members[0].id!r} have the same id but different texts; ids must be "
                "unique per text (leave id empty to use the text's hash)"
            )
        members.append(src)
    return [SourceGroup(id=sid, text=m[0].text, members=tuple(m)) for sid, m in groups.items()]
