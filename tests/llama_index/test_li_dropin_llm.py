"""``Settings.llm = PleiasLLM(...)``: LlamaIndex's own synthesizers ground on the context.

A LlamaIndex prompt reaches ``PleiasLLM.predict``/``stream`` with its template variables: the
context becomes the sources (one per chunk) and ``query_str`` the query. A plain completion is
unchanged; an agent brain fails loudly; ``metadata`` loads nothing and ``to_dict`` round-trips.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import pytest
from li_support import ScriptedBackend, hash_output, ref
from llama_index.core import PromptTemplate, Settings, VectorStoreIndex
from llama_index.core.agent.workflow import FunctionAgent, ReActAgent
from llama_index.core.base.response.schema import Response, StreamingResponse
from llama_index.core.response_synthesizers import get_response_synthesizer
from llama_index.core.schema import NodeWithScore, TextNode
from llama_index.core.tools import FunctionTool

from llama_index_pleias import PleiasLLM
from pleias_rag import CONTEXT_WINDOW, Source
from pleias_rag.errors import InvalidType

pytestmark = [
    pytest.mark.filterwarnings("ignore::pydantic.warnings.PydanticDeprecationWarning"),
    pytest.mark.filterwarnings("ignore:is_running called:DeprecationWarning"),
]

EIFFEL = "The Eiffel Tower is in Paris. It was completed in 1889."
LOUVRE = "The Louvre houses the Mona Lisa. It is a museum."
QUESTION = "When was the Eiffel Tower completed?"


def cite_first(query: str, sources: Sequence[Source]) -> str:
    """Cites the first sentence of the first source (an answer without sources cites nothing)."""
    if not sources:
        return hash_output("No source.", "I do not know.")
    first = sources[0]
    sentence = first.text.split(". ")[0].rstrip(".") + "."
    return hash_output(f"**{first.id}** answers.", "It answers" + ref(first, sentence) + ".")


def nodes() -> list[NodeWithScore]:
    return [
        NodeWithScore(node=TextNode(text=EIFFEL, id_="eiffel"), score=0.9),
        NodeWithScore(node=TextNode(text=LOUVRE, id_="louvre"), score=0.8),
    ]


def llm_over(script: Any = cite_first) -> tuple[PleiasLLM, ScriptedBackend]:
    backend = ScriptedBackend(script)
    return PleiasLLM(backend), backend


@pytest.mark.parametrize(
    "mode", ["compact", "simple_summarize", "tree_summarize", "accumulate", "refine"]
)
def test_builtin_synthesizers_give_the_context_as_sources(mode: str) -> None:
    llm, backend = llm_over()
    synthesizer = get_response_synthesizer(llm=llm, response_mode=mode)
    response = synthesizer.synthesize(QUESTION, nodes())
    assert isinstance(response, Response)
    assert backend.calls, "the model was not called"
    for _, query, sources, _ in backend.calls:
        assert query == QUESTION  # never the template
        # simple_summarize joins the nodes with one newline: one source then
        assert sources and all(EIFFEL in s.text or LOUVRE in s.text for s in sources)
    # the last call cites its first passage: Eiffel, except refine's last step (Louvre)
    assert ("[2]" if mode == "refine" else "[1]") in str(response)


def test_compact_splits_the_packed_context_into_one_source_per_node() -> None:
    llm, backend = llm_over()
    get_response_synthesizer(llm=llm, response_mode="compact").synthesize(QUESTION, nodes())
    [(_, _query, sources, _)] = backend.calls
    assert [s.text for s in sources] == [EIFFEL, LOUVRE]


def test_refine_answers_each_new_context_and_returns_the_last_answer() -> None:
    llm, backend = llm_over()
    response = get_response_synthesizer(llm=llm, response_mode="refine").synthesize(
        QUESTION, nodes()
    )
    assert [(q, [s.text for s in ss]) for _, q, ss, _ in backend.calls] == [
        (QUESTION, [EIFFEL]),
        (QUESTION, [LOUVRE]),
    ]
    assert str(response) == "It answers[2]."  # [n] is source_nodes[n-1]: the Louvre


def test_settings_llm_and_as_query_engine(
    word_embedding: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    llm, backend = llm_over()
    # ``Settings.llm = llm``, without the test's guard against resolving a default model
    monkeypatch.setattr("llama_index.core.settings.resolve_llm", lambda given: given)
    Settings.llm = llm
    monkeypatch.setattr(Settings, "_llm", llm)  # restored after the test
    index = VectorStoreIndex([n.node for n in nodes()], embed_model=word_embedding)
    response = index.as_query_engine(similarity_top_k=2).query(QUESTION)
    [(_, query, sources, _)] = backend.calls
    assert query == QUESTION
    assert sorted(s.text for s in sources) == sorted([EIFFEL, LOUVRE])
    assert "[1]" in str(response)


def test_streaming_synthesizer_grounds_on_the_context() -> None:
    llm, backend = llm_over()
    synthesizer = get_response_synthesizer(llm=llm, response_mode="compact", streaming=True)
    response = synthesizer.synthesize(QUESTION, nodes())
    assert isinstance(response, StreamingResponse)
    assert "".join(response.response_gen) == "It answers[1]."
    [(method, query, sources, _)] = backend.calls
    assert (method, query, len(sources)) == ("stream", QUESTION, 2)


async def test_apredict_and_astream_ground_on_the_context() -> None:
    llm, backend = llm_over()
    template = PromptTemplate("Context:\n{context_str}\nQuestion: {query_str}\nAnswer:")
    text = await llm.apredict(template, context_str=f"{EIFFEL}\n\n{LOUVRE}", query_str=QUESTION)
    assert text == "It answers[1]."
    tokens = await llm.astream(template, context_str=EIFFEL, query_str=QUESTION)
    assert "".join([t async for t in tokens]) == "It answers[1]."
    assert [(m, q, len(s)) for m, q, s, _ in backend.calls] == [
        ("aanswer", QUESTION, 2),
        ("astream", QUESTION, 1),
    ]


def test_a_prompt_without_context_keeps_todays_behaviour() -> None:
    llm, backend = llm_over()
    assert llm.complete("Tell me about towers.").text == "I do not know."
    llm.predict(PromptTemplate("Write about {topic}."), topic="towers")
    assert [(q, s) for _, q, s, _ in backend.calls] == [
        ("Tell me about towers.", []),
        ("Write about towers.", []),
    ]


def _add(a: int, b: int) -> int:
    """Add two numbers."""
    return a + b


async def test_react_agent_with_a_pleias_brain_fails_loudly() -> None:
    llm, backend = llm_over()
    agent = ReActAgent(tools=[FunctionTool.from_defaults(_add)], llm=llm)
    with pytest.raises(Exception, match=r"as_tool\(\)"):
        await agent.run(user_msg="What is 2 + 3?")
    assert backend.calls == []


async def test_function_agent_with_a_pleias_brain_fails_loudly() -> None:
    llm, backend = llm_over()
    assert llm.metadata.is_function_calling_model is False
    agent = FunctionAgent(tools=[FunctionTool.from_defaults(_add)], llm=llm)
    with pytest.raises(Exception, match="FunctionCallingLLM"):
        await agent.run(user_msg="What is 2 + 3?")
    assert backend.calls == []


def test_metadata_of_a_hub_id_loads_nothing() -> None:
    llm = PleiasLLM("PleIAs/Pleias-RAG-350M")  # network blocked: loading would raise
    assert llm.metadata.context_window == CONTEXT_WINDOW["numbered"]
    assert llm.metadata.model_name == "PleIAs/Pleias-RAG-350M"
    assert PleiasLLM("some/model", dialect="hash").metadata.context_window == 2048
    assert llm._backend is None


def test_metadata_of_a_folder_reads_its_config(tmp_path: Path) -> None:
    (tmp_path / "config.json").write_text(json.dumps({"max_position_embeddings": 777}))
    assert PleiasLLM(str(tmp_path)).metadata.context_window == 777


def test_to_dict_round_trips() -> None:
    llm = PleiasLLM("some/model", dialect="hash", max_new_tokens=7, temperature=0.5, seed=3)
    again = PleiasLLM.from_dict(json.loads(llm.to_json()))
    assert again.to_dict() == llm.to_dict()


def test_a_backend_object_must_be_given_again_to_from_dict() -> None:
    llm, backend = llm_over()
    data = json.loads(llm.with_settings(max_new_tokens=9).to_json())
    assert data["backend"] == "ScriptedBackend"
    with pytest.raises(InvalidType, match="model=backend"):
        PleiasLLM.from_dict(data)
    again = PleiasLLM.from_dict(data, model=backend)
    assert again.backend is backend and again.max_new_tokens == 9
    assert again.complete(QUESTION, sources=[EIFFEL]).text == "It answers[1]."
