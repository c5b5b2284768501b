"""``PleiasSynthesizer``: retrieved nodes → a Pleias answer citing only the nodes it used."""

from __future__ import annotations

import os
from collections.abc import Callable, Iterable, Iterator, Sequence
from contextlib import contextmanager
from typing import TYPE_CHECKING, Any, Literal, TypeAlias

from llama_index.core.base.llms.types import CompletionResponse
from llama_index.core.base.response.schema import (
    RESPONSE_TYPE,
    AsyncStreamingResponse,
    Response,
    StreamingResponse,
)
from llama_index.core.callbacks.base import CallbackManager
from llama_index.core.callbacks.schema import CBEventType, EventPayload
from llama_index.core.indices.prompt_helper import ChatPromptHelper, PromptHelper
from llama_index.core.instrumentation.events.llm import (
    LLMCompletionEndEvent,
    LLMCompletionStartEvent,
)
from llama_index.core.instrumentation.events.synthesis import (
    SynthesizeEndEvent,
    SynthesizeStartEvent,
)
from llama_index.core.prompts.mixin import PromptDictType
from llama_index.core.response_synthesizers.base import BaseSynthesizer, QueryTextType
from llama_index.core.schema import NodeWithScore, QueryBundle
from llama_index.core.types import RESPONSE_TEXT_TYPE
from llama_index_instrumentation import get_dispatcher

from pleias_rag import Citation, CitationCompleted, Event, Finished, PleiasAnswer, Source
from pleias_rag.errors import InvalidArgument
from pleias_rag.fallback import VisibleText, visible_text
from pleias_rag.views.ranking import SourceUse, cited_score, source_uses

from ._convert import (
    DEFAULT_MODEL,
    MetadataHeader,
    NodeRef,
    NodeSources,
    OnInvalid,
    achunks,
    annotated_copy,
    answer_kwargs,
    chunks,
    node_ids,
    nodes_to_sources,
    text_delta,
    unknown_marker_node,
)
from .llms import PleiasLLM, as_pleias_llm, raw_of

if TYPE_CHECKING:
    from pleias_rag.backend import Backend

dispatcher = get_dispatcher(__name__)

#: Which nodes a response returns: the cited ones, or all the nodes given.
ReturnNodes: TypeAlias = Literal["cited", "all"]


def pleias_answer(response: object) -> PleiasAnswer | None:
    """The :class:`pleias_rag.PleiasAnswer` behind a :class:`PleiasSynthesizer` response
    (its ``pleias_answer`` attribute; None before a stream ends, or with no model call)."""
    answer = getattr(response, "pleias_answer", None)
    return answer if isinstance(answer, PleiasAnswer) else None


def keep_pleias_answer(response: object, answer: PleiasAnswer) -> None:
    """Attach ``answer`` to a LlamaIndex response as its ``pleias_answer`` attribute (the
    response dataclasses have no field for it, and ``metadata`` must stay JSON)."""
    vars(response)["pleias_answer"] = answer


