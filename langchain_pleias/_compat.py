"""Pleias answers as LangChain messages, and the ``pleias`` block translator.

A ``ChatPleias`` reply carries everything in its ``content``, a list of standard content
blocks any LangChain reader understands (no import of this package needed, so a message
serialized with ``messages_to_dict``/``dumpd`` or kept in a LangGraph checkpoint keeps it):
a ``reasoning`` block with the source analysis (the numbered dialect's query analysis
before it; the sources it names written as their labels, ``source_label``: the title, else
the url or file, else the first words; what the stream shows too, before the answer's
``[n]`` exist),
then a ``text`` block, the answer with ``[n]`` markers, whose ``annotations`` are
:class:`langchain_core.messages.content.Citation` dicts. ``reply.text`` is the plain
answer. The other sections (language, query report...) stay in
``additional_kwargs["pleias_sections"]``.

Streamed chunks hold the same blocks by ``index``: the reasoning at 0, the text at 1, so
chunks added up give the blocks of the ``invoke`` reply in the same order.

The translator registered for ``model_provider="pleias"`` reads replies of earlier
versions (string ``content``, citations in ``additional_kwargs``); list content is read by
LangChain's own parsing.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Sequence
from typing import Any, TypeVar, cast

from langchain_core.messages import AIMessage, AIMessageChunk
from langchain_core.messages import content as types
from langchain_core.messages.ai import UsageMetadata
from langchain_core.messages.block_translators import register_translator

from pleias_rag.answer import Citation, PleiasAnswer
from pleias_rag.backend import Backend
from pleias_rag.fallback import has_answer, stream_rest, visible_text
from pleias_rag.sources import Source
from pleias_rag.views.labels import source_label
from pleias_rag.views.ranking import cited_uses

from ._convert import prompt_tokens

PROVIDER = "pleias"
#: Sections shown as reasoning: the source analysis, after the query analysis of the
#: numbered dialect (its only analysis when it answers a trivial query directly).
REASONING_SECTIONS = ("query_analysis", "source_analysis")
_MARKER = "<|source_id|>"
# Block indices of streamed chunks: the reasoning first, then the answer text, as in an
# ``invoke`` reply (merged chunks keep the order in which indices first arrive).
_REASONING_INDEX = 0
_TEXT_INDEX = 1
#: How the analysis names sources: a hash id, or the numbered dialect's position markup.
_SOURCE_REF = re.compile(r"<\|source_id\|>\s*(?P<num>[0-9]+)|\b(?P<hex>[0-9a-f]{16})\b")
#: Where a sentence starts: after end punctuation and a space, or after a line break.
_SENTENCE_BREAK = re.compile(r"(?<=[.!?])\s+|\n")
_CLAIM_LEAD = " \t\n.,;:!?"

_M = TypeVar("_M", bound=AIMessage)


def citation_block(citation: Citation, cid: str, claim: tuple[int, int]) -> types.Citation:
    """One citation as a standard LangChain ``Citation`` annotation.

    ``id`` is ``cid``, this citation's own id. ``start_index``/``end_index`` is ``claim``,
    the words of the answer the citation supports (:func:`claim_span`); the ``[n]`` marker
    is ``extras["answer_start"]``/``["answer_end"]``. ``title``/``url`` are those of the
    document that holds the quote: the cited one, or for a misattributed quote the one it
    really is in (never the wrong one); the cited document when the quote was found
    nowhere. ``cited_text`` is that document's own words (the model's quote when none
    matched). ``extras`` is the core's citation dict
    (:meth:`pleias_rag.answer.Citation.to_dict`: ``status``, ``match``, ``score``, ``note``,
    ``changes``, the model's ``quote``, ``source_start``/``source_end`` (the words in the
    document the annotation points at), ``cited_id`` (the document the model named),
    ``written_id``, ``found_in``...).
    :func:`~langchain_pleias._convert.rebuild_answer` reads it back.
    """
    credited = citation.credited
    doc = credited[0] if credited else citation.source
    block: dict[str, Any] = {
        "type": "citation",
        "id": cid,
        "cited_text": citation.matched_text or citation.quote,
        "start_index": claim[0],
        "end_index": claim[1],
    }
    if doc is not None and doc.title:
        block["title"] = doc.title
    if doc is not None and doc.url:
        block["url"] = doc.url
    block["extras"] = citation.to_dict()
    # cast: mypy (python_version 3.10) does not see langchain-core's typing.NotRequired keys
    return cast("types.Citation", block)


def claim_span(
    text: str, marker: tuple[int, int], markers: Sequence[tuple[int, int]]
) -> tuple[int, int]:
    """The words of ``text`` a citation marker supports: from the previous marker (of
    ``markers``, every ``[n]`` span of the text) or the start of the sentence, whichever is
    later, up to the ``marker`` (its span), or the run of markers it ends
    (``claim[1][2]``). The marker itself when no words are left.

    The one rule of every citation annotation's ``start_index``/``end_index``: a
    ``ChatPleias`` reply's, and the agent's final answer's
    (:class:`~langchain_pleias.PleiasCitationsMiddleware`)."""
    end = marker[0]
    moved = True
    while moved:  # back over the markers right before this one: they cite the same words
        moved = False
        bare = len(text[:end].rstrip())
        for m_start, m_end in markers:
            if m_end == bare and m_start < end:
                end, moved = m_start, True
                break
    end = len(text[:end].rstrip())
    start = max((m_end for _, m_end in markers if m_end <= end), default=0)
    for br in _SENTENCE_BREAK.finditer(text, start, end):
        start = br.end()
    while start < end and text[start] in _CLAIM_LEAD:
        start += 1
    return (start, end) if start < end else marker


def citation_id(answer: PleiasAnswer, k: int) -> str:
    """A stable id for the ``k``-th citation of ``answer``: the same for the same output,
    different for every citation (and, in practice, every answer)."""
    key = f"{answer.raw}\x00{answer.answer}\x00{k}"
    return "pleias_" + hashlib.sha256(key.encode("utf-8")).hexdigest()[:20]


def citation_annotations(answer: PleiasAnswer) -> list[types.Annotation]:
    """The answer's citations as standard annotations (:func:`citation_block`)."""
    markers = sorted({(c.start, c.end) for c in answer.citations})
    return [
        citation_block(
            c, citation_id(answer, k), claim_span(answer.answer, (c.start, c.end), markers)
        )
        for k, c in enumerate(answer.citations)
    ]


