"""``ScriptedEngine``: an engine whose "model" writes text you script — to test chains, query
engines and agents built on a :class:`~pleias_rag.backend.Backend` without any model.

    backend = Backend(ScriptedEngine({"When?": 'Analysis.<|source_analysis_end|>...'}))

Every public operation of the backend works on it (prompt building, streaming, batches, async,
parsing and quote checks), since they are the backend's, not the engine's.
"""

from __future__ import annotations

from collections.abc import Callable, Generator, Mapping, Sequence

from .dialects import Dialect, check_dialect
from .engine import Completion, Engine, StreamItem
from .generation import GenerationSettings
from .sources import Source
from .tokens import EncodedPrompt

__all__ = ["Script", "ScriptedEngine"]

#: ``script(query, sources)`` → what the model writes after the prompt.
Script = Callable[[str, Sequence[Source]], str]


class ScriptedEngine(Engine):
    """Writes ``script(query, sources)`` (or ``script[query]``, else ``default``) in chunks.

    Stop strings of the call cut the text, as a real engine would. Each generation is
    recorded in :attr:`prompts` with its settings.

    Args:
        script: a function of the query and sources, or a dict from query to output.
        default: the output for a query the dict does not have.
        dialect: ``hash`` or ``numbered``: the format the script is written in.
        chunk: characters per streamed delta.
        context_window: what the backend budgets prompts against (prompts are strings).
        model_name: the name shown in traces.
    """

    def __init__(
        self,
        script: Script | Mapping[str, str],
        *,
        default: str = "",
        dialect: str = "hash",
        chunk: int = 7,
        context_window: int = 2048,
        model_name: str = "scripted-pleias",
    ) -> None:
        self._script = script
        self._default = default
        self._dialect = check_dialect(dialect)
        self._chunk = max(1, chunk)
        self._window = context_window
        self._name = model_name
        self.prompts: list[tuple[EncodedPrompt, GenerationSettings]] = []

    @property
    def dialect(self) -> Dialect:
        return self._dialect

    @property
    def model_name(self) -> str:
        return self._name

    @property
    def context_window(self) -> int:
        return self._window

    def count_tokens(self, text: str) -> int:
        return len(text.split())  # words stand for tokens: no tokenizer here

    def output(self, prompt: EncodedPrompt, settings: GenerationSettings) -> str:
        """What the scripted model writes for ``prompt``, cut at the call's stop strings."""
        if isinstance(self._script, Mapping):
            raw = self._script.get(prompt.query, self._default)
        else:
            raw = self._script(prompt.query, prompt.sources)
        for stop in settings.stop:
            raw = raw.split(stop, 1)[0]
        return raw

    def stream(
        self, prompt: EncodedPrompt, settings: GenerationSettings
    ) -> Generator[StreamItem, None, None]:
        self.prompts.append((prompt, settings))
        raw = self.output(prompt, settings)
        for i in range(0, len(raw), self._chunk):
            yield raw[i : i + self._chunk]
        yield Completion(raw)