class PleiasSynthesizer(BaseSynthesizer):
    """Answer from retrieved nodes with a Pleias model; return only the nodes it cited.

    Each node becomes one source (its body, ``get_content(MetadataMode.NONE)``, optionally after
    a metadata header), with the 16-hex id of its text. The ``Response`` has:

    - ``response``: the clean answer with ``[n]`` markers;
    - ``source_nodes``: deep copies of the cited nodes with their original node ids and
      scores, numbered as the markers: ``[n]`` is ``source_nodes[n-1]`` (the node holding the
      quote, else the node named; a text-less placeholder ``pleias-unknown-<n>`` flagged
      ``unknown_source`` for an id naming no node), then other nodes holding a quote (same
      text, real source of a misattributed quote); with ``return_nodes="all"``, or when the
      answer cites no node, every other node given follows, flagged ``cited: False``;
      ``node.metadata["pleias_citations"]`` holds each citation it holds (the core citation
      dict with node keys, see
      :func:`~llama_index_pleias._convert.citation_dict`): the quote, its status (verified,
      misattributed...), match and ``node_start``/``node_end``, the offsets of the quote's
      words in ``node.get_content()`` (None when not found), a key excluded from the LLM and
      embedding text;
    - ``metadata``: ``citations`` (every citation, unknown ids included, with ``node_ids``,
      ``node_start``/``node_end``), ``source_analysis``, ``sections``, ``cited_node_ids``,
      ``mentioned_node_ids``, ``dropped_node_ids``/``truncated_node_ids`` (left out or cut to
      fit the context), ``skipped_node_ids``, ``finish_reason``, ``raw`` (the model output),
      token counts; JSON-serializable. The :class:`pleias_rag.PleiasAnswer` is the response's
      ``pleias_answer`` attribute (:func:`pleias_answer`).

    Each model call emits a ``CBEventType.LLM`` callback event and LLM completion
    instrumentation events, with token counts in the completion's ``raw["usage"]``.

    Nodes without text (empty nodes, images without caption) are skipped with a warning and
    listed in ``skipped_node_ids``; ``on_invalid_node="raise"`` makes them a ``ValueError``.
    A node given twice (same id) is sent once. With no usable node the model is not called:
    the response is ``empty_response`` with no source nodes.

    With ``streaming=True`` the response is a ``StreamingResponse`` (``AsyncStreamingResponse``
    from ``asynthesize``) that yields the clean answer text only; its ``source_nodes`` fill
    in as each citation completes, its ``metadata`` when the stream ends. Async synthesis
    runs the model without blocking the event loop.

    Args:
        model: a :class:`PleiasLLM`, a model id or folder, or a pleias_rag backend (also
            accepted as ``llm=``, LlamaIndex's usual spelling).
        streaming: stream the answer text.
        metadata_header: the source text of a node: ``True`` (default) its
            ``get_content(MetadataMode.LLM)``, as LlamaIndex's own synthesizers send it
            (``text_template`` and ``excluded_llm_metadata_keys`` honoured); ``False`` the body
            alone; a list of metadata keys or a callable: that header before the body. Offsets
            stay relative to the node body; a quote outside it gets no offsets.
        on_invalid_node: ``"skip"`` (default) or ``"raise"`` for nodes without text.
        empty_response: the response text when there is nothing to answer from.
        return_nodes: ``"cited"`` (default) or ``"all"`` (uncited nodes too, flagged).
        callback_manager: LlamaIndex callback manager.
        **llm_kwargs: settings for the :class:`PleiasLLM` (``max_new_tokens``, ``temperature``,
            ``dialect``, ``device``...), applied to a copy when ``model`` is a ``PleiasLLM``.
            Per-call generation kwargs can also be given to ``synthesize``.

    Examples:
        >>> from llama_index.core import Document, VectorStoreIndex
        >>> from llama_index.core.query_engine import RetrieverQueryEngine
        >>> from llama_index_pleias import PleiasSynthesizer
        >>> synthesizer = PleiasSynthesizer("PleIAs/Pleias-RAG-350M", max_new_tokens=512)
        >>> index = VectorStoreIndex.from_documents(docs, embed_model=embed)  # doctest: +SKIP
        >>> engine = RetrieverQueryEngine(  # doctest: +SKIP
        ...     index.as_retriever(similarity_top_k=4), response_synthesizer=synthesizer
        ... )
        >>> response = engine.query("When was the Eiffel Tower completed?")  # doctest: +SKIP
        >>> for n in response.source_nodes:  # doctest: +SKIP
        ...     text = n.node.get_content()
        ...     for c in n.node.metadata["pleias_citations"]["citations"]:
        ...         print(c["number"], c["status"], text[c["node_start"] : c["node_end"]])
    """

    def __init__(
        self,
        model: PleiasLLM | str | os.PathLike[str] | Backend = DEFAULT_MODEL,
        *,
        streaming: bool = False,
        metadata_header: MetadataHeader = True,
        on_invalid_node: OnInvalid = "skip",
        empty_response: str | None = None,
        return_nodes: ReturnNodes = "cited",
        callback_manager: CallbackManager | None = None,
        **llm_kwargs: Any,
    ) -> None:
        if on_invalid_node not in ("skip", "raise"):
            raise InvalidArgument("on_invalid_node must be 'skip' or 'raise'")
        if return_nodes not in ("cited", "all"):
            raise InvalidArgument("return_nodes must be 'cited' or 'all'")
        self._return_nodes: ReturnNodes = return_nodes
        llm = as_pleias_llm(model, llm_kwargs)
        super().__init__(
            llm=llm,
            callback_manager=callback_manager,
            # Given so that building a synthesizer neither loads the model nor reads Settings.
            prompt_helper=PromptHelper(),
            chat_prompt_helper=ChatPromptHelper(),
            streaming=streaming,
            empty_response=empty_response,
        )
        self._pleias_llm = llm
        self._metadata_header = metadata_header
        self._on_invalid: OnInvalid = on_invalid_node

    @property
    def llm(self) -> PleiasLLM:
        """The Pleias LLM this synthesizer answers with."""
        return self._pleias_llm

    @property
    def streaming(self) -> bool:
        """Whether :meth:`synthesize` streams the answer."""
        return self._streaming

    def _get_prompts(self) -> PromptDictType:
        return {}  # the Pleias prompt format is fixed: nothing to template

    def _update_prompts(self, prompts: PromptDictType) -> None:
        pass

    # -- the node-aware entry points --

    def synthesize(
        self,
        query: QueryTextType,
        nodes: list[NodeWithScore],
        additional_source_nodes: Sequence[NodeWithScore] | None = None,
        **response_kwargs: Any,
    ) -> RESPONSE_TYPE:
        """Answer ``query`` from ``nodes``: the cited nodes (annotated copies) as source nodes."""
        with self._synthesis(query, nodes, additional_source_nodes, response_kwargs) as run:
            if run.response is None:
                event_id = self._llm_start(run)
                answer = self._pleias_llm.backend.answer(run.query, run.sources, **run.gen)
                self._llm_end(run, answer, event_id)
                run.finish(answer, self._return_nodes)
        return run.result()

    async def asynthesize(
        self,
        query: QueryTextType,
        nodes: list[NodeWithScore],
        additional_source_nodes: Sequence[NodeWithScore] | None = None,
        **response_kwargs: Any,
    ) -> RESPONSE_TYPE:
        """:meth:`synthesize` without blocking the event loop."""
        with self._synthesis(
            query, nodes, additional_source_nodes, response_kwargs, asynchronous=True
        ) as run:
            if run.response is None:
                event_id = self._llm_start(run)
                answer = await self._pleias_llm.backend.aanswer(run.query, run.sources, **run.gen)
                self._llm_end(run, answer, event_id)
                run.finish(answer, self._return_nodes)
        return run.result()

    @contextmanager
    def _synthesis(
        self,
        query: QueryTextType,
        nodes: Sequence[NodeWithScore],
        additional_source_nodes: Sequence[NodeWithScore] | None,
        response_kwargs: dict[str, Any],
        asynchronous: bool = False,
    ) -> Iterator[_Synthesis]:
        """One synthesis, inside its instrumentation events and callback event.

        The response is made here when no answer is to be awaited (no usable node, or a
        stream); otherwise the caller gives the answer to :meth:`_Synthesis.finish`.
        """
        dispatcher.event(SynthesizeStartEvent(query=query))
        bundle = QueryBundle(query_str=query) if isinstance(query, str) else query
        converted = nodes_to_sources(
            nodes, metadata_header=self._metadata_header, on_invalid=self._on_invalid
        )
        gen = self._pleias_llm.generation_kwargs(**response_kwargs)
        run = _Synthesis(bundle.query_str, converted, list(additional_source_nodes or []), gen)
        with self._callback_manager.event(
            CBEventType.SYNTHESIZE, payload={EventPayload.QUERY_STR: bundle.query_str}
        ) as event:
            if not converted.sources:
                run.response = self._empty(run, asynchronous)
            elif self._streaming:
                run.response = self._stream(run, asynchronous)
            yield run
            event.on_end(payload={EventPayload.RESPONSE: run.result()})
        dispatcher.event(SynthesizeEndEvent(query=bundle, response=run.result()))

    def _llm_start(self, run: _Synthesis) -> str:
        """Open the model call's LLM callback event and instrumentation event."""
        prompt = _prompt_text(run)
        model_dict = {"model": self._pleias_llm.metadata.model_name}
        dispatcher.event(
            LLMCompletionStartEvent(prompt=prompt, additional_kwargs=run.gen, model_dict=model_dict)
        )
        return self._callback_manager.on_event_start(
            CBEventType.LLM,
            payload={EventPayload.PROMPT: prompt, EventPayload.ADDITIONAL_KWARGS: run.gen},
        )

    def _llm_end(self, run: _Synthesis, answer: PleiasAnswer, event_id: str) -> None:
        """Close the events of :meth:`_llm_start`: the completion, with the token counts in
        ``raw["usage"]`` (as LlamaIndex's ``TokenCountingHandler`` reads them)."""
        prompt = _prompt_text(run)
        completion = CompletionResponse(text=visible_text(answer), raw=raw_of(answer))
        self._callback_manager.on_event_end(
            CBEventType.LLM,
            payload={EventPayload.PROMPT: prompt, EventPayload.COMPLETION: completion},
            event_id=event_id,
        )
        dispatcher.event(LLMCompletionEndEvent(prompt=prompt, response=completion))

    def _empty(self, run: _Synthesis, asynchronous: bool) -> RESPONSE_TYPE:
        metadata = _empty_metadata(run.converted)
        if not self._streaming:
            return Response(self._empty_response, source_nodes=run.extra, metadata=metadata)
        if asynchronous:
            return AsyncStreamingResponse(
                self._empty_response_agenerator(), source_nodes=run.extra, metadata=metadata
            )
        return StreamingResponse(
            self._empty_response_generator(), source_nodes=run.extra, metadata=metadata
        )

    def _stream(
        self, run: _Synthesis, asynchronous: bool
    ) -> StreamingResponse | AsyncStreamingResponse:
        """A streaming response whose source nodes fill in as each citation completes (marker
        ``[n]`` is ``source_nodes[n-1]`` all along), and whose metadata and final nodes are
        set when the stream ends."""
        backend = self._pleias_llm.backend
        seen: list[Citation] = []
        event_ids: list[str] = []

        def step(event: Event, fold: VisibleText) -> str | None:
            if not event_ids:
                event_ids.append(self._llm_start(run))
            if isinstance(event, CitationCompleted):
                seen.append(event.citation)
                response.source_nodes[:] = _streamed_nodes(seen, run.converted)
            elif isinstance(event, Finished):
                self._llm_end(run, event.answer, event_ids[0])
                _fill(response, event.answer, run.converted, run.extra, self._return_nodes)
            return text_delta(event, fold)

        response: StreamingResponse | AsyncStreamingResponse
        if asynchronous:
            events = backend.astream(run.query, run.sources, **run.gen)
            response = AsyncStreamingResponse(achunks(events, step), source_nodes=[], metadata={})
        else:
            text = chunks(backend.stream(run.query, run.sources, **run.gen), step)
            response = StreamingResponse(text, source_nodes=[], metadata={})
        return response

    # -- the text-only interface of BaseSynthesizer --

    def get_response(
        self, query_str: str, text_chunks: Sequence[str], **response_kwargs: Any
    ) -> RESPONSE_TEXT_TYPE:
        """Answer from plain text chunks (no node mapping: prefer :meth:`synthesize`)."""
        sources, gen = self._text_inputs(text_chunks, response_kwargs)
        backend = self._pleias_llm.backend
        if not self._streaming:
            return visible_text(backend.answer(query_str, sources, **gen))
        return chunks(backend.stream(query_str, sources, **gen), text_delta)

    async def aget_response(
        self, query_str: str, text_chunks: Sequence[str], **response_kwargs: Any
    ) -> RESPONSE_TEXT_TYPE:
        """Async :meth:`get_response`."""
        sources, gen = self._text_inputs(text_chunks, response_kwargs)
        backend = self._pleias_llm.backend
        if not self._streaming:
            return visible_text(await backend.aanswer(query_str, sources, **gen))
        return achunks(backend.astream(query_str, sources, **gen), text_delta)

    def _text_inputs(
        self, text_chunks: Sequence[str], response_kwargs: dict[str, Any]
    ) -> tuple[list[Source], dict[str, Any]]:
        sources = [Source(t) for t in text_chunks if t.strip()]
        return sources, self._pleias_llm.generation_kwargs(**response_kwargs)


