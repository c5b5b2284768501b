"""LlamaIndex objects to and from pleias_rag sources and answers, and model resolution.

Nodes become :class:`pleias_rag.Source` objects whose ``ref`` is a :class:`NodeRef` (the
original ``NodeWithScore`` and where its body starts in the source text), so a citation maps
back to the exact node it came from, offsets included.
"""

from __future__ import annotations

import logging
from collections.abc import (
    AsyncGenerator,
    AsyncIterable,
    Callable,
    Generator,
    Iterable,
    Sequence,
)
from dataclasses import dataclass, field
from typing import Any, Literal, TypeAlias, TypeVar

from llama_index.core.base.llms.types import (
    ChatMessage,
    CitableBlock,
    CitationBlock,
    MessageRole,
    TextBlock,
)
from llama_index.core.schema import (
    BaseNode,
    ImageNode,
    MetadataMode,
    Node,
    NodeWithScore,
    TextNode,
)

from pleias_rag import Citation, Event, PleiasAnswer, Source
from pleias_rag.errors import InvalidArgument, InvalidType
from pleias_rag.fallback import VisibleText
from pleias_rag.numbering import Numbering
from pleias_rag.sources import make_source
from pleias_rag.views.ranking import SourceUse

logger = logging.getLogger(__name__)

#: Metadata key of the citation annotations on returned nodes (kept out of LLM/embed text).
PLEIAS_METADATA_KEY = "pleias_citations"
#: The model used when none is named.
DEFAULT_MODEL = "PleIAs/Pleias-RAG-350M"

MetadataHeader: TypeAlias = bool | Sequence[str] | Callable[[BaseNode], str]
OnInvalid: TypeAlias = Literal["skip", "raise"]

_Chunk = TypeVar("_Chunk")
#: What one stream event becomes (None: nothing to yield), given the stream's text fold.
ChunkOf: TypeAlias = Callable[[Event, VisibleText], _Chunk | None]


# --------------------------------------------------------------------------- models


class Call:
    """What to call a backend with: the query, the sources and the generation kwargs."""

    __slots__ = ("gen", "numbering", "query", "sources")

    def __init__(
        self,
        query: str,
        sources: list[Source],
        gen: dict[str, Any],
        numbering: Numbering | None = None,
    ) -> None:
        self.query, self.sources, self.gen = query, sources, gen
        self.numbering = numbering

    def answer(self, answer: PleiasAnswer) -> PleiasAnswer:
        """The backend's answer, its markers numbered as the caller asked."""
        return answer if self.numbering is None else self.numbering.answer(answer)

    def events(self, events: Iterable[Event]) -> Iterable[Event]:
        """:meth:`answer` for a stream."""
        return events if self.numbering is None else self.numbering.events(events)

    def aevents(self, events: AsyncIterable[Event]) -> AsyncIterable[Event]:
        """:meth:`answer` for an async stream."""
        return events if self.numbering is None else self.numbering.aevents(events)


def source_numbering(sources: Sequence[Source], numbers: object) -> Numbering | None:
    """The :class:`~pleias_rag.numbering.Numbering` of ``source_numbers=`` (the marker
    number of each source, in order; a source given twice keeps its first number)."""
    if numbers is None:
        return None
    if isinstance(numbers, (str, bytes)) or not isinstance(numbers, Sequence):
        raise InvalidType("source_numbers must be a list of ints, one per source")
    if len(numbers) != len(sources) or not all(
        isinstance(n, int) and not isinstance(n, bool) and n > 0 for n in numbers
    ):
        raise InvalidArgument(
            f"source_numbers must give one positive int per source: {len(sources)} "
            f"source(s), got {list(numbers)!r}"
        )
    by_id: dict[str, int] = {}
    for source, number in zip(sources, numbers, strict=True):
        by_id.setdefault(source.id, number)
    return Numbering(by_id)


# --------------------------------------------------------------------------- nodes


@dataclass(frozen=True)
class NodeRef:
    """What a :class:`~pleias_rag.Source` made from a node points back to.

    Attributes:
        node: the original node with its retrieval score.
        offset: where the node body starts in the source text (the length of the metadata
            header put before it, 0 without one).
    """

    node: NodeWithScore
    offset: int = 0

    @property
    def node_id(self) -> str:
        return self.node.node.node_id


@dataclass
class NodeSources:
    """Nodes converted to sources: what goes in the prompt, and what was left out and why."""

    sources: list[Source] = field(default_factory=list)
    skipped: list[tuple[NodeWithScore, str]] = field(default_factory=list)

    @property
    def skipped_node_ids(self) -> list[str]:
        return [n.node.node_id for n, _ in self.skipped]


