"""The generation options adapters take come from ``GenerationSettings``' fields, once."""

from __future__ import annotations

import dataclasses

import pytest

from pleias_rag.errors import InvalidArgument, InvalidType
from pleias_rag.generation import GENERATION_OPTIONS, GenerationSettings, generation_kwargs


def test_options_are_the_settings_fields() -> None:
    assert tuple(f.name for f in dataclasses.fields(GenerationSettings)) == GENERATION_OPTIONS
    assert "min_new_tokens" in GENERATION_OPTIONS


def test_layers_in_order_none_means_not_given() -> None:
    defaults = {"max_new_tokens": 64, "temperature": 0.0, "seed": None, "stop": None}
    out = generation_kwargs(defaults, {"min_new_tokens": 5, "temperature": None, "seed": 3})
    assert out == {"max_new_tokens": 64, "temperature": 0.0, "min_new_tokens": 5, "seed": 3}


def test_aliases_map_to_core_names() -> None:
    out = generation_kwargs(
        {"max_new_tokens": 64}, {"max_tokens": 8}, aliases={"max_tokens": "max_new_tokens"}
    )
    assert out == {"max_new_tokens": 8}


def test_unknown_name_is_a_type_error_naming_the_options() -> None:
    with pytest.raises(InvalidType, match="unexpected keyword argument 'foo'") as info:
        generation_kwargs({"foo": 1}, also=("sources",))
    assert all(name in str(info.value) for name in GENERATION_OPTIONS)
    assert "(and sources=...)" in str(info.value)


@pytest.mark.parametrize(
    "gen",
    [{"min_new_tokens": -1}, {"temperature": 1e9}, {"max_new_tokens": 4, "min_new_tokens": 5}],
)
def test_values_are_checked_by_the_core(gen: dict[str, object]) -> None:
    with pytest.raises(InvalidArgument):
        generation_kwargs(gen)


def test_cross_checks_use_the_base_settings() -> None:
    # min_new_tokens above the default 1024 fits a backend whose max_new_tokens is larger.
    with pytest.raises(InvalidArgument, match="min_new_tokens"):
        generation_kwargs({"min_new_tokens": 2000})
    base = GenerationSettings(max_new_tokens=4096)
    assert generation_kwargs({"min_new_tokens": 2000}, base=base) == {"min_new_tokens": 2000}