class _Synthesis:
    """What one synthesis answers with, and its response once made."""

    __slots__ = ("converted", "extra", "gen", "query", "response")

    def __init__(
        self, query: str, converted: NodeSources, extra: list[NodeWithScore], gen: dict[str, Any]
    ) -> None:
        self.query, self.converted, self.extra, self.gen = query, converted, extra, gen
        self.response: RESPONSE_TYPE | None = None

    @property
    def sources(self) -> list[Source]:
        """The sources to answer from."""
        return self.converted.sources

    def finish(self, answer: PleiasAnswer, return_nodes: ReturnNodes = "cited") -> None:
        """Make the (non-streaming) response from the model's answer."""
        self.response = _response(answer, self.converted, self.extra, return_nodes)

    def result(self) -> RESPONSE_TYPE:
        """The response (made by now)."""
        assert self.response is not None
        return self.response


def _prompt_text(run: _Synthesis) -> str:
    """What the model call is shown as in LLM events: the numbered sources, then the query."""
    parts = [f"Source {i}:\n{s.text}" for i, s in enumerate(run.sources, 1)]
    return "\n\n".join([*parts, f"Query: {run.query}"])


def _response(
    answer: PleiasAnswer,
    converted: NodeSources,
    extra: list[NodeWithScore],
    return_nodes: ReturnNodes = "cited",
) -> Response:
    nodes, metadata = _response_parts(answer, converted, return_nodes)
    response = Response(visible_text(answer), source_nodes=nodes + extra, metadata=metadata)
    keep_pleias_answer(response, answer)
    return response


