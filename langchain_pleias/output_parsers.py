"""``PleiasOutputParser``: raw Pleias output text → :class:`pleias_rag.PleiasAnswer`."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Iterator, Sequence
from typing import Any

from langchain_core.documents import Document
from langchain_core.messages import BaseMessage
from langchain_core.output_parsers import BaseCumulativeTransformOutputParser
from langchain_core.outputs import Generation
from pydantic import ConfigDict, Field

from pleias_rag.answer import Citation, PleiasAnswer
from pleias_rag.dialects import MARKDOWN
from pleias_rag.errors import InvalidArgument
from pleias_rag.parser import (
    SECTIONS,
    AnswerDelta,
    CitationCompleted,
    StreamParser,
    feed_off_loop,
    parse_response,
)
from pleias_rag.sources import Source

from ._convert import documents_to_sources


class PleiasOutputParser(BaseCumulativeTransformOutputParser[PleiasAnswer]):
    """Parse the raw text a Pleias model generated (e.g. from a remote server).

    The result is a :class:`pleias_rag.PleiasAnswer`: the clean answer with ``[n]`` markers,
    the source analysis, and each citation checked against ``documents`` (its ``source.ref``
    is the ``Document``). Streaming (``transform``/``stream`` in a chain) parses
    incrementally and yields a partial answer each time the answer grows (its text so far
    and its finished citations; ``finish_reason="length"``), then the complete one. Partial
    answers only grow: text that may still turn into markup is held back.

    Give the documents that were in the prompt, in prompt order, so that ids resolve (the
    numbered dialect cites sources by position) and quotes are verified.

    Examples:
        >>> from langchain_core.documents import Document
        >>> from langchain_pleias import PleiasOutputParser
        >>> doc = Document("The Moon orbits the Earth. Its gravity causes the tides.")
        >>> parser = PleiasOutputParser(documents=[doc])
        >>> raw = (
        ...     "<|source_id|>1 explains the tides.<|source_analysis_end|>"
        ...     '<|answer_start|>The tides come from the Moon<ref name="<|source_id|>1">'
        ...     "Its gravity causes the tides.</ref>.<|answer_end|>"
        ... )
        >>> answer = parser.invoke(raw)
        >>> answer.answer
        'The tides come from the Moon[1].'
        >>> answer.citations[0].status, answer.citations[0].source.ref is doc
        ('verified', True)
    """

    documents: list[Document] = Field(default_factory=list)
    """The prompt's documents, in prompt order."""
    dialect: str | None = None
    """``hash``, ``numbered`` or ``markdown``; None detects it from the text."""
    start: str | None = None
    """The section the text starts in, when known (a hash prompt ends inside
    ``source_analysis``); None: decided from the first marker."""
    query: str = ""
    """The prompt's question: quotes copied from it get the status ``from_query``."""

    model_config = ConfigDict(arbitrary_types_allowed=True, extra="forbid")

    def model_post_init(self, context: Any, /) -> None:
        """Check the documents and dialect when the parser is made, not at the first parse."""
        documents_to_sources(self.documents)  # fail early on bad documents
        if self.dialect not in (None, "hash", "numbered", MARKDOWN):
            raise InvalidArgument(
                f"unknown dialect {self.dialect!r}: use 'hash', 'numbered', 'markdown' or None"
            )
        if self.start is not None and self.start not in SECTIONS:
            raise InvalidArgument(f"unknown section {self.start!r}: use one of {sorted(SECTIONS)}")
        if self.diff:
            raise InvalidArgument(
                "PleiasOutputParser streams whole partial answers: diff is not supported"
            )

    @property
    def _type(self) -> str:
        return "pleias"

    def parse(self, text: str) -> PleiasAnswer:
        """Parse a whole raw output."""
        return parse_response(
            text,
            documents_to_sources(self.documents),
            self.dialect,
            start=self.start,
            query=self.query,
        )

    def parse_result(self, result: list[Generation], *, partial: bool = False) -> PleiasAnswer:
        """Parse the text of the first generation (partial or not, the parse is the same:
        a partial output reads as one cut off by the token limit)."""
        if not result:
            raise InvalidArgument("no generation to parse")
        return self.parse(result[0].text)

    def get_format_instructions(self) -> str:
        """Pleias models write their format by themselves: nothing to instruct."""
        return ""

    def _transform(self, input: Iterator[str | BaseMessage]) -> Iterator[PleiasAnswer]:
        state = _Incremental(
            documents_to_sources(self.documents), self.dialect, self.start, self.query
        )
        for chunk in input:
            if state.feed(_text(chunk)):
                yield state.snapshot()
        yield state.close()

    async def _atransform(
        self, input: AsyncIterator[str | BaseMessage]
    ) -> AsyncIterator[PleiasAnswer]:
        state = _Incremental(
            documents_to_sources(self.documents), self.dialect, self.start, self.query
        )
        async for chunk in input:
            if await feed_off_loop(state.feed, _text(chunk)):
                yield state.snapshot()
        yield await asyncio.to_thread(state.close)


def _text(chunk: str | BaseMessage) -> str:
    return chunk.text if isinstance(chunk, BaseMessage) else chunk


class _Incremental:
    """One output parsed as it streams: the answer so far, without reparsing."""

    def __init__(
        self, sources: Sequence[Source], dialect: str | None, start: str | None, query: str
    ) -> None:
        self._parser = StreamParser(sources, dialect, start=start, query=query)
        self._sources = tuple(sources)
        self._raw: list[str] = []
        self._answer: list[str] = []
        self._citations: list[Citation] = []

    def feed(self, text: str) -> bool:
        """Parse more text; whether the answer grew."""
        self._raw.append(text)
        grew = False
        for event in self._parser.feed(text):
            if isinstance(event, AnswerDelta):
                self._answer.append(event.text)
                grew = True
            elif isinstance(event, CitationCompleted):
                self._citations.append(event.citation)
                grew = True
        return grew

    def snapshot(self) -> PleiasAnswer:
        return PleiasAnswer(
            raw="".join(self._raw),
            dialect=self._parser.dialect,
            answer="".join(self._answer),
            citations=tuple(self._citations),
            finish_reason="length",
            sources=self._sources,
        )

    def close(self) -> PleiasAnswer:
        self._parser.close()
        return self._parser.result
