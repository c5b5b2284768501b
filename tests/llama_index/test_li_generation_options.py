"""PleiasLLM takes every core generation option (GenerationSettings' fields), by name, in
the constructor and per call: an option added to the core needs no edit here."""

from __future__ import annotations

import dataclasses
import json
from typing import Any

import pytest
from li_support import ScriptedBackend, hash_output

from llama_index_pleias import PleiasLLM
from pleias_rag.generation import GENERATION_OPTIONS, GenerationSettings


def answer_yes(query: str, sources: Any) -> str:
    return hash_output("Thinking.", "Yes.")


def sample(name: str) -> Any:
    """A valid value of a core option: its default, or 1 where the default is None."""
    default = {f.name: f.default for f in dataclasses.fields(GenerationSettings)}[name]
    return 1 if default is None else default


def core_value(gen: dict[str, Any], name: str) -> Any:
    return getattr(GenerationSettings().merged(**gen), name)


@pytest.mark.parametrize("name", GENERATION_OPTIONS)
def test_every_core_option_in_the_constructor_and_per_call(name: str) -> None:
    backend = ScriptedBackend(answer_yes)
    expected = getattr(GenerationSettings(**{name: sample(name)}), name)
    llm = PleiasLLM(backend, **{name: sample(name)})
    llm.complete("q", sources=["text"])
    assert core_value(backend.calls[-1][3], name) == expected
    PleiasLLM(backend).complete("q", sources=["text"], **{name: sample(name)})
    assert core_value(backend.calls[-1][3], name) == expected


def test_min_new_tokens_reaches_the_backend() -> None:
    backend = ScriptedBackend(answer_yes)
    llm = PleiasLLM(backend, max_new_tokens=50, min_new_tokens=5)
    assert llm.generation == {"min_new_tokens": 5}
    assert llm.complete("q", sources=["text"]).text == "Yes."
    assert backend.calls[-1][3] == {"max_new_tokens": 50, "temperature": 0.0, "min_new_tokens": 5}
    llm.complete("q", sources=["text"], min_new_tokens=7, max_tokens=20)
    assert backend.calls[-1][3]["min_new_tokens"] == 7
    assert backend.calls[-1][3]["max_new_tokens"] == 20
    list(llm.stream_complete("q", sources=["text"]))
    assert backend.calls[-1][0:1] == ("stream",) and backend.calls[-1][3]["min_new_tokens"] == 5


def test_min_new_tokens_forces_a_real_model_to_go_on(
    hash_llm: PleiasLLM, hash_examples: dict[str, Any]
) -> None:
    ex = hash_examples["cited"]
    plain = hash_llm.complete(ex.query, sources=list(ex.sources))
    tokens = plain.raw["usage"]["completion_tokens"]
    longer = hash_llm.with_settings(min_new_tokens=tokens + 3, max_new_tokens=tokens + 3)
    forced = longer.complete(ex.query, sources=list(ex.sources))
    assert forced.raw["usage"]["completion_tokens"] == tokens + 3
    assert forced.additional_kwargs["finish_reason"] == "length"


def test_bad_values_fail_with_the_core_message() -> None:
    backend = ScriptedBackend(answer_yes)
    with pytest.raises(ValueError, match="min_new_tokens"):
        PleiasLLM(backend, min_new_tokens=-1)
    with pytest.raises(ValueError, match="above max_new_tokens"):
        PleiasLLM(backend, max_new_tokens=4, min_new_tokens=5)
    with pytest.raises(ValueError, match="above max_new_tokens"):
        PleiasLLM(backend, max_new_tokens=4).complete("q", sources=["t"], min_new_tokens=5)
    with pytest.raises(TypeError, match="unexpected keyword argument 'min_tokens'") as info:
        PleiasLLM(backend).complete("q", min_tokens=1)
    assert "min_new_tokens" in str(info.value) and "sources=" in str(info.value)
    with pytest.raises(TypeError, match="min_new_tokens"):  # the list comes from the core
        PleiasLLM(backend, beam_width=2)
    with pytest.raises(TypeError, match="temperature= itself"):
        PleiasLLM(backend, generation={"temperature": 0.5})


def test_options_round_trip_and_copy() -> None:
    llm = PleiasLLM("some/model", min_new_tokens=3, max_new_tokens=9)
    data = json.loads(llm.to_json())
    assert data["generation"] == {"min_new_tokens": 3}
    again = PleiasLLM.from_dict(data)
    assert again.to_dict() == llm.to_dict()
    assert again.generation_kwargs()["min_new_tokens"] == 3
    tuned = llm.with_settings(min_new_tokens=4)
    assert tuned.generation == {"min_new_tokens": 4} and llm.generation == {"min_new_tokens": 3}
    assert llm.with_settings(min_new_tokens=None).generation == {}
    assert llm.with_settings(temperature=0.5).generation == {"min_new_tokens": 3}
    with pytest.raises(TypeError, match="unknown PleiasLLM settings"):
        llm.with_settings(beam_width=2)
