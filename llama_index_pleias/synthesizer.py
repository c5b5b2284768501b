"""``PleiasSynthesizer``: retrieved nodes → a Pleias answer citing only the nodes it used."""

from __future__ import annotations

import os
from collections.abc import AsyncGenerator, Generator, Iterable, Sequence
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
    annotated_copy,
    answer_kwargs,
    node_ids,
    nodes_to_sources,
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
        model: a :class:`PleiasLLM`, a model id or folder, or a pleias_rag backend.
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

    def _start(
        self, query: QueryTextType, nodes: Sequence[NodeWithScore]
    ) -> tuple[QueryBundle, NodeSources]:
        dispatcher.event(SynthesizeStartEvent(query=query))
        bundle = QueryBundle(query_str=query) if isinstance(query, str) else query
        converted = nodes_to_sources(
            nodes, metadata_header=self._metadata_header, on_invalid=self._on_invalid
        )
        return bundle, converted

    def synthesize(
        self,
        query: QueryTextType,
        nodes: list[NodeWithScore],
        additional_source_nodes: Sequence[NodeWithScore] | None = None,
        **response_kwargs: Any,
    ) -> RESPONSE_TYPE:
        """Answer ``query`` from ``nodes``: the cited nodes (annotated copies) as source nodes."""
        bundle, converted = self._start(query, nodes)
        gen = self._pleias_llm.generation_kwargs(**response_kwargs)
        extra = list(additional_source_nodes or [])
        with self._callback_manager.event(
            CBEventType.SYNTHESIZE, payload={EventPayload.QUERY_STR: bundle.query_str}
        ) as event:
            response: RESPONSE_TYPE
            if not converted.sources:
                response = self._empty(converted, extra, asynchronous=False)
            elif self._streaming:
                response = self._stream(bundle.query_str, converted, extra, gen)
            else:
                backend = self._pleias_llm.backend
                answer = backend.answer(bundle.query_str, converted.sources, **gen)
                response = _response(answer, converted, extra)
            event.on_end(payload={EventPayload.RESPONSE: response})
        dispatcher.event(SynthesizeEndEvent(query=bundle, response=response))
        return response

    async def asynthesize(
        self,
        query: QueryTextType,
        nodes: list[NodeWithScore],
        additional_source_nodes: Sequence[NodeWithScore] | None = None,
        **response_kwargs: Any,
    ) -> RESPONSE_TYPE:
        """:meth:`synthesize` without blocking the event loop."""
        bundle, converted = self._start(query, nodes)
        gen = self._pleias_llm.generation_kwargs(**response_kwargs)
        extra = list(additional_source_nodes or [])
        with self._callback_manager.event(
            CBEventType.SYNTHESIZE, payload={EventPayload.QUERY_STR: bundle.query_str}
        ) as event:
            response: RESPONSE_TYPE
            if not converted.sources:
                response = self._empty(converted, extra, asynchronous=True)
            elif self._streaming:
                response = self._astream(bundle.query_str, converted, extra, gen)
            else:
                backend = self._pleias_llm.backend
                answer = await backend.aanswer(bundle.query_str, converted.sources, **gen)
                response = _response(answer, converted, extra)
            event.on_end(payload={EventPayload.RESPONSE: response})
        dispatcher.event(SynthesizeEndEvent(query=bundle, response=response))
        return response

    def _empty(
        self, converted: NodeSources, extra: list[NodeWithScore], *, asynchronous: bool
    ) -> RESPONSE_TYPE:
        metadata = _empty_metadata(converted)
        if not self._streaming:
            return Response(self._empty_response, source_nodes=extra, metadata=metadata)
        if asynchronous:
            return AsyncStreamingResponse(
                self._empty_response_agenerator(), source_nodes=extra, metadata=metadata
            )
        return StreamingResponse(
            self._empty_response_generator(), source_nodes=extra, metadata=metadata
        )

    def _stream(
        self,
        query: str,
        converted: NodeSources,
        extra: list[NodeWithScore],
        gen: dict[str, Any],
    ) -> StreamingResponse:
        events = self._pleias_llm.backend.stream(query, converted.sources, **gen)
        response = StreamingResponse(_nothing(), source_nodes=[], metadata={})

        def text() -> Generator[str, None, None]:
            fold = VisibleText()
            for event in events:
                if delta := _step(fold, event, response, converted, extra):
                    yield delta

        response.response_gen = text()
        return response

    def _astream(
        self,
        query: str,
        converted: NodeSources,
        extra: list[NodeWithScore],
        gen: dict[str, Any],
    ) -> AsyncStreamingResponse:
        events = self._pleias_llm.backend.astream(query, converted.sources, **gen)

        async def text() -> AsyncGenerator[str, None]:
            fold = VisibleText()
            async for event in events:
                if delta := _step(fold, event, response, converted, extra):
                    yield delta

        response = AsyncStreamingResponse(text(), source_nodes=[], metadata={})
        return response

    # -- the text-only interface of BaseSynthesizer --

    def get_response(
        self, query_str: str, text_chunks: Sequence[str], **response_kwargs: Any
    ) -> RESPONSE_TEXT_TYPE:
        """Answer from plain text chunks (no node mapping: prefer :meth:`synthesize`)."""
        sources = [Source(t) for t in text_chunks if t.strip()]
        gen = self._pleias_llm.generation_kwargs(**response_kwargs)
        backend = self._pleias_llm.backend
        if not self._streaming:
            return visible_text(backend.answer(query_str, sources, **gen))
        fold = VisibleText()
        return (d for e in backend.stream(query_str, sources, **gen) if (d := fold.step(e)))

    async def aget_response(
        self, query_str: str, text_chunks: Sequence[str], **response_kwargs: Any
    ) -> RESPONSE_TEXT_TYPE:
        """Async :meth:`get_response`."""
        sources = [Source(t) for t in text_chunks if t.strip()]
        gen = self._pleias_llm.generation_kwargs(**response_kwargs)
        backend = self._pleias_llm.backend
        if not self._streaming:
            return visible_text(await backend.aanswer(query_str, sources, **gen))
        fold = VisibleText()
        events = backend.astream(query_str, sources, **gen)
        return (d async for e in events if (d := fold.step(e)))


def _step(
    fold: VisibleText,
    event: Event,
    response: StreamingResponse | AsyncStreamingResponse,
    converted: NodeSources,
    extra: list[NodeWithScore],
) -> str:
    """The text ``event`` adds; the answer fills the response's nodes and metadata first."""
    if isinstance(event, Finished):
        _fill(response, event.answer, converted, extra)
    return fold.step(event)


def _nothing() -> Generator[str, None, None]:
    yield from ()


def _as_llm(
    model: PleiasLLM | str | os.PathLike[str] | Backend, kwargs: dict[str, Any]
) -> PleiasLLM:
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
    """Response metadata when no node had text to answer from."""
    return {
        "citations": [],
        "cited_node_ids": [],
        "skipped_node_ids": converted.skipped_node_ids,
        "pleias_answer": None,
    }
