"""``create_pleias_rag_tool``: a Pleias RAG chain as the tool of an agent.

A Pleias model does not call tools, so it cannot be an agent's brain; it is the tool an agent
calls to answer from documents with quotes. The tool's content (what the agent's model reads)
is the answer with ``[n]`` markers and a short numbered list of the quoted sources; its
artifact (what the application gets, never sent to the model) is the chain's whole output:
the checked citations and the cited documents.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Literal

from langchain_core.callbacks import AsyncCallbackManagerForToolRun, CallbackManagerForToolRun
from langchain_core.documents import Document
from langchain_core.messages import BaseMessage, ToolMessage
from langchain_core.runnables import Runnable, RunnableConfig
from langchain_core.runnables.config import patch_config
from langchain_core.tools import ArgsSchema, BaseTool
from pydantic import BaseModel, ConfigDict, Field

from pleias_rag.backend import Backend
from pleias_rag.errors import InvalidArgument
from pleias_rag.views.plain import answer_with_sources

from ._convert import documents_to_sources, rebuild_answer
from .chains import PleiasRAGChain, create_pleias_rag_chain

#: The tool's name when none is given.
DEFAULT_NAME = "answer_from_documents"
#: The tool's description when none is given (the agent's model reads it).
DEFAULT_DESCRIPTION = (
    "Answers a question from the document collection, quoting the documents it uses. "
    "Give one standalone question: spell out what pronouns and references to the "
    "conversation stand for. Returns the answer with [n] citation markers, then the "
    "numbered sources with the quoted text."
)
#: Longest quote shown in the tool's content (longer ones are cut with "…").


class PleiasRAGToolInput(BaseModel):
    """What the agent's model gives the tool."""

    query: str = Field(
        description="A standalone question, understandable without the conversation."
    )


class PleiasRAGTool(BaseTool):
    """A :class:`~langchain_pleias.PleiasRAGChain` as a tool with content and artifact.

    Build it with :func:`create_pleias_rag_tool`. Called with a tool call, it returns a
    ``ToolMessage`` whose ``content`` is the answer with ``[n]`` markers followed by
    ``Sources:`` and one line per cited source (title or url, and the quote), and whose
    ``artifact`` is the chain's output ``{"input", "context", "answer", "citations",
    "cited_documents"}``. A LangGraph checkpointer stores the artifact's documents as dicts:
    :meth:`load_artifact` gives them back as documents.

    Examples:
        >>> from langchain_core.runnables import RunnableLambda
        >>> from langchain_pleias import PleiasRAGTool, create_pleias_rag_tool
        >>> from pleias_rag.testing import cached_trained_model
        >>> retriever = RunnableLambda(lambda question: [])  # e.g. store.as_retriever()
        >>> tool = create_pleias_rag_tool(retriever, str(cached_trained_model("hash")))
        >>> isinstance(tool, PleiasRAGTool), tool.response_format, tool.args
        (True, 'content_and_artifact', {'query': {...}})
    """

    name: str = DEFAULT_NAME
    description: str = DEFAULT_DESCRIPTION
    args_schema: ArgsSchema | None = PleiasRAGToolInput
    response_format: Literal["content", "content_and_artifact"] = "content_and_artifact"
    """``content_and_artifact`` (the default); ``content`` drops the artifact."""
    chain: PleiasRAGChain
    """The chain answering the tool's queries."""

    model_config = ConfigDict(arbitrary_types_allowed=True)

    def _run(
        self,
        query: str,
        run_manager: CallbackManagerForToolRun | None = None,
        config: RunnableConfig | None = None,
    ) -> tuple[str, dict[str, Any]] | str:
        return self._output(self.chain.invoke(query, _chain_config(run_manager, config)))

    async def _arun(
        self,
        query: str,
        run_manager: AsyncCallbackManagerForToolRun | None = None,
        config: RunnableConfig | None = None,
    ) -> tuple[str, dict[str, Any]] | str:
        return self._output(await self.chain.ainvoke(query, _chain_config(run_manager, config)))

    @staticmethod
    def load_artifact(message: ToolMessage | Mapping[str, Any]) -> dict[str, Any]:
        """The artifact of this tool's ``ToolMessage``, its documents as ``Document`` objects.

        A LangGraph checkpointer stores the documents of an artifact as plain dicts; this
        turns them back into documents (and leaves an in-memory artifact as it is).

        Args:
            message: the tool's ``ToolMessage``, or its artifact.

        Raises:
            ValueError: the message has no artifact of this tool.

        Examples:
            >>> from langchain_core.messages import ToolMessage
            >>> from langchain_pleias import PleiasRAGTool
            >>> stored = {"page_content": "Some text.", "metadata": {}, "type": "Document"}
            >>> artifact = {"citations": [], "cited_documents": [stored]}  # as checkpointed
            >>> message = ToolMessage("...", tool_call_id="call-1", artifact=artifact)
            >>> PleiasRAGTool.load_artifact(message)["cited_documents"]
            [Document(metadata={}, page_content='Some text.')]
        """
        artifact = message.artifact if isinstance(message, ToolMessage) else message
        if not isinstance(artifact, Mapping) or "citations" not in artifact:
            raise InvalidArgument("not the artifact of a PleiasRAGTool message")
        out = dict(artifact)
        for key in ("context", "cited_documents"):
            if key in out:
                out[key] = [
                    d if isinstance(d, Document) else Document.model_validate(d) for d in out[key]
                ]
        return out

    def _output(self, result: dict[str, Any]) -> tuple[str, dict[str, Any]] | str:
        content = _tool_content(result)
        return (content, result) if self.response_format == "content_and_artifact" else content


