"""Reliability of the local engine (issue #13): a bad request never fails its neighbours, a
dead worker never poisons the shared cache, bad inputs fail at once with a clear error."""

from __future__ import annotations

import asyncio
import gc
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("transformers")

from pleias_rag import BatchError, Finished, GenerationSettings, PleiasAnswer, Source  # noqa: E402
from pleias_rag.backend import Backend  # noqa: E402
from pleias_rag.errors import InvalidArgument  # noqa: E402
from pleias_rag.generation import batch_items, sources_arg  # noqa: E402
from pleias_rag.local import PleiasModel  # noqa: E402
from pleias_rag.local._streaming import Row  # noqa: E402
from pleias_rag.parser import StreamParser, parse_response  # noqa: E402
from pleias_rag.scripted import ScriptedEngine  # noqa: E402
from pleias_rag.sources import make_sources  # noqa: E402
from pleias_rag.testing import TRAINING_EXAMPLES  # noqa: E402

NEW = 40
CALLERS = 4
# Own weights and worker (a model_kwargs of their own): these tests close and break it.
OWN = {"attn_implementation": "sdpa"}


class Boom(RuntimeError):
    pass


class Die(BaseException):
    """What kills a generation thread (as KeyboardInterrupt or SystemExit would)."""


def example(i: int) -> tuple[str, list[str]]:
    ex = TRAINING_EXAMPLES["numbered"][i % len(TRAINING_EXAMPLES["numbered"])]
    return ex.query, list(ex.sources)


@pytest.fixture(scope="module")
def pm(tiny_trained_model_numbered: Path) -> PleiasModel:
    # A long batch window: callers started together always share one generate.
    return PleiasModel.from_pretrained(
        tiny_trained_model_numbered, max_batch_size=8, batch_window=0.5, model_kwargs=OWN
    ).load()


@pytest.fixture(scope="module")
def reference(pm: PleiasModel) -> list[PleiasAnswer]:
    """Each example answered alone."""
    return [pm.answer(*example(i), max_new_tokens=NEW) for i in range(CALLERS)]


def prompt_ids(pm: PleiasModel, i: int) -> list[int]:
    prompt = pm.encode(*example(i), max_new_tokens=NEW).prompt
    assert not isinstance(prompt, str)
    return list(prompt)


@pytest.fixture
def poisoned_forward(pm: PleiasModel) -> Iterator[dict[str, Any]]:
    """The model's forward fails (for the whole batch) ``at_step`` steps into any generate
    whose batch holds the prompt ``state["poison"]``: one request breaks its batch."""
    inner = pm.model
    real = inner.forward
    state: dict[str, Any] = {"poison": None, "at_step": 0, "in_batch": False, "step": 0}

    def forward(*args: Any, **kwargs: Any) -> Any:
        ids = kwargs.get("input_ids", args[0] if args else None)
        poison = state["poison"]
        if ids is not None and poison is not None:
            if ids.shape[1] > 1:  # the prefill of a new generate (then one token a step)
                rows = [r[-len(poison) :].tolist() for r in ids]
                state["in_batch"], state["step"] = poison in rows, 0
            else:
                state["step"] += 1
            if state["in_batch"] and state["step"] >= state["at_step"]:
                raise Boom("this batch holds the poisoned request")
        return real(*args, **kwargs)

    inner.forward = forward
    try:
        yield state
    finally:
        inner.forward = real


def run_together(calls: list[Callable[[], Any]]) -> list[Any]:
    """Run the calls in threads started together; each one's result or exception."""
    results: list[Any] = [None] * len(calls)
    barrier = threading.Barrier(len(calls))

    def run(i: int) -> None:
        barrier.wait()
        try:
            results[i] = calls[i]()
        except BaseException as exc:
            results[i] = exc

    threads = [threading.Thread(target=run, args=(i,)) for i in range(len(calls))]
    for t in threads:
        t.start()
    for t in threads:
        t.join(120)
    return results


def streamed(pm: PleiasModel, i: int) -> PleiasAnswer:
    events = list(pm.stream(*example(i), max_new_tokens=NEW))
    final = events[-1]
    assert isinstance(final, Finished)
    return final.answer


