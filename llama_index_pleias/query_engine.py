"""``PleiasQueryEngine``: retrieval + :class:`PleiasSynthesizer` in one object, and the
engine as an agent's tool (:meth:`PleiasQueryEngine.as_tool`)."""

from __future__ import annotations

import os
from typing import TYPE_CHECKING, Any

from llama_index.core.base.base_retriever import BaseRetriever
from llama_index.core.base.response.schema import (
    RESPONSE_TYPE,
    AsyncStreamingResponse,
    PydanticResponse,
    Response,
    StreamingResponse,
)
from llama_index.core.bridge.pydantic import BaseModel, Field
from llama_index.core.callbacks.base import CallbackManager
from llama_index.core.indices.base import BaseIndex
from llama_index.core.postprocessor.types import BaseNodePostprocessor
from llama_index.core.query_engine import RetrieverQueryEngine
from llama_index.core.tools import QueryEngineTool, ToolMetadata, ToolOutput

from pleias_rag.errors import InvalidArgument, InvalidType
from pleias_rag.views.plain import NONE_CITED, answer_with_sources

from ._convert import DEFAULT_MODEL
from .llms import PleiasLLM
from .synthesizer import PleiasSynthesizer, keep_pleias_answer, pleias_answer

if TYPE_CHECKING:
    from pleias_rag.backend import Backend

#: The tool's name when none is given.
DEFAULT_TOOL_NAME = "answer_from_documents"
#: The tool's description when none is given (the agent's LLM reads it).
DEFAULT_TOOL_DESCRIPTION = (
    "Answers a question from the document collection, quoting the documents it uses. "
    "Give one standalone question: spell out what pronouns and references to the "
    "conversation stand for. Returns the answer with [n] citation markers, then the "
    "numbered sources with the quoted text."
)
#: Longest quote shown in the tool's content (longer ones are cut with "…").


class PleiasQueryEngine(RetrieverQueryEngine):
    """A ``RetrieverQueryEngine`` answering with a :class:`PleiasSynthesizer`.

    ``query``/``aquery`` return a ``Response`` whose source nodes are the cited nodes only
    (see :class:`PleiasSynthesizer`); with ``streaming=True`` they return a
    ``StreamingResponse``/``AsyncStreamingResponse`` that yields the answer text and fills the
    source nodes and metadata at the end. No default LlamaIndex LLM is ever resolved.

    Build one with :meth:`from_index` or :meth:`from_retriever`, or directly from a retriever
    and a synthesizer.

    Examples:
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
            raise InvalidType("PleiasQueryEngine answers with a PleiasSynthesizer")
        super().__init__(
            retriever=retriever,
            response_synthesizer=response_synthesizer,
            node_postprocessors=node_postprocessors,
            callback_manager=callback_manager,
        )

    def as_tool(
        self,
        name: str = DEFAULT_TOOL_NAME,
        description: str = DEFAULT_TOOL_DESCRIPTION,
        *,
        return_direct: bool = False,
    ) -> PleiasQueryEngineTool:
        """This engine as the tool of an agent (see :class:`PleiasQueryEngineTool`).

        A Pleias model does not call tools: the agent's brain is a function-calling LLM, and
        this engine is the tool it calls to answer from documents with quotes. Follow-up
        questions are the brain's job: it writes the tool's ``input`` (the default
        description asks for a standalone question).

        Args:
            name: the tool's name, as the agent's LLM sees it.
            description: what the tool does, as the agent's LLM sees it.
            return_direct: end the agent's run with the tool's output.

        Returns:
            A ``QueryEngineTool`` whose output ``content`` is the answer and its numbered
            sources, and whose ``raw_output`` is the cited ``Response``.

        Examples:
            >>> from llama_index.core import Document, SummaryIndex
            >>> from llama_index_pleias import PleiasQueryEngine
            >>> index = SummaryIndex.from_documents([Document(text="Some notes.")])
            >>> engine = PleiasQueryEngine.from_retriever(
            ...     index.as_retriever(), model="PleIAs/Pleias-RAG-350M"  # loaded on first use
            ... )
            >>> tool = engine.as_tool(name="search_notes", description="Answers from my notes.")
            >>> tool.metadata.name, tool.metadata.get_parameters_dict()["required"]
            ('search_notes', ['input'])
        """
        metadata = ToolMetadata(
            description=description,
            name=name,
            fn_schema=PleiasToolInput,
            return_direct=return_direct,
        )
        return PleiasQueryEngineTool(query_engine=self, metadata=metadata)

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
            raise InvalidArgument("similarity_top_k must be at least 1")
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


# --------------------------------------------------------------------------- the tool


class PleiasToolInput(BaseModel):
    """What the agent's LLM gives the tool."""

    input: str = Field(
        description="A standalone question, understandable without the conversation."
    )