def create_pleias_rag_tool(
    retriever: Runnable[str, list[Document]],
    llm: Runnable[Any, BaseMessage] | str | Backend,
    *,
    name: str = DEFAULT_NAME,
    description: str = DEFAULT_DESCRIPTION,
) -> PleiasRAGTool:
    """A tool that retrieves documents and answers from them with a Pleias model.

    Give it to an agent whose brain is a tool-calling chat model (a Pleias model cannot be
    the brain: it does not call tools). The tool takes ``{"query": question}``; it runs
    :func:`create_pleias_rag_chain` on the question and answers in two parts
    (``response_format="content_and_artifact"``):

    - the content, which the agent's model reads: the answer with ``[n]`` markers, then
      ``Sources:`` and one line per marker number, ``[n] <title or url>: "<quote>"`` (quotes
      that were not found in their source are flagged; ``Sources: none cited.`` when the
      answer cites nothing);
    - the artifact, kept in the ``ToolMessage`` (and so in the agent's state) but never sent
      to a model: the chain's output ``{"input", "context", "answer", "citations",
      "cited_documents"}``, with the standard citation annotations and annotated copies of
      the cited documents, for the application to show once the agent is done.

    Follow-up questions are the brain's job here: it sees the conversation and writes the
    tool's query (the default description asks for a standalone question).

    Args:
        retriever: any runnable from a question to a list of ``Document`` (a retriever).
        llm: a ``ChatPleias`` (possibly bound), or a model name, folder or backend.
        name: the tool's name, as the agent's model sees it.
        description: what the tool does, as the agent's model sees it.

    Returns:
        The tool.

    Raises:
        ValueError: ``llm`` is not a Pleias chat model (see :func:`create_pleias_rag_chain`).

    Examples:
        >>> from langchain_core.documents import Document
        >>> from langchain_core.runnables import RunnableLambda
        >>> from langchain_pleias import ChatPleias, create_pleias_rag_tool
        >>> from pleias_rag.testing import cached_trained_model
        >>> docs = [
        ...     Document(
        ...         "The Moon orbits the Earth about once every 27 days. "
        ...         "Its gravity causes the tides.",
        ...         metadata={"title": "The Moon"},
        ...     ),
        ...     Document(
        ...         "The Louvre is the most visited museum in the world. "
        ...         "It houses the Mona Lisa.",
        ...         metadata={"title": "The Louvre"},
        ...     ),
        ...     Document("Green tea comes from the leaves of Camellia sinensis."),
        ... ]
        >>> retriever = RunnableLambda(lambda question: docs)  # e.g. store.as_retriever()
        >>> chat = ChatPleias(model=str(cached_trained_model("hash")), max_tokens=128)
        >>> tool = create_pleias_rag_tool(retriever, chat)
        >>> message = tool.invoke(
        ...     {
        ...         "type": "tool_call",
        ...         "id": "call-1",
        ...         "name": tool.name,
        ...         "args": {"query": "What causes the tides, and what is in the Louvre?"},
        ...     }
        ... )
        >>> print(message.content)
        The Moon's gravity causes the tides[1]. The Louvre houses the Mona Lisa[2].
        <BLANKLINE>
        Sources:
        [1] The Moon: "Its gravity causes the tides."
        [2] The Louvre: "It houses the Mona Lisa."
        >>> [d.metadata["title"] for d in message.artifact["cited_documents"]]
        ['The Moon', 'The Louvre']
        >>> [c["extras"]["status"] for c in message.artifact["citations"]]
        ['verified', 'verified']
    """
    chain = create_pleias_rag_chain(retriever, llm)
    return PleiasRAGTool(chain=chain, name=name, description=description)


def _chain_config(
    run_manager: CallbackManagerForToolRun | AsyncCallbackManagerForToolRun | None,
    config: RunnableConfig | None,
) -> RunnableConfig:
    """``config`` for the chain run, traced as a child of the tool run."""
    callbacks = run_manager.get_child() if run_manager is not None else None
    return patch_config(config, callbacks=callbacks)


# --------------------------------------------------------------------------- content


def _tool_content(result: Mapping[str, Any]) -> str:
    """What the agent reads: the answer, then the numbered sources it quotes.

    ``result`` is a :class:`~langchain_pleias.PleiasRAGChain` output.
    """
    answer = rebuild_answer(
        str(result.get("answer", "")),
        list(result.get("citations", ())),
        (),
        documents_to_sources(list(result.get("context", ())), argument="context"),
    )
    return answer_with_sources(answer)
