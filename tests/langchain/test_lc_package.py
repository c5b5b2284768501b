"""Package surface: exports, docstrings with runnable examples, tracing metadata."""

from __future__ import annotations

import doctest
import importlib
import inspect

import pytest
from langchain_core.messages import AIMessage
from langchain_core.messages.block_translators import get_translator

import langchain_pleias

# The names themselves are pinned in tests/test_exports.py.
EXPECTED = set(langchain_pleias.__all__)
MODULES = ["chat_models", "llms", "chains", "rerankers", "output_parsers", "tools"]


def test_all_lists_the_public_api() -> None:
    assert langchain_pleias.__all__ == sorted(langchain_pleias.__all__)
    for name in langchain_pleias.__all__:
        assert getattr(langchain_pleias, name) is not None
    public = {n for n in vars(langchain_pleias) if not n.startswith("_")}
    public -= {"annotations", "metadata", *MODULES}
    assert public <= set(langchain_pleias.__all__)


@pytest.mark.parametrize("name", sorted(EXPECTED - {"__version__", "PleiasRAGChain"}))
def test_public_objects_document_an_example(name: str) -> None:
    doc = inspect.getdoc(getattr(langchain_pleias, name)) or ""
    assert "Examples:" in doc and ">>> " in doc


@pytest.mark.parametrize("module", MODULES)
def test_docstring_examples_run(module: str, hash_model: str) -> None:
    mod = importlib.import_module(f"langchain_pleias.{module}")
    result = doctest.testmod(mod, optionflags=doctest.ELLIPSIS | doctest.NORMALIZE_WHITESPACE)
    assert result.attempted > 0 and result.failed == 0


def test_translator_is_registered_for_pleias() -> None:
    translator = get_translator("pleias")
    assert translator is not None
    message = AIMessage(
        "Paris[1].",
        additional_kwargs={
            "reasoning_content": "thinking",
            "citations": [{"type": "citation", "id": "x", "start_index": 5, "end_index": 8}],
        },
        response_metadata={"model_provider": "pleias"},
    )
    assert message.content_blocks == [
        {"type": "reasoning", "reasoning": "thinking"},
        {
            "type": "text",
            "text": "Paris[1].",
            "annotations": [{"type": "citation", "id": "x", "start_index": 5, "end_index": 8}],
        },
    ]
    # Content that is not a ChatPleias string reply falls back to the generic parsing.
    listed = AIMessage(
        [{"type": "text", "text": "hi"}], response_metadata=message.response_metadata
    )
    assert listed.content_blocks == [{"type": "text", "text": "hi"}]


def test_tracing_metadata() -> None:
    chat = langchain_pleias.ChatPleias(model="PleIAs/Pleias-RAG-1B", max_tokens=9)
    params = chat._get_ls_params_with_defaults(model="PleIAs/Pleias-RAG-350M")
    assert params["ls_provider"] == "pleias"
    assert params["ls_model_name"] == "PleIAs/Pleias-RAG-350M"
    assert params["ls_max_tokens"] == 9
    llm = langchain_pleias.PleiasLLM(model="PleIAs/Pleias-RAG-1B")
    assert llm._get_ls_params()["ls_provider"] == "pleias"


def test_the_backend_is_typed_as_a_backend_everywhere() -> None:
    """The functions that take the backend name its type, pleias_rag.Backend (not Any), so
    that mypy checks what the adapters call on it."""
    import typing

    from langchain_pleias import _compat, llms
    from pleias_rag.backend import Backend

    for function in (_compat.usage, llms._info, llms._chunk, llms.PleiasLLM._result):
        assert typing.get_type_hints(function)["backend"] is Backend, function.__qualname__
    prepared = typing.get_type_hints(llms.PleiasLLM._prepare)["return"]
    assert typing.get_args(prepared)[0] is Backend
