"""``create_pleias_rag_tool``: a Pleias RAG chain as the tool of an agent.

A Pleias model does not call tools, so it cannot be an agent's brain; it is the tool an agent
calls to answer from documents with quotes. The tool's content (what the agent's model reads)
is the answer with ``[n]`` markers and a short numbered list of the quoted sources; its
artifact (what the application gets, never sent to the model) is the chain's whole output:
the checked citations and the cited documents.

In an agent the numbers run on from call to call: the second call's sources are ``[2]``,
``[3]``... when the first one's was ``[1]``, so that the brain's final answer can cite both
without two ``[1]``; each artifact's ``number_offset`` maps a number back to its citation.
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from collections.abc import Callable, Iterable, Mapping
from typing import Annotated, Any, Literal, TypeGuard

from langchain_core.callbacks import AsyncCallbackManagerForToolRun, CallbackManagerForToolRun
from langchain_core.documents import Document
from langchain_core.messages import BaseMessage, ToolMessage
from langchain_core.runnables import Runnable, RunnableConfig
from langchain_core.runnables.config import patch_config
from langchain_core.tools import ArgsSchema, BaseTool, InjectedToolArg, ToolException
from pydantic import BaseModel, ConfigDict, Field

from pleias_rag.answer import PleiasAnswer
from pleias_rag.backend import Backend
from pleias_rag.errors import InvalidArgument
from pleias_rag.numbering import renumber
from pleias_rag.views.plain import answer_with_sources

from ._convert import documents_to_sources, rebuild_answer
from .chains import PleiasRAGChain, blank_retrieval_fails, create_pleias_rag_chain

#: The tool's name when none is given.
DEFAULT_NAME = "answer_from_documents"
#: The tool's description when none is given (the agent's model reads it).
DEFAULT_DESCRIPTION = (
    "Answers a question from the document collection, quoting the documents it uses. "
    "Give one standalone question: spell out what pronouns and references to the "
    "conversation stand for. Returns the answer with [n] citation markers, then the "
    "numbered sources with the quoted text. The numbers run on across calls: cite them "
    "as they are."
)
#: The artifact key of the number added to the chain's marker numbers in the content.
NUMBER_OFFSET_KEY = "number_offset"


class PleiasRAGToolInput(BaseModel):
    """What the agent's model gives the tool."""

    query: str = Field(
        description="A standalone question, understandable without the conversation."
    )
    runtime: Annotated[Any, InjectedToolArg] = None
    """The agent's tool runtime, given by LangGraph's ``ToolNode`` (never by the model): its
    state tells which citation numbers earlier calls used."""


class PleiasRAGTool(BaseTool):
    """A :class:`~langchain_pleias.PleiasRAGChain` as a tool with content and artifact.

    Build it with :func:`create_pleias_rag_tool`. Called with a tool call, it returns a
    ``ToolMessage`` whose ``content`` is the answer with ``[n]`` markers followed by
    ``Sources:`` and one line per cited source (title or url, and the quote), and whose
    ``artifact`` is the chain's output ``{"input", "context", "answer", "citations",
    "cited_documents"}`` plus ``number_offset``. A LangGraph checkpointer stores the
    artifact's documents as dicts: :meth:`load_artifact` gives them back as documents.

    Numbers do not collide across the calls of a conversation: run by LangGraph's
    ``ToolNode`` (``create_agent``), the tool reads the agent's state and numbers its sources
    after the highest number an earlier call of a Pleias tool showed (parallel calls of one
    step take their numbers in the order they finish). The content's ``[n]`` is the
    artifact citation whose ``extras["number"]`` is ``n - number_offset``
    (``number_offset`` is 0 outside an agent, and for the first call).

    An empty query, and a retrieval whose documents are all blank (no text), are a
    :class:`~langchain_core.tools.ToolException`; with
    ``handle_tool_error=True`` (the default) the agent's model reads what was wrong, in an
    error ``ToolMessage``, and can call again.

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
    handle_tool_error: bool | str | Callable[[ToolException], str] | None = True
    """``True`` (the default): a :class:`~langchain_core.tools.ToolException` (an empty
    query, only blank documents retrieved) becomes an error ``ToolMessage`` the agent's
    model reads; ``False`` raises it."""
    chain: PleiasRAGChain
    """The chain answering the tool's queries."""

    model_config = ConfigDict(arbitrary_types_allowed=True)

    def _run(
        self,
        query: str,
        runtime: Any = None,
        run_manager: CallbackManagerForToolRun | None = None,
        config: RunnableConfig | None = None,
    ) -> tuple[str, dict[str, Any]] | str:
        question = _checked_query(query)
        with blank_retrieval_fails():  # an agent reads it and tries another query
            result = self.chain.invoke(question, _chain_config(run_manager, config))
        return self._output(result, runtime)

    async def _arun(
        self,
        query: str,
        runtime: Any = None,
        run_manager: AsyncCallbackManagerForToolRun | None = None,
        config: RunnableConfig | None = None,
    ) -> tuple[str, dict[str, Any]] | str:
        question = _checked_query(query)
        with blank_retrieval_fails():  # an agent reads it and tries another query
            result = await self.chain.ainvoke(question, _chain_config(run_manager, config))
        return self._output(result, runtime)

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

    def _output(self, result: dict[str, Any], runtime: Any) -> tuple[str, dict[str, Any]] | str:
        answer = _answer(result)
        offset = _reserve_numbers(runtime, _highest_number(answer))
        content = answer_with_sources(_renumbered(answer, offset))
        if self.response_format != "content_and_artifact":
            return content
        return content, {**result, NUMBER_OFFSET_KEY: offset}


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

    In an agent, the numbers of each call follow those of the calls before it (the artifact's
    ``number_offset`` says by how much), so the brain's final answer can cite several calls;
    :class:`~langchain_pleias.PleiasCitationsMiddleware` maps its ``[n]`` back to the
    documents. An empty query, or a retrieval that found only blank documents, is an error
    the agent's model reads (a ``ToolException``).

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
        >>> message.artifact["number_offset"]  # not in an agent: numbered from 1
        0
        >>> print(tool.invoke({"query": " "}))  # an error the agent's model reads
        the query is empty: give the tool a standalone question (got ' ')
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


