"""Helpers of the LangChain tests: training examples as documents, a scripted backend."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Iterator, Sequence
from typing import Any

from langchain_core.documents import Document

from pleias_rag.answer import PleiasAnswer
from pleias_rag.generation import BatchItem, SourceLike
from pleias_rag.parser import Event, StreamParser, parse_response
from pleias_rag.sources import Source, make_sources
from pleias_rag.testing import TRAINING_EXAMPLES, Example


def example(name: str, dialect: str = "hash") -> Example:
    """The training example called ``name``."""
    return next(ex for ex in TRAINING_EXAMPLES[dialect] if ex.name == name)


def docs_of(ex: Example, **metadata: Any) -> list[Document]:
    """The example's sources as documents, each with a distinct title."""
    return [
        Document(text, metadata={"title": f"Doc {i}", **metadata})
        for i, text in enumerate(ex.sources)
    ]


class ScriptedBackend:
    """A Backend answering with fixed raw hash outputs (no model), recording its calls.

    ``script`` maps a query to its raw output (what a hash model writes after the prompt);
    other queries get ``default``.
    """

    dialect = "hash"
    model_name = "scripted-pleias"
    context_window = 2048

    def __init__(self, script: dict[str, str], default: str = "") -> None:
        self.script = script
        self.default = default
        self.calls: list[tuple[str, Any]] = []

    def count_tokens(self, text: str) -> int:
        return len(text.split())

    def _raw(self, query: str) -> str:
        return self.script.get(query, self.default)

    def _answer(
        self, query: str, sources: Sequence[SourceLike], gen: dict[str, Any]
    ) -> PleiasAnswer:
        raw = self._raw(query)
        for stop in gen.get("stop", ()):
            raw = raw.split(stop, 1)[0]
        return parse_response(
            raw, make_sources(sources), "hash", start="source_analysis", query=query
        )

    def answer(self, query: str, sources: Sequence[SourceLike] = (), **gen: Any) -> PleiasAnswer:
        self.calls.append(("answer", (query, list(sources), gen)))
        return self._answer(query, sources, gen)

    def answer_batch(self, items: Sequence[BatchItem], **gen: Any) -> list[PleiasAnswer]:
        self.calls.append(("answer_batch", (list(items), gen)))
        return [self._answer(q, s, gen) for q, s in items]

    def stream(self, query: str, sources: Sequence[SourceLike] = (), **gen: Any) -> Iterator[Event]:
        self.calls.append(("stream", (query, list(sources), gen)))
        raw = self._raw(query)
        parser = StreamParser(make_sources(sources), "hash", start="source_analysis", query=query)
        for i in range(0, len(raw), 7):
            yield from parser.feed(raw[i : i + 7])
        yield from parser.close()

    async def aanswer(
        self, query: str, sources: Sequence[SourceLike] = (), **gen: Any
    ) -> PleiasAnswer:
        await asyncio.sleep(0)
        return self.answer(query, sources, **gen)

    async def aanswer_batch(self, items: Sequence[BatchItem], **gen: Any) -> list[PleiasAnswer]:
        await asyncio.sleep(0)
        return self.answer_batch(items, **gen)

    async def astream(
        self, query: str, sources: Sequence[SourceLike] = (), **gen: Any
    ) -> AsyncIterator[Event]:
        for event in self.stream(query, sources, **gen):
            await asyncio.sleep(0)
            yield event


def hash_output(analysis: str, answer: str) -> str:
    return f"{analysis}<|source_analysis_end|>\n<|answer_start|>{answer}<|answer_end|>"


def ref(source: Source | str, quote: str) -> str:
    sid = source.id if isinstance(source, Source) else source
    return f'<ref name="{sid}">"{quote}"</ref>'
