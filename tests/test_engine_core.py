"""The engine core: any Engine gets every public operation of Backend; one exception root;
one EncodedPrompt for token-id and string prompts; model resolution written once."""

from __future__ import annotations

import asyncio
import sys
from collections.abc import AsyncIterator, Generator
from pathlib import Path

import pytest

from pleias_rag import AnswerDelta, Event, Finished, PleiasAnswer, Source
from pleias_rag.backend import Backend, resolve_backend
from pleias_rag.dialects import Dialect
from pleias_rag.engine import Completion, Engine, StreamItem
from pleias_rag.errors import InvalidArgument, InvalidType, PleiasError, PromptTooLong
from pleias_rag.generation import GenerationSettings
from pleias_rag.scripted import ScriptedEngine
from pleias_rag.tokens import EncodedPrompt

sys.path.insert(0, str(Path(__file__).parent / "remote"))
from fake_server import FakeServer

EIFFEL = Source("The Eiffel Tower was completed in 1889 for the World's Fair.")
QUOTE = "The Eiffel Tower was completed in 1889"


def output(sid: str) -> str:
    return (
        f"The source answers.<|source_analysis_end|>\n<|answer_start|>It opened in 1889"
        f'<ref name="{sid}">"{QUOTE}"</ref>.<|answer_end|>'
    )


class EchoEngine(Engine):
    """The smallest engine: one property per fact and ``stream`` (tokens are characters)."""

    def __init__(self) -> None:
        self.seen: list[tuple[EncodedPrompt, GenerationSettings]] = []

    @property
    def dialect(self) -> Dialect:
        return "hash"

    @property
    def model_name(self) -> str:
        return "echo"

    @property
    def context_window(self) -> int:
        return 4096

    def count_tokens(self, text: str) -> int:
        return len(text)

    def stream(
        self, prompt: EncodedPrompt, settings: GenerationSettings
    ) -> Generator[StreamItem, None, None]:
        self.seen.append((prompt, settings))
        text = (
            output(prompt.sources[0].id) if prompt.sources else "<|answer_start|>No.<|answer_end|>"
        )
        for i in range(0, len(text), 5):
            yield text[i : i + 5]
        yield Completion(text, completion_tokens=len(text))


def check(answer: PleiasAnswer) -> None:
    assert answer.answer == "It opened in 1889[1]."
    assert [c.status for c in answer.citations] == ["verified"]
    assert answer.citations[0].source is EIFFEL
    assert answer.finish_reason == "stop" and answer.completion_tokens


def test_a_tiny_engine_gets_every_operation() -> None:
    engine = EchoEngine()
    backend = Backend(engine, generation={"max_new_tokens": 64})
    one = backend.answer("When?", [EIFFEL])
    check(one)
    events = list(backend.stream("When?", [EIFFEL]))
    assert isinstance(events[-1], Finished) and events[-1].answer == one
    assert "".join(e.text for e in events if isinstance(e, AnswerDelta)) == one.answer
    assert backend.answer_batch([("When?", [EIFFEL]), "Hi?"])[0] == one

    async def run() -> tuple[PleiasAnswer, list[Event], list[PleiasAnswer]]:
        a = await backend.aanswer("When?", [EIFFEL])
        evs = [e async for e in backend.astream("When?", [EIFFEL])]
        batch = await backend.aanswer_batch([("When?", [EIFFEL]), "Hi?"])
        return a, evs, batch

    a, evs, batch = asyncio.run(run())
    assert a == one and batch[0] == one and batch[1].answer == "No."
    last = evs[-1]
    assert isinstance(last, Finished) and last.answer == one
    # The settings reached the engine merged with the defaults; the prompt is a string.
    prompt, settings = engine.seen[0]
    assert settings.max_new_tokens == 64 and isinstance(prompt.prompt, str)
    assert prompt.query == "When?" and prompt.sources == (EIFFEL,)
    assert backend.encode("When?", [EIFFEL]).prompt == prompt.prompt
    assert backend.prompt_tokens("When?", [EIFFEL]) == len(prompt.prompt)
    assert backend.count_tokens("abc") == 3 and backend.count_tokens("") == 0
    assert backend.model_name == "echo" and backend.context_window == 4096


def test_closing_a_stream_closes_the_engine_stream() -> None:
    closed: list[bool] = []

    class Endless(EchoEngine):
        def stream(
            self, prompt: EncodedPrompt, settings: GenerationSettings
        ) -> Generator[StreamItem, None, None]:
            try:
                while True:
                    yield "<|answer_start|>word "
            finally:
                closed.append(True)

    events = Backend(Endless()).stream("When?", [EIFFEL])
    for n, _ in enumerate(events):
        if n > 3:
            break
    events.close()
    assert closed == [True]

    async def consume() -> None:
        stream = Backend(Endless()).astream("When?", [EIFFEL])
        async for n, _ in _enumerate(stream):
            if n > 3:
                break
        await stream.aclose()

    asyncio.run(consume())
    assert closed == [True, True]