# ----------------------------------------------------------- 1a: settings checked at the call


@pytest.mark.parametrize(
    ("overrides", "fix"),
    [
        ({"seed": 2**70}, "2\\*\\*64"),
        ({"seed": 2**64}, "2\\*\\*64"),
        ({"temperature": float("inf")}, "temperature"),
        ({"temperature": float("nan")}, "temperature"),
        ({"temperature": 1e300}, "temperature"),
        ({"temperature": 1e-300}, "temperature"),
        ({"top_p": float("nan")}, "top_p"),
        ({"top_p": float("inf")}, "top_p"),
    ],
)
def test_settings_that_would_break_generation_fail_at_the_call(
    overrides: dict[str, Any], fix: str
) -> None:
    with pytest.raises(InvalidArgument, match=fix):
        GenerationSettings(**overrides)
    with pytest.raises(InvalidArgument, match=fix):
        GenerationSettings().merged(**overrides)


def test_settings_at_the_bounds_are_accepted() -> None:
    assert GenerationSettings(seed=2**64 - 1, temperature=1.0).seed == 2**64 - 1
    assert GenerationSettings(temperature=1e-6).temperature == 1e-6
    assert GenerationSettings(temperature=1e6).temperature == 1e6


def test_a_bad_seed_fails_its_caller_before_generation(pm: PleiasModel) -> None:
    steps = pm.worker.steps
    with pytest.raises(InvalidArgument, match="seed"):
        pm.answer(*example(0), temperature=0.7, seed=2**70)
    with pytest.raises(InvalidArgument, match="temperature"):
        pm.stream(*example(0), temperature=float("inf"))
    assert pm.worker.steps == steps


def test_the_largest_seed_samples(pm: PleiasModel) -> None:
    a = pm.answer(*example(0), max_new_tokens=5, temperature=0.7, seed=2**64 - 1)
    b = pm.answer(*example(0), max_new_tokens=5, temperature=0.7, seed=2**64 - 1)
    assert a.raw == b.raw and a.completion_tokens == 5


def test_a_bad_setting_in_a_concurrent_batch_fails_only_its_caller(
    pm: PleiasModel, reference: list[PleiasAnswer]
) -> None:
    calls: list[Callable[[], Any]] = [
        (lambda i=i: pm.answer(*example(i), max_new_tokens=NEW)) for i in range(CALLERS)
    ]
    calls[1] = lambda: pm.answer(*example(1), max_new_tokens=NEW, temperature=0.5, seed=2**70)
    results = run_together(calls)
    assert isinstance(results[1], InvalidArgument)
    for i in (0, 2, 3):
        assert isinstance(results[i], PleiasAnswer), results[i]
        assert results[i].raw == reference[i].raw


# ------------------------------------------- 1b: a failure inside generation stays with its row


def test_a_failing_batch_is_rerun_without_the_request_that_broke_it(
    pm: PleiasModel, reference: list[PleiasAnswer], poisoned_forward: dict[str, Any]
) -> None:
    poisoned_forward.update(poison=prompt_ids(pm, 2), at_step=0)
    before = len(pm.worker.batch_sizes)
    calls: list[Callable[[], Any]] = [
        (lambda i=i: pm.answer(*example(i), max_new_tokens=NEW)) for i in range(CALLERS)
    ]
    results = run_together(calls)
    assert pm.worker.batch_sizes[before] == CALLERS  # they were batched together
    assert isinstance(results[2], Boom)
    for i in (0, 1, 3):
        assert isinstance(results[i], PleiasAnswer), results[i]
        assert results[i].raw == reference[i].raw
    poisoned_forward.update(poison=None)
    assert pm.answer(*example(2), max_new_tokens=NEW).raw == reference[2].raw


