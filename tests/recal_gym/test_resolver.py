"""Tests of model-name resolution (docs/protocol.md §8)."""

from __future__ import annotations

import dataclasses

import pytest
from hypothesis import given
from hypothesis import strategies as st

from recal_gym.pools.spec import default_pool_spec, load_pool_spec
from recal_gym.resolver import resolve_model

FULL = load_pool_spec("router-r1")
DEFAULT = default_pool_spec()


@pytest.mark.parametrize(
    ("name", "expected"),
    [
        ("Qwen2.5-7B-Instruct", "Qwen2.5-7B-Instruct"),
        ("  qwen2.5-7b-instruct ", "Qwen2.5-7B-Instruct"),
        ("QWEN2.5", "Qwen2.5-7B-Instruct"),
        ("qwen-72b", "Qwen2.5-7B-Instruct"),
        ("LLaMA-3.1-70 B-Instruct", "LLaMA-3.1-70B-Instruct"),
        ("Mix-tral-8x22B-Instruct", "Mixtral-8x22B-Instruct"),
        ("meta/llama-3.1-8b-instruct", "LLaMA-3.1-8B-Instruct"),
        ("llama-8b", "LLaMA-3.1-8B-Instruct"),
        ("llama", None),
        ("llama-51b", None),
        ("granite", None),
        ("gemma", "Gemma-2-27B-Instruct"),
        ("gpt-4o", None),
        ("", None),
        ("   ", None),
    ],
)
def test_lenient_default_pool(name: str, expected: str | None) -> None:
    assert resolve_model(name, DEFAULT.name_table("lenient")) == expected


def test_unlisted_models_resolve_only_when_in_pool() -> None:
    assert resolve_model("palmyra", FULL.name_table()) == "Palmyra-Creative-122B"
    assert resolve_model("llama 8b chatqa", FULL.name_table()) == "LLaMA3-ChatQA-1.5-8B"
    assert resolve_model("palmyra", DEFAULT.name_table()) is None


def test_router_r1_mode_uses_keyword_rules_only() -> None:
    table = FULL.name_table("router-r1")
    assert resolve_model("Mix-tral-8x22B", table) is None  # squashed equality is not Router-R1's
    assert resolve_model("LLaMA-3.1-70 B-Instruct", table) is None
    assert resolve_model("LLaMA-3.1-70B-Instruct", table) == "LLaMA-3.1-70B-Instruct"
    assert resolve_model("QWEN", table) == "Qwen2.5-7B-Instruct"


def test_exact_mode() -> None:
    table = DEFAULT.name_table("exact")
    assert resolve_model("mistral-7b-instruct", table) == "Mistral-7B-Instruct"
    assert resolve_model("mistral", table) is None


@given(st.text(max_size=40))
def test_resolver_total_and_returns_pool_names(name: str) -> None:
    for mode in ("exact", "lenient", "router-r1"):
        table = dataclasses.replace(FULL.name_table(), name_matching=mode)
        out = resolve_model(name, table)
        assert out is None or out in FULL.names