async def _enumerate(items: AsyncIterator[Event]) -> AsyncIterator[tuple[int, Event]]:
    n = 0
    async for item in items:
        yield n, item
        n += 1


def test_string_prompts_have_no_ids_and_say_so() -> None:
    backend = Backend(ScriptedEngine({}))
    encoded = backend.encode("When?", [EIFFEL])
    with pytest.raises(InvalidArgument, match="prompt_tokens"):
        _ = encoded.ids
    with pytest.raises(InvalidArgument, match="tokenizer="):
        backend.token_ids("hello")


def test_the_numbered_string_prompt_keeps_ten_sources() -> None:
    backend = Backend(ScriptedEngine({}, dialect="numbered"))
    sources = [Source(f"Source text number {i}.") for i in range(12)]
    encoded = backend.encode("When?", sources)
    assert len(encoded.sources) == 10
    assert encoded.dropped_ids == tuple(s.id for s in sources[10:])
    assert len(Backend(ScriptedEngine({}), max_sources=2).encode("Q?", sources).sources) == 2


def test_one_exception_root() -> None:
    from pleias_rag.remote import RemoteBackend, RemoteConnectionError, RemoteError

    assert issubclass(InvalidArgument, ValueError) and issubclass(InvalidType, TypeError)
    assert issubclass(PromptTooLong, InvalidArgument)
    assert issubclass(RemoteError, PleiasError) and issubclass(RemoteConnectionError, PleiasError)
    with pytest.raises(InvalidArgument, match="unknown generation argument"):
        Backend(ScriptedEngine({})).answer("Q?", [], max_tokens_typo=3)
    with pytest.raises(InvalidArgument, match="max_retries must be an int"):
        RemoteBackend("http://127.0.0.1:1", "m", dialect="hash", max_retries=1.5)  # type: ignore[arg-type]
    with pytest.raises(InvalidArgument, match="engine must be"):
        Backend(object())  # type: ignore[arg-type]


def test_prompt_too_long_names_the_numbers(tiny_random_model_hash: Path) -> None:
    from pleias_rag.local import PleiasModel

    model = PleiasModel(tiny_random_model_hash, device="cpu", context_window=64)
    with pytest.raises(PromptTooLong) as err:
        model.encode("word " * 200, [], max_new_tokens=8)
    assert err.value.context_window == 64 and err.value.max_new_tokens == 8
    assert err.value.prompt_tokens > 56


def test_resolve_backend_is_written_once() -> None:
    backend = Backend(ScriptedEngine({}))
    assert resolve_backend(backend) is backend
    with pytest.raises(InvalidType, match="pleias_rag Backend"):
        resolve_backend(object())
    with pytest.raises(InvalidType):
        resolve_backend("  ")


def test_remote_string_prompts_count_tokens_with_the_server() -> None:
    """The drifted bug: a RemoteBackend without tokenizer had an encode() with no ids."""
    from langchain_core.messages import HumanMessage

    from langchain_pleias import ChatPleias
    from pleias_rag.remote import RemoteBackend

    with FakeServer() as fake:
        remote = RemoteBackend(fake.base_url, "fake", dialect="hash")
        prompt = remote.encode("When was it built?", [EIFFEL]).prompt
        assert isinstance(prompt, str)
        chat = ChatPleias(model=remote)
        count = chat.get_num_tokens_from_messages([HumanMessage("When was it built?")])
        words = str(remote.encode("When was it built?").prompt).split()
        assert count == len(words)  # the fake server counts words
        with pytest.raises(InvalidArgument, match="tokenizer="):
            chat.get_token_ids("hello")


def test_the_serving_doc_engine_works_with_class_attributes() -> None:
    """docs/serving.md writes an engine with class attributes for the properties."""

    class MyEngine(Engine):
        dialect = "numbered"
        model_name = "my-pleias"
        context_window = 4096

        def stream(
            self, prompt: EncodedPrompt, settings: GenerationSettings
        ) -> Generator[StreamItem, None, None]:
            assert isinstance(prompt.prompt, str) and "<|source_id|>1" in prompt.prompt
            text = "en<|language_end|>\n<|answer_start|>It opened in 1889.<|answer_end|>"
            yield text
            yield Completion(text)

    answer = Backend(MyEngine()).answer("When?", [EIFFEL])
    assert answer.answer == "It opened in 1889." and answer.dialect == "numbered"


@pytest.mark.parametrize(
    "raw",
    [
        output(EIFFEL.id),  # an answer: the deltas are it, the end adds nothing
        "The analysis was cut off by the token lim",  # no answer: the end adds the fallback
    ],
)
def test_the_one_stream_fold_shows_what_visible_text_shows(raw: str) -> None:
    from pleias_rag.fallback import VisibleText, visible_text

    backend = Backend(ScriptedEngine({"When?": raw}, chunk=3))
    fold = VisibleText()
    steps = [fold.step(e) for e in backend.stream("When?", [EIFFEL])]
    answer = backend.answer("When?", [EIFFEL])
    assert "".join(steps) == fold.text == visible_text(answer) != ""
    assert fold.answer == answer
