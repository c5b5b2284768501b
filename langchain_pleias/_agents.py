"""``PleiasCitationsMiddleware``: the agent's final answer carries the tools' citations.

A LangChain 1.x agent middleware (``create_agent(..., middleware=[...])``). The brain reads
the Pleias tool's content (the answer with ``[n]`` markers, and the numbered sources) and
copies the markers into its own answer; this middleware maps each ``[n]`` of that final
answer back to the citation and the documents of the tool call that showed it, and puts them
on the final ``AIMessage``. It needs the ``langchain`` package (``pip install langchain``),
which ``create_agent`` needs anyway.
"""

from __future__ import annotations

import re
from collections.abc import Awaitable, Callable, Iterable, Mapping, Sequence
from typing import Any

from langchain.agents.middleware import AgentMiddleware, AgentState, ModelRequest, ModelResponse
from langchain.agents.middleware.types import ExtendedModelResponse
from langchain_core.documents import Document
from langchain_core.messages import AIMessage, BaseMessage, ToolMessage

from pleias_rag.answer import Citation
from pleias_rag.views.labels import by_number

from ._compat import claim_span
from .tools import PleiasRAGTool, _is_tool_artifact, _numbered_answer

#: ``response_metadata`` key of the final answer's markers, each with its documents.
METADATA_KEY = "pleias_citations"
#: ``extras`` key marking the citation annotations this middleware adds.
MARKER_KEY = "pleias_marker"
#: A citation marker the brain wrote: ``[3]``, or a group such as ``[2, 3]``.
MARKER = re.compile(r"\[(\d+(?:\s*[,;]\s*\d+)*)\]")

_ModelResult = ModelResponse[Any] | AIMessage | ExtendedModelResponse[Any]


class _Claim:
    """What a number stands for: the tool call that showed it, and its citations."""

    def __init__(self, message: ToolMessage, artifact: Mapping[str, Any], cites: list[Citation]):
        self.message = message
        self.artifact = artifact
        self.cites = cites

    def documents(self) -> list[Document]:
        """The documents of the source the number names (none for an unknown id)."""
        seen: dict[int, Document] = {}
        for c in self.cites:
            for s in c.sources:
                if isinstance(s.ref, Document):
                    seen.setdefault(id(s.ref), s.ref)
        return list(seen.values())

    def annotations(self) -> list[dict[str, Any]]:
        """The tool artifact's citation annotations of this number."""
        offset = int(self.artifact.get("number_offset", 0) or 0)
        numbers = {c.number - offset for c in self.cites}
        return [
            dict(ann)
            for ann in self.artifact.get("citations", ())
            if isinstance(ann, Mapping) and (ann.get("extras") or {}).get("number") in numbers
        ]


