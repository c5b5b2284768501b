"""Several Pleias tool calls in one LangChain 1.x agent run (issue #14, "Agents").

- the citation numbers of the calls do not collide (they run on from call to call, parallel
  calls included), and each artifact's ``number_offset`` maps a number back to its citation;
- ``PleiasCitationsMiddleware`` puts the citations on the agent's final answer: each ``[n]``
  the brain copied maps to the document of the call that showed it; invented numbers, and
  numbers of a source id the Pleias model made up, map to nothing;
- an empty query is a ``ToolException`` the agent reads and can retry after.

The brain is scripted: each reply is given in advance, or computed from what it is shown
(to copy the tools' markers, whatever order parallel calls finish in).
"""

from __future__ import annotations

import doctest
import re
from collections.abc import Callable, Sequence
from types import SimpleNamespace
from typing import Any

import pytest
from langchain.agents import create_agent
from langchain_core.documents import Document
from langchain_core.language_models import BaseChatModel, LanguageModelInput
from langchain_core.messages import (
    AIMessage,
    BaseMessage,
    HumanMessage,
    ToolMessage,
    messages_from_dict,
    messages_to_dict,
)
from langchain_core.outputs import ChatGeneration, ChatResult
from langchain_core.runnables import Runnable, RunnableLambda
from langchain_core.tools import BaseTool, ToolException
from langgraph.checkpoint.memory import InMemorySaver
from lc_support import ScriptedBackend, example, hash_output, ref
from pydantic import Field

import langchain_pleias
from langchain_pleias import (
    ChatPleias,
    PleiasCitationsMiddleware,
    PleiasRAGTool,
    create_pleias_rag_tool,
)
from pleias_rag.sources import source_id

Reply = AIMessage | Callable[[list[BaseMessage]], AIMessage]


class Brain(BaseChatModel):
    """A tool-calling chat model whose replies are scripted; records what it is shown."""

    script: list[Any]
    seen: list[list[BaseMessage]] = Field(default_factory=list)

    @property
    def _llm_type(self) -> str:
        return "scripted-brain"

    def bind_tools(
        self,
        tools: Sequence[dict[str, Any] | type | Callable[..., Any] | BaseTool],
        **kwargs: Any,
    ) -> Runnable[LanguageModelInput, AIMessage]:
        return self

    def _generate(
        self, messages: list[BaseMessage], stop: Any = None, run_manager: Any = None, **kw: Any
    ) -> ChatResult:
        self.seen.append(list(messages))
        reply = self.script.pop(0)
        message = reply(messages) if callable(reply) else reply
        return ChatResult(generations=[ChatGeneration(message=message)])


def calls(*queries: tuple[str, str]) -> AIMessage:
    """An AI message calling the tool once per ``(call id, query)``."""
    return AIMessage(
        "",
        tool_calls=[
            {"name": "answer_from_documents", "args": {"query": q}, "id": i} for i, q in queries
        ],
    )


def copy_answers(messages: list[BaseMessage]) -> AIMessage:
    """The brain's final answer: each tool answer of this turn (markers included), in the
    order the tool messages came, then a marker no tool showed."""
    last_human = max(i for i, m in enumerate(messages) if isinstance(m, HumanMessage))
    bodies = [
        m.text.split("\n\nSources:")[0]
        for m in messages[last_human:]
        if isinstance(m, ToolMessage) and m.status == "success"
    ]
    return AIMessage(" ".join(bodies) + " See also [42].")


def numbers(content: str) -> list[int]:
    """The numbers of the ``[n] ...`` source lines of a tool content."""
    return [int(n) for n in re.findall(r"^\[(\d+)\] ", content, flags=re.M)]


def labels(content: str) -> dict[int, str]:
    """Each source line's number and label (``[n] <label>: "<quote>"``)."""
    return {int(n): label for n, label in re.findall(r'^\[(\d+)\] (.+?): "', content, flags=re.M)}


