"""``PleiasSynthesizer``: retrieved nodes → a Pleias answer citing only the nodes it used."""

from __future__ import annotations

import os
from collections.abc import Iterable, Iterator, Sequence
from contextlib import contextmanager
from typing import TYPE_CHECKING, Any

from llama_index.core.base.response.schema import (
    RESPONSE_TYPE,
    AsyncStreamingResponse,
    Response,
    StreamingResponse,
)
from llama_index.core.callbacks.base import CallbackManager
from llama_index.core.callbacks.schema import CBEventType, EventPayload
from llama_index.core.indices.prompt_helper import ChatPromptHelper, PromptHelper
from llama_index.core.instrumentation.events.synthesis import (
    SynthesizeEndEvent,
    SynthesizeStartEvent,
)
from llama_index.core.prompts.mixin import PromptDictType
from llama_index.core.response_synthesizers.base import BaseSynthesizer, QueryTextType
from llama_index.core.schema import NodeWithScore, QueryBundle
from llama_index.core.types import RESPONSE_TEXT_TYPE
from llama_index_instrumentation import get_dispatcher

from pleias_rag import Event, Finished, PleiasAnswer, Source
from pleias_rag.errors import InvalidArgument
from pleias_rag.fallback import VisibleText, visible_text
from pleias_rag.views.ranking import source_uses

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
)
from .llms import PleiasLLM

if TYPE_CHECKING:
    from pleias_rag.backend import Backend

dispatcher = get_dispatcher(__name__)


class PleiasSynthesizer(BaseSynthesizer):
    """Answer from retrieved nodes with a Pleias model; return only the nodes it cited.

    Each node becomes one source (its body, ``get_content(MetadataMode.NONE)``, optionally after
    a metadata header), with the 16-hex id of its text. The ``Response`` has:

    - ``response``: the clean answer with ``[n]`` markers;
    - ``source_nodes``: deep copies of ONLY the cited nodes, in order of first citation, with
      their original node ids and scores; ``node.metadata["pleias_citations"]`` holds each
      citation it holds (the core citation dict with node keys, see
      :func:`~llama_index_pleias._convert.citation_dict`): the quote, its status (verified,
      misattributed...), match and ``node_start``/``node_end``, the offsets of the quote's
      words in ``node.get_content()`` (None when not found), a key excluded from the LLM and
      embedding text;
    - ``metadata``: ``citations`` (every citation, unknown ids included, with ``node_ids``,
      ``node_start``/``node_end``), ``source_analysis``, ``sections``, ``cited_node_ids``,
      ``mentioned_node_ids``, ``dropped_node_ids``/``truncated_node_ids`` (left out or cut to
      fit the context), ``skipped_node_ids``, ``finish_reason``, ``raw`` (the model output),
      token counts and ``pleias_answer`` (the :class:`pleias_rag.PleiasAnswer`).

    Nodes without text (empty nodes, images without caption) are skipped with a warning and
    listed in ``skipped_node_ids``; ``on_invalid_node="raise"`` makes them a ``ValueError``.
    A node given twice (same id) is sent once. With no usable node the model is not called:
    the response is ``empty_response`` with no source nodes.

    With ``streaming=True`` the response is a ``StreamingResponse`` (``AsyncStreamingResponse``
    from ``asynthesize``) that yields the clean answer text only; its ``source_nodes`` and
    ``metadata`` are filled when the stream ends. Async synthesis runs the model without
    blocking the event loop.

    Args:
        model: a :class:`PleiasLLM`, a model id or folder, or a pleias_rag backend (also
            accepted as ``llm=``, LlamaIndex's usual spelling).
        streaming: stream the answer text.
        metadata_header: put node metadata before the body in the source text: ``True`` (the
            node's LLM metadata string), a list of metadata keys, or a callable. Offsets stay
            relative to the node body; a quote found in the header gets no offsets.
        on_invalid_node: ``"skip"`` (default) or ``"raise"`` for nodes without text.
        empty_response: the response text when there is nothing to answer from.
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
        metadata_header: MetadataHeader = False,
        on_invalid_node: OnInvalid = "skip",
        empty_response: str | None = None,
        callback_manager: CallbackManager | None = None,
        **llm_kwargs: Any,
    ) -> None:
        if on_invalid_node not in ("skip", "raise"):
            raise InvalidArgument("on_invalid_node must be 'skip' or 'raise'")
        llm = _as_llm(model, llm_kwargs)
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
                answer = self._pleias_llm.backend.answer(run.query, run.sources, **run.gen)
                run.finish(answer)
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
                answer = await self._pleias_llm.backend.aanswer(run.query, run.sources, **run.gen)
                run.finish(answer)
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
        """A streaming response whose nodes and metadata fill in when the stream ends."""
        backend = self._pleias_llm.backend

        def step(event: Event, fold: VisibleText) -> str | None:
            if isinstance(event, Finished):
                _fill(response, event.answer, run.converted, run.extra)
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

    def finish(self, answer: PleiasAnswer) -> None:
        """Make the (non-streaming) response from the model's answer."""
        self.response = _response(answer, self.converted, self.extra)

    def result(self) -> RESPONSE_TYPE:
        """The response (made by now)."""
        assert self.response is not None
        return self.response


