"""LlamaIndex prompt templates read by ``PleiasLLM``: RAG variables, agent prompts, windows."""

from __future__ import annotations

import contextlib
import contextvars
import inspect
import json
import logging
import os
import re
import threading
from collections.abc import AsyncGenerator, Generator, Sequence
from dataclasses import dataclass
from typing import Any

from llama_index.core.base.response.schema import AsyncStreamingResponse, StreamingResponse
from llama_index.core.constants import DEFAULT_CONTEXT_WINDOW
from llama_index.core.prompts.base import BasePromptTemplate, SelectorPromptTemplate
from llama_index.core.response_synthesizers.base import BaseSynthesizer
from llama_index.core.schema import MetadataMode, NodeWithScore
from llama_index_instrumentation import get_dispatcher
from llama_index_instrumentation.span_handlers import BaseSpanHandler

from pleias_rag import CONTEXT_WINDOW
from pleias_rag.errors import InvalidType

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


logger = logging.getLogger("llama_index_pleias")

# A citation engine's chunk header ("Source 3:\n"), kept out of the source text.
_SOURCE_HEADER = re.compile(r"\ASource \d+:[ \t]*\n")
_SPACE = re.compile(r"\s+")


CONDENSE_ERROR = (
    "a Pleias RAG model cannot rewrite a follow-up message into a standalone question (this "
    "prompt has {chat_history} and {question}: a chat engine's condense step); its answer "
    "would be searched and answered as the question. Give the rewrite to another LLM: "
    "llama_index_pleias.condense_chat_engine(PleiasQueryEngine(...), condense_llm=<LLM>), "
    "CondensePlusContextChatEngine.from_defaults(retriever, llm=pleias_llm, skip_condense=True), "
    "or chat_mode='context' (no rewrite)"
)
#: The variables of LlamaIndex's condense prompts (condense_question, condense_plus_context).
CONDENSE_VARS = ("chat_history", "question")


@dataclass(frozen=True)
class RagPrompt:
    """What a LlamaIndex RAG prompt asks: the question, the retrieved passages, a draft answer.

    ``numbers[i]`` is the marker number of ``chunks[i]``: the position (from 1) of its node
    among the nodes the synthesizer was given, which is the response's
    ``source_nodes[n-1]``; or, with no synthesizer around the call, the passage's position.
    """

    query: str
    chunks: list[str]
    numbers: list[int]
    existing_answer: str | None

    def sources(self) -> dict[str, Any]:
        """The ``complete`` keyword arguments that give the passages as numbered sources."""
        return {"sources": self.chunks, "source_numbers": self.numbers}


# --- the nodes of the synthesis running around a call ----------------------------------------

_NODE_TEXTS: contextvars.ContextVar[tuple[str, ...] | None] = contextvars.ContextVar(
    "pleias_synthesis_node_texts", default=None
)
_TOKENS: dict[str, contextvars.Token[tuple[str, ...] | None]] = {}  # by open span id