# --------------------------------------------------------------------------- documents

BEES = Document("Honey bees dance to show where flowers are.", metadata={"title": "Bees"})
MOON = Document("The Moon causes the tides.", metadata={"title": "Moon"})
TEA = Document(
    "Green tea comes from Camellia sinensis.",
    metadata={"title": "Tea", "source": "https://example.org/tea"},
)
RAW = {
    "How do bees show where flowers are?": hash_output(
        "x", "Bees dance" + ref(source_id(BEES.page_content), BEES.page_content) + "."
    ),
    "What causes the tides, and where does green tea come from?": hash_output(
        "x",
        "The Moon causes the tides"
        + ref(source_id(MOON.page_content), MOON.page_content)
        + ". Tea comes from Camellia sinensis"
        + ref(source_id(TEA.page_content), TEA.page_content)
        + ".",
    ),
    "Who wrote the tea treatise?": hash_output(
        "x", "Lu Yu" + ref("ffffffffffffffff", "Lu Yu wrote it.") + "."
    ),
}
BEES_Q, MOON_TEA_Q, UNKNOWN_Q = RAW
DOCS = {BEES_Q: [BEES], MOON_TEA_Q: [MOON, TEA], UNKNOWN_Q: [TEA]}


def scripted_tool(**kwargs: Any) -> PleiasRAGTool:
    """The tool over a scripted Pleias backend, retrieving ``DOCS[query]``."""
    retriever = RunnableLambda(lambda q: DOCS.get(q, []))
    tool = create_pleias_rag_tool(retriever, ScriptedBackend(RAW, default=hash_output("x", "?")))
    return tool.model_copy(update=kwargs) if kwargs else tool


def tool_messages(state: dict[str, Any]) -> list[ToolMessage]:
    return [m for m in state["messages"] if isinstance(m, ToolMessage)]


def by_marker(final: AIMessage) -> dict[str, dict[str, Any]]:
    return {e["marker"]: e for e in final.response_metadata["pleias_citations"]}


# --------------------------------------------------------------------------- numbering


