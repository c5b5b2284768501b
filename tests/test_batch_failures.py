"""Issue #13: a failure in ``answer_batch`` stays with its input, on every backend: the answers
that finished are kept in a ``BatchError`` (chained to the first failure); a batch or its
sources given in no fixed order (a dict, a set) are refused."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import pytest

from pleias_rag import (
    Backend,
    BatchError,
    InvalidArgument,
    PleiasAnswer,
    ScriptedEngine,
)
from pleias_rag.engine import Completion
from pleias_rag.generation import GenerationSettings
from pleias_rag.tokens import EncodedPrompt

GOOD = "<|answer_start|>Fine.<|answer_end|>"


class RowFailed(RuntimeError):
    pass


class FailingEngine(ScriptedEngine):
    """A scripted engine whose batch raises, as a whole, when one of its prompts asks for
    "FAIL" (as the local engine does); records each batch it was given."""

    def __init__(self) -> None:
        super().__init__(self._write)
        self.batches: list[list[str]] = []

    @staticmethod
    def _write(query: str, sources: Any) -> str:
        if "FAIL" in query:
            raise RowFailed(f"row {query!r} failed")
        return GOOD

    def complete(
        self, prompts: list[EncodedPrompt], settings: GenerationSettings
    ) -> list[Completion]:
        self.batches.append([p.query for p in prompts])
        return super().complete(prompts, settings)


ITEMS = ["a?", "FAIL b?", "c?", "d?", "e?"]


def check(err: BatchError) -> None:
    results = err.results
    assert [type(r).__name__ for r in results] == [
        "PleiasAnswer",
        "RowFailed",
        "PleiasAnswer",
        "PleiasAnswer",
        "PleiasAnswer",
    ]
    assert all(r.answer == "Fine." for r in results if isinstance(r, PleiasAnswer))
    assert err.errors == [results[1]] and err.__cause__ is results[1]
    message = str(err)
    assert "1 of 5" in message and "4 answered" in message and "row 'FAIL b?' failed" in message


def test_one_failed_input_keeps_the_other_answers() -> None:
    engine = FailingEngine()
    with pytest.raises(BatchError) as info:
        Backend(engine).answer_batch(ITEMS)
    check(info.value)
    assert engine.batches[0] == ITEMS  # one batch first; halves only after it failed


def test_one_failed_input_keeps_the_other_answers_async() -> None:
    with pytest.raises(BatchError) as info:
        asyncio.run(Backend(FailingEngine()).aanswer_batch(ITEMS))
    check(info.value)


def test_when_every_input_fails_the_first_failure_is_raised() -> None:
    with pytest.raises(RowFailed, match="FAIL a"):
        Backend(FailingEngine()).answer_batch(["FAIL a?", "FAIL b?"])


def test_a_bad_argument_is_raised_at_once_as_itself() -> None:
    class Refusing(FailingEngine):
        def complete(
            self, prompts: list[EncodedPrompt], settings: GenerationSettings
        ) -> list[Completion]:
            self.batches.append([p.query for p in prompts])
            raise InvalidArgument("min_new_tokens is not supported here")

    engine = Refusing()
    with pytest.raises(InvalidArgument, match="min_new_tokens"):
        Backend(engine).answer_batch(ITEMS)
    assert len(engine.batches) == 1  # not run again in halves


def test_a_failing_row_of_the_local_engine(
    tiny_random_model_numbered: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from pleias_rag.local import PleiasModel
    from pleias_rag.local._streaming import Row

    pm = PleiasModel.from_pretrained(tiny_random_model_numbered)
    items = [(f"Question number {i}?", ["Paris is the capital of France."]) for i in range(4)]
    poison = tuple(pm.encode(*items[1], max_new_tokens=8).prompt)
    real = Row.step

    def step(self: Row, token_id: int) -> Any:
        if tuple(self.request.ids) == poison and self.tokens >= 2:
            raise RowFailed("row 1 decoder failed")
        return real(self, token_id)

    monkeypatch.setattr(Row, "step", step)
    with pytest.raises(BatchError) as info:
        pm.answer_batch(items, max_new_tokens=8)
    results = info.value.results
    assert [type(r).__name__ for r in results] == [
        "PleiasAnswer",
        "RowFailed",
        "PleiasAnswer",
        "PleiasAnswer",
    ]
    monkeypatch.setattr(Row, "step", real)
    alone = pm.answer(*items[2], max_new_tokens=8)
    assert results[2] == alone  # the same answer as asked alone (greedy)


def test_a_dict_of_items_is_refused() -> None:
    backend = Backend(ScriptedEngine({}, default=GOOD))
    with pytest.raises(InvalidArgument, match=r"not a dict .*keys would be taken as the queries"):
        backend.answer_batch({"q?": ["s"]})  # type: ignore[arg-type]
    with pytest.raises(InvalidArgument, match=r"list\(d.items\(\)\)"):
        asyncio.run(backend.aanswer_batch({"q?": ["s"]}))  # type: ignore[arg-type]


@pytest.mark.parametrize("kind", [set, frozenset])
def test_a_set_of_sources_or_items_is_refused(kind: Any) -> None:
    backend = Backend(ScriptedEngine({}, default=GOOD))
    with pytest.raises(InvalidArgument, match=r"not a (frozen)?set .*order changes"):
        backend.answer("q?", kind({"one text", "another"}))
    with pytest.raises(InvalidArgument, match=r"sorted\(s\)"):
        backend.encode("q?", {"x": 1}.keys())  # a keys view is a set too
    with pytest.raises(InvalidArgument, match=r"answer_batch takes a list .* not a (frozen)?set"):
        backend.answer_batch(kind({"q?", "r?"}))
