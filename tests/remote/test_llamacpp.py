"""RemoteBackend against REAL llama.cpp servers (``xllamacpp``, which embeds ``llama-server``)
serving a GGUF of the tiny trained hash model.

Skipped unless ``$PLEIAS_RAG_LLAMACPP_PYTHON`` names the python of a venv with xllamacpp (see
``tools/llamacpp_server.py``). The servers start in about a second.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from remote_support import LLAMACPP_SLOT_CTX

from pleias_rag import AnswerDelta, Finished
from pleias_rag.remote import RemoteBackend, RemoteStatusError
from pleias_rag.testing import TRAINING_EXAMPLES, Example

pytestmark = [pytest.mark.remote, pytest.mark.timeout(120)]

EXAMPLES = TRAINING_EXAMPLES["hash"]
GEN = 200
STATUSES = {
    "cited": ["verified"],
    "two_citations": ["verified", "verified"],
    "misattributed": ["misattributed"],
    "unknown_id": ["unknown_source"],
    "no_sources": [],
    "hello": [],
}


def backend(server: Any, tokenizer: Path | None = None, **kwargs: Any) -> RemoteBackend:
    return RemoteBackend(
        server.base_url,
        server="llama.cpp",
        tokenizer=tokenizer,
        dialect=None if tokenizer else "hash",
        context_window=LLAMACPP_SLOT_CTX,  # llama-server does not tell its per-slot window
        generation={"max_new_tokens": GEN},
        **kwargs,
    )


def check(answer: Any, ex: Example) -> None:
    assert answer.raw == ex.output.removesuffix("<|end_of_text|>").removesuffix("<|answer_end|>")
    assert [c.status for c in answer.citations] == STATUSES[ex.name]
    assert answer.finish_reason == "stop" and answer.prompt_tokens and answer.completion_tokens


@pytest.mark.parametrize("ex", EXAMPLES, ids=[e.name for e in EXAMPLES])
def test_answers_as_token_ids_and_as_strings(
    llamacpp_server: Any, tiny_trained_model_hash: Path, ex: Example
) -> None:
    ids = backend(llamacpp_server, tiny_trained_model_hash)
    text = backend(llamacpp_server)
    a, b = ids.answer(ex.query, ex.sources), text.answer(ex.query, ex.sources)
    check(a, ex)
    check(b, ex)
    assert a.prompt_tokens == b.prompt_tokens  # one BOS either way


def test_stream_batch_and_count(llamacpp_server: Any, tiny_trained_model_hash: Path) -> None:
    ids = backend(llamacpp_server, tiny_trained_model_hash, max_concurrency=4)
    ex = EXAMPLES[1]
    events = list(ids.stream(ex.query, ex.sources))
    assert isinstance(events[-1], Finished)
    check(events[-1].answer, ex)
    assert "".join(e.text for e in events if isinstance(e, AnswerDelta)) == events[-1].answer.answer
    answers = ids.answer_batch([(e.query, e.sources) for e in EXAMPLES] * 2)
    for answer, e in zip(answers, EXAMPLES * 2, strict=True):
        check(answer, e)
    text = "The Eiffel Tower was completed in 1889."
    assert backend(llamacpp_server).count_tokens(text) == ids.count_tokens(text)


async def test_async(llamacpp_server: Any) -> None:
    text = backend(llamacpp_server)
    ex = EXAMPLES[0]
    check(await text.aanswer(ex.query, ex.sources), ex)
    events = [e async for e in text.astream(ex.query, ex.sources)]
    check(events[-1].answer, ex)  # type: ignore[union-attr]
    answers = await text.aanswer_batch([(e.query, e.sources) for e in EXAMPLES])
    for answer, e in zip(answers, EXAMPLES, strict=True):
        check(answer, e)


def test_without_special_the_markers_vanish_and_the_fallback_applies(
    llamacpp_plain_server: Any,
) -> None:
    ex = EXAMPLES[0]
    answer = backend(llamacpp_plain_server).answer(ex.query, ex.sources)
    assert "<|" not in answer.raw
    assert answer.answer.endswith("The Eiffel Tower was completed in 1889[1].")
    assert [c.status for c in answer.citations] == ["verified"]


def test_a_prompt_over_the_slot_is_a_400(llamacpp_server: Any) -> None:
    long = ["Filler about towers and bridges. " * 200]
    with pytest.raises(RemoteStatusError) as info:
        backend(llamacpp_server).answer("When?", long)
    assert info.value.status == 400 and "llama-server at http://127.0.0.1:" in str(info.value)


def test_langchain_and_llama_index(llamacpp_server: Any, tiny_trained_model_hash: Path) -> None:
    from langchain_core.documents import Document
    from llama_index.core.schema import NodeWithScore, TextNode

    from langchain_pleias import ChatPleias
    from llama_index_pleias import PleiasLLM, PleiasSynthesizer

    ids = backend(llamacpp_server, tiny_trained_model_hash)
    ex = EXAMPLES[0]
    reply = ChatPleias(model=ids, max_tokens=GEN).invoke(
        ex.query, documents=[Document(t) for t in ex.sources]
    )
    assert reply.text == "The Eiffel Tower was completed in 1889[1]."
    nodes = [NodeWithScore(node=TextNode(text=t), score=1.0) for t in ex.sources]
    response = PleiasSynthesizer(PleiasLLM(ids, max_new_tokens=GEN)).synthesize(ex.query, nodes)
    assert str(response) == reply.text