class _SynthesisNodes(BaseSpanHandler[Any]):
    """Keeps the texts of the nodes a LlamaIndex synthesizer is answering from, for the
    ``PleiasLLM`` calls inside it: LlamaIndex packs them into one context string with no
    boundaries, and ``[n]`` must be ``source_nodes[n-1]``.

    A streaming synthesis calls the LLM only when its ``response_gen`` is read, after the
    span: the generator is wrapped to read with the same node texts.
    """

    @classmethod
    def class_name(cls) -> str:
        return "PleiasSynthesisNodes"

    def new_span(
        self,
        id_: str,
        bound_args: inspect.BoundArguments,
        instance: Any | None = None,
        parent_span_id: str | None = None,
        tags: dict[str, Any] | None = None,
        **kwargs: Any,
    ) -> None:
        if not isinstance(instance, BaseSynthesizer):
            return None
        nodes = bound_args.arguments.get("nodes")
        if not isinstance(nodes, list) or not id_.split("-")[0].endswith("synthesize"):
            return None
        # the texts as BaseSynthesizer.synthesize gives them to get_response
        texts = tuple(
            n.node.get_content(metadata_mode=MetadataMode.LLM)
            for n in nodes
            if isinstance(n, NodeWithScore)
        )
        _TOKENS[id_] = _NODE_TEXTS.set(texts)
        return None

    def _end(self, id_: str) -> None:
        token = _TOKENS.pop(id_, None)
        if token is not None:
            # ended in another context: that context's value goes with it
            with contextlib.suppress(ValueError):
                _NODE_TEXTS.reset(token)

    def prepare_to_exit_span(
        self,
        id_: str,
        bound_args: inspect.BoundArguments,
        instance: Any | None = None,
        result: Any | None = None,
        **kwargs: Any,
    ) -> None:
        texts = _NODE_TEXTS.get()
        self._end(id_)
        if texts is None:
            return None
        if isinstance(result, StreamingResponse) and isinstance(result.response_gen, Generator):
            result.response_gen = _reading_with(texts, result.response_gen)
        elif isinstance(result, AsyncStreamingResponse):
            result.response_gen = _areading_with(texts, result.response_gen)
        return None

    def prepare_to_drop_span(
        self,
        id_: str,
        bound_args: inspect.BoundArguments,
        instance: Any | None = None,
        err: BaseException | None = None,
        **kwargs: Any,
    ) -> None:
        self._end(id_)
        return None


def _reading_with(
    texts: tuple[str, ...], gen: Generator[Any, None, None]
) -> Generator[Any, None, None]:
    with contextlib.closing(gen):
        while True:
            token = _NODE_TEXTS.set(texts)
            try:
                item = next(gen)
            except StopIteration:
                return
            finally:
                _NODE_TEXTS.reset(token)
            yield item


async def _areading_with(
    texts: tuple[str, ...], gen: AsyncGenerator[Any, None]
) -> AsyncGenerator[Any, None]:
    try:
        while True:
            token = _NODE_TEXTS.set(texts)
            try:
                item = await gen.__anext__()
            except StopAsyncIteration:
                return
            finally:
                _NODE_TEXTS.reset(token)
            yield item
    finally:
        await gen.aclose()


_HANDLER_LOCK = threading.Lock()


def watch_synthesizers() -> None:
    """Register the span handler that tells ``PleiasLLM`` the nodes of the running
    synthesis (once per process, on LlamaIndex's root dispatcher)."""
    root = get_dispatcher()
    with _HANDLER_LOCK:
        if not any(isinstance(h, _SynthesisNodes) for h in root.span_handlers):
            root.add_span_handler(_SynthesisNodes())


def _squash(text: str) -> str:
    return _SPACE.sub(" ", text).strip()


def numbered_passages(
    context: str, node_texts: Sequence[str] | None
) -> tuple[list[str], list[int]]:
    """The passages of a packed context and the marker number of each.

    With the synthesizer's node texts: each node found whole in the context is one passage
    numbered by the node's position; what is left (a node cut by LlamaIndex's repacking) is
    split at blank lines, each piece numbered by the node holding it, and a piece no node
    holds (a summary of ``tree_summarize``...) gets a number after all the nodes', logged,
    so it never names one of them. Without node texts: the context split at blank lines,
    numbered in order.
    """
    if not node_texts:
        pieces = [c.strip() for c in _CHUNK_SPLIT.split(context) if c.strip()]
        return pieces, list(range(1, len(pieces) + 1))
    found: list[tuple[int, int, int]] = []  # (start, end, node index)
    for i, text in enumerate(node_texts):
        body = text.strip()
        if not body:
            continue
        at = context.find(body)
        while at >= 0 and any(s < at + len(body) and at < e for s, e, _ in found):
            at = context.find(body, at + 1)
        if at >= 0:
            found.append((at, at + len(body), i))
    found.sort()
    squashed = [_squash(t) for t in node_texts]
    parts: list[tuple[str, int | None]] = []
    pos = 0
    for start, end, i in [*found, (len(context), len(context), -1)]:
        parts += _held_pieces(context[pos:start], squashed)
        if i >= 0:
            parts.append((context[start:end], i))
        pos = max(pos, end)
    passages, numbers, extra = [], [], len(node_texts)
    for text, holder in parts:
        if holder is None:
            extra += 1
        passages.append(_SOURCE_HEADER.sub("", text, count=1).strip() or text.strip())
        numbers.append(extra if holder is None else holder + 1)
    if extra > len(node_texts):
        logger.warning(
            "PleiasLLM: %d passage(s) of the prompt are the text of no node given to the "
            "synthesizer (summaries of tree_summarize...): their markers come after every "
            "source node's ([%d] and up), naming no node. PleiasSynthesizer, or "
            "response_mode='compact', gives markers that all name source nodes.",
            extra - len(node_texts),
            len(node_texts) + 1,
        )
    return passages, numbers