def _fill(
    response: StreamingResponse | AsyncStreamingResponse,
    answer: PleiasAnswer,
    converted: NodeSources,
    extra: list[NodeWithScore],
    return_nodes: ReturnNodes = "cited",
) -> None:
    nodes, metadata = _response_parts(answer, converted, return_nodes)
    response.source_nodes[:] = nodes + extra
    if response.metadata is None:
        response.metadata = {}
    response.metadata.update(metadata)
    keep_pleias_answer(response, answer)


def _node_key(source: Source) -> str | None:
    return source.ref.node_id if isinstance(source.ref, NodeRef) else None


def _by_number(citations: Sequence[Citation]) -> dict[int, list[Citation]]:
    out: dict[int, list[Citation]] = {}
    for c in citations:
        out.setdefault(c.number, []).append(c)
    return out


def _marker_nodes(
    citations: Sequence[Citation], use_of: Callable[[Source], SourceUse | None]
) -> tuple[list[NodeWithScore], set[str]]:
    """One node per marker number, in number order (``[n]`` is the n-th): the node holding
    the quote of the marker's first citation (for a misattributed quote, where it really
    is), else the node whose id the marker names (the first given one when several have the
    same text), a node not placed yet when one of those is; a placeholder for an id that
    names no given node. Returns the nodes and the node ids so placed."""
    numbers = _by_number(citations)
    out: list[NodeWithScore] = []
    placed: set[str] = set()
    for n in range(1, max(numbers, default=0) + 1):
        cites = numbers.get(n, [])
        first = cites[0] if cites else None
        named = [] if first is None or first.source is None else [first.source]
        candidates = [s for s in [*(first.credited[:1] if first else ()), *named] if _node_key(s)]
        fresh = [s for s in candidates if _node_key(s) not in placed]
        pick = fresh or candidates
        source = pick[0] if pick else None
        use = None if source is None else use_of(source)
        if source is None or use is None:
            out.append(unknown_marker_node(n, cites))
            continue
        placed.add(str(_node_key(source)))
        out.append(annotated_copy(use, marker=n))
    return out, placed