def _as_llm(
    model: PleiasLLM | str | os.PathLike[str] | Backend, kwargs: dict[str, Any]
) -> PleiasLLM:
    if "llm" in kwargs:  # LlamaIndex's usual spelling: PleiasSynthesizer(llm=PleiasLLM(...))
        llm = kwargs.pop("llm")
        if model is not DEFAULT_MODEL and model != llm:
            raise InvalidArgument("give the model as model= or llm=, not both")
        model = llm
    if isinstance(model, PleiasLLM):
        return model.with_settings(**kwargs) if kwargs else model
    return PleiasLLM(model, **kwargs)


def _response(answer: PleiasAnswer, converted: NodeSources, extra: list[NodeWithScore]) -> Response:
    nodes, metadata = _response_parts(answer, converted)
    return Response(visible_text(answer), source_nodes=nodes + extra, metadata=metadata)


def _fill(
    response: StreamingResponse | AsyncStreamingResponse,
    answer: PleiasAnswer,
    converted: NodeSources,
    extra: list[NodeWithScore],
) -> None:
    nodes, metadata = _response_parts(answer, converted)
    response.source_nodes[:] = nodes + extra
    if response.metadata is None:
        response.metadata = {}
    response.metadata.update(metadata)


def _ids_to_node_ids(ids: Iterable[str], sources: Sequence[Source]) -> list[str]:
    """Node ids of the sources with these ids, in the order of ``ids``."""
    return node_ids(s for i in ids for s in sources if s.id == i)


def _response_parts(
    answer: PleiasAnswer, converted: NodeSources
) -> tuple[list[NodeWithScore], dict[str, Any]]:
    """The cited nodes (annotated deep copies, in order of first citation) and the response
    metadata of an answer to node sources.

    ``answer.sources`` holds only the sources that made it into the prompt: node ids of the
    dropped ones are looked up among all the ``converted`` sources.
    """
    given = converted.sources
    uses = source_uses(answer, given)
    cited = [annotated_copy(u) for u in uses if u.cited and isinstance(u.source.ref, NodeRef)]
    metadata = answer_kwargs(answer)
    metadata.update(
        cited_node_ids=[n.node.node_id for n in cited],
        mentioned_node_ids=_ids_to_node_ids(answer.mentioned_ids, given),
        dropped_node_ids=_ids_to_node_ids(answer.dropped_source_ids, given),
        truncated_node_ids=_ids_to_node_ids(answer.truncated_source_ids, given),
        skipped_node_ids=converted.skipped_node_ids,
        raw=answer.raw,
        pleias_answer=answer,
    )
    return cited, metadata


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
        "pleias_answer": None,
    }