def test_two_calls_on_the_real_model_are_numbered_on_and_cited_right(hash_model: str) -> None:
    """Row 1 and 2 on the tiny real model: the second call's sources are [2] and [3], and
    the brain's final answer maps each marker to the right document."""
    eiffel_q, tides_q = example("cited").query, example("two_citations").query
    eiffel, louvre = example("cited").sources
    moon, louvre2, tea = example("two_citations").sources
    docs = {
        eiffel_q: [Document(eiffel, metadata={"title": "Eiffel Tower"}), Document(louvre)],
        tides_q: [
            Document(moon, metadata={"title": "The Moon"}),
            Document(louvre2, metadata={"title": "The Louvre"}),
            Document(tea),
        ],
    }
    tool = create_pleias_rag_tool(
        RunnableLambda(lambda q: docs[q]), ChatPleias(model=hash_model, max_tokens=128)
    )
    brain = Brain(
        script=[
            calls(("call-1", eiffel_q)),
            calls(("call-2", tides_q)),
            AIMessage(
                "The tower was completed in 1889 [1]. The Moon causes the tides [2], and the "
                "Louvre houses the Mona Lisa [3]. Tea is healthy [7]."
            ),
        ]
    )
    agent = create_agent(brain, [tool], middleware=[PleiasCitationsMiddleware()])

    state = agent.invoke({"messages": [HumanMessage("Tower, tides and Louvre?")]})

    first, second = tool_messages(state)
    assert first.text == (
        "The Eiffel Tower was completed in 1889[1].\n\nSources:\n"
        '[1] Eiffel Tower: "It was completed in 1889 for the World\'s Fair."'
    )
    assert second.text == (
        "The Moon's gravity causes the tides[2]. The Louvre houses the Mona Lisa[3].\n\n"
        'Sources:\n[2] The Moon: "Its gravity causes the tides."\n'
        '[3] The Louvre: "It houses the Mona Lisa."'
    )
    assert brain.seen[2][-1].text == second.text  # what the brain read
    assert (first.artifact["number_offset"], second.artifact["number_offset"]) == (0, 1)
    # The artifact keeps the chain's own numbers; number_offset maps them to the content's.
    assert [c["extras"]["number"] for c in second.artifact["citations"]] == [1, 2]

    final = state["messages"][-1]
    assert isinstance(final, AIMessage)
    assert final.text.startswith("The tower was completed in 1889 [1].")
    entries = by_marker(final)
    assert list(entries) == ["[1]", "[2]", "[3]", "[7]"]
    assert [d.metadata["title"] for d in entries["[1]"]["documents"]] == ["Eiffel Tower"]
    assert [d.metadata["title"] for d in entries["[2]"]["documents"]] == ["The Moon"]
    assert [d.metadata["title"] for d in entries["[3]"]["documents"]] == ["The Louvre"]
    assert [e["tool_call_id"] for e in entries.values()] == ["call-1", "call-2", "call-2", None]
    assert entries["[7]"]["documents"] == [] and entries["[7]"]["citations"] == []
    assert [c["cited_text"] for c in entries["[3]"]["citations"]] == ["It houses the Mona Lisa."]
    for entry in entries.values():
        assert final.text[entry["start_index"] : entry["end_index"]] == entry["marker"]

    (block,) = final.content_blocks
    assert block["type"] == "text" and block["text"] == final.text
    anns = block["annotations"]
    assert [(a["title"], a["extras"]["pleias_marker"]) for a in anns] == [
        ("Eiffel Tower", "[1]"),
        ("The Moon", "[2]"),
        ("The Louvre", "[3]"),
    ]
    assert [a["cited_text"] for a in anns] == [
        "It was completed in 1889 for the World's Fair.",
        "Its gravity causes the tides.",
        "It houses the Mona Lisa.",
    ]
    assert len({a["id"] for a in anns}) == 3
    for a in anns:  # the claim, as in a ChatPleias reply; the marker's span in extras
        marker = final.text[a["extras"]["answer_start"] : a["extras"]["answer_end"]]
        assert marker == a["extras"]["pleias_marker"]
        assert a["end_index"] <= a["extras"]["answer_start"]
        assert a["extras"]["status"] == "verified"
    assert final.text[anns[0]["start_index"] : anns[0]["end_index"]] == (
        "The tower was completed in 1889"
    )


def test_parallel_calls_take_distinct_numbers() -> None:
    """Two calls of one step, run concurrently: their numbers differ, and each marker the
    brain copied maps to the source its own call showed."""
    brain = Brain(script=[calls(("bees", BEES_Q), ("moon-tea", MOON_TEA_Q)), copy_answers])
    agent = create_agent(brain, [scripted_tool()], middleware=[PleiasCitationsMiddleware()])

    state = agent.invoke({"messages": [HumanMessage("Bees, tides and tea?")]})

    shown = {m.tool_call_id: m for m in tool_messages(state)}
    bees, moon_tea = (numbers(shown[k].text) for k in ("bees", "moon-tea"))
    assert (len(bees), len(moon_tea)) == (1, 2)
    assert sorted(bees + moon_tea) == [1, 2, 3]  # no number twice
    final = state["messages"][-1]
    entries = by_marker(final)
    assert len(entries) == 4  # [1], [2], [3] and the invented [42]
    for marker, entry in entries.items():
        if marker == "[42]":
            assert (entry["tool_call_id"], entry["documents"]) == (None, [])
            continue
        number = int(marker.strip("[]"))
        message = shown[entry["tool_call_id"]]
        assert number in numbers(message.text)
        (doc,) = entry["documents"]
        assert labels(message.text)[number].startswith(doc.metadata["title"])
    titles = {
        a["extras"]["pleias_marker"]: a["title"] for a in final.content_blocks[0]["annotations"]
    }
    assert sorted(titles.values()) == ["Bees", "Moon", "Tea"]


