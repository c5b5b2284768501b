"""Follow-up questions: a conversation and its last question → one standalone question.

Pleias RAG models answer one query from sources; they do not read a conversation. A separate
chat model (any LangChain one: the ``condense_llm``) rewrites the last question with what it
needs from the conversation ("When was it completed?" → "When was the Eiffel Tower
completed?"), and that question is what retrieval and the Pleias model get.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from langchain_core.callbacks import AsyncCallbackManager, CallbackManager
from langchain_core.callbacks.manager import AsyncRunManager, RunManager
from langchain_core.messages import BaseMessage, convert_to_messages
from langchain_core.prompts import BasePromptTemplate, ChatPromptTemplate
from langchain_core.runnables import Runnable, RunnableConfig
from pydantic import BaseModel, ConfigDict, field_validator

from pleias_rag.errors import InvalidArgument

#: Key of the rewritten question in ``response_metadata`` and in the chain's output.
STANDALONE_KEY = "standalone_question"
#: Name of the rewriting run in traces.
CONDENSE_RUN_NAME = "condense_question"
#: Variables every condense prompt takes: the conversation as text, and the last question.
PROMPT_VARIABLES = frozenset({"chat_history", "question"})

#: The default condense prompt (``chat_history``: the conversation as "Human: ..." /
#: "Assistant: ..." lines; ``question``: the follow-up).
CONDENSE_PROMPT = ChatPromptTemplate.from_messages(
    [
        (
            "system",
            "Rewrite the user's follow-up message as a standalone question that can be "
            "understood without the conversation: replace pronouns and references with what "
            "they refer to, and keep the user's language. If the message is already "
            "standalone, return it unchanged. Reply with the question only.",
        ),
        (
            "human",
            "Conversation:\n{chat_history}\n\nFollow-up message: {question}\n\n"
            "Standalone question:",
        ),
    ]
)


def check_prompt(prompt: BasePromptTemplate[Any] | None) -> BasePromptTemplate[Any] | None:
    """``prompt`` itself, after checking it takes ``question`` and at most ``chat_history``.

    Raises:
        ValueError: the prompt lacks ``question`` or has other variables.
    """
    if prompt is None:
        return None
    if not isinstance(prompt, BasePromptTemplate):
        raise InvalidArgument(
            "condense_prompt must be a LangChain prompt template (ChatPromptTemplate or "
            f"PromptTemplate), got {type(prompt).__name__}"
        )
    variables = set(prompt.input_variables)
    if "question" not in variables or not variables <= PROMPT_VARIABLES:
        raise InvalidArgument(
            "condense_prompt must take the variables 'question' and optionally "
            f"'chat_history', got {sorted(variables)}"
        )
    return prompt


def check_llm(llm: object) -> Runnable[Any, Any] | None:
    """``llm`` itself, after checking it is a runnable (a chat model) and not a Pleias one.

    Raises:
        ValueError: not a runnable, or a Pleias model (it answers from sources and cannot
            rewrite questions).
    """
    if llm is None:
        return None
    if not isinstance(llm, Runnable):
        raise InvalidArgument(
            f"condense_llm must be a LangChain chat model, got {type(llm).__name__}"
        )
    if getattr(llm, "_llm_type", None) in ("pleias-chat", "pleias"):
        raise InvalidArgument(
            "condense_llm must be a general chat model: a Pleias model answers from sources "
            "and does not rewrite questions"
        )
    return llm


def split_conversation(messages: Sequence[BaseMessage]) -> list[BaseMessage]:
    """The turns before the last human message: human and AI messages with text.

    System and tool messages, AI messages without text (tool calls) and the ``text-plain``
    source blocks of human messages are left out: only what was said counts.
    """
    last = max((i for i, m in enumerate(messages) if m.type == "human"), default=-1)
    return [m for m in messages[:last] if m.type in ("human", "ai") and _text(m).strip()]


def history_messages(value: object, *, key: str) -> list[BaseMessage]:
    """A chat history given to a chain (messages, ``(role, text)`` tuples or dicts).

    Raises:
        ValueError: not a list of messages.
    """
    if value is None:
        return []
    if isinstance(value, (str, bytes)) or not isinstance(value, Sequence):
        raise InvalidArgument(
            f"{key!r} must be a list of messages (or (role, text) pairs), "
            f"got {type(value).__name__}"
        )
    try:
        messages = convert_to_messages(value)
    except (ValueError, NotImplementedError) as exc:
        raise InvalidArgument(f"{key!r} is not a list of messages: {exc}") from exc
    return [m for m in messages if m.type in ("human", "ai") and _text(m).strip()]


def transcript(history: Sequence[BaseMessage]) -> str:
    """The conversation as ``Human: ...`` / ``Assistant: ...`` lines."""
    who = {"human": "Human", "ai": "Assistant"}
    return "\n".join(f"{who.get(m.type, m.type)}: {_text(m).strip()}" for m in history)


def _text(message: BaseMessage) -> str:
    if message.type == "human":  # its text blocks only: text-plain blocks are sources
        return "\n".join(
            str(b.get("text", "")) for b in message.content_blocks if b.get("type") == "text"
        )
    return message.text


def _inputs(
    prompt: BasePromptTemplate[Any] | None, history: Sequence[BaseMessage], question: str
) -> Any:
    template = prompt if prompt is not None else CONDENSE_PROMPT
    values = {"chat_history": transcript(history), "question": question}
    return template.invoke({k: v for k, v in values.items() if k in template.input_variables})


def _standalone(output: object, question: str) -> str:
    """The rewritten question in the condense model's output (the question itself if empty)."""
    text = output.text if isinstance(output, BaseMessage) else str(output)
    text = text.strip()
    return text or question