def _streamed_nodes(citations: Sequence[Citation], converted: NodeSources) -> list[NodeWithScore]:
    """The marker nodes of the citations completed so far (annotated with those citations)."""

    def use_of(source: Source) -> SourceUse:
        cites = tuple(c for c in citations if any(s is source for s in c.credited))
        score = cited_score(cites) if cites else None
        return SourceUse(source, cites, False, score, 0)

    return _marker_nodes(citations, use_of)[0]


def _returned_nodes(
    answer: PleiasAnswer, given: Sequence[Source], return_nodes: ReturnNodes
) -> list[NodeWithScore]:
    """The response's nodes: one per marker (``[n]`` is ``source_nodes[n-1]``), then the other
    nodes holding a quote (identical texts, the real source of a misattributed quote), then
    (``return_nodes="all"``, or when no node is cited at all) every other node given, flagged
    ``cited: False`` in their annotations."""
    uses = source_uses(answer, given)
    by_key = {k: u for u in uses if (k := _node_key(u.source)) is not None}

    def use_of(source: Source) -> SourceUse | None:
        key = _node_key(source)
        return None if key is None else by_key.get(key)

    out, placed = _marker_nodes(answer.citations, use_of)
    for key, use in by_key.items():
        if use.cited and key not in placed:
            placed.add(key)
            out.append(annotated_copy(use))
    if return_nodes == "all" or not placed:
        for key, use in by_key.items():
            if key not in placed:
                out.append(annotated_copy(use))
    return out