class PleiasCitationsMiddleware(AgentMiddleware[AgentState[Any], Any, Any]):
    """Puts the Pleias tools' citations on the agent's final answer.

    Give it to ``create_agent`` next to a :func:`~langchain_pleias.create_pleias_rag_tool`
    tool. Each call of the tool numbers its sources after those of the calls before it, so a
    number names one source of one call in the whole conversation; when the brain answers
    (an ``AIMessage`` without tool calls), each ``[n]`` marker it wrote (``[2, 3]`` counts as
    two) is looked up among the Pleias tool messages of the agent's state:

    - ``response_metadata["pleias_citations"]``: one entry per marker, in order,
      ``{"marker", "number", "start_index", "end_index", "tool_call_id", "citations",
      "documents"}``: the span of the marker in ``message.text``, the tool call that showed
      the number, that call's citation annotations of it (quote, status...) and the
      retrieved documents of the source it names. A marker no tool call showed (the brain
      invented it) or that two calls showed (tool messages from before this numbering) has
      ``tool_call_id`` None and no citations or documents; so has a number whose source id
      the Pleias model made up (its citation, ``unknown_source``, is kept): a marker never
      maps to a wrong document.
    - with ``annotate_content=True`` (the default), the message's content becomes standard
      content blocks (``response_metadata["output_version"] = "v1"``) whose text blocks
      carry one LangChain ``Citation`` annotation per quote of each mapped marker: ``id``
      unique in the message, ``start_index``/``end_index`` the claim the marker supports in
      the block's text (the same rule as a ``ChatPleias`` reply: from the previous marker or
      the start of the sentence up to the marker), ``cited_text`` the source's words,
      ``title``/``url`` of the document, and in ``extras`` the marker (and its span,
      ``answer_start``/``answer_end``), the number, the tool call id, the source id, the
      status and the match. ``message.text`` is unchanged. Before each later model call the
      middleware takes these annotations off again, so the brain's provider gets its own
      message back.

    The final message is left as it is when the conversation has no Pleias tool results.
    A LangGraph checkpointer stores the documents as dicts (``Document.model_validate``
    gives them back).

    Args:
        annotate_content: also add the citations to the message's content blocks.

    Examples:
        >>> from collections.abc import Sequence
        >>> from typing import Any
        >>> from langchain.agents import create_agent
        >>> from langchain_core.documents import Document
        >>> from langchain_core.language_models.fake_chat_models import GenericFakeChatModel
        >>> from langchain_core.messages import AIMessage, HumanMessage
        >>> from langchain_core.runnables import RunnableLambda
        >>> from langchain_pleias import ChatPleias, PleiasCitationsMiddleware
        >>> from langchain_pleias import create_pleias_rag_tool
        >>> from pleias_rag.testing import cached_trained_model
        >>> class Brain(GenericFakeChatModel):  # a scripted tool-calling chat model
        ...     def bind_tools(self, tools: Sequence[Any], **kwargs: Any) -> "Brain":
        ...         return self
        >>> eiffel = (
        ...     "The Eiffel Tower is a wrought-iron lattice tower in Paris. "
        ...     "It was completed in 1889 for the World's Fair."
        ... )
        >>> louvre = "The Louvre is the most visited museum in the world. It houses the Mona Lisa."
        >>> docs = [Document(eiffel, metadata={"title": "Eiffel Tower"}), Document(louvre)]
        >>> chat = ChatPleias(model=str(cached_trained_model("hash")), max_tokens=96)
        >>> tool = create_pleias_rag_tool(RunnableLambda(lambda question: docs), chat)
        >>> question = "When was the Eiffel Tower completed?"
        >>> call = {"name": tool.name, "args": {"query": question}, "id": "call-1"}
        >>> brain = Brain(
        ...     messages=iter([AIMessage("", tool_calls=[call]), AIMessage("In 1889 [1].")])
        ... )
        >>> agent = create_agent(brain, [tool], middleware=[PleiasCitationsMiddleware()])
        >>> final = agent.invoke({"messages": [HumanMessage(question)]})["messages"][-1]
        >>> final.text
        'In 1889 [1].'
        >>> (entry,) = final.response_metadata["pleias_citations"]
        >>> entry["marker"], entry["tool_call_id"], [d.metadata for d in entry["documents"]]
        ('[1]', 'call-1', [{'title': 'Eiffel Tower'}])
        >>> [(a["title"], a["cited_text"]) for a in final.content_blocks[0]["annotations"]]
        [('Eiffel Tower', "It was completed in 1889 for the World's Fair.")]
    """

    def __init__(self, *, annotate_content: bool = True) -> None:
        super().__init__()
        self.annotate_content = annotate_content

    def wrap_model_call(
        self,
        request: ModelRequest[Any],
        handler: Callable[[ModelRequest[Any]], ModelResponse[Any]],
    ) -> _ModelResult:
        """Call the brain without this middleware's annotations; annotate its final answer.

        Args:
            request: the model call.
            handler: runs the model call.

        Returns:
            The brain's response, its final answer carrying the citations.
        """
        return self._annotated(request, handler(_unannotated(request)))

    async def awrap_model_call(
        self,
        request: ModelRequest[Any],
        handler: Callable[[ModelRequest[Any]], Awaitable[ModelResponse[Any]]],
    ) -> _ModelResult:
        """:meth:`wrap_model_call` for an async agent run.

        Args:
            request: the model call.
            handler: runs the model call.

        Returns:
            The brain's response, its final answer carrying the citations.
        """
        return self._annotated(request, await handler(_unannotated(request)))

    def cite(self, message: AIMessage, messages: Sequence[BaseMessage]) -> AIMessage:
        """``message`` carrying the citations of the Pleias tool messages of ``messages``.

        What the middleware does to the brain's final answer, for a message and conversation
        at hand (an agent run outside ``create_agent``, a stored conversation).

        Args:
            message: the brain's answer.
            messages: the conversation, with the Pleias tool messages.

        Returns:
            A copy of ``message`` with the citations (``message`` itself when the
            conversation has no Pleias tool results).
        """
        claims = _claims(messages)
        if claims is None:
            return message
        blocks: list[dict[str, Any]] = [dict(b) for b in message.content_blocks]
        entries: list[dict[str, Any]] = []
        annotated = False
        at = 0  # where the block's text starts in message.text
        count = 0
        for block in blocks:
            if block.get("type") != "text":
                continue
            text = str(block.get("text", ""))
            added: list[dict[str, Any]] = []
            found = list(MARKER.finditer(text))
            markers = [m.span() for m in found]
            for match in found:
                span = claim_span(text, match.span(), markers)
                for number in (int(n) for n in re.split(r"\s*[,;]\s*", match.group(1))):
                    claim = claims.get(number)
                    entries.append(_entry(match, number, at, claim))
                    if claim is None:
                        continue  # invented, or ambiguous: it maps to nothing
                    for c in claim.cites:
                        if c.sources:  # an unknown id names no document
                            count += 1
                            ident = f"pleias-{count}"
                            added.append(_annotation(c, match, span, number, claim, ident))
            if added:
                block["annotations"] = [*block.get("annotations", ()), *added]
                annotated = True
            at += len(text)
        metadata = {**message.response_metadata, METADATA_KEY: entries}
        update: dict[str, Any] = {"response_metadata": metadata}
        if annotated and self.annotate_content:
            update["content"] = blocks
            metadata["output_version"] = "v1"
        return message.model_copy(update=update)

    def _annotated(self, request: ModelRequest[Any], result: _ModelResult) -> _ModelResult:
        if isinstance(result, AIMessage):
            return self._final(request, result)
        response = result.model_response if isinstance(result, ExtendedModelResponse) else result
        messages = list(response.result)
        for i in range(len(messages) - 1, -1, -1):
            message = messages[i]
            if isinstance(message, AIMessage):
                messages[i] = self._final(request, message)
                break
        response.result = messages
        return result

    def _final(self, request: ModelRequest[Any], message: AIMessage) -> AIMessage:
        if message.tool_calls:
            return message  # not the final answer yet
        state = request.state
        history = state.get("messages") if isinstance(state, Mapping) else None
        return self.cite(message, history if isinstance(history, list) else request.messages)