def test_numbers_run_on_from_the_state_and_shift_the_markers() -> None:
    """The numbers follow the highest one of the Pleias tool messages in the state (here 9):
    markers of two digits shift the text; the artifact's offset maps back."""
    earlier = ToolMessage(
        "...",
        tool_call_id="old",
        artifact={"context": [], "citations": [{"extras": {"number": 1}}], "number_offset": 8},
    )
    ask = calls(("now", MOON_TEA_Q))
    runtime = SimpleNamespace(state={"messages": [earlier, ask]}, tool_call_id="now")
    tool = scripted_tool()
    content = tool.invoke({"query": MOON_TEA_Q, "runtime": runtime})
    assert content == (
        "The Moon causes the tides[10]. Tea comes from Camellia sinensis[11].\n\n"
        'Sources:\n[10] Moon: "The Moon causes the tides."\n'
        '[11] Tea — https://example.org/tea: "Green tea comes from Camellia sinensis."'
    )
    # Outside an agent (no runtime) the tool numbers from 1.
    assert tool.invoke({"query": MOON_TEA_Q}).startswith("The Moon causes the tides[1].")

    message = tool.invoke(
        {"type": "tool_call", "id": "now", "name": tool.name, "args": {"query": MOON_TEA_Q}}
    )
    assert message.artifact["number_offset"] == 0
    shifted = message.model_copy(update={"artifact": {**message.artifact, "number_offset": 9}})
    cited = PleiasCitationsMiddleware().cite(
        AIMessage("Tea [11]; tides [10]; and [1]."), [earlier, ask, shifted]
    )
    entries = by_marker(cited)
    assert [d.metadata["title"] for d in entries["[11]"]["documents"]] == ["Tea"]
    assert [d.metadata["title"] for d in entries["[10]"]["documents"]] == ["Moon"]
    assert entries["[1]"]["tool_call_id"] is None  # [1] of "old" was never a [1] here...
    assert entries["[1]"]["documents"] == []  # ...and names no document


def test_a_retried_call_keeps_its_numbers() -> None:
    ask = calls(("a", BEES_Q), ("b", MOON_TEA_Q))
    ask.id = "step-retried"
    runtime_a = SimpleNamespace(state={"messages": [ask]}, tool_call_id="a")
    runtime_b = SimpleNamespace(state={"messages": [ask]}, tool_call_id="b")
    tool = scripted_tool()
    first = tool.invoke({"query": BEES_Q, "runtime": runtime_a})
    second = tool.invoke({"query": MOON_TEA_Q, "runtime": runtime_b})
    again = tool.invoke({"query": BEES_Q, "runtime": runtime_a})
    assert (numbers(first), numbers(second), numbers(again)) == ([1], [2, 3], [1])


# --------------------------------------------------------------------------- the middleware


def test_a_made_up_source_id_maps_to_no_document() -> None:
    brain = Brain(
        script=[calls(("c1", BEES_Q)), calls(("c2", UNKNOWN_Q)), AIMessage("Dance [1]; Lu Yu [2].")]
    )
    agent = create_agent(brain, [scripted_tool()], middleware=[PleiasCitationsMiddleware()])
    state = agent.invoke({"messages": [HumanMessage("Bees? Tea treatise?")]})

    second = tool_messages(state)[1]
    assert "[2] unknown source 'ffffffffffffffff' (not among the documents)" in second.text
    final = state["messages"][-1]
    entries = by_marker(final)
    assert [d.metadata["title"] for d in entries["[1]"]["documents"]] == ["Bees"]
    assert entries["[2]"]["tool_call_id"] == "c2"
    assert entries["[2]"]["documents"] == []  # the id the model made up names no document
    assert [c["extras"]["status"] for c in entries["[2]"]["citations"]] == ["unknown_source"]
    anns = final.content_blocks[0]["annotations"]
    assert [a["extras"]["pleias_marker"] for a in anns] == ["[1]"]