def _checked_query(query: Any) -> str:
    """The agent's query; a :class:`ToolException` the agent can act on when it is empty."""
    if not isinstance(query, str):
        raise ToolException(
            f"the query must be a string, got {type(query).__name__}: give the tool a "
            "standalone question"
        )
    if not query.strip():
        raise ToolException(
            f"the query is empty: give the tool a standalone question (got {query!r})"
        )
    return query


def _answer(result: Mapping[str, Any]) -> PleiasAnswer:
    """The chain output ``result`` as a :class:`PleiasAnswer` over its context documents,
    numbered as the chain numbered it."""
    return rebuild_answer(
        str(result.get("answer", "")),
        list(result.get("citations", ())),
        (),
        documents_to_sources(list(result.get("context", ())), argument="context"),
    )


def _numbered_answer(artifact: Mapping[str, Any]) -> PleiasAnswer:
    """The answer of a tool artifact (documents loaded), numbered as its tool content is."""
    return _renumbered(_answer(artifact), _offset_of(artifact))


def _renumbered(answer: PleiasAnswer, offset: int) -> PleiasAnswer:
    """``answer`` with each ``[n]`` marker (and citation number) made ``[n + offset]``."""
    if offset == 0:
        return answer
    return renumber(answer, lambda c: c.number + offset)


def _highest_number(answer: PleiasAnswer) -> int:
    return max((c.number for c in answer.citations), default=0)


# --------------------------------------------------------------------------- numbering


def _is_tool_artifact(artifact: Any) -> TypeGuard[Mapping[str, Any]]:
    """Whether ``artifact`` is the artifact of a :class:`PleiasRAGTool` message."""
    return isinstance(artifact, Mapping) and "citations" in artifact and "context" in artifact


def _offset_of(artifact: Mapping[str, Any]) -> int:
    value = artifact.get(NUMBER_OFFSET_KEY, 0)
    return value if isinstance(value, int) and value >= 0 else 0


def _highest_shown_number(messages: Iterable[Any]) -> int:
    """The highest ``[n]`` the Pleias tool messages among ``messages`` showed (0: none)."""
    highest = 0
    for message in messages:
        artifact = getattr(message, "artifact", None)
        if not isinstance(message, ToolMessage) or not _is_tool_artifact(artifact):
            continue
        offset = _offset_of(artifact)
        for ann in artifact.get("citations", ()):
            extras = ann.get("extras") if isinstance(ann, Mapping) else None
            number = extras.get("number") if isinstance(extras, Mapping) else None
            if isinstance(number, int):
                highest = max(highest, offset + number)
    return highest


class _Step:
    """The numbers handed out to the parallel tool calls of one agent step."""

    def __init__(self) -> None:
        self.used = 0
        self.calls: dict[str, tuple[int, int]] = {}


#: Agent steps whose parallel calls are being numbered, newest last (a few hundred kept).
_STEPS: OrderedDict[str, _Step] = OrderedDict()
_STEPS_KEPT = 256
_STEPS_LOCK = threading.Lock()


def _reserve_numbers(runtime: Any, count: int) -> int:
    """The offset of a call's ``count`` numbers: after every number shown in the agent's
    state, and after those already given to the other calls of the same step.

    Outside a LangGraph ``ToolNode`` (no ``runtime``) the numbers start at 1 (offset 0).
    """
    state = getattr(runtime, "state", None)
    messages = (
        state.get("messages") if isinstance(state, Mapping) else getattr(state, "messages", None)
    )
    if not isinstance(messages, list):
        return 0
    base = _highest_shown_number(messages)
    call_id = getattr(runtime, "tool_call_id", None)
    step_id = _step_id(messages, call_id)
    if call_id is None or step_id is None:
        return base
    with _STEPS_LOCK:
        step = _STEPS.get(step_id)
        if step is None:
            step = _STEPS[step_id] = _Step()
            while len(_STEPS) > _STEPS_KEPT:
                _STEPS.popitem(last=False)
        kept = step.calls.get(call_id)
        if kept is not None and kept[1] >= count:
            return kept[0]  # the same call run again (a retry): its numbers again
        offset = max(base, step.used)
        step.used = offset + count
        step.calls[call_id] = (offset, count)
        return offset


def _step_id(messages: list[Any], call_id: str | None) -> str | None:
    """The id of the AI message that made tool call ``call_id`` (the agent step)."""
    if call_id is None:
        return None
    for message in reversed(messages):
        calls = getattr(message, "tool_calls", None) or ()
        if any(c.get("id") == call_id for c in calls):
            ident = getattr(message, "id", None)
            return str(ident) if ident else None
    return None