def test_streams_failing_midway_are_rerun_without_repeating_their_text(
    pm: PleiasModel, reference: list[PleiasAnswer], poisoned_forward: dict[str, Any]
) -> None:
    # The batch fails after a few tokens were streamed: the rerun must not send them again.
    poisoned_forward.update(poison=prompt_ids(pm, 0), at_step=6)
    before = len(pm.worker.batch_sizes)
    calls: list[Callable[[], Any]] = [
        lambda: pm.answer(*example(0), max_new_tokens=NEW),
        lambda: streamed(pm, 1),
        lambda: streamed(pm, 2),
        lambda: pm.answer(*example(3), max_new_tokens=NEW),
    ]
    results = run_together(calls)
    assert pm.worker.batch_sizes[before] == CALLERS
    assert isinstance(results[0], Boom)
    for i in (1, 2, 3):
        assert isinstance(results[i], PleiasAnswer), results[i]
        assert results[i].raw == reference[i].raw


def test_a_request_that_breaks_the_running_batch_as_it_joins_fails_alone(
    pm: PleiasModel, reference: list[PleiasAnswer], poisoned_forward: dict[str, Any]
) -> None:
    # A stream and an answer are generating; a request joins them that makes every step
    # fail: the stream (run again without repeating its text) and the answer get theirs.
    long = {"max_new_tokens": 1000, "min_new_tokens": 1000}
    runner_alone = pm.answer(*example(0), **long)
    assert pm.worker.wait_idle(timeout=60)
    out: dict[str, Any] = {}

    def runner() -> None:
        events = list(pm.stream(*example(0), **long))
        assert isinstance(events[-1], Finished)
        out["runner"] = events[-1].answer

    def other() -> None:
        out["other"] = pm.answer(*example(1), max_new_tokens=NEW)

    threads = [threading.Thread(target=runner)]
    threads[0].start()
    wait_for(lambda: pm.worker.batch_sizes[-1:] == [1] and not pm.worker.wait_idle(0))
    threads.append(threading.Thread(target=other))
    threads[1].start()
    wait_for(lambda: pm.worker.batch_sizes[-1:] == [2])  # the answer joined the stream
    # The fixture tells a batch holding the poison by its prefill: set it only now.
    poisoned_forward.update(poison=prompt_ids(pm, 2), at_step=1)
    with pytest.raises(Boom):
        pm.answer(*example(2), max_new_tokens=NEW)
    for t in threads:
        t.join(120)
    assert out["other"].raw == reference[1].raw
    assert out["runner"].raw == runner_alone.raw