def test_numbers_shown_twice_map_to_nothing() -> None:
    """Tool messages from before this numbering (no offset) may both show [1]: a marker of
    two calls is ambiguous and names no document, rather than maybe the wrong one."""
    tool = scripted_tool()
    bees = tool.invoke(
        {"type": "tool_call", "id": "a", "name": tool.name, "args": {"query": BEES_Q}}
    )
    moon = tool.invoke(
        {"type": "tool_call", "id": "b", "name": tool.name, "args": {"query": MOON_TEA_Q}}
    )
    cited = PleiasCitationsMiddleware().cite(AIMessage("Both [1], tea [2]."), [bees, moon])
    entries = by_marker(cited)
    assert (entries["[1]"]["tool_call_id"], entries["[1]"]["documents"]) == (None, [])
    assert [d.metadata["title"] for d in entries["[2]"]["documents"]] == ["Tea"]


def test_groups_and_content_blocks_and_serialization() -> None:
    tool = scripted_tool()
    moon = tool.invoke(
        {"type": "tool_call", "id": "b", "name": tool.name, "args": {"query": MOON_TEA_Q}}
    )
    brain_reply = AIMessage(
        [
            {"type": "reasoning", "reasoning": "Both are cited."},
            {"type": "text", "text": "Intro. "},
            {"type": "text", "text": "Tides and tea [1, 2]."},
        ]
    )
    cited = PleiasCitationsMiddleware().cite(brain_reply, [HumanMessage("q"), moon])
    assert cited.text == "Intro. Tides and tea [1, 2]."
    entries = cited.response_metadata["pleias_citations"]
    assert [(e["marker"], e["number"]) for e in entries] == [("[1, 2]", 1), ("[1, 2]", 2)]
    assert cited.text[entries[0]["start_index"] : entries[0]["end_index"]] == "[1, 2]"
    assert cited.response_metadata["output_version"] == "v1"
    reasoning, intro, text = cited.content_blocks
    assert reasoning["type"] == "reasoning" and "annotations" not in intro
    anns = text["annotations"]
    assert [a["title"] for a in anns] == ["Moon", "Tea"]
    assert anns[1]["url"] == "https://example.org/tea"
    assert {(a["start_index"], a["end_index"]) for a in anns} == {(0, 13)}  # the claim
    assert text["text"][0:13] == "Tides and tea"
    assert {(a["extras"]["answer_start"], a["extras"]["answer_end"]) for a in anns} == {(14, 20)}
    assert text["text"][14:20] == "[1, 2]"

    # The annotations live in the content: a serialized message keeps them, for any reader.
    (restored,) = messages_from_dict(messages_to_dict([cited]))
    assert restored.content_blocks[2]["annotations"] == anns


def test_content_is_left_alone_when_asked_and_without_pleias_results() -> None:
    tool = scripted_tool()
    bees = tool.invoke(
        {"type": "tool_call", "id": "a", "name": tool.name, "args": {"query": BEES_Q}}
    )
    only_metadata = PleiasCitationsMiddleware(annotate_content=False)
    cited = only_metadata.cite(AIMessage("Dance [1]."), [bees])
    assert cited.content == "Dance [1]."
    assert [e["marker"] for e in cited.response_metadata["pleias_citations"]] == ["[1]"]

    untouched = AIMessage("Hello [1].")
    assert PleiasCitationsMiddleware().cite(untouched, [HumanMessage("hi")]) is untouched
    brain = Brain(script=[AIMessage("Hello.")])
    agent = create_agent(brain, [tool], middleware=[PleiasCitationsMiddleware()])
    final = agent.invoke({"messages": [HumanMessage("hi")]})["messages"][-1]
    assert final.content == "Hello." and "pleias_citations" not in final.response_metadata