def analysis_text(answer: PleiasAnswer) -> str:
    """The analysis as the model wrote it (the :data:`REASONING_SECTIONS`)."""
    return "\n\n".join(
        text for name in REASONING_SECTIONS if (text := answer.sections.get(name, "").strip())
    )


def readable_analysis(answer: PleiasAnswer) -> str:
    """:func:`analysis_text` with each source it names (a hash id, ``<|source_id|>N`` in the
    numbered dialect) written as its label (:func:`pleias_rag.views.labels.source_label`:
    its title, else its url or file, else its first words); ids of no source stay.

    Never a number: the answer's ``[n]`` follow the order of first citation, which is not
    known while the analysis streams, so a number here could name another source than the
    answer's same ``[n]``. The label needs nothing the answer decides later, so the stream
    (:class:`ReasoningStream`) writes the same text while the analysis is generated."""
    return render_sources(analysis_text(answer), answer.sources)


def render_sources(text: str, sources: Sequence[Source]) -> str:
    """``text`` with the sources it names written as in :func:`readable_analysis`."""
    by_id = {s.id: s for s in reversed(sources)}

    def sub(m: re.Match[str]) -> str:
        if m.group("num") is not None:
            n = int(m.group("num"))
            return source_label(sources[n - 1]) if 0 < n <= len(sources) else m.group(0)
        found = by_id.get(m.group("hex"))
        return source_label(found) if found is not None else m.group(0)

    return _SOURCE_REF.sub(sub, text)