def _is_image(node: BaseNode) -> bool:
    return isinstance(node, ImageNode) or (
        isinstance(node, Node) and node.image_resource is not None
    )


def node_body(node: BaseNode) -> str | None:
    """The node's own text (``get_content(MetadataMode.NONE)``), or None when it has none.

    An image node is read by its text (caption, OCR) when it has some: the model reads text only.
    """
    text = node.get_content(metadata_mode=MetadataMode.NONE)
    if not isinstance(text, str) or not text.strip():
        return None
    return text


def _framed(node: BaseNode, body: str, header: MetadataHeader) -> tuple[str, int]:
    """The source text of a node and where its body starts in it.

    ``True``: ``node.get_content(MetadataMode.LLM)``, the text LlamaIndex's own synthesizers
    send (its ``text_template`` and ``excluded_llm_metadata_keys`` honoured); the body is
    looked up in it (a template that rewrites the body falls back to header + body).
    ``False``: the body alone. A list of keys or a callable: that header, a blank line, the
    body.
    """
    if header is False:
        return body, 0
    if header is True:
        text = node.get_content(metadata_mode=MetadataMode.LLM)
        at = text.find(body) if isinstance(text, str) else -1
        if at >= 0:
            return text, at
        head = node.get_metadata_str(mode=MetadataMode.LLM)
    elif callable(header):
        head = header(node)
    elif isinstance(header, str):
        raise InvalidType("metadata_header takes a list of keys, not a single string")
    else:
        head = "\n".join(f"{k}: {node.metadata[k]}" for k in header if k in node.metadata)
    head = head.strip()
    head = head + "\n\n" if head else ""
    return head + body, len(head)


def _as_node_with_score(item: object, i: int) -> NodeWithScore:
    if isinstance(item, NodeWithScore):
        return item
    if isinstance(item, BaseNode):
        return NodeWithScore(node=item)
    raise InvalidType(f"node {i} is a {type(item).__name__}; give NodeWithScore or node objects")


def nodes_to_sources(
    nodes: Iterable[NodeWithScore | BaseNode],
    *,
    metadata_header: MetadataHeader = True,
    on_invalid: OnInvalid = "skip",
) -> NodeSources:
    """Turn nodes into sources, in order.

    The source text is the node's text as LlamaIndex gives it to an LLM (``True``: its
    ``MetadataMode.LLM`` content), the body alone (``False``), or the body after a header of
    some metadata keys or a callable's; ``NodeRef.offset`` says where the body starts. A node
    seen twice (same node id) is sent once. A node without text (empty, or an image without
    caption) is skipped with a warning, or raises ``ValueError`` when ``on_invalid="raise"``.
    """
    out = NodeSources()
    seen: set[str] = set()
    for i, item in enumerate(nodes):
        nws = _as_node_with_score(item, i)
        node = nws.node
        if node.node_id in seen:
            continue  # the same node twice: sent once, cited once
        body = node_body(node)
        if body is None:
            kind = "image node without text" if _is_image(node) else "node without text"
            reason = f"{kind} (Pleias models read text only)"
            if on_invalid == "raise":
                raise InvalidArgument(f"node {i} ({node.node_id}): {reason}")
            logger.warning("skipping node %s: %s", node.node_id, reason)
            out.skipped.append((nws, reason))
            continue
        seen.add(node.node_id)
        text, offset = _framed(node, body, metadata_header)
        metadata = {k: v for k, v in node.metadata.items() if k != PLEIAS_METADATA_KEY}
        out.sources.append(Source(text, metadata=metadata, ref=NodeRef(nws, offset)))
    return out


def to_sources(items: Iterable[object] | None) -> list[Source]:
    """Sources from strings, ``Source``, nodes, ``NodeWithScore`` or ``CitableBlock`` objects."""
    if items is None:
        return []
    if isinstance(items, (str, bytes)):
        raise InvalidType("sources must be a list, not a single string")
    out: list[Source] = []
    for i, item in enumerate(items):
        if isinstance(item, (Source, str)):
            out.append(make_source(item, i))
        elif isinstance(item, CitableBlock):
            out.append(citable_to_source(item))
        elif isinstance(item, (NodeWithScore, BaseNode)):
            converted = nodes_to_sources([item], on_invalid="raise")
            out.extend(converted.sources)
        else:
            raise InvalidType(
                f"source {i} is a {type(item).__name__}; give str, pleias_rag.Source, "
                "a node, a NodeWithScore or a CitableBlock"
            )
    return out


# --------------------------------------------------------------------------- chat blocks


