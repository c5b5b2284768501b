"""PleiasLLM: text completion, one batched generation per batch, documents per prompt."""

from __future__ import annotations

from typing import Any

import pytest
from langchain_core.caches import InMemoryCache
from langchain_core.documents import Document
from lc_support import ScriptedBackend, docs_of, example, hash_output, ref

from langchain_pleias import PleiasLLM
from pleias_rag.sources import source_id


def test_batch_is_one_batched_generation(hash_model: str, monkeypatch: pytest.MonkeyPatch) -> None:
    from pleias_rag.local import PleiasModel

    calls: list[int] = []
    original = PleiasModel.answer_batch

    def spy(self: PleiasModel, items: Any, **gen: Any) -> Any:
        calls.append(len(items))
        return original(self, items, **gen)

    monkeypatch.setattr(PleiasModel, "answer_batch", spy)
    llm = PleiasLLM(model=hash_model, max_tokens=64)
    out = llm.batch(["Hello", "What is the capital of France?"])
    assert out == ["Hello! How can I help you today?", "The capital of France is Paris."]
    assert calls == [2]


def test_documents_for_all_prompts_or_per_prompt() -> None:
    bees, tea = Document("Honey bees dance."), Document("Green tea is a leaf.")
    script = {
        "bees?": hash_output("x", "They dance" + ref(source_id(bees.page_content), "bees dance")),
        "tea?": hash_output("x", "A leaf" + ref(source_id(tea.page_content), "a leaf")),
    }
    backend = ScriptedBackend(script)
    llm = PleiasLLM(model=backend)
    assert llm.batch(["bees?", "tea?"], documents=[[bees], [tea]]) == ["They dance[1]", "A leaf[1]"]
    ((kind, (items, _)),) = backend.calls
    assert kind == "answer_batch"
    assert [[s.ref for s in sources] for _, sources in items] == [[bees], [tea]]
    llm.batch(["bees?", "tea?"], documents=[bees, tea])
    _, (items, _) = backend.calls[-1]
    assert [[s.ref for s in sources] for _, sources in items] == [[bees, tea]] * 2


def test_generation_info_carries_citations_and_usage(hash_model: str) -> None:
    ex = example("two_citations")
    llm = PleiasLLM(model=hash_model, max_tokens=128)
    result = llm.generate([ex.query], documents=docs_of(ex))
    (generation,) = result.generations[0]
    info = generation.generation_info or {}
    assert [c["extras"]["status"] for c in info["citations"]] == ["verified", "verified"]
    assert info["finish_reason"] == "stop" and info["reasoning_content"]
    assert info["raw_output"].startswith("1. **")
    assert info["cited_source_ids"] == [source_id(t) for t in ex.sources[:2]]
    assert result.llm_output is not None
    usage = result.llm_output["token_usage"]
    assert usage["total_tokens"] == usage["prompt_tokens"] + usage["completion_tokens"] > 0


def test_stream_yields_answer_text(hash_model: str) -> None:
    ex = example("cited")
    llm = PleiasLLM(model=hash_model, max_tokens=96)
    pieces = list(llm.stream(ex.query, documents=docs_of(ex)))
    assert len(pieces) > 2 and all("<" not in p for p in pieces)
    assert "".join(pieces) == llm.invoke(ex.query, documents=docs_of(ex))


async def test_async_batch_and_stream(hash_model: str) -> None:
    llm = PleiasLLM(model=hash_model, max_tokens=64)
    assert await llm.abatch(["Hello", "Hello"]) == ["Hello! How can I help you today?"] * 2
    assert "".join([p async for p in llm.astream("Hello")]) == "Hello! How can I help you today?"


def test_cache_keys_depend_on_the_documents() -> None:
    doc = Document("Honey bees dance.")
    backend = ScriptedBackend(
        {"q": hash_output("x", "They dance" + ref(source_id(doc.page_content), "bees dance"))}
    )
    llm = PleiasLLM(model=backend, cache=InMemoryCache())
    first = llm.generate(["q"], documents=[doc]).generations[0][0]
    other = llm.generate(["q"], documents=[Document("Other text.")]).generations[0][0]
    assert first.generation_info and other.generation_info
    assert first.generation_info["citations"][0]["extras"]["status"] == "verified"
    assert other.generation_info["citations"][0]["extras"]["status"] == "unknown_source"
    again = llm.generate(["q"], documents=[doc]).generations[0][0]
    assert again == first
    assert len([c for c in backend.calls if c[0] == "answer_batch"]) == 2  # third was cached


def test_bad_documents() -> None:
    llm = PleiasLLM(model=ScriptedBackend({}, default="x"))
    with pytest.raises(ValueError, match="2 lists for 1 prompts"):
        llm.invoke("q", documents=[[Document("a")], [Document("b")]])
    with pytest.raises(ValueError, match=r"documents\[0\] is a int"):
        llm.invoke("q", documents=[3])
    assert llm._get_ls_params()["ls_provider"] == "pleias"
    assert llm._get_ls_params()["ls_model_type"] == "llm"