class ReasoningStream:
    """The readable analysis, written piece by piece as its sections stream in.

    Joined, the pieces are a prefix of :func:`readable_analysis` of the final answer (each
    section stripped, sections joined by a blank line); :meth:`rest` gives what remains.
    A piece is cut only where no source reference can continue (after a character that is
    not part of a word, and never inside ``<|source_id|> N``), so it renders as the whole.
    """

    def __init__(self, sources: Sequence[Source]) -> None:
        self._sources = list(sources)
        self._section: str | None = None
        self._pending = ""
        self._opened = False  # the current section has shown text
        self._written: list[str] = []

    def feed(self, section: str, text: str) -> str:
        """The readable text that ``text`` (raw, of ``section``) lets out now ("" if none)."""
        if section not in REASONING_SECTIONS:
            return ""
        out = ""
        if section != self._section:
            out = self._write(self._pending.rstrip()) if self._pending.strip() else ""
            self._section, self._pending, self._opened = section, "", False
        buf = self._pending + text
        if not self._opened:
            buf = buf.lstrip()
        cut = _safe_cut(buf)
        ready = buf[:cut].rstrip()
        self._pending = buf[len(ready) :]
        return out + (self._write(ready) if ready else "")

    def _write(self, text: str) -> str:
        piece = ("\n\n" if self._written and not self._opened else "") + render_sources(
            text, self._sources
        )
        self._opened = True
        self._written.append(piece)
        return piece

    def rest(self, answer: PleiasAnswer) -> str:
        """What the final reasoning adds to the pieces written ("" if they are not its start)."""
        full, done = readable_analysis(answer), "".join(self._written)
        return full[len(done) :] if full.startswith(done) else ""


def _safe_cut(text: str) -> int:
    """Where ``text`` may be cut without splitting a source reference that could go on."""
    i = len(text)
    while i > 0 and (text[i - 1].isalnum() or text[i - 1] == "_"):
        i -= 1
    lt = text.rfind("<", 0, i)
    if lt >= 0:
        tail = text[lt:i]
        if _MARKER.startswith(tail) or re.fullmatch(r"<\|source_id\|>\s*", tail):
            return lt
    return i


def _has_reasoning(answer: PleiasAnswer) -> bool:
    """Whether the model opened a reasoning section (what streaming sees)."""
    return any(name in answer.sections for name in REASONING_SECTIONS)


def usage(answer: PleiasAnswer, backend: Backend, query: str) -> UsageMetadata:
    """Token counts: the backend's, else counted with its tokenizer; the analysis counted
    with the tokenizer as ``output_token_details.reasoning``."""
    prompt = answer.prompt_tokens
    if prompt is None:
        prompt = prompt_tokens(backend, query, answer.sources, {})
    completion = answer.completion_tokens
    if completion is None:
        completion = int(backend.count_tokens(answer.raw)) if answer.raw else 0
    counts: dict[str, Any] = {
        "input_tokens": prompt,
        "output_tokens": completion,
        "total_tokens": prompt + completion,
    }
    analysis = analysis_text(answer)
    if analysis:
        reasoning = min(int(backend.count_tokens(analysis)), completion)
        counts["output_token_details"] = {"reasoning": reasoning}
    return cast("UsageMetadata", counts)


def message_parts(answer: PleiasAnswer, model_name: str) -> tuple[dict[str, Any], dict[str, Any]]:
    """What a ``PleiasLLM`` generation's ``generation_info`` has (``citations``, the
    ``reasoning_content``, ``pleias_sections``), and the ``response_metadata`` of a reply."""
    extra, meta = _reply_parts(answer, model_name)
    cited = citation_annotations(answer)
    reasoning = analysis_text(answer)
    return {
        **({"citations": cited} if cited else {}),
        **({"reasoning_content": reasoning} if reasoning else {}),
        **extra,
    }, meta


def _reply_parts(answer: PleiasAnswer, model_name: str) -> tuple[dict[str, Any], dict[str, Any]]:
    """``additional_kwargs`` (the sections that are neither answer nor reasoning) and
    ``response_metadata`` of a reply."""
    extra: dict[str, Any] = {}
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