def _claims(messages: Iterable[BaseMessage]) -> dict[int, _Claim | None] | None:
    """Each number the Pleias tool messages showed, and what it stands for (None: shown by
    two calls). None when no message is a Pleias tool result."""
    claims: dict[int, _Claim | None] = {}
    found = False
    for message in messages:
        if not isinstance(message, ToolMessage) or not _is_tool_artifact(message.artifact):
            continue
        found = True
        artifact = PleiasRAGTool.load_artifact(message)
        for number, cites in by_number(_numbered_answer(artifact).citations).items():
            claims[number] = _Claim(message, artifact, cites) if number not in claims else None
    return claims if found else None


def _entry(match: re.Match[str], number: int, at: int, claim: _Claim | None) -> dict[str, Any]:
    """The ``pleias_citations`` entry of one number of a marker."""
    return {
        "marker": match.group(0),
        "number": number,
        "start_index": at + match.start(),
        "end_index": at + match.end(),
        "tool_call_id": None if claim is None else claim.message.tool_call_id,
        "citations": [] if claim is None else claim.annotations(),
        "documents": [] if claim is None else claim.documents(),
    }


def _annotation(
    c: Citation,
    match: re.Match[str],
    span: tuple[int, int],
    number: int,
    claim: _Claim,
    ident: str,
) -> dict[str, Any]:
    """A standard citation annotation of quote ``c`` for a marker of the brain's answer:
    ``span`` is the claim the marker supports (:func:`~langchain_pleias._compat.claim_span`,
    as in a ``ChatPleias`` reply), the marker itself is in ``extras``."""
    src = c.sources[0]
    ann: dict[str, Any] = {
        "type": "citation",
        "id": ident,
        "start_index": span[0],
        "end_index": span[1],
        "cited_text": c.matched_text or c.quote,
    }
    if src.title:
        ann["title"] = src.title
    if src.url:
        ann["url"] = src.url
    ann["extras"] = {
        MARKER_KEY: match.group(0),
        "answer_start": match.start(),
        "answer_end": match.end(),
        "number": number,
        "tool_call_id": claim.message.tool_call_id,
        "source_id": src.id,
        "quote": c.quote,
        "status": c.status,
        "match": c.match,
    }
    return ann


def _unannotated(request: ModelRequest[Any]) -> ModelRequest[Any]:
    """``request`` without the annotations this middleware added to earlier answers."""
    messages = [_without_annotations(m) for m in request.messages]
    if all(a is b for a, b in zip(messages, request.messages, strict=True)):
        return request
    return request.override(messages=messages)


def _without_annotations(message: Any) -> Any:
    if not isinstance(message, AIMessage) or METADATA_KEY not in message.response_metadata:
        return message
    if not isinstance(message.content, list):
        return message
    content: list[Any] = []
    for block in message.content:
        if isinstance(block, dict) and block.get("annotations"):
            kept = [
                a
                for a in block["annotations"]
                if not (isinstance(a, Mapping) and MARKER_KEY in (a.get("extras") or {}))
            ]
            block = {k: v for k, v in block.items() if k != "annotations"}
            if kept:
                block["annotations"] = kept
        content.append(block)
    return message.model_copy(update={"content": content})
