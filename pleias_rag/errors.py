"""The exceptions of pleias-rag: one root, so ``except PleiasError`` catches them all.

Bad arguments raise :class:`InvalidArgument` (a ``ValueError``) or :class:`InvalidType` (a
``TypeError``), so code that catches the built-in types keeps working. The remote errors
(:mod:`pleias_rag.remote`) derive from :class:`PleiasError` too.
"""

from __future__ import annotations

from typing import Any

__all__ = ["BatchError", "InvalidArgument", "InvalidType", "PleiasError", "PromptTooLong"]


class PleiasError(Exception):
    """The root of every error this package raises on purpose."""


class BatchError(PleiasError):
    """Some inputs of a batch call failed; the work done for the others is kept.

    Attributes:
        results: one entry per input, in input order: its
            :class:`~pleias_rag.PleiasAnswer` (an engine raises it with the
            :class:`~pleias_rag.engine.Completion`, which the backend turns into the answer),
            the exception of an input that failed, or None for one never started.
    """

    results: list[Any]

    def __init__(self, message: str, *, results: list[Any] | None = None) -> None:
        super().__init__(message)
        self.results = list(results) if results is not None else []

    @property
    def errors(self) -> list[BaseException]:
        """The failures, in input order."""
        return [r for r in self.results if isinstance(r, BaseException)]


class InvalidArgument(PleiasError, ValueError):
    """An argument has a bad value; the message says which and how to fix it."""


class InvalidType(PleiasError, TypeError):
    """An argument has the wrong type; the message says what to give instead."""


class PromptTooLong(InvalidArgument):
    """The query and ``max_new_tokens`` do not fit the model's context window, even with no
    source: shorten the query or lower ``max_new_tokens``.

    Attributes:
        prompt_tokens: the tokens the prompt needs without any source.
        max_new_tokens: the tokens asked for the answer.
        context_window: the model's context window.
    """

    def __init__(self, prompt_tokens: int, max_new_tokens: int, context_window: int) -> None:
        super().__init__(
            f"the query needs {prompt_tokens} prompt tokens and max_new_tokens={max_new_tokens} "
            f"more, over the model's context window of {context_window} tokens: "
            "shorten the query or lower max_new_tokens"
        )
        self.prompt_tokens = prompt_tokens
        self.max_new_tokens = max_new_tokens
        self.context_window = context_window


def batch_failure(results: list[Any], *, what: str = "inputs of the batch") -> BaseException:
    """The error of a batch call in which some inputs failed (``results`` as
    :attr:`BatchError.results`): a :class:`BatchError` chained to the first failure, or, when
    no input finished (nothing to keep), that first failure itself."""
    errors = [r for r in results if isinstance(r, BaseException)]
    first = errors[0]
    answered = sum(1 for r in results if r is not None and not isinstance(r, BaseException))
    if not answered:
        return first
    unrun = sum(1 for r in results if r is None)
    error = BatchError(
        f"{len(errors)} of {len(results)} {what} failed ({answered} answered, {unrun} not "
        f"run; .results has each in input order, .errors the failures); the first: "
        f"{type(first).__name__}: {first}",
        results=results,
    )
    error.__cause__ = first
    return error
