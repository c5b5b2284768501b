"""Continuous batching in the local engine (issue #16): requests join a running batch at the
next step, leave it the moment they are done, and come out as they would alone."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("transformers")

from pleias_rag import PleiasAnswer  # noqa: E402
from pleias_rag.errors import InvalidArgument  # noqa: E402
from pleias_rag.local import PleiasModel  # noqa: E402
from pleias_rag.testing import TRAINING_EXAMPLES  # noqa: E402

NEW = 160
RUNNER_TOKENS = 600
# The running request: a short prompt (joiners are wider than the batch) or a long one (the
# batch is wider than its joiners): both ways of merging the caches.
RUNNERS = {
    "short prompt": ("Hello?", []),
    "long prompt": ("What do the sources say?", ["A long source text. " * 60, "Another one."]),
}


def example(i: int) -> tuple[str, list[str]]:
    ex = TRAINING_EXAMPLES["numbered"][i % len(TRAINING_EXAMPLES["numbered"])]
    return ex.query, list(ex.sources)


def fixed(tokens: int) -> dict[str, int]:
    return {"max_new_tokens": tokens, "min_new_tokens": tokens}


@pytest.fixture(scope="module")
def model(tiny_trained_model_numbered: Path) -> PleiasModel:
    return PleiasModel.from_pretrained(tiny_trained_model_numbered, max_batch_size=8).load()


@pytest.fixture(scope="module")
def alone(model: PleiasModel) -> dict[str, Any]:
    """Every request of these tests answered alone."""
    out: dict[str, Any] = {
        f"ex{i}": model.answer(*example(i), max_new_tokens=NEW) for i in range(4)
    }
    for name, (q, s) in RUNNERS.items():
        out[name] = model.answer(q, s, **fixed(RUNNER_TOKENS))
    out["seeded"] = model.answer(*example(1), **SEEDED)
    return out


SEEDED = {"max_new_tokens": 40, "temperature": 1.0, "top_p": 0.9, "seed": 3}


class Timed:
    """A call run in a thread: its result (or exception) and when it ended."""

    def __init__(self, call: Callable[[], Any]) -> None:
        self.result: Any = None
        self.ended = 0.0
        self._thread = threading.Thread(target=self._run, args=(call,))
        self._thread.start()

    def _run(self, call: Callable[[], Any]) -> None:
        try:
            self.result = call()
        except BaseException as exc:
            self.result = exc
        self.ended = time.monotonic()

    def join(self) -> Any:
        self._thread.join(300)
        assert not self._thread.is_alive()
        return self.result


def running(model: PleiasModel, runner: str) -> Timed:
    """The runner ``runner`` answering in a thread, once it is generating (the worker idle
    before it)."""
    assert model.worker.wait_idle(timeout=60)
    q, s = RUNNERS[runner]
    long = Timed(lambda: model.answer(q, s, **fixed(RUNNER_TOKENS)))
    wait_generating(model)
    return long


def wait_generating(model: PleiasModel, steps: int = 5) -> None:
    """Until the worker has run ``steps`` more decoding steps: something is generating."""
    start = model.worker.steps
    deadline = time.monotonic() + 60
    while model.worker.steps < start + steps:
        assert time.monotonic() < deadline
        time.sleep(0.001)


@pytest.mark.parametrize("runner", sorted(RUNNERS))
def test_requests_join_a_running_batch_and_come_out_as_alone(
    model: PleiasModel, alone: dict[str, Any], runner: str
) -> None:
    before = len(model.worker.batch_sizes)
    long = running(model, runner)
    joiners = [Timed(lambda i=i: model.answer(*example(i), max_new_tokens=NEW)) for i in range(4)]
    seeded = Timed(lambda: model.answer(*example(1), **SEEDED))
    results = [j.join() for j in joiners]
    assert seeded.join() == alone["seeded"]  # its generator follows it into the batch
    assert results == [alone[f"ex{i}"] for i in range(4)]
    assert long.join() == alone[runner]  # joiners came and left: the runner did not change
    # They left as soon as done, while the runner went on.
    assert max(j.ended for j in [*joiners, seeded]) < long.ended
    assert max(model.worker.batch_sizes[before:]) > 1  # generated together


def test_a_short_request_does_not_wait_for_a_long_one(
    model: PleiasModel, alone: dict[str, Any]
) -> None:
    long = running(model, "short prompt")
    steps = model.worker.steps
    short = Timed(lambda: model.answer(*example(0), max_new_tokens=NEW))
    assert short.join() == alone["ex0"]
    # It took about its own length in steps, not the rest of the long one's.
    taken = model.worker.steps - steps
    assert taken < alone["ex0"].completion_tokens + 20 < RUNNER_TOKENS
    long.join()


def test_static_scheduling_makes_a_request_wait_for_the_running_batch(
    model: PleiasModel, alone: dict[str, Any]
) -> None:
    static = PleiasModel.from_pretrained(model.model_name, scheduling="static")
    assert static.model is model.model  # same weights and worker
    long = running(static, "short prompt")
    short = Timed(lambda: static.answer(*example(0), max_new_tokens=NEW))
    assert short.join() == alone["ex0"]
    assert long.join() == alone["short prompt"]
    assert long.ended <= short.ended  # the short one waited for the long one


def test_a_cancelled_joiner_leaves_and_the_others_go_on(
    model: PleiasModel, alone: dict[str, Any]
) -> None:
    long = running(model, "long prompt")
    stream = model.stream(*example(2), **fixed(3000))
    next(stream)  # it joined and generates
    other = Timed(lambda: model.answer(*example(3), max_new_tokens=NEW))
    steps = model.worker.steps
    stream.close()  # its row leaves at the next step
    assert other.join() == alone["ex3"]
    assert long.join() == alone["long prompt"]
    assert model.worker.wait_idle(timeout=60)
    assert model.worker.steps - steps < RUNNER_TOKENS + 10  # the 3000-token row did not run on


def test_more_requests_than_rows_wait_for_a_free_row(
    tiny_trained_model_numbered: Path, alone: dict[str, Any]
) -> None:
    small = PleiasModel.from_pretrained(tiny_trained_model_numbered, max_batch_size=2)
    assert small.worker.wait_idle(timeout=60)
    before = len(small.worker.batch_sizes)
    calls = [Timed(lambda i=i: small.answer(*example(i), max_new_tokens=NEW)) for i in range(4)]
    assert [c.join() for c in calls] == [alone[f"ex{i}"] for i in range(4)]
    sizes = small.worker.batch_sizes[before:]
    assert max(sizes) == 2 and len(sizes) >= 2


def test_scheduling_is_checked() -> None:
    with pytest.raises(InvalidArgument, match="scheduling must be one of 'continuous', 'static'"):
        PleiasModel("some/model", scheduling="dynamic")


def test_answers_of_both_schedulers_are_the_same(model: PleiasModel, alone: dict[str, Any]) -> None:
    static = PleiasModel.from_pretrained(model.model_name, scheduling="static")
    items = [example(i) for i in range(4)]
    got: list[PleiasAnswer] = static.answer_batch(items, max_new_tokens=NEW)
    assert (
        got == model.answer_batch(items, max_new_tokens=NEW) == [alone[f"ex{i}"] for i in range(4)]
    )
