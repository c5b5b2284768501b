"""LlamaIndex prompt templates read by ``PleiasLLM``: RAG variables, agent prompts, windows."""

from __future__ import annotations

import json
import os
import re
from dataclasses import dataclass
from typing import Any

from llama_index.core.constants import DEFAULT_CONTEXT_WINDOW
from llama_index.core.prompts.base import BasePromptTemplate, SelectorPromptTemplate

from pleias_rag import CONTEXT_WINDOW

#: Template variables that hold the retrieved text (``context_msg`` is the refine template's).
CONTEXT_VARS = ("context_str", "context_msg")
#: Template variables that hold the user's question.
QUERY_VARS = ("query_str",)

# LlamaIndex joins packed chunks with a blank line (PromptHelper.repack, the synthesizers).
_CHUNK_SPLIT = re.compile(r"\n[ \t]*\n")

AGENT_ERROR = (
    "a Pleias RAG model cannot be an agent's brain: it neither calls tools nor follows the "
    "ReAct format, so the agent would 'succeed' without calling any tool. Give the agent "
    "another (function-calling) LLM and put Pleias behind a tool: "
    "PleiasQueryEngine(...).as_tool() (or QueryEngineTool.from_defaults(PleiasQueryEngine(...)))"
)


@dataclass(frozen=True)
class RagPrompt:
    """What a LlamaIndex RAG prompt asks: the question, the retrieved chunks, a draft answer."""

    query: str
    chunks: list[str]
    existing_answer: str | None


def template_vars(prompt: BasePromptTemplate, prompt_args: dict[str, Any]) -> dict[str, Any]:
    """The variables ``prompt`` is formatted with (partial ones and mappings included)."""
    template = prompt.select() if isinstance(prompt, SelectorPromptTemplate) else prompt
    merged = {**prompt.kwargs, **template.kwargs, **prompt_args}
    return template._map_all_vars(merged)


def rag_prompt(prompt: BasePromptTemplate, prompt_args: dict[str, Any]) -> RagPrompt | None:
    """The question and context of a RAG prompt; None when ``prompt`` has no context variable.

    The context is split into chunks at blank lines, the separator LlamaIndex puts between
    the texts it packs into one prompt.
    """
    variables = template_vars(prompt, prompt_args)
    context = next((variables[v] for v in CONTEXT_VARS if v in variables), None)
    query = next((variables[v] for v in QUERY_VARS if v in variables), None)
    if context is None or query is None:
        return None
    # simple_summarize gives a list of (truncated) texts
    texts = [str(t) for t in context] if isinstance(context, (list, tuple)) else [str(context)]
    chunks = [c.strip() for t in texts for c in _CHUNK_SPLIT.split(t) if c.strip()]
    existing = variables.get("existing_answer")
    return RagPrompt(str(query), chunks, None if existing is None else str(existing))


def is_agent_prompt(text: str) -> bool:
    """Whether ``text`` is an agent's (ReAct) tool-use instructions."""
    if "You have access to the following tools" in text:
        return True
    return "Thought:" in text and "Action Input:" in text


def context_window(model: str, dialect: str | None) -> int:
    """A model's context window, without loading it.

    From a local folder's ``config.json`` (``max_position_embeddings``), else the window of the
    dialect (given, or known from the model name), else LlamaIndex's default.
    """
    config = os.path.join(model, "config.json")
    if os.path.isfile(config):
        try:
            with open(config, encoding="utf-8") as f:
                window = json.load(f).get("max_position_embeddings")
        except (OSError, ValueError):
            window = None
        if isinstance(window, int) and window > 0:
            return window
    known = dialect or _dialect_of_name(model)
    if known in CONTEXT_WINDOW:
        return CONTEXT_WINDOW[known]
    return DEFAULT_CONTEXT_WINDOW


def _dialect_of_name(model: str) -> str | None:
    name = model.lower()
    if "pleias-rag" in name:
        return "numbered"
    if "pico" in name or "nano" in name:
        return "hash"
    return None