def _blocks(
    answer: PleiasAnswer, text: str, *, chunk: bool, reasoning_text: str | None = None
) -> list[str | dict[str, Any]]:
    """The reply's content: the reasoning block (when the model opened an analysis), then
    the text block with ``text`` and the citations; with ``index`` keys in a chunk (whose
    reasoning is ``reasoning_text``, what the stream has not shown yet)."""
    blocks: list[str | dict[str, Any]] = []
    if _has_reasoning(answer):
        shown = readable_analysis(answer) if reasoning_text is None else reasoning_text
        reasoning: dict[str, Any] = {"type": "reasoning", "reasoning": shown}
        if chunk:
            reasoning["index"] = _REASONING_INDEX
        blocks.append(reasoning)
    body: dict[str, Any] = {"type": "text", "text": text}
    if chunk:
        body["index"] = _TEXT_INDEX
    cited = citation_annotations(answer)
    if cited:
        body["annotations"] = cited
    blocks.append(body)
    return blocks


def answer_message(answer: PleiasAnswer, model_name: str, usage_: UsageMetadata) -> AIMessage:
    """The reply for a whole answer (see :func:`pleias_rag.fallback.visible_text`)."""
    extra, meta = _reply_parts(answer, model_name)
    content = _blocks(answer, visible_text(answer), chunk=False)
    return AIMessage(
        content=content, additional_kwargs=extra, response_metadata=meta, usage_metadata=usage_
    )


def delta_chunk(text: str) -> AIMessageChunk:
    """A streamed piece of answer text."""
    block = {"type": "text", "text": text, "index": _TEXT_INDEX}
    return AIMessageChunk(content=[block], response_metadata={"model_provider": PROVIDER})


def reasoning_chunk(text: str) -> AIMessageChunk:
    """A streamed piece of the readable analysis (an empty one opens the block when an
    analysis starts, so that it comes before the answer text, as in an ``invoke`` reply)."""
    block = {"type": "reasoning", "reasoning": text, "index": _REASONING_INDEX}
    return AIMessageChunk(content=[block], response_metadata={"model_provider": PROVIDER})


def final_chunk(
    answer: PleiasAnswer, model_name: str, usage_: UsageMetadata, reasoning: ReasoningStream
) -> AIMessageChunk:
    """The last streamed chunk: the rest of the reasoning, the citations, metadata and
    usage, plus the fallback text when the model wrote no answer (the answer text and most
    of the reasoning were already streamed)."""
    extra, meta = _reply_parts(answer, model_name)
    rest = reasoning.rest(answer)
    return AIMessageChunk(
        content=_blocks(answer, stream_rest(answer), chunk=True, reasoning_text=rest),
        additional_kwargs=extra,
        response_metadata=meta,
        usage_metadata=usage_,
        chunk_position="last",
    )


# --------------------------------------------------------------------------- translator


def _translate(message: AIMessage, *, chunk: bool) -> list[types.ContentBlock]:
    """Blocks of a reply of an earlier version: string ``content``, the citations in
    ``additional_kwargs["citations"]``, the analysis in ``["reasoning_content"]``."""
    if not isinstance(message.content, str):
        raise NotImplementedError  # content blocks already: LangChain's own parsing
    extra = message.additional_kwargs
    cited = cast("list[types.Annotation]", list(extra.get("citations") or []))
    text: dict[str, Any] | None = None
    if message.content or cited:
        text = {"type": "text", "text": message.content}
        if cited:
            text["annotations"] = cited
    reasoning: dict[str, Any] | None = None
    if isinstance(extra.get("reasoning_content"), str) and extra["reasoning_content"]:
        reasoning = {"type": "reasoning", "reasoning": extra["reasoning_content"]}
    if chunk:
        if text is not None:
            text["index"] = _TEXT_INDEX
        if reasoning is not None:
            reasoning["index"] = _REASONING_INDEX
    return [cast("types.ContentBlock", b) for b in (reasoning, text) if b is not None]


def translate_content(message: AIMessage) -> list[types.ContentBlock]:
    """Standard blocks of an earlier ChatPleias reply: reasoning, then the annotated text."""
    return _translate(message, chunk=False)


def translate_content_chunk(message: AIMessageChunk) -> list[types.ContentBlock]:
    """Standard blocks of an earlier streamed chunk: reasoning (index 0), then the text
    (index 1)."""
    return _translate(message, chunk=True)


register_translator(PROVIDER, translate_content, translate_content_chunk)
