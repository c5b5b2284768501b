"""The public names of each package, pinned: adding or dropping one is a decision, made here."""

from __future__ import annotations

import importlib
from pathlib import Path

import pytest

EXPORTS = {
    "pleias_rag": {
        "AnswerDelta", "Backend", "BatchError", "CONTEXT_WINDOW", "Citation", "CitationCompleted",
        "CitationStatus", "Completion", "DIALECTS", "Dialect", "EncodedPrompt", "Engine",
        "Event", "FinishReason", "Finished", "GenerationSettings", "InvalidArgument",
        "InvalidType", "MatchKind", "PleiasAnswer", "PleiasError", "PleiasModel",
        "PromptTooLong", "QuoteMatch", "ScriptedEngine", "SectionEnded", "SectionStarted",
        "SectionText",
        "Segment", "Source", "SourceGroup", "StreamParser", "check_dialect", "escape_text",
        "group_sources", "locate_quote", "make_sources", "normalize_source_id",
        "parse_response", "prompt_ids", "prompt_segments", "render_prompt", "resolve_backend",
        "source_id", "special_tokens",
    },
    "pleias_rag.local": {
        "Backend", "GenerationSettings", "PleiasModel", "cpu_has_native_bf16", "resolve_dtype",
    },
    "pleias_rag.remote": {
        "DEFAULT_API_KEY_ENV", "RemoteBackend", "RemoteBatchError", "RemoteConnectionError",
        "RemoteError", "RemoteStatusError", "RemoteTimeoutError", "SERVER_PRESETS", "ServerKind",
    },
    "pleias_rag.views": {
        "APPROXIMATE_SCORE", "CITED_SCORE", "MAX_QUOTE_CHARS", "MENTIONED_SCORE", "NONE_CITED",
        "SourceUse", "UNUSED_SCORE", "answer_fragment", "answer_with_sources", "by_number",
        "citation_label", "cited_uses", "first_per_number", "render_page", "source_label",
        "source_uses", "sources_list", "to_markdown",
    },
    "langchain_pleias": {
        "ChatPleias", "PleiasCitationsMiddleware", "PleiasLLM", "PleiasOutputParser",
        "PleiasRAGChain", "PleiasRAGTool", "PleiasReranker", "__version__",
        "create_pleias_rag_chain", "create_pleias_rag_tool",
    },
    "llama_index_pleias": {
        "CitationGroundingEvaluator", "DEFAULT_MODEL", "GroundingResult", "NodeRef",
        "PLEIAS_METADATA_KEY", "PleiasCondenseChatEngine", "PleiasLLM", "PleiasQueryEngine",
        "PleiasQueryEngineTool", "PleiasReranker", "PleiasSynthesizer", "condense_chat_engine",
        "nodes_to_sources",
    },
}  # fmt: skip


@pytest.mark.parametrize("module", sorted(EXPORTS))
def test_exported_names_are_pinned(module: str) -> None:
    mod = importlib.import_module(module)
    assert set(mod.__all__) == EXPORTS[module]
    assert len(mod.__all__) == len(set(mod.__all__))
    for name in mod.__all__:
        assert getattr(mod, name) is not None, name


def test_internals_are_not_exported() -> None:
    remote = importlib.import_module("pleias_rag.remote")
    for name in ("Prepared", "Transport", "Reply", "RemoteEngine", "HttpSettings"):
        assert name not in remote.__all__


@pytest.mark.parametrize("package", ["pleias_rag", "langchain_pleias", "llama_index_pleias"])
def test_every_package_is_typed(package: str) -> None:
    mod = importlib.import_module(package)
    assert mod.__file__ is not None
    assert (Path(mod.__file__).parent / "py.typed").is_file()