def _held_pieces(region: str, squashed: Sequence[str]) -> list[tuple[str, int | None]]:
    """The pieces of a context region no node fills whole, each with the node holding it:
    paragraphs, else runs of lines held by one node (a truncated or cut node); None for
    text no node holds."""
    out: list[tuple[str, int | None]] = []
    for paragraph in _CHUNK_SPLIT.split(region):
        if not paragraph.strip():
            continue
        holder = _holder(paragraph, squashed)
        if holder is not None:
            out.append((paragraph.strip(), holder))
            continue
        run: list[str] = []
        run_holder: int | None = None
        for line in paragraph.strip().split("\n"):
            if not line.strip():
                continue
            h = _holder(line, squashed)
            if run and h != run_holder:
                out.append(("\n".join(run).strip(), run_holder))
                run = []
            run.append(line)
            run_holder = h
        if run:
            out.append(("\n".join(run).strip(), run_holder))
    return out


def _holder(text: str, squashed: Sequence[str]) -> int | None:
    key = _squash(text)
    return next((j for j, t in enumerate(squashed) if key in t), None)


def template_vars(prompt: BasePromptTemplate, prompt_args: dict[str, Any]) -> dict[str, Any]:
    """The variables ``prompt`` is formatted with (partial ones and mappings included)."""
    template = prompt.select() if isinstance(prompt, SelectorPromptTemplate) else prompt
    merged = {**prompt.kwargs, **template.kwargs, **prompt_args}
    return template._map_all_vars(merged)


def rag_prompt(prompt: BasePromptTemplate, prompt_args: dict[str, Any]) -> RagPrompt | None:
    """The question and context of a RAG prompt; None when ``prompt`` has no context variable.
    A chat engine's condense prompt raises :class:`~pleias_rag.errors.InvalidType`.

    The context is cut into passages, each numbered as its node, by :func:`numbered_passages`.
    """
    variables = template_vars(prompt, prompt_args)
    if all(v in variables for v in CONDENSE_VARS):
        raise InvalidType(CONDENSE_ERROR)
    context = next((variables[v] for v in CONTEXT_VARS if v in variables), None)
    query = next((variables[v] for v in QUERY_VARS if v in variables), None)
    if context is None or query is None:
        return None
    # simple_summarize gives a list of (truncated) texts
    texts = [str(t) for t in context] if isinstance(context, (list, tuple)) else [str(context)]
    chunks, numbers = numbered_passages("\n\n".join(texts), _NODE_TEXTS.get())
    existing = variables.get("existing_answer")
    return RagPrompt(str(query), chunks, numbers, None if existing is None else str(existing))


def is_condense_prompt(text: str) -> bool:
    """Whether ``text`` is a chat engine's formatted condense prompt (LlamaIndex's own)."""
    lowered = text.lower()
    return "standalone question" in lowered and "chat history" in lowered


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
