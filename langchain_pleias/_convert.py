"""LangChain objects → Pleias sources, the model settings shared by the LangChain classes, and
the way back from the model's citations to the caller's documents."""

from __future__ import annotations

import base64
import binascii
import hashlib
import json
import logging
import os
import re
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any, ClassVar, Literal

from langchain_core.documents import Document
from langchain_core.language_models import LangSmithParams
from langchain_core.messages import BaseMessage
from pydantic import BaseModel, ConfigDict, Field, PrivateAttr, field_validator, model_validator

from pleias_rag.answer import Citation, PleiasAnswer
from pleias_rag.backend import Backend, resolve_backend
from pleias_rag.dialects import check_dialect
from pleias_rag.errors import InvalidArgument
from pleias_rag.generation import GENERATION_OPTIONS, generation_kwargs
from pleias_rag.sources import Source
from pleias_rag.views.ranking import SourceUse

#: Standard LangChain constructor arguments of a network client. A backend object carries
#: its own client settings (``RemoteBackend(url, timeout=..., max_retries=..., api_key=...)``),
#: so with ``model=<a Backend>`` they are refused; a local model makes no network call, so
#: with a hub id or folder they are accepted (LangChain's standard params pass them) and a
#: warning says, once, that they have no effect.
CLIENT_INIT_ARGS = frozenset({"timeout", "max_retries", "api_key"})
IGNORED_INIT_ARGS = CLIENT_INIT_ARGS  # the former name
#: LangChain's names of the core's generation options (``max_tokens``, its usual name).
GENERATION_ALIASES = {"max_tokens": "max_new_tokens"}
#: Per-call generation overrides accepted by ``invoke(..., name=value)``: the core's options
#: (:data:`pleias_rag.generation.GENERATION_OPTIONS`, GenerationSettings' fields, so that a
#: new core option is taken with no edit here) and their aliases; ``stop`` is LangChain's
#: own call argument.
GENERATION_KWARGS = frozenset({*GENERATION_OPTIONS, *GENERATION_ALIASES}) - {"stop"}
#: Where annotated document copies keep what the model did with them.
SOURCE_ID_KEY = "pleias_source_id"
CITATIONS_KEY = "pleias_citations"
SCORE_KEY = "relevance_score"
SEEN_KEY = "pleias_seen"

_MEDIA_BLOCKS = frozenset({"image", "audio", "video", "file", "image_url", "input_audio"})

logger = logging.getLogger("langchain_pleias")
_warned: set[str] = set()


def warn_once(key: str, message: str, *args: object) -> None:
    """Log ``message`` as a warning of the ``langchain_pleias`` logger, once per ``key``."""
    if key not in _warned:
        _warned.add(key)
        logger.warning(message, *args)


# --------------------------------------------------------------------------- sources


