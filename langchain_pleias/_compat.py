"""Pleias answers as LangChain messages, and the ``pleias`` block translator.

A ``ChatPleias`` reply keeps ``content`` a plain string (the clean answer with ``[n]``
markers). Its citations live in ``additional_kwargs["citations"]`` as standard
:class:`langchain_core.messages.content.Citation` annotations, and the source analysis in
``additional_kwargs["reasoning_content"]`` (with the numbered dialect's query analysis
before it), the other sections (language, query report...) in
``additional_kwargs["pleias_sections"]``. The translator registered here for
``model_provider="pleias"`` turns them into standard content blocks: a ``reasoning`` block
and one ``text`` block carrying the citations as ``annotations``.
"""

from __future__ import annotations

from typing import Any, TypeVar, cast

from langchain_core.messages import AIMessage, AIMessageChunk
from langchain_core.messages import content as types
from langchain_core.messages.ai import UsageMetadata
from langchain_core.messages.block_translators import register_translator

from pleias_rag.answer import Citation, PleiasAnswer
from pleias_rag.fallback import has_answer, stream_rest, visible_text
from pleias_rag.views.ranking import cited_uses

from ._convert import prompt_tokens

PROVIDER = "pleias"
#: Sections shown as reasoning: the source analysis, after the query analysis of the
#: numbered dialect (its only analysis when it answers a trivial query directly).
REASONING_SECTIONS = ("query_analysis", "source_analysis")
# Block indices used when streaming: the answer text first, the reasoning (sent with the
# final chunk) after it, so merged chunks hold exactly one text block.
_TEXT_INDEX = 0
_REASONING_INDEX = 1

_M = TypeVar("_M", bound=AIMessage)


def citation_block(citation: Citation) -> types.Citation:
    """One citation as a standard LangChain ``Citation`` annotation.

    ``id``/``title``/``url`` are those of the document that holds the quote: the cited one,
    or for a misattributed quote the one it really is in (never the wrong one); the cited
    document when the quote was found nowhere; the id the model wrote when it names no
    document. ``cited_text`` is that document's own words (the model's quote when none
    matched), ``start_index``/``end_index`` the ``[n]`` marker in the answer. ``extras`` is
    the core's citation dict (:meth:`pleias_rag.answer.Citation.to_dict`): ``status``,
    ``match``, ``score``, ``note``, ``changes``, the model's ``quote``, ``source_start``/
    ``source_end`` (the words in the ``id`` document), ``cited_id`` (the document the model
    named), ``written_id``, ``found_in``... :func:`~langchain_pleias._convert.rebuild_answer`
    reads it back.
    """
    credited = citation.credited
    doc = credited[0] if credited else citation.source
    block: dict[str, Any] = {
        "type": "citation",
        "id": doc.id if doc is not None else citation.source_id,
        "cited_text": citation.matched_text or citation.quote,
        "start_index": citation.start,
        "end_index": citation.end,
    }
    if doc is not None and doc.title:
        block["title"] = doc.title
    if doc is not None and doc.url:
        block["url"] = doc.url
    block["extras"] = citation.to_dict()
    # cast: mypy (python_version 3.10) does not see langchain-core's typing.NotRequired keys
    return cast("types.Citation", block)


def usage(answer: PleiasAnswer, backend: Any, query: str) -> UsageMetadata:
    """Token counts: the backend's, else counted with its tokenizer."""
    prompt = answer.prompt_tokens
    if prompt is None:
        prompt = prompt_tokens(backend, query, answer.sources, {})
    completion = answer.completion_tokens
    if completion is None:
        completion = int(backend.count_tokens(answer.raw)) if answer.raw else 0
    counts = {"input_tokens": prompt, "output_tokens": completion}
    return cast("UsageMetadata", {**counts, "total_tokens": prompt + completion})