def wait_for(condition: Callable[[], bool], timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline
        time.sleep(0.001)


@pytest.fixture
def failing_decoder(pm: PleiasModel, monkeypatch: pytest.MonkeyPatch) -> None:
    """Example 1's row fails in its own decoding after 3 tokens (the batch is fine)."""
    poison = tuple(prompt_ids(pm, 1))
    real = Row.step

    def step(self: Row, token_id: int) -> None:
        if self.request.ids == poison and self.tokens >= 3:
            raise Boom("this request's decoder failed")
        real(self, token_id)

    monkeypatch.setattr(Row, "step", step)


@pytest.mark.usefixtures("failing_decoder")
def test_a_request_whose_decoding_fails_fails_alone(
    pm: PleiasModel, reference: list[PleiasAnswer]
) -> None:
    before = len(pm.worker.batch_sizes)
    calls: list[Callable[[], Any]] = [
        (lambda i=i: pm.answer(*example(i), max_new_tokens=NEW)) for i in range(CALLERS)
    ]
    calls[3] = lambda: streamed(pm, 3)
    results = run_together(calls)
    assert pm.worker.batch_sizes[before] == CALLERS
    assert isinstance(results[1], Boom)
    for i in (0, 2, 3):
        assert isinstance(results[i], PleiasAnswer), results[i]
        assert results[i].raw == reference[i].raw


@pytest.mark.usefixtures("failing_decoder")
def test_a_batch_with_a_failing_row_keeps_the_others_without_running_them_again(
    pm: PleiasModel, reference: list[PleiasAnswer]
) -> None:
    assert pm.worker.wait_idle(timeout=60)
    before = len(pm.worker.batch_sizes)
    with pytest.raises(BatchError) as caught:
        pm.answer_batch([example(i) for i in range(CALLERS)], max_new_tokens=NEW)
    results = caught.value.results
    assert isinstance(results[1], Boom)
    assert [r.raw for i, r in enumerate(results) if i != 1] == [reference[i].raw for i in (0, 2, 3)]
    assert pm.worker.batch_sizes[before:] == [CALLERS]  # one run: nothing generated twice


async def test_async_callers_of_a_failing_batch(
    pm: PleiasModel, reference: list[PleiasAnswer], poisoned_forward: dict[str, Any]
) -> None:
    poisoned_forward.update(poison=prompt_ids(pm, 3), at_step=2)

    async def stream(i: int) -> PleiasAnswer:
        events = [e async for e in pm.astream(*example(i), max_new_tokens=NEW)]
        assert isinstance(events[-1], Finished)
        return events[-1].answer

    results = await asyncio.gather(
        pm.aanswer(*example(0), max_new_tokens=NEW),
        stream(1),
        pm.aanswer(*example(2), max_new_tokens=NEW),
        pm.aanswer(*example(3), max_new_tokens=NEW),
        return_exceptions=True,
    )
    assert isinstance(results[3], Boom)
    for i in (0, 1, 2):
        assert isinstance(results[i], PleiasAnswer), results[i]
        assert results[i].raw == reference[i].raw


# ------------------------------------------------ 2: a dead worker is replaced, never reused


def test_a_closed_worker_is_replaced(
    tiny_trained_model_numbered: Path, reference: list[PleiasAnswer], pm: PleiasModel
) -> None:
    old = pm.worker
    old.close()
    assert old.wait_idle(timeout=30)
    assert pm.answer(*example(0), max_new_tokens=NEW).raw == reference[0].raw
    assert pm.worker is not old
    again = PleiasModel.from_pretrained(
        tiny_trained_model_numbered, max_batch_size=8, batch_window=0.5, model_kwargs=OWN
    )
    assert again.answer(*example(1), max_new_tokens=NEW).raw == reference[1].raw
    assert again.worker is pm.worker  # the new worker is shared again


def test_a_new_model_of_a_closed_worker_works(
    tiny_trained_model_numbered: Path, reference: list[PleiasAnswer], pm: PleiasModel
) -> None:
    pm.worker.close()
    again = PleiasModel.from_pretrained(
        tiny_trained_model_numbered, max_batch_size=8, batch_window=0.5, model_kwargs=OWN
    )
    assert again.answer(*example(1), max_new_tokens=NEW).raw == reference[1].raw
    assert pm.answer(*example(0), max_new_tokens=NEW).raw == reference[0].raw


@pytest.mark.filterwarnings("ignore::pytest.PytestUnhandledThreadExceptionWarning")
def test_a_worker_killed_by_a_base_exception_is_replaced(
    tiny_trained_model_numbered: Path, reference: list[PleiasAnswer], pm: PleiasModel
) -> None:
    worker = pm.worker
    inner = pm.model

    def forward(*args: Any, **kwargs: Any) -> Any:
        raise Die("the generation thread dies")

    inner.forward = forward
    try:
        with pytest.raises(Die):
            pm.answer(*example(0), max_new_tokens=NEW)
        worker._thread.join(30)
        assert not worker._thread.is_alive()
    finally:
        del inner.forward
    del inner
    gc.collect()
    assert pm.answer(*example(0), max_new_tokens=NEW).raw == reference[0].raw
    assert pm.worker is not worker
    again = PleiasModel.from_pretrained(
        tiny_trained_model_numbered, max_batch_size=8, batch_window=0.5, model_kwargs=OWN
    )
    assert again.answer(*example(2), max_new_tokens=NEW).raw == reference[2].raw


async def test_async_calls_after_a_close(pm: PleiasModel, reference: list[PleiasAnswer]) -> None:
    pm.worker.close()
    answer = await pm.aanswer(*example(0), max_new_tokens=NEW)
    assert answer.raw == reference[0].raw
    pm.worker.close()
    events = [e async for e in pm.astream(*example(1), max_new_tokens=NEW)]
    assert isinstance(events[-1], Finished)
    assert events[-1].answer.raw == reference[1].raw


# ------------------------------------------------------- 3: bad inputs fail at once, clearly


def test_a_mapping_is_not_a_list_of_sources(pm: PleiasModel) -> None:
    with pytest.raises(InvalidArgument, match="dict"):
        sources_arg({"a text": "another"})  # type: ignore[arg-type]
    with pytest.raises(InvalidArgument, match="dict"):
        make_sources({"a text": "another"})  # type: ignore[arg-type]
    with pytest.raises(InvalidArgument, match="dict"):
        pm.answer("q?", {"text": "a source"})  # type: ignore[arg-type]
    with pytest.raises(InvalidArgument, match="dict"):
        batch_items([("q?", {"text": "a source"})])  # type: ignore[list-item]


def test_a_source_id_must_be_a_str() -> None:
    with pytest.raises(InvalidArgument, match=r"Source\.id"):
        Source("text", id=0)  # type: ignore[arg-type]
    with pytest.raises(InvalidArgument, match=r"Source\.id"):
        Source("text", id=b"ab")  # type: ignore[arg-type]
    assert Source("text", id=None).id == Source("text").id  # type: ignore[arg-type]
    assert Source("text", id="x").id == "x"


def test_source_metadata_none_is_empty_and_others_must_be_mappings() -> None:
    src = Source("text", metadata=None)  # type: ignore[arg-type]
    assert dict(src.metadata) == {} and src.title is None and src.url is None
    with pytest.raises(InvalidArgument, match=r"Source\.metadata"):
        Source("text", metadata=["title"])  # type: ignore[arg-type]


def test_an_unknown_finish_reason() -> None:
    with pytest.raises(InvalidArgument, match="finish_reason"):
        parse_response("text", finish_reason="banana")  # type: ignore[arg-type]
    with pytest.raises(InvalidArgument, match="finish_reason"):
        StreamParser(()).close("banana")  # type: ignore[arg-type]
    assert parse_response("text", finish_reason="length").finish_reason == "length"


@pytest.mark.parametrize("query", [None, "", "   ", 3, b"q?"])
def test_a_bad_query_fails_at_the_call(query: Any) -> None:
    backend = Backend(ScriptedEngine({}, default="Answer."))
    with pytest.raises(InvalidArgument, match="query"):
        backend.astream(query)
    with pytest.raises(InvalidArgument, match="query"):
        backend.stream(query)
    with pytest.raises(InvalidArgument, match="query"):
        backend.answer(query)
    with pytest.raises(InvalidArgument, match="query"):
        backend.answer_batch([(query, [])])
    with pytest.raises(InvalidArgument, match="query"):
        backend.encode(query)
    with pytest.raises(InvalidArgument, match="query"):
        asyncio.run(backend.aanswer(query))
    with pytest.raises(InvalidArgument, match="query"):
        asyncio.run(backend.aanswer_batch([query]))


def test_a_bad_query_fails_at_the_call_of_a_local_model(pm: PleiasModel) -> None:
    with pytest.raises(InvalidArgument, match="query"):
        pm.astream(None)  # type: ignore[arg-type]
    with pytest.raises(InvalidArgument, match="query"):
        pm.stream("")


def test_a_rerun_stream_that_diverges_fails_instead_of_sending_other_text() -> None:
    from pleias_rag.local._streaming import Request, ThreadSink

    class Codec:
        def decode(self, ids: Any) -> str:
            return "".join(chr(97 + i) for i in ids)

    sink = ThreadSink()
    req = Request(
        ids=(1,), settings=GenerationSettings(), sink=sink, codec=Codec(),  # type: ignore[arg-type]
        stop_ids=(99,), pad_id=0, stream=True,
    )  # fmt: skip
    first = Row(req)
    first.step(0)
    first.step(1)
    assert [sink.get(), sink.get()] == ["a", "b"]
    cause = Boom("the batch failed")
    again = first.again(cause)
    assert first.done and again.replay == (0, 1)
    again.step(0)  # the same token: its text was sent already
    again.step(2)  # another one: the consumer saw "ab", cannot get "ac"
    error = sink.get()
    assert isinstance(error, RuntimeError) and error.__cause__ is cause
    assert again.done
    rerun = Row(req, replay=(0, 1), cause=cause)
    for token in (0, 1, 2):
        rerun.step(token)
    assert sink.get() == "c"  # only the text not sent yet