def documents_to_sources(
    documents: object, *, argument: str = "documents", warn: bool = True
) -> list[Source]:
    """``Document`` objects as sources (``ref`` = the document), checked one by one.

    A document without text (a blank chunk a retriever returned) is skipped with a warning
    of the ``langchain_pleias`` logger (``warn=False``: silently), as the LlamaIndex adapter
    skips nodes without text; when every document is blank, one warning says so and the
    model answers without sources.

    Raises:
        ValueError: ``documents`` is not a list of ``Document``.
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
    for i, doc in enumerate(documents):
        if not isinstance(doc, Document):
            raise InvalidArgument(
                f"{argument}[{i}] is a {type(doc).__name__}: give "
                "langchain_core.documents.Document objects (Document(page_content=...))"
            )
    sources = [
        Source(doc.page_content, metadata=_with_url(doc.metadata), ref=doc)
        for doc in documents
        if doc.page_content.strip()
    ]
    blank = [i for i, doc in enumerate(documents) if not doc.page_content.strip()]
    if warn and blank and not sources:
        logger.warning(
            "skipping all %d of %s: their page_content is empty (Pleias models read text "
            "only); answering without sources",
            len(blank),
            argument,
        )
    elif warn:
        for i in blank:
            logger.warning(
                "skipping %s[%d]: its page_content is empty (Pleias models read text only)",
                argument,
                i,
            )
    return sources


def blank_count(documents: object) -> int:
    """How many of ``documents`` (a list of ``Document``, else 0) have no text."""
    if not isinstance(documents, (list, tuple)):
        return 0
    return sum(1 for d in documents if isinstance(d, Document) and not d.page_content.strip())


def documents_per_input(documents: object, n: int) -> list[object] | None:
    """``documents`` as one list per input when it is a list of ``n`` lists (None when it
    is one list of documents for every input, or None).

    Raises:
        ValueError: a list of lists whose length is not ``n``.
    """
    if not (
        isinstance(documents, (list, tuple))
        and documents
        and all(isinstance(d, (list, tuple)) for d in documents)
    ):
        return None
    if len(documents) != n:
        raise InvalidArgument(
            f"documents= has {len(documents)} lists for {n} inputs: give one list of "
            "documents for all inputs, or one list per input"
        )
    return list(documents)


def _with_url(metadata: Mapping[str, Any]) -> dict[str, Any]:
    """A copy of ``metadata``; a web ``source`` (LangChain loaders' convention) also as url."""
    out = dict(metadata)
    src = out.get("source")
    if "url" not in out and isinstance(src, str) and src.startswith(("http://", "https://")):
        out["url"] = src
    return out


def split_messages(messages: Sequence[BaseMessage]) -> tuple[str, list[Source]]:
    r"""The query (the last human message's text) and the sources the messages carry.

    Sources are, in message order, the ``text-plain`` blocks of every human and system
    message (a document given earlier in a conversation stays available; a block keeps its
    ``title``), and the text of the system messages, where prompt templates put the
    retrieved context (``("system", "Answer from this context:\n\n{context}")``): see
    :func:`system_passages`. AI and tool messages are not shown to the model: Pleias RAG
    models answer one query from sources.

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
    for message in messages:
        if message.type == "system":
            sources.extend(_system_sources(message))
        elif message.type == "human":
            last = message is humans[-1]
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
                    raise InvalidArgument(
                        f"unsupported content block type {kind!r} in a human message"
                    )
    query = "\n".join(p for p in query_parts if p.strip())
    if not query.strip():
        raise InvalidArgument(
            "the last human message has no text: the query is the last human message's text"
        )
    return query, sources


def _system_sources(message: BaseMessage) -> list[Source]:
    """A system message's sources: its ``text-plain`` blocks and its text's passages."""
    sources = []
    for block in message.content_blocks:
        kind = block.get("type")
        if kind == "text-plain":
            sources.append(_block_source(block))
        elif kind == "text":
            sources.extend(Source(p) for p in system_passages(str(block.get("text", ""))))
    return sources


_PARAGRAPH_BREAK = re.compile(r"\n[ \t]*\n")
#: How an instruction to the model may start ("You are an assistant...", "Use the following
#: context...", "Answer only from..."); a retrieved text may start so too ("You can...",
#: "Only three..."), so this alone never makes a paragraph template text.
_INSTRUCTION = re.compile(
    r"(you\b|you'|your\b|answer\b|use\b|using\b|given\b|based on\b|respond\b|reply\b|"
    r"please\b|only\b|do not\b|don't\b|always\b|never\b|act as\b|if you\b|i want you\b|"
    r"as an? (ai|assistant)\b|keep\b|be (brief|concise|helpful)\b)",
    re.IGNORECASE,
)
#: How only an instruction to the model starts: it addresses the model, or tells it how to
#: answer. A retrieved text hardly starts so.
_SURE_INSTRUCTION = re.compile(
    r"(you are\b|you're\b|you will\b|you must\b|you should\b|your (task|job|role|goal)\b|"
    r"act as\b|as an? (ai|assistant)\b|i want you\b|answer\b|respond\b|reply\b|"
    r"(use|using|given|based (only )?on) (only )?(the|this|these|following|above)\b|"
    r"only (use|answer)\b|(do not|don't) (use|answer|make)\b|if you\b|"
    r"keep (the|your) (answer|response)\b|be (brief|concise|helpful)\b)",
    re.IGNORECASE,
)
#: What a template says of the context it introduces ("the following pieces of retrieved
#: context"); the context then comes next.
_INTRODUCES = re.compile(
    r"\b(context|documents?|sources?|passages?|excerpts?|information|following|below)\b",
    re.IGNORECASE,
)
#: A template instruction that points back at a context given BEFORE it.
_POINTS_BACK = re.compile(r"\b(above|preceding|previous)\b", re.IGNORECASE)
#: What an instruction to the model talks about (a closing "Never make up information.",
#: unlike a retrieved "Never climb the tower without a permit.").
_MODEL_TALK = re.compile(
    r"\b(answers?|answering|respon\w*|repl\w*|context|questions?|sources?|"
    r"documents?|passages?|cite|citations?|information|sentences?|concise|brief)\b",
    re.IGNORECASE,
)


_CONTEXT_HEADING = re.compile(
    r"(context|documents?|sources?|passages?|excerpts?)\s*:\s*", re.IGNORECASE
)
#: A lone system paragraph shorter than this, with no instruction introducing it, is a
#: system prompt rather than context.
_LONE_PASSAGE_CHARS = 200


def system_passages(text: str) -> list[str]:
    r"""The passages of a system message's text: the context a prompt template put there.

    The text is split at blank lines, as ``"\n\n".join(doc.page_content for doc in docs)``
    (the usual ``format_docs``) joins documents. Only the template's own words around the
    context are left out, never a passage of the context; when unsure, a paragraph is kept
    as a source:

    - at the start, the template's head: the paragraphs up to the first one that introduces
      the context ("Use the following pieces of retrieved context...", "Answer from this
      context:", or "... context: <the first passage>" on one line), when those read as an
      instruction; else (nothing introduces the context) the first paragraph only, and only
      when it plainly addresses the model ("You are...", "Answer...", "Use the...");
    - at the end, template lines such as "Answer:" and short closing instructions that talk
      about answering ("Answer in one sentence.", "Never make up information.");
    - a first line that ends with ``:`` ("Context:") above a passage, or a ``Context:``
      heading before the first passage on its line.

    A dropped paragraph that could be a retrieved text (it does not plainly address the
    model: "Keep it short.", "Opening hours:") is logged as a WARNING of the
    ``langchain_pleias`` logger. A system message that only instructs ("You are a helpful
    assistant.") gives no source, nor does a lone short paragraph that nothing introduces as
    context ("Be nice.": under 200 characters); any other text is passages.
    """
    paragraphs = [p.strip() for p in _PARAGRAPH_BREAK.split(text)]
    paragraphs = [p for p in paragraphs if p]
    head, paragraphs, introduced = _template_head(paragraphs)
    if paragraphs:
        paragraphs[-1] = _TRAILER.sub("", paragraphs[-1]).strip()  # "...\nAnswer:"
        if not paragraphs[-1]:
            paragraphs.pop()
    trailing: list[str] = []
    while len(paragraphs) > 1 and _is_closing_instruction(paragraphs[-1]):
        trailing.insert(0, paragraphs.pop())
    _log_dropped([*head, *trailing])
    introduced = introduced or bool(trailing)
    passages: list[str] = []
    for p in paragraphs:
        first, sep, rest = p.partition("\n")
        if sep and first.rstrip().endswith(":") and len(first) <= 200 and rest.strip():
            p = rest.strip()  # "Context:\n<the passage>"
            introduced = True
        elif not passages and (heading := _CONTEXT_HEADING.match(p)) and p[heading.end() :]:
            p = p[heading.end() :]  # "Context: <the passage>"
            introduced = True
        passages.append(p)
    if not introduced and len(passages) == 1 and len(passages[0]) < _LONE_PASSAGE_CHARS:
        return []  # a short system prompt ("Be nice."), not context
    return passages


def _template_head(paragraphs: list[str]) -> tuple[list[str], list[str], bool]:
    """The template's paragraphs before the context, the paragraphs left, and whether the
    template introduced the context (see :func:`system_passages`)."""
    for i, p in enumerate(paragraphs):
        if not _is_instruction(p) or _POINTS_BACK.search(p):
            break  # the context starts here, or came before the instruction
        start = _context_start(p)
        if start is not None:  # "... Use this context: <the first passage>"
            return paragraphs[:i], [start, *paragraphs[i + 1 :]], True
        if p.endswith(":") or _INTRODUCES.search(p):
            return paragraphs[: i + 1], paragraphs[i + 1 :], True
    # Nothing introduces the context: only a first paragraph that surely is the template's.
    if paragraphs and _SURE_INSTRUCTION.match(paragraphs[0]):
        return paragraphs[:1], paragraphs[1:], len(paragraphs) > 1
    return [], paragraphs, False


def _log_dropped(dropped: Sequence[str]) -> None:
    """Log the paragraphs read as the template's words: a WARNING for those that could be
    retrieved text (they do not plainly address the model), else at DEBUG."""
    unsure = [p for p in dropped if not _surely_template(p)]
    if unsure:
        logger.warning(
            "a system message's paragraph(s) %s were read as the prompt template's "
            "instructions, not as sources; if they are retrieved text, pass the documents "
            "with documents=[Document, ...] (or as text-plain blocks) instead",
            [p[:80] for p in unsure],
        )
    elif dropped:
        logger.debug("template instructions left out of the sources: %s", [p[:80] for p in dropped])


def _surely_template(paragraph: str) -> bool:
    if paragraph.endswith(":") and _MODEL_TALK.search(paragraph):
        return True  # "Answer from this context:", "Helpful answer:"
    return _SURE_INSTRUCTION.match(paragraph) is not None


#: The words a template puts after the context on its last lines ("Answer:", "Helpful answer:").
_TRAILER = re.compile(r"(?:\n[^\n:]{0,40}:[ \t]*)+\Z")
#: Where an instruction paragraph says the context follows ("... context: <text>").
_INLINE_CONTEXT = re.compile(
    r"\b(?:context|documents?|sources?|passages?|excerpts?)\s*:[ \t]*", re.IGNORECASE
)


def _context_start(paragraph: str) -> str | None:
    """The context an instruction paragraph goes on with after "context:", if any."""
    found = list(_INLINE_CONTEXT.finditer(paragraph))
    rest = paragraph[found[-1].end() :].strip() if found else ""
    return rest or None


def _is_instruction(paragraph: str) -> bool:
    return paragraph.endswith(":") or _INSTRUCTION.match(paragraph) is not None


def _is_closing_instruction(paragraph: str) -> bool:
    """Whether a last paragraph is the template's closing instruction: short, and it either
    plainly instructs ("Answer in one sentence.") or starts like an instruction and talks
    about answering ("Never make up information.")."""
    if len(paragraph) > _LONE_PASSAGE_CHARS:
        return False
    if paragraph.endswith(":") and "\n" not in paragraph and len(paragraph) <= 40:
        return True  # "Answer:", "Helpful answer:"
    if _SURE_INSTRUCTION.match(paragraph):
        return True
    return _INSTRUCTION.match(paragraph) is not None and _MODEL_TALK.search(paragraph) is not None


#: Words of a prompt that carries its own context ("Context: ...", "Documents: ...").
_STUFFED_MARKER = re.compile(
    r"\b(context|documents?|sources?|passages?|excerpts?)\s*:", re.IGNORECASE
)


def looks_stuffed(query: str) -> bool:
    """Whether a query looks like a whole prompt with the context pasted in: long, with a
    ``Context:``-like heading, or with many paragraphs."""
    if len(query) < 200:
        return False
    paragraphs = [p for p in _PARAGRAPH_BREAK.split(query) if p.strip()]
    return _STUFFED_MARKER.search(query) is not None or (len(query) >= 800 and len(paragraphs) >= 3)


def warn_if_stuffed(query: str, sources: Sequence[Source]) -> None:
    """Warn (once) when there are no sources but the query looks like it holds them."""
    if not sources and looks_stuffed(query):
        warn_once(
            "stuffed-query",
            "ChatPleias got no sources, but the query (%d characters) looks like a prompt "
            "with the context pasted in: Pleias models cite sources, not the query. Pass the "
            "documents with documents=[Document, ...], as text-plain content blocks "
            "(create_plaintext_block), or put the context in a system message "
            "(one passage per paragraph).",
            len(query),
        )


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
    min_new_tokens: int | None = Field(default=None, ge=0)
    """Generate at least this many tokens (benchmarks that need a fixed output length).
    None: the engine's (0). Every core generation option (``GenerationSettings``' fields) is
    also taken per call: ``invoke(..., min_new_tokens=8)``."""
    stop: list[str] | None = None
    """Stop strings: the output is cut before the first one found."""

    model_config = ConfigDict(arbitrary_types_allowed=True, extra="forbid")

    _backend: Backend | None = PrivateAttr(default=None)

    @model_validator(mode="before")
    @classmethod
    def _aliases(cls, values: Any) -> Any:
        if not isinstance(values, dict):
            return values
        values = dict(values)
        if "model_name" in values:  # LangChain's usual alias
            name = values.pop("model_name")
            if values.get("model", name) != name:
                raise InvalidArgument("give model or model_name, not both")
            values["model"] = name
        client = sorted(k for k in CLIENT_INIT_ARGS if values.pop(k, None) is not None)
        if client and isinstance(values.get("model"), Backend):
            raise InvalidArgument(
                f"{', '.join(client)} are settings of the backend's client, which ChatPleias "
                "cannot change: pass them to the backend, e.g. "
                "RemoteBackend(url, timeout=..., max_retries=..., api_key=...), and give "
                "that backend as model="
            )
        if client:
            warn_once(
                "client-args",
                "%s ignored: a local model makes no network call (for a server, pass "
                "them to RemoteBackend(url, ...) and give that backend as model=)",
                ", ".join(client),
            )
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

    def _ls_model_name(self, override: object = None) -> str:
        """The model id for LangSmith: a hub id, never a local path (see :func:`model_id`)."""
        return model_id(self._model_label(override))

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

    def _generation(
        self,
        stop: list[str] | None,
        overrides: dict[str, Any],
        backend: Backend | None = None,
    ) -> dict[str, Any]:
        """Engine generation arguments: the fields that are core options, then the per-call
        ``overrides`` that are (consumed), then the stop strings; checked by the core
        (against ``backend``'s default settings when given).

        Raises:
            InvalidArgument: a value out of range (e.g. ``min_new_tokens`` above the
                ``max_new_tokens`` in force).
        """
        defaults = {
            name: getattr(self, name)
            for name in type(self).model_fields
            if name != "stop" and GENERATION_ALIASES.get(name, name) in GENERATION_OPTIONS
        }
        per_call = {
            name: overrides.pop(name) for name in sorted(GENERATION_KWARGS & overrides.keys())
        }
        stops = stop if stop is not None else self.stop
        return generation_kwargs(
            defaults,
            per_call,
            {"stop": list(stops) if stops else None},
            aliases=GENERATION_ALIASES,
            base=None if backend is None else backend.settings,
        )

    def _ls_generation(self, stop: list[str] | None, kwargs: Mapping[str, Any]) -> dict[str, Any]:
        """The ``ls_*`` tracing params for generation settings."""
        params: dict[str, Any] = {
            "ls_provider": "pleias",
            "ls_model_name": self._ls_model_name(kwargs.get("model")),
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
            "min_new_tokens": self.min_new_tokens,
            "stop": self.stop,
        }

    def _get_ls_params(self, stop: list[str] | None = None, **kwargs: Any) -> LangSmithParams:
        params = LangSmithParams(ls_model_type=self._ls_model_type)
        params.update(self._ls_generation(stop, kwargs))  # type: ignore[typeddict-item]
        shown = traced_documents(kwargs.get("documents"))
        if shown is not None:  # the run's metadata: what the documents were, readably
            params[DOCUMENTS_TRACE_KEY] = shown  # type: ignore[literal-required]
        return params

    def get_num_tokens(self, text: str) -> int:
        """Tokens in ``text`` with the model's own tokenizer (loads it on first use)."""
        return int(self._get_backend().count_tokens(text))


#: The run metadata key under which traces show the call's documents (id, title, text).
DOCUMENTS_TRACE_KEY = "pleias_documents"
_TRACE_TEXT_CHARS = 300
_HUB_ID = re.compile(r"[A-Za-z0-9][\w.-]*/[\w.-]+")


def model_id(model: str) -> str:
    """A model's id for tracing: a hub id as it is; for a local folder, the hub id its
    ``config.json`` names (``_name_or_path``), else the folder's name."""
    path = Path(model).expanduser()
    try:
        if not path.is_dir():
            return model
        config = json.loads((path / "config.json").read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return path.name or model
    name = config.get("_name_or_path") if isinstance(config, dict) else None
    if isinstance(name, str) and _HUB_ID.fullmatch(name) and not Path(name).exists():
        return name
    return path.resolve().name or model


def traced_documents(documents: object) -> list[Any] | None:
    """The documents of a call as traces show them: each one's source id, title (or url)
    and the start of its text; one list per input for per-input documents. None when the
    call has no (valid) documents."""
    if documents is None:
        return None
    try:
        per_input = documents_per_input(documents, len(documents))  # type: ignore[arg-type]
        if per_input is not None:
            return [_traced(documents_to_sources(d, warn=False)) for d in per_input]
        return _traced(documents_to_sources(documents, warn=False))
    except (TypeError, ValueError):
        return None  # the call itself reports bad documents


def _traced(sources: Sequence[Source]) -> list[dict[str, Any]]:
    out = []
    for s in sources:
        text = s.text if len(s.text) <= _TRACE_TEXT_CHARS else s.text[:_TRACE_TEXT_CHARS] + "…"
        shown: dict[str, Any] = {"id": s.id}
        title = s.metadata.get("title") or s.metadata.get("url") or s.metadata.get("source")
        if title is not None:
            shown["title"] = str(title)
        shown["text"] = text
        out.append(shown)
    return out


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
    citation dict, read back with :meth:`Citation.from_dict` (its ``answer_start``/
    ``answer_end`` are the ``[n]`` marker; the annotation's ``start_index``/``end_index``
    span the claim). A citation maps to the sources of the id it named only when it resolved
    (its ``cited_id``), so an unknown id never maps to a document. An annotation without
    Pleias ``extras`` keeps its span, text and id.
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