@dataclass(frozen=True)
class Rewrite:
    """A follow-up question to rewrite as a standalone one, with what it needs: the condense
    model, its prompt and the conversation. :meth:`run` and :meth:`arun` are the call."""

    llm: Runnable[Any, Any]
    prompt: BasePromptTemplate[Any] | None
    history: Sequence[BaseMessage]
    question: str

    def run(self, config: RunnableConfig | None = None) -> str:
        """The standalone question (the question itself when the rewrite is empty)."""
        return self._read(self.llm.invoke(self._inputs(), _named(config)))

    async def arun(self, config: RunnableConfig | None = None) -> str:
        """Async :meth:`run`."""
        return self._read(await self.llm.ainvoke(self._inputs(), _named(config)))

    def _inputs(self) -> Any:
        return _inputs(self.prompt, self.history, self.question)

    def _read(self, output: object) -> str:
        return _standalone(output, self.question)


class CondenseSettings(BaseModel):
    """The ``condense_llm`` and ``condense_prompt`` settings of ``ChatPleias`` and the chain."""

    condense_llm: Runnable[Any, Any] | None = None
    """A chat model (any LangChain one, not a Pleias model) that rewrites a follow-up question
    and the conversation before it into a standalone question. None: the last question is
    answered as it stands."""
    condense_prompt: BasePromptTemplate[Any] | None = None
    """The rewriting prompt, with the variables ``question`` and ``chat_history`` (the
    conversation as ``Human: ...``/``Assistant: ...`` lines). None: a built-in prompt."""

    model_config = ConfigDict(arbitrary_types_allowed=True)

    @field_validator("condense_llm", mode="plain")
    @classmethod
    def _check_condense_llm(cls, value: Any) -> Any:
        return check_llm(value)

    @field_validator("condense_prompt", mode="plain")
    @classmethod
    def _check_condense_prompt(cls, value: Any) -> Any:
        return check_prompt(value)

    def _rewrite(self, history: Sequence[BaseMessage], question: str) -> Rewrite | None:
        """The rewrite of ``question`` to make; None without a ``condense_llm`` or history."""
        if self.condense_llm is None or not history:
            return None
        return Rewrite(self.condense_llm, self.condense_prompt, history, question)


def _named(config: RunnableConfig | None) -> RunnableConfig:
    out: RunnableConfig = dict(config or {})  # type: ignore[assignment]
    out["run_name"] = CONDENSE_RUN_NAME
    return out


def child_config(run_manager: RunManager | AsyncRunManager | None) -> RunnableConfig:
    """Config for a call made inside a chat model run: traced as a child of that run.

    (LLM run managers have no ``get_child``; this builds the same child manager.)
    """
    if run_manager is None:
        return {}
    manager: CallbackManager | AsyncCallbackManager
    if isinstance(run_manager, AsyncRunManager):
        manager = AsyncCallbackManager(handlers=[], parent_run_id=run_manager.run_id)
    else:
        manager = CallbackManager(handlers=[], parent_run_id=run_manager.run_id)
    manager.set_handlers(run_manager.inheritable_handlers)
    manager.add_tags(run_manager.inheritable_tags)
    manager.add_metadata(run_manager.inheritable_metadata)
    return {"callbacks": manager}


def llm_label(llm: object) -> str:
    """A short name of a chat model, for cache keys and traces."""
    for attr in ("model_name", "model", "model_id"):
        value = getattr(llm, attr, None)
        if isinstance(value, str) and value:
            return f"{type(llm).__name__}:{value}"
    return type(llm).__name__
