"""LangChain objects → Pleias sources, the model settings shared by the LangChain classes, and
the way back from the model's citations to the caller's documents."""

from __future__ import annotations

import base64
import binascii
import hashlib
import json
import os
from collections.abc import Mapping, Sequence
from typing import Any, ClassVar, Literal

from langchain_core.documents import Document
from langchain_core.language_models import LangSmithParams
from langchain_core.messages import BaseMessage
from pydantic import BaseModel, ConfigDict, Field, PrivateAttr, field_validator, model_validator

from pleias_rag.answer import Citation, PleiasAnswer
from pleias_rag.backend import Backend, resolve_backend
from pleias_rag.dialects import check_dialect
from pleias_rag.errors import InvalidArgument
from pleias_rag.sources import Source
from pleias_rag.views.ranking import SourceUse

#: Standard LangChain constructor arguments that mean nothing here (a remote backend object
#: carries its own client settings): accepted and ignored.
IGNORED_INIT_ARGS = frozenset({"timeout", "max_retries", "api_key"})
#: Per-call generation overrides accepted by ``invoke(..., name=value)``.
GENERATION_KWARGS = frozenset({"max_tokens", "max_new_tokens", "temperature", "top_p", "seed"})
#: Where annotated document copies keep what the model did with them.
SOURCE_ID_KEY = "pleias_source_id"
CITATIONS_KEY = "pleias_citations"
SCORE_KEY = "relevance_score"
SEEN_KEY = "pleias_seen"

_MEDIA_BLOCKS = frozenset({"image", "audio", "video", "file", "image_url", "input_audio"})


# --------------------------------------------------------------------------- sources


def documents_to_sources(documents: object, *, argument: str = "documents") -> list[Source]:
    """``Document`` objects as sources (``ref`` = the document), checked one by one.

    Raises:
        ValueError: ``documents`` is not a list of ``Document``, or one has no text.
    """
    if documents is None:
        return []
    if isinstance(documents, (str, bytes, Document, Mapping)) or not isinstance(
        documents, Sequence
    ):
        raise InvalidArgument(
            f"{argument}= must be a list of langchain_core.documents.Document, "
            f"got {type(documents).__name__}"
        )
    sources = []
    for i, doc in enumerate(documents):
        if not isinstance(doc, Document):
            raise InvalidArgument(
                f"{argument}[{i}] is a {type(doc).__name__}: give "
                "langchain_core.documents.Document objects (Document(page_content=...))"
            )
        if not doc.page_content.strip():
            raise InvalidArgument(
                f"{argument}[{i}] has an empty page_content: give every document some text, "
                "or leave it out"
            )
        sources.append(Source(doc.page_content, metadata=_with_url(doc.metadata), ref=doc))
    return sources


def _with_url(metadata: Mapping[str, Any]) -> dict[str, Any]:
    """A copy of ``metadata``; a web ``source`` (LangChain loaders' convention) also as url."""
    out = dict(metadata)
    src = out.get("source")
    if "url" not in out and isinstance(src, str) and src.startswith(("http://", "https://")):
        out["url"] = src
    return out


def split_messages(messages: Sequence[BaseMessage]) -> tuple[str, list[Source]]:
    """The query (the last human message's text) and the ``text-plain`` blocks as sources.

    Sources are read from every human message, in order, so a document given earlier in a
    conversation stays available. Other messages (system, AI, tool) are not shown to the
    model: Pleias RAG models answer one query from sources.

    Raises:
        ValueError: no human message, an empty query, or a non-text block.
    """
    humans = [m for m in messages if m.type == "human"]
    if not humans:
        raise InvalidArgument(
            "ChatPleias needs a human message: the query is the last human message's text "
            f"(got {[m.type for m in messages]})"
        )
    sources: list[Source] = []
    query_parts: list[str] = []
    for n, message in enumerate(humans):
        last = n == len(humans) - 1
        for block in message.content_blocks:
            kind = block.get("type")
            if kind == "text-plain":
                sources.append(_block_source(block))
            elif kind == "text":
                if last:
                    query_parts.append(str(block.get("text", "")))
            elif kind in _MEDIA_BLOCKS:
                raise InvalidArgument(
                    f"Pleias models read text only, but a human message has a {kind!r} "
                    "block: pass documents as text-plain blocks or with documents=[Document]"
                )
            else:
                raise InvalidArgument(f"unsupported content block type {kind!r} in a human message")
    query = "\n".join(p for p in query_parts if p.strip())
    if not query.strip():
        raise InvalidArgument(
            "the last human message has no text: the query is the last human message's text"
        )
    return query, sources