def citable_to_source(block: CitableBlock) -> Source:
    """A ``CitableBlock`` as a source: its text blocks joined; title and source kept."""
    text = "\n".join(b.text for b in block.content if isinstance(b, TextBlock))
    if not text.strip():
        raise InvalidArgument(
            f"CitableBlock {block.title!r} has no text (Pleias models read text only)"
        )
    metadata: dict[str, Any] = {"title": block.title, "source": block.source}
    if block.source.startswith(("http://", "https://")):
        metadata["url"] = block.source
    return Source(text, metadata=metadata, ref=block)


def chat_inputs(messages: Sequence[ChatMessage]) -> tuple[str, list[Source]]:
    """The query (text of the last user message) and the sources (every ``CitableBlock`` of
    the conversation, in order; identical ones once)."""
    query: str | None = None
    for message in reversed(messages):
        if message.role == MessageRole.USER:
            query = "\n".join(b.text for b in message.blocks if isinstance(b, TextBlock))
            break
    if query is None or not query.strip():
        raise InvalidArgument("chat needs a user message with text: it is the query")
    sources: list[Source] = []
    seen: set[tuple[str, str, str]] = set()
    for message in messages:
        for block in message.blocks:
            if isinstance(block, CitableBlock):
                src = citable_to_source(block)
                key = (src.text, block.title, block.source)
                if key not in seen:
                    seen.add(key)
                    sources.append(src)
    return query, sources


def citation_blocks(answer: PleiasAnswer) -> list[CitationBlock]:
    """One ``CitationBlock`` per citation of a known source (unknown ids give none).

    The block points at the source that holds the quote (for a misattributed quote, the one
    it is really in), else at the source named; ``cited_content`` is that source's own
    words (the model's quote when none matched). ``additional_location_info`` holds
    ``start_char_index``/``end_char_index`` (those words in the source text, when found),
    ``answer_start_index``/``answer_end_index`` (the ``[n]`` marker in the answer),
    and ``citation_number`` (its status and the model's quote are in the response
    metadata's citations, by number: the block's location info holds only integers).
    """
    blocks = []
    for c in answer.citations:
        credited = c.credited
        src = credited[0] if credited else c.source  # where the quote is, else the one named
        if src is None:
            continue
        ref = src.ref
        if isinstance(ref, CitableBlock):
            source, title = ref.source, ref.title
        elif isinstance(ref, NodeRef):
            source, title = ref.node_id, src.title or ""
        else:
            source, title = src.url or src.id, src.title or ""
        data = c.to_dict()
        start, end = node_span(src, data["source_start"], data["source_end"])
        location = {
            "start_char_index": start,
            "end_char_index": end,
            "answer_start_index": data["answer_start"],
            "answer_end_index": data["answer_end"],
            "citation_number": data["number"],
        }
        blocks.append(
            CitationBlock(
                cited_content=TextBlock(text=c.matched_text or c.quote),
                source=source,
                title=title,
                additional_location_info={k: v for k, v in location.items() if v is not None},
            )
        )
    return blocks


# --------------------------------------------------------------------------- streams


def chunks(events: Iterable[Event], chunk: ChunkOf[_Chunk]) -> Generator[_Chunk, None, None]:
    """The framework chunks of a stream: ``chunk(event, fold)`` for each event, Nones left
    out, with one :class:`~pleias_rag.fallback.VisibleText` fold for the whole stream."""
    fold = VisibleText()
    for event in events:
        if (out := chunk(event, fold)) is not None:
            yield out


async def achunks(
    events: AsyncIterable[Event], chunk: ChunkOf[_Chunk]
) -> AsyncGenerator[_Chunk, None]:
    """:func:`chunks` of an async stream."""
    fold = VisibleText()
    async for event in events:
        if (out := chunk(event, fold)) is not None:
            yield out


def text_delta(event: Event, fold: VisibleText) -> str | None:
    """The text ``event`` adds to the visible answer (None when it adds none)."""
    return fold.step(event) or None


# --------------------------------------------------------------------------- answers


def node_span(source: Source, start: int | None, end: int | None) -> tuple[int | None, int | None]:
    """Offsets in the source text → offsets in the node body (None when outside it: in the
    metadata header, or in what the node's text template puts after the body)."""
    if not isinstance(source.ref, NodeRef):
        return start, end
    offset = source.ref.offset
    body = node_body(source.ref.node.node) or ""
    if start is None or end is None or start < offset or end - offset > len(body):
        return None, None
    return start - offset, end - offset


def node_ids(sources: Iterable[Source]) -> list[str]:
    """Node ids behind these sources, in order, each once."""
    out: dict[str, None] = {}
    for s in sources:
        if isinstance(s.ref, NodeRef):
            out.setdefault(s.ref.node_id)
    return list(out)