def test_a_second_turn_numbers_on_and_the_brain_gets_its_own_message_back() -> None:
    """With a checkpointer: turn 2's call continues after turn 1's numbers, its answer may
    cite both turns, and the brain is shown turn 1's answer without the annotations."""
    brain = Brain(
        script=[
            calls(("t1", BEES_Q)),
            AIMessage("Bees dance [1]."),
            calls(("t2", MOON_TEA_Q)),
            AIMessage("Bees dance [1]; the Moon makes tides [2] and tea grows [3]."),
        ]
    )
    agent = create_agent(
        brain,
        [scripted_tool()],
        middleware=[PleiasCitationsMiddleware()],
        checkpointer=InMemorySaver(),
    )
    config: Any = {"configurable": {"thread_id": "two-turns"}}
    first = agent.invoke({"messages": [HumanMessage("Bees?")]}, config)["messages"][-1]
    assert first.content_blocks[0]["annotations"][0]["title"] == "Bees"

    state = agent.invoke({"messages": [HumanMessage("Tides and tea?")]}, config)

    assert numbers(tool_messages(state)[1].text) == [2, 3]
    # The brain saw turn 1's answer as it wrote it (no annotations of ours).
    shown = next(m for m in brain.seen[2] if isinstance(m, AIMessage) and m.text == first.text)
    assert all("annotations" not in b for b in shown.content_blocks)
    entries = by_marker(state["messages"][-1])
    titles = {k: [d.metadata["title"] for d in e["documents"]] for k, e in entries.items()}
    assert titles == {"[1]": ["Bees"], "[2]": ["Moon"], "[3]": ["Tea"]}
    # The checkpointer kept it all.
    saved = agent.get_state(config).values["messages"][-1]
    assert by_marker(saved).keys() == entries.keys()


async def test_the_middleware_in_an_async_run() -> None:
    brain = Brain(script=[calls(("a", BEES_Q)), calls(("b", MOON_TEA_Q)), copy_answers])
    agent = create_agent(brain, [scripted_tool()], middleware=[PleiasCitationsMiddleware()])
    state = await agent.ainvoke({"messages": [HumanMessage("Bees, tides and tea?")]})
    assert [numbers(m.text) for m in tool_messages(state)] == [[1], [2, 3]]
    entries = by_marker(state["messages"][-1])
    titles = {k: [d.metadata["title"] for d in e["documents"]] for k, e in entries.items()}
    assert titles == {"[1]": ["Bees"], "[2]": ["Moon"], "[3]": ["Tea"], "[42]": []}


def test_the_middleware_is_exported_lazily() -> None:
    assert "PleiasCitationsMiddleware" in langchain_pleias.__all__
    assert langchain_pleias.PleiasCitationsMiddleware is PleiasCitationsMiddleware
    with pytest.raises(AttributeError):
        langchain_pleias.NoSuchName  # noqa: B018


def test_middleware_docstring_examples_run(hash_model: str) -> None:
    import langchain_pleias._agents as module

    result = doctest.testmod(module, optionflags=doctest.ELLIPSIS | doctest.NORMALIZE_WHITESPACE)
    assert result.attempted > 0 and result.failed == 0


# --------------------------------------------------------------------------- empty queries


@pytest.mark.parametrize("query", ["", "   \n"])
def test_an_empty_query_is_a_tool_error_the_agent_retries_after(query: str) -> None:
    brain = Brain(script=[calls(("bad", query)), calls(("good", BEES_Q)), AIMessage("Dance [1].")])
    tool = scripted_tool()
    state = create_agent(brain, [tool]).invoke({"messages": [HumanMessage("Bees?")]})

    error, answer = tool_messages(state)
    assert (error.tool_call_id, error.status) == ("bad", "error")
    assert error.text == f"the query is empty: give the tool a standalone question (got {query!r})"
    assert brain.seen[1][-1].text == error.text  # the brain read what was wrong
    assert (answer.tool_call_id, answer.status) == ("good", "success")
    assert numbers(answer.text) == [1]  # a failed call uses no number
    assert isinstance(tool.chain.llm, ChatPleias)
    backend = tool.chain.llm.model
    assert isinstance(backend, ScriptedBackend)
    assert [c[1][0] for c in backend.calls] == [BEES_Q]  # the empty query reached nothing