def _block_source(block: Mapping[str, Any]) -> Source:
    text = block.get("text")
    if text is None and block.get("base64"):
        try:
            text = base64.b64decode(block["base64"]).decode("utf-8")
        except (binascii.Error, UnicodeDecodeError, ValueError) as exc:
            raise InvalidArgument(f"a text-plain block's base64 is not UTF-8 text: {exc}") from exc
    if text is None:
        raise InvalidArgument(
            "a text-plain block has no text (url/file_id are not fetched): give the text "
            "with create_plaintext_block(text=...)"
        )
    if not isinstance(text, str) or not text.strip():
        raise InvalidArgument(
            "a text-plain block has empty text: give it some text, or leave it out"
        )
    metadata: dict[str, Any] = dict(block.get("extras") or {})
    for key in ("title", "context", "url"):
        if block.get(key) is not None:
            metadata[key] = block[key]
    return Source(text, metadata=metadata, ref=block)


# --------------------------------------------------------------------------- model settings


class PleiasParams(BaseModel):
    """Model and generation settings shared by ``ChatPleias``, ``PleiasLLM`` and the reranker."""

    model: str | Backend
    """A Hugging Face id or local folder (loaded on first use, weights shared between
    instances), or a :class:`pleias_rag.backend.Backend` (``RemoteBackend``, ...)."""
    dialect: str | None = None
    """``hash`` or ``numbered``; None detects it from the model."""
    device: str | None = None
    """Torch device for a local model (None: the best available)."""
    dtype: str | None = None
    """Torch dtype for a local model, e.g. ``"bfloat16"`` (None: the model's)."""
    max_tokens: int | None = Field(default=None, ge=1)
    """Most tokens to generate (``max_new_tokens`` is accepted too). None: the engine's."""
    temperature: float = Field(default=0.0, ge=0.0)
    """0 is greedy decoding, recommended for exact quotes."""
    top_p: float | None = Field(default=None, gt=0.0, le=1.0)
    """Nucleus sampling threshold (only when sampling). None: the engine's."""
    seed: int | None = Field(default=None, ge=0)
    """Makes sampling reproducible."""
    stop: list[str] | None = None
    """Stop strings: the output is cut before the first one found."""

    model_config = ConfigDict(arbitrary_types_allowed=True, extra="forbid")

    _backend: Backend | None = PrivateAttr(default=None)

    @model_validator(mode="before")
    @classmethod
    def _aliases(cls, values: Any) -> Any:
        if not isinstance(values, dict):
            return values
        values = {k: v for k, v in values.items() if k not in IGNORED_INIT_ARGS}
        if "max_new_tokens" in values:
            new = values.pop("max_new_tokens")
            if values.get("max_tokens", new) != new:
                raise InvalidArgument("give max_tokens or max_new_tokens, not both")
            values["max_tokens"] = new
        return values

    @field_validator("dialect")
    @classmethod
    def _check_dialect(cls, value: str | None) -> str | None:
        return None if value is None else check_dialect(value)

    @field_validator("model", mode="plain")
    @classmethod
    def _check_model(cls, value: Any) -> Any:
        if isinstance(value, os.PathLike):
            value = os.fspath(value)
        if isinstance(value, str):
            if not value.strip():
                raise InvalidArgument(
                    "model is empty: give a Hugging Face id, a folder or a backend"
                )
            return value
        if isinstance(value, Backend):
            return value
        raise InvalidArgument(
            "model must be a Hugging Face id, a folder or a pleias_rag Backend (PleiasModel, "
            f"RemoteBackend, or Backend(engine) over your own engine), got {type(value).__name__}"
        )

    def _model_label(self, override: object = None) -> str:
        """The model's name for tracing, without loading anything."""
        if isinstance(override, str):
            return override
        if isinstance(self.model, str):
            return self.model
        return str(self.model.model_name)

    def _get_backend(self, override: object = None) -> Backend:
        """The backend to generate with (``override``: a per-call ``model=``)."""
        if override is not None and override != self.model:
            return resolve_backend(
                override, dialect=self.dialect, device=self.device, dtype=self.dtype
            )
        if self._backend is None:
            self._backend = resolve_backend(
                self.model, dialect=self.dialect, device=self.device, dtype=self.dtype
            )
        return self._backend

    def _generation(self, stop: list[str] | None, overrides: dict[str, Any]) -> dict[str, Any]:
        """Engine generation arguments: fields, then per-call ``overrides`` (consumed)."""
        gen: dict[str, Any] = {"temperature": self.temperature}
        if self.max_tokens is not None:
            gen["max_new_tokens"] = self.max_tokens
        if self.top_p is not None:
            gen["top_p"] = self.top_p
        if self.seed is not None:
            gen["seed"] = self.seed
        for name in sorted(GENERATION_KWARGS & overrides.keys()):
            value = overrides.pop(name)
            if value is not None:
                gen["max_new_tokens" if name == "max_tokens" else name] = value
        stops = stop if stop is not None else self.stop
        if stops:
            gen["stop"] = list(stops)
        return gen

    def _ls_generation(self, stop: list[str] | None, kwargs: Mapping[str, Any]) -> dict[str, Any]:
        """The ``ls_*`` tracing params for generation settings."""
        params: dict[str, Any] = {
            "ls_provider": "pleias",
            "ls_model_name": self._model_label(kwargs.get("model")),
            "ls_temperature": kwargs.get("temperature", self.temperature),
        }
        max_tokens = kwargs.get("max_tokens", kwargs.get("max_new_tokens", self.max_tokens))
        if max_tokens is not None:
            params["ls_max_tokens"] = max_tokens
        stops = stop if stop is not None else self.stop
        if stops:
            params["ls_stop"] = list(stops)
        return params