def message_parts(answer: PleiasAnswer, model_name: str) -> tuple[dict[str, Any], dict[str, Any]]:
    """``additional_kwargs`` and ``response_metadata`` of a reply."""
    extra: dict[str, Any] = {}
    if answer.citations:
        extra["citations"] = [citation_block(c) for c in answer.citations]
    reasoning = "\n\n".join(
        text for name in REASONING_SECTIONS if (text := answer.sections.get(name, "").strip())
    )
    if reasoning:
        extra["reasoning_content"] = reasoning
    sections = {
        k: v
        for k, v in answer.sections.items()
        if k != "answer" and k not in REASONING_SECTIONS and v
    }
    if sections:
        extra["pleias_sections"] = sections
    meta: dict[str, Any] = {
        "model_name": model_name,
        "model_provider": PROVIDER,
        "finish_reason": answer.finish_reason,
        "dialect": answer.dialect,
        "has_answer": has_answer(answer),
        "cited_source_ids": [u.source.id for u in cited_uses(answer)],
        "mentioned_source_ids": list(answer.mentioned_ids),
        "dropped_source_ids": list(answer.dropped_source_ids),
        "truncated_source_ids": list(answer.truncated_source_ids),
    }
    return extra, meta


def _reply(cls: type[_M], content: str, answer: PleiasAnswer, model_name: str, **fields: Any) -> _M:
    """A ``cls`` message with ``content`` and the answer's parts (:func:`message_parts`)."""
    extra, meta = message_parts(answer, model_name)
    return cls(content=content, additional_kwargs=extra, response_metadata=meta, **fields)


def answer_message(answer: PleiasAnswer, model_name: str, usage_: UsageMetadata) -> AIMessage:
    """The reply for a whole answer (see :func:`pleias_rag.fallback.visible_text`)."""
    return _reply(AIMessage, visible_text(answer), answer, model_name, usage_metadata=usage_)


def delta_chunk(text: str) -> AIMessageChunk:
    """A streamed piece of answer text."""
    return AIMessageChunk(content=text, response_metadata={"model_provider": PROVIDER})


def final_chunk(answer: PleiasAnswer, model_name: str, usage_: UsageMetadata) -> AIMessageChunk:
    """The last streamed chunk: citations, reasoning, metadata and usage, plus the fallback
    text when the model wrote no answer (the answer text itself was already streamed)."""
    return _reply(
        AIMessageChunk,
        stream_rest(answer),
        answer,
        model_name,
        usage_metadata=usage_,
        chunk_position="last",
    )


# --------------------------------------------------------------------------- translator


def _translate(message: AIMessage, *, chunk: bool) -> list[types.ContentBlock]:
    if not isinstance(message.content, str):
        raise NotImplementedError  # not a ChatPleias string reply: best-effort parsing
    extra = message.additional_kwargs
    annotations = cast("list[types.Annotation]", list(extra.get("citations") or []))
    text: dict[str, Any] | None = None
    if message.content or annotations:
        text = {"type": "text", "text": message.content}
        if annotations:
            text["annotations"] = annotations
    reasoning: dict[str, Any] | None = None
    if isinstance(extra.get("reasoning_content"), str) and extra["reasoning_content"]:
        reasoning = {"type": "reasoning", "reasoning": extra["reasoning_content"]}
    if chunk:
        if text is not None:
            text["index"] = _TEXT_INDEX
        if reasoning is not None:
            reasoning["index"] = _REASONING_INDEX
        ordered = [text, reasoning]
    else:
        ordered = [reasoning, text]
    blocks = [cast("types.ContentBlock", b) for b in ordered if b is not None]
    return blocks


def translate_content(message: AIMessage) -> list[types.ContentBlock]:
    """Standard blocks of a ChatPleias reply: reasoning, then the annotated answer text."""
    return _translate(message, chunk=False)


def translate_content_chunk(message: AIMessageChunk) -> list[types.ContentBlock]:
    """Standard blocks of a streamed chunk: the text (index 0), then reasoning (index 1)."""
    return _translate(message, chunk=True)


register_translator(PROVIDER, translate_content, translate_content_chunk)