class PleiasQueryEngineTool(QueryEngineTool):
    """A query engine tool whose output the agent can cite and the application can show.

    Build it with :meth:`PleiasQueryEngine.as_tool`. Its ``ToolOutput`` has:

    - ``content`` (what the agent's LLM reads): the answer with ``[n]`` markers, then
      ``Sources:`` and one line per marker number, ``[n] <title or url>: "<quote>"``
      (quotes not found in their source are flagged; ``Sources: none cited.`` when the
      answer cites nothing);
    - ``raw_output``: the cited ``Response`` (never streaming: a streaming engine's answer is
      read to the end), whose ``source_nodes`` are the cited nodes with their quotes;
    - ``raw_input``: ``{"input": question}``.

    Examples:
        >>> from llama_index.core import Document, SummaryIndex
        >>> from llama_index_pleias import PleiasQueryEngine
        >>> from pleias_rag.testing import cached_trained_model
        >>> index = SummaryIndex.from_documents(
        ...     [
        ...         Document(
        ...             text="The Eiffel Tower is a wrought-iron lattice tower in Paris. "
        ...             "It was completed in 1889 for the World's Fair.",
        ...             metadata={"title": "Eiffel Tower"},
        ...             excluded_llm_metadata_keys=["title"],  # shown, not sent
        ...         ),
        ...         Document(
        ...             text="The Louvre is the most visited museum in the world. "
        ...             "It houses the Mona Lisa."
        ...         ),
        ...     ]
        ... )
        >>> engine = PleiasQueryEngine.from_retriever(
        ...     index.as_retriever(),  # e.g. a vector index's retriever
        ...     model=str(cached_trained_model("hash")),
        ...     max_new_tokens=128,
        ... )
        >>> tool = engine.as_tool()
        >>> output = tool.call(input="When was the Eiffel Tower completed?")
        >>> print(output.content)
        The Eiffel Tower was completed in 1889[1].
        <BLANKLINE>
        Sources:
        [1] Eiffel Tower: "It was completed in 1889 for the World's Fair."
        >>> [n.node.metadata["title"] for n in output.raw_output.source_nodes]
        ['Eiffel Tower']
    """

    def call(self, *args: Any, **kwargs: Any) -> ToolOutput:
        """Answer the tool call's query; the cited nodes are the tool output's sources."""
        query = self._get_query_str(*args, **kwargs)
        response = self.query_engine.query(query)
        if isinstance(response, StreamingResponse):
            response = _keep_answer(response, response.get_response())
        return self._output(query, response)

    async def acall(self, *args: Any, **kwargs: Any) -> ToolOutput:
        """:meth:`call` without blocking the event loop."""
        query = self._get_query_str(*args, **kwargs)
        response = await self.query_engine.aquery(query)
        if isinstance(response, AsyncStreamingResponse):
            response = _keep_answer(response, await response.get_response())
        elif isinstance(response, StreamingResponse):
            response = _keep_answer(response, response.get_response())
        return self._output(query, response)

    def _output(self, query: str, response: RESPONSE_TYPE) -> ToolOutput:
        return ToolOutput(
            content=_tool_content(response),
            tool_name=self.metadata.get_name(),
            raw_input={"input": query},
            raw_output=response,
        )


def _keep_answer(stream: object, response: Response) -> Response:
    """``response`` (a read stream) with the stream's ``pleias_answer`` attribute."""
    answer = pleias_answer(stream)
    if answer is not None:
        keep_pleias_answer(response, answer)
    return response


def _tool_content(response: RESPONSE_TYPE) -> str:
    """What the agent reads: the answer, then the numbered sources it quotes."""
    if isinstance(response, PydanticResponse):
        text = response.response.model_dump_json() if response.response else ""
    elif isinstance(response, Response):
        text = response.response or ""
    else:  # a stream, read to the end
        text = str(response)
    answer = pleias_answer(response)
    if answer is not None:
        return answer_with_sources(answer, text)
    return "\n\n".join(part for part in (text.strip(), NONE_CITED) if part)