def _ids_to_node_ids(ids: Iterable[str], sources: Sequence[Source]) -> list[str]:
    """Node ids of the sources with these ids, in the order of ``ids``."""
    return node_ids(s for i in ids for s in sources if s.id == i)


def _response_parts(
    answer: PleiasAnswer, converted: NodeSources, return_nodes: ReturnNodes = "cited"
) -> tuple[list[NodeWithScore], dict[str, Any]]:
    """The cited nodes (annotated deep copies, in order of first citation) and the response
    metadata of an answer to node sources.

    ``answer.sources`` holds only the sources that made it into the prompt: node ids of the
    dropped ones are looked up among all the ``converted`` sources.
    """
    given = converted.sources
    nodes = _returned_nodes(answer, given, return_nodes)
    uses = source_uses(answer, given)
    cited = [u.source for u in uses if u.cited and isinstance(u.source.ref, NodeRef)]
    metadata = answer_kwargs(answer)
    metadata.update(
        cited_node_ids=node_ids(cited),
        mentioned_node_ids=_ids_to_node_ids(answer.mentioned_ids, given),
        dropped_node_ids=_ids_to_node_ids(answer.dropped_source_ids, given),
        truncated_node_ids=_ids_to_node_ids(answer.truncated_source_ids, given),
        skipped_node_ids=converted.skipped_node_ids,
        raw=answer.raw,
    )
    return nodes, metadata


def _empty_metadata(converted: NodeSources) -> dict[str, Any]:
    """Response metadata when no node had text to answer from: the keys of an answer's
    (:func:`_response_parts`), empty, so that reading one never raises ``KeyError``."""
    return {
        "citations": [],
        "source_analysis": "",
        "sections": {},
        "mentioned_ids": [],
        "finish_reason": None,
        "dialect": None,
        "dropped_source_ids": [],
        "truncated_source_ids": [],
        "prompt_tokens": None,
        "completion_tokens": None,
        "cited_node_ids": [],
        "mentioned_node_ids": [],
        "dropped_node_ids": [],
        "truncated_node_ids": [],
        "skipped_node_ids": converted.skipped_node_ids,
        "raw": "",
    }