def citation_dict(c: Citation, holder: Source | None = None) -> dict[str, Any]:
    """The core's citation dict (:meth:`pleias_rag.answer.Citation.to_dict`) plus node keys:
    ``node_ids`` (the nodes of ``cited_id``), ``found_in_node_ids`` (those of ``found_in``),
    ``node_start``/``node_end`` (``source_start``/``source_end`` in the body of the node
    that holds the quote, ``holder``: by default the first of :attr:`Citation.credited`;
    None when no node holds it, or when the words are in the metadata header) and
    ``found_node_start``/``found_node_end`` (``found_start``/``found_end`` in the body of
    the first ``found_in`` node).
    """
    data = c.to_dict()
    if holder is None and c.credited:
        holder = c.credited[0]
    start, end = (
        (None, None)
        if holder is None
        else node_span(holder, data["source_start"], data["source_end"])
    )
    found = c.found_in[0] if c.found_in else None
    found_start, found_end = (
        (None, None) if found is None else node_span(found, c.found_start, c.found_end)
    )
    data.update(
        node_ids=node_ids(c.sources),
        node_start=start,
        node_end=end,
        found_in_node_ids=node_ids(c.found_in),
        found_node_start=found_start,
        found_node_end=found_end,
    )
    return data


def answer_kwargs(answer: PleiasAnswer) -> dict[str, Any]:
    """JSON-ready description of an answer, for ``additional_kwargs`` and ``metadata``."""
    return {
        "citations": [citation_dict(c) for c in answer.citations],
        "source_analysis": answer.source_analysis,
        "sections": dict(answer.sections),
        "mentioned_ids": list(answer.mentioned_ids),
        "finish_reason": answer.finish_reason,
        "dialect": answer.dialect,
        "dropped_source_ids": list(answer.dropped_source_ids),
        "truncated_source_ids": list(answer.truncated_source_ids),
        "prompt_tokens": answer.prompt_tokens,
        "completion_tokens": answer.completion_tokens,
    }


def annotated_copy(use: SourceUse, marker: int | None = None) -> NodeWithScore:
    """A deep copy of the node behind ``use`` (same node id and score) with its citations in
    ``metadata[PLEIAS_METADATA_KEY]``, a key kept out of the LLM and embedding text.

    The metadata is :meth:`SourceUse.annotations` (``source_id``, ``relevance_score``,
    ``citations``) plus ``node_id``, ``rank``, ``mentioned``, ``marker`` (the ``n`` of the
    ``[n]`` marker naming this node, None when none does) and ``cited`` (False for a node
    returned though the answer neither names it nor holds one of its quotes); each citation is a
    :func:`citation_dict` of this node, so its ``node_start``/``node_end`` are the quote's
    words in this node's body.
    """
    ref = use.source.ref
    if not isinstance(ref, NodeRef):
        raise InvalidType("this source was not made from a node")
    copy = ref.node.model_copy(deep=True)
    info = use.annotations()
    info["citations"] = [citation_dict(c, use.source) for c in use.citations]
    info.update(
        node_id=ref.node_id,
        rank=use.rank,
        mentioned=use.mentioned,
        marker=marker,
        cited=use.cited or marker is not None,
    )
    node = copy.node
    node.metadata[PLEIAS_METADATA_KEY] = info
    for keys in (node.excluded_llm_metadata_keys, node.excluded_embed_metadata_keys):
        if PLEIAS_METADATA_KEY not in keys:
            keys.append(PLEIAS_METADATA_KEY)
    return copy


def unknown_marker_node(number: int, citations: Sequence[Citation]) -> NodeWithScore:
    """The placeholder behind a marker ``[number]`` whose id names no given source: a node
    without text (id ``pleias-unknown-<number>``, no score) so that ``[n]`` stays
    ``source_nodes[n-1]``; its ``metadata[PLEIAS_METADATA_KEY]`` has ``unknown_source`` True,
    the ``source_id`` the model wrote and the citations of that marker."""
    info: dict[str, Any] = {
        "source_id": citations[0].source_id if citations else "",
        "relevance_score": None,
        "seen": False,
        "citations": [citation_dict(c) for c in citations],
        "node_id": None,
        "rank": None,
        "mentioned": False,
        "marker": number,
        "cited": True,
        "unknown_source": True,
    }
    node = TextNode(
        id_=f"pleias-unknown-{number}",
        text="",
        metadata={PLEIAS_METADATA_KEY: info},
        excluded_llm_metadata_keys=[PLEIAS_METADATA_KEY],
        excluded_embed_metadata_keys=[PLEIAS_METADATA_KEY],
    )
    return NodeWithScore(node=node, score=None)
