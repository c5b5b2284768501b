"""Helpers of the LangChain tests: training examples as documents, a scripted backend."""

from __future__ import annotations

from collections.abc import AsyncGenerator, Generator, Sequence
from typing import Any

from langchain_core.documents import Document

from pleias_rag.answer import PleiasAnswer
from pleias_rag.backend import Backend
from pleias_rag.generation import BatchItem, SourceLike
from pleias_rag.parser import Event
from pleias_rag.scripted import ScriptedEngine
from pleias_rag.sources import Source
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


class ScriptedBackend(Backend):
    """A Backend over a :class:`ScriptedEngine` answering with fixed raw hash outputs (no
    model), recording its calls.

    ``script`` maps a query to its raw output (what a hash model writes after the prompt);
    other queries get ``default``.
    """

    def __init__(self, script: dict[str, str], default: str = "") -> None:
        super().__init__(ScriptedEngine(script, default=default))
        self.script = script
        self.calls: list[tuple[str, Any]] = []

    def answer(
        self, query: str, sources: Sequence[SourceLike] | None = (), **gen: Any
    ) -> PleiasAnswer:
        self.calls.append(("answer", (query, list(sources or ()), gen)))
        return super().answer(query, sources, **gen)

    def answer_batch(self, items: Sequence[BatchItem], **gen: Any) -> list[PleiasAnswer]:
        self.calls.append(("answer_batch", (list(items), gen)))
        return super().answer_batch(items, **gen)

    def stream(
        self, query: str, sources: Sequence[SourceLike] | None = (), **gen: Any
    ) -> Generator[Event, None, None]:
        self.calls.append(("stream", (query, list(sources or ()), gen)))
        return super().stream(query, sources, **gen)

    async def aanswer(
        self, query: str, sources: Sequence[SourceLike] | None = (), **gen: Any
    ) -> PleiasAnswer:
        self.calls.append(("answer", (query, list(sources or ()), gen)))
        return await super().aanswer(query, sources, **gen)

    async def aanswer_batch(self, items: Sequence[BatchItem], **gen: Any) -> list[PleiasAnswer]:
        self.calls.append(("answer_batch", (list(items), gen)))
        return await super().aanswer_batch(items, **gen)

    def astream(
        self, query: str, sources: Sequence[SourceLike] | None = (), **gen: Any
    ) -> AsyncGenerator[Event, None]:
        self.calls.append(("stream", (query, list(sources or ()), gen)))
        return super().astream(query, sources, **gen)


def hash_output(analysis: str, answer: str) -> str:
    return f"{analysis}<|source_analysis_end|>\n<|answer_start|>{answer}<|answer_end|>"


def ref(source: Source | str, quote: str) -> str:
    sid = source.id if isinstance(source, Source) else source
    return f'<ref name="{sid}">"{quote}"</ref>'
