"""``PleiasQueryEngine``: retrieval + :class:`PleiasSynthesizer` in one object."""

from __future__ import annotations

import os
from typing import TYPE_CHECKING, Any

from llama_index.core.base.base_retriever import BaseRetriever
from llama_index.core.callbacks.base import CallbackManager
from llama_index.core.indices.base import BaseIndex
from llama_index.core.postprocessor.types import BaseNodePostprocessor
from llama_index.core.query_engine import RetrieverQueryEngine

from ._convert import DEFAULT_MODEL
from .llms import PleiasLLM
from .synthesizer import PleiasSynthesizer

if TYPE_CHECKING:
    from pleias_rag.generation import Backend


class PleiasQueryEngine(RetrieverQueryEngine):
    """A ``RetrieverQueryEngine`` answering with a :class:`PleiasSynthesizer`.

    ``query``/``aquery`` return a ``Response`` whose source nodes are the cited nodes only
    (see :class:`PleiasSynthesizer`); with ``streaming=True`` they return a
    ``StreamingResponse``/``AsyncStreamingResponse`` that yields the answer text and fills the
    source nodes and metadata at the end. No default LlamaIndex LLM is ever resolved.

    Build one with :meth:`from_index` or :meth:`from_retriever`, or directly from a retriever
    and a synthesizer.

    Example:
        >>> from llama_index.core import Document, VectorStoreIndex
        >>> from llama_index.core.embeddings import MockEmbedding
        >>> from llama_index_pleias import PleiasQueryEngine
        >>> index = VectorStoreIndex.from_documents(
        ...     [Document(text="The Eiffel Tower was completed in 1889.")],
        ...     embed_model=MockEmbedding(embed_dim=8),
        ... )
        >>> engine = PleiasQueryEngine.from_index(
        ...     index, model="PleIAs/Pleias-RAG-350M", similarity_top_k=4
        ... )
        >>> response = engine.query("When was the tower completed?")  # doctest: +SKIP
        >>> print(response, [n.node_id for n in response.source_nodes])  # doctest: +SKIP
    """

    def __init__(
        self,
        retriever: BaseRetriever,
        response_synthesizer: PleiasSynthesizer,
        node_postprocessors: list[BaseNodePostprocessor] | None = None,
        callback_manager: CallbackManager | None = None,
    ) -> None:
        if not isinstance(response_synthesizer, PleiasSynthesizer):
            raise TypeError("PleiasQueryEngine answers with a PleiasSynthesizer")
        super().__init__(
            retriever=retriever,
            response_synthesizer=response_synthesizer,
            node_postprocessors=node_postprocessors,
            callback_manager=callback_manager,
        )

    @property
    def synthesizer(self) -> PleiasSynthesizer:
        """The synthesizer answering the queries."""
        synth = self._response_synthesizer
        assert isinstance(synth, PleiasSynthesizer)
        return synth

    @classmethod
    def from_retriever(
        cls,
        retriever: BaseRetriever,
        *,
        model: PleiasLLM | str | os.PathLike[str] | Backend = DEFAULT_MODEL,
        node_postprocessors: list[BaseNodePostprocessor] | None = None,
        streaming: bool = False,
        callback_manager: CallbackManager | None = None,
        **synthesizer_kwargs: Any,
    ) -> PleiasQueryEngine:
        """A query engine over ``retriever``.

        Args:
            retriever: any LlamaIndex retriever; its nodes are the sources, in its order.
            model: a :class:`PleiasLLM`, a model id or folder, or a pleias_rag backend.
            node_postprocessors: run on the retrieved nodes before answering (for instance a
                :class:`PleiasReranker` or a similarity cutoff).
            streaming: return streaming responses.
            callback_manager: LlamaIndex callback manager.
            **synthesizer_kwargs: :class:`PleiasSynthesizer` arguments (``metadata_header``,
                ``on_invalid_node``, ``max_new_tokens``, ``temperature``...).
        """
        synthesizer = PleiasSynthesizer(
            model, streaming=streaming, callback_manager=callback_manager, **synthesizer_kwargs
        )
        return cls(
            retriever,
            synthesizer,
            node_postprocessors=node_postprocessors,
            callback_manager=callback_manager,
        )

    @classmethod
    def from_index(
        cls,
        index: BaseIndex[Any],
        *,
        model: PleiasLLM | str | os.PathLike[str] | Backend = DEFAULT_MODEL,
        similarity_top_k: int = 5,
        node_postprocessors: list[BaseNodePostprocessor] | None = None,
        streaming: bool = False,
        retriever_kwargs: dict[str, Any] | None = None,
        callback_manager: CallbackManager | None = None,
        **synthesizer_kwargs: Any,
    ) -> PleiasQueryEngine:
        """A query engine over ``index.as_retriever(similarity_top_k=...)``.

        Pleias-RAG-350M/1B were trained with 1 to 10 sources, and the prompt must fit the
        context window: keep ``similarity_top_k`` modest (sources that do not fit are dropped
        and listed in ``metadata["dropped_node_ids"]``).
        """
        if similarity_top_k < 1:
            raise ValueError("similarity_top_k must be at least 1")
        retriever = index.as_retriever(
            similarity_top_k=similarity_top_k, **(retriever_kwargs or {})
        )
        return cls.from_retriever(
            retriever,
            model=model,
            node_postprocessors=node_postprocessors,
            streaming=streaming,
            callback_manager=callback_manager,
            **synthesizer_kwargs,
        )