class PleiasLanguageModel(PleiasParams):
    """What ``ChatPleias`` and ``PleiasLLM`` add to the settings: their identifying and
    ``ls_*`` tracing params, and token counting with the model's tokenizer."""

    _ls_model_type: ClassVar[Literal["chat", "llm"]]

    @property
    def _identifying_params(self) -> dict[str, Any]:
        return {
            "model": self._model_label(),
            "dialect": self.dialect,
            "max_tokens": self.max_tokens,
            "temperature": self.temperature,
            "top_p": self.top_p,
            "seed": self.seed,
            "stop": self.stop,
        }

    def _get_ls_params(self, stop: list[str] | None = None, **kwargs: Any) -> LangSmithParams:
        params = LangSmithParams(ls_model_type=self._ls_model_type)
        params.update(self._ls_generation(stop, kwargs))  # type: ignore[typeddict-item]
        return params

    def get_num_tokens(self, text: str) -> int:
        """Tokens in ``text`` with the model's own tokenizer (loads it on first use)."""
        return int(self._get_backend().count_tokens(text))


def prompt_tokens(
    backend: Backend, query: str, sources: Sequence[Source], gen: Mapping[str, Any]
) -> int:
    """Tokens of the prompt the backend would build (the context budget counts)."""
    budget = {k: v for k, v in gen.items() if k == "max_new_tokens"}
    return backend.prompt_tokens(query, list(sources), **budget)


def unexpected_kwargs(owner: str, kwargs: Mapping[str, Any]) -> None:
    """Raise for call arguments left over once the known ones are consumed."""
    if kwargs:
        raise InvalidArgument(
            f"{owner} got unexpected argument(s) {sorted(kwargs)}: it accepts documents=, "
            f"model=, stop= and {sorted(GENERATION_KWARGS)}"
        )


def source_keys(sources: Sequence[Source]) -> list[str]:
    """What traces and cache keys carry for sources: ids (content hashes), plus a metadata
    fingerprint where there is metadata, since citations show titles and urls."""
    keys = []
    for s in sources:
        if s.metadata:
            blob = json.dumps(dict(s.metadata), sort_keys=True, default=repr).encode("utf-8")
            keys.append(f"{s.id}:{hashlib.md5(blob).hexdigest()[:8]}")
        else:
            keys.append(s.id)
    return keys


# --------------------------------------------------------------------------- back to documents


def annotated_copy(doc: Document, use: SourceUse) -> Document:
    """A copy of ``doc`` whose metadata tells how the answer used it: its source id, its
    relevance score (None when the model never saw it: ``pleias_seen`` is False), and the
    citations it holds (:meth:`SourceUse.annotations`: core citation dicts, whose
    ``source_start``/``source_end`` are offsets in its ``page_content``)."""
    notes = use.annotations()
    metadata = {
        **doc.metadata,
        SOURCE_ID_KEY: notes["source_id"],
        SCORE_KEY: notes["relevance_score"],
        SEEN_KEY: notes["seen"],
        CITATIONS_KEY: notes["citations"],
    }
    return doc.model_copy(update={"metadata": metadata}, deep=False)


def rebuild_answer(
    text: str,
    citations: Sequence[Mapping[str, Any]],
    mentioned_ids: Sequence[str],
    sources: Sequence[Source],
    dialect: str = "hash",
) -> PleiasAnswer:
    """A :class:`PleiasAnswer` whose citations point at ``sources`` again.

    ``citations`` are the standard citation annotations of a ``ChatPleias`` reply
    (:func:`~langchain_pleias._compat.citation_block`), whose ``extras`` is the core's
    citation dict, read back with :meth:`Citation.from_dict`. A citation maps to the sources
    of the id it named only when it resolved (its ``cited_id``), so an unknown id never maps
    to a document. An annotation without Pleias ``extras`` keeps its marker, text and id.
    """
    rebuilt = []
    for ann in citations:
        extras = dict(ann.get("extras") or {})
        status = extras.get("status", "unknown_source")
        data: dict[str, Any] = {
            "answer_start": ann.get("start_index", 0),
            "answer_end": ann.get("end_index", 0),
            "written_id": ann.get("id", ""),
            "cited_id": None if status == "unknown_source" else ann.get("id"),
            "quote": ann.get("cited_text", ""),
            "status": status,
            **extras,
        }
        rebuilt.append(Citation.from_dict(data, sources))
    return PleiasAnswer(
        raw="",
        dialect=dialect,
        answer=text,
        citations=tuple(rebuilt),
        mentioned_ids=tuple(mentioned_ids),
        sources=tuple(sources),
    )