async def test_an_empty_query_raises_tool_exception_when_errors_are_not_handled() -> None:
    tool = scripted_tool(handle_tool_error=False)
    with pytest.raises(ToolException, match="the query is empty"):
        tool.invoke({"query": ""})
    with pytest.raises(ToolException, match="the query is empty"):
        await tool.ainvoke({"query": " "})
    handled = scripted_tool()
    message = await handled.ainvoke(
        {"type": "tool_call", "id": "c", "name": handled.name, "args": {"query": ""}}
    )
    assert message.status == "error" and "the query is empty" in message.text


# --------------------------------------------------------------------------- blank retrievals

BLANK_Q = "What does the empty page say?"


def test_a_retrieval_of_only_blank_documents_is_a_tool_error_the_agent_goes_on_after() -> None:
    """A retriever that returns only blank documents does not kill the agent run: the tool
    answers with an error the brain reads, and a later call still works."""
    docs = {BLANK_Q: [Document(""), Document("  \n")], BEES_Q: [BEES]}
    retriever = RunnableLambda(lambda q: docs.get(q, []))
    backend = ScriptedBackend(RAW, default=hash_output("x", "?"))
    tool = create_pleias_rag_tool(retriever, backend)
    brain = Brain(script=[calls(("blank", BLANK_Q)), calls(("good", BEES_Q)), AIMessage("[1]")])
    state = create_agent(brain, [tool]).invoke({"messages": [HumanMessage("Bees?")]})

    error, answer = tool_messages(state)
    assert (error.tool_call_id, error.status) == ("blank", "error")
    assert "all of them blank" in error.text and "another query" in error.text
    assert brain.seen[1][-1].text == error.text
    assert (answer.status, numbers(answer.text)) == ("success", [1])
    assert [c[1][0] for c in backend.calls] == [BEES_Q]  # the blank retrieval reached nothing


async def test_a_blank_retrieval_raises_tool_exception_when_errors_are_not_handled() -> None:
    retriever = RunnableLambda(lambda q: [Document(" ")])
    tool = create_pleias_rag_tool(retriever, ScriptedBackend({})).model_copy(
        update={"handle_tool_error": False}
    )
    with pytest.raises(ToolException, match="all of them blank"):
        tool.invoke({"query": "q?"})
    with pytest.raises(ToolException, match="all of them blank"):
        await tool.ainvoke({"query": "q?"})


# --------------------------------------------------------------------------- claim spans


def test_the_final_answer_annotations_span_the_claim_as_chat_pleias_does() -> None:
    """The brain copies a tool answer word for word: each annotation of its final answer has
    the start_index/end_index of ChatPleias' own annotation of that citation (the claim,
    not the [n] marker), the marker's span in extras."""
    brain = Brain(script=[calls(("moon-tea", MOON_TEA_Q)), copy_answers])
    agent = create_agent(brain, [scripted_tool()], middleware=[PleiasCitationsMiddleware()])
    state = agent.invoke({"messages": [HumanMessage("Tides and tea?")]})
    (message,) = tool_messages(state)
    final = state["messages"][-1]
    assert final.text.startswith(message.artifact["answer"])
    own = [(a["start_index"], a["end_index"]) for a in message.artifact["citations"]]
    anns = final.content_blocks[0]["annotations"]
    assert [(a["start_index"], a["end_index"]) for a in anns] == own
    assert [final.text[s:e] for s, e in own] == [
        "The Moon causes the tides",
        "Tea comes from Camellia sinensis",
    ]
    assert [final.text[a["extras"]["answer_start"] : a["extras"]["answer_end"]] for a in anns] == [
        "[1]",
        "[2]",
    ]
