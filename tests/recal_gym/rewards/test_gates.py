"""Gates as data: parsing, canonical text, scalar == batch evaluation, NaN, predicates, DAG checks."""

from __future__ import annotations

import math
from collections.abc import Iterator, Mapping

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from recal_gym.errors import InvalidConfig, UnknownComponent, UnknownName
from recal_gym.rewards.gates import (
    GATE_PREDICATES,
    GATE_PRESETS,
    And,
    Compare,
    Const,
    Not,
    Or,
    Predicate,
    check_gate_order,
    parse_gate,
    register_gate,
    unregister_gate,
)


@pytest.fixture
def cheap_and_right() -> Iterator[str]:
    @register_gate("cheap_and_right", reads=("answer", "cost"))
    def _pred(v: Mapping[str, float], tau: float) -> bool:
        return v["answer"] >= tau and v["cost"] > 0.5

    yield "cheap_and_right"
    unregister_gate("cheap_and_right")


def test_presets_are_named_expressions() -> None:
    assert parse_gate("always") == Const(True)
    assert parse_gate("format_ok") == Compare("format", "==", 0.0)
    assert parse_gate("format_ok_and_answer_positive") == And(
        (Compare("format", "==", 0.0), Compare("answer", ">", 0.0))
    )
    assert parse_gate("format_ok_and_answer_at_least_tau").canonical() == "format == 0 and answer >= tau"
    for text in GATE_PRESETS.values():
        assert parse_gate(text).canonical() == text


@pytest.mark.parametrize(
    ("text", "canonical"),
    [
        ("true", "true"),
        ("false", "false"),
        ("format==0", "format == 0"),
        ("answer >= 0.5", "answer >= 0.5"),
        ("answer >= tau", "answer >= tau"),
        ("a > 0 or b > 0 and c > 0", "a > 0 or (b > 0 and c > 0)"),  # and binds tighter; canonical says so
        ("(a > 0 or b > 0) and c > 0", "(a > 0 or b > 0) and c > 0"),
        ("not (a > 0 or b > 0)", "not (a > 0 or b > 0)"),
        ("not not a != 1", "not not (a != 1)"),
        ("a > 0 and (b > 0 and c > 0)", "a > 0 and b > 0 and c > 0"),  # nested and flattens
        ("x <= -1.5e-3", "x <= -0.0015"),
    ],
)
def test_parse_and_canonical_round_trip(text: str, canonical: str) -> None:
    gate = parse_gate(text)
    assert gate.canonical() == canonical
    assert parse_gate(canonical) == gate
    assert str(gate) == canonical and repr(gate) == f"Gate({canonical!r})"


def test_precedence_is_and_before_or() -> None:
    gate = parse_gate("a > 0 or b > 0 and c > 0")
    assert isinstance(gate, Or) and isinstance(gate.items[1], And)
    assert gate.test({"a": 1.0, "b": 0.0, "c": 0.0}, 1.0)
    assert not gate.test({"a": 0.0, "b": 1.0, "c": 0.0}, 1.0)


@pytest.mark.parametrize(
    ("text", "match"),
    [
        ("", "empty gate"),
        ("format = 0", "unexpected text at column 8: '= 0'"),
        ("format == ", "unexpected end"),
        ("format == answer", "must be a number or 'tau'"),
        ("(format == 0", "missing '\\)'"),
        ("format == 0 and", "unexpected end"),
        ("format == 0 format", "unexpected 'format'"),
        ("and", "unexpected 'and'"),
        ("answer >= tau $", "unexpected text"),
    ],
)
def test_syntax_errors_quote_the_gate(text: str, match: str) -> None:
    with pytest.raises(InvalidConfig, match=match):
        parse_gate(text)


def test_non_string_gate_is_rejected() -> None:
    with pytest.raises(InvalidConfig, match="must be a string expression"):
        parse_gate(3)  # type: ignore[arg-type]


_names = ("format", "answer", "info")
_leaf = st.builds(
    Compare, st.sampled_from(_names), st.sampled_from(["==", "!=", ">=", "<=", ">", "<"]),
    st.one_of(st.none(), st.sampled_from([0.0, 0.5, 1.0, -1.0])),
)  # fmt: skip
_gates = st.recursive(
    _leaf,
    lambda inner: st.one_of(
        st.builds(lambda a, b: And((a, b)), inner, inner),
        st.builds(lambda a, b: Or((a, b)), inner, inner),
        st.builds(Not, inner),
    ),
    max_leaves=6,
)
_value = st.one_of(st.sampled_from([0.0, 0.5, 1.0, -1.0]), st.floats(-2.0, 2.0), st.just(math.nan))


@given(_gates, st.lists(st.tuples(_value, _value, _value), min_size=1, max_size=12), st.floats(0.0, 1.0))
def test_scalar_and_batch_evaluation_agree(gate, rows, tau: float) -> None:
    columns = {n: np.array([r[i] for r in rows], dtype=np.float64) for i, n in enumerate(_names)}
    batch = gate.evaluate_batch(columns, tau)
    for i, r in enumerate(rows):
        scalar = gate.evaluate(dict(zip(_names, r, strict=True)), tau)
        assert (math.isnan(scalar) and math.isnan(batch[i])) or scalar == batch[i]
    assert parse_gate(gate.canonical()).evaluate_batch(columns, tau).tobytes() == batch.tobytes()


def test_nan_propagates_only_through_read_components() -> None:
    gate = parse_gate("format == 0")
    assert math.isnan(gate.evaluate({"format": math.nan, "answer": 1.0}, 1.0))
    assert gate.evaluate({"format": 0.0, "answer": math.nan}, 1.0) == 1.0
    assert parse_gate("true").evaluate({"format": math.nan}, 1.0) == 1.0


def test_registered_predicate(cheap_and_right: str) -> None:
    gate = parse_gate("format == 0 and cheap_and_right")
    assert isinstance(gate, And) and gate.items[1] == Predicate(cheap_and_right)
    assert gate.reads == {"format", "answer", "cost"}
    assert gate.evaluate({"format": 0.0, "answer": 1.0, "cost": 0.9}, 1.0) == 1.0
    assert gate.evaluate({"format": 0.0, "answer": 1.0, "cost": 0.2}, 1.0) == 0.0
    cols = {"format": np.array([0.0, 0.0, -1.0]), "answer": np.array([1.0, math.nan, 1.0]), "cost": np.array([0.9] * 3)}
    out = gate.evaluate_batch(cols, 1.0)
    assert out[0] == 1.0 and math.isnan(out[1]) and out[2] == 0.0
    assert GATE_PREDICATES[cheap_and_right].source.endswith("cheap_and_right.<locals>._pred")


def test_predicate_registry_validation(cheap_and_right: str) -> None:
    with pytest.raises(InvalidConfig, match="already registered"):
        register_gate(cheap_and_right, reads=("answer",))
    with pytest.raises(InvalidConfig, match="must be an identifier"):
        register_gate("tau", reads=("answer",))
    with pytest.raises(InvalidConfig, match="at least one component"):
        register_gate("empty_reads", reads=())
    with pytest.raises(UnknownName, match="Did you mean 'cheap_and_right'"):
        parse_gate("cheap_and_rigth").reads  # noqa: B018 - the lookup raises
    with pytest.raises(UnknownName, match="not registered"):
        unregister_gate("nope")


def test_gate_order_is_a_dag() -> None:
    gates = {n: parse_gate(t) for n, t in (("format", "true"), ("answer", "format == 0"), ("info", "answer >= tau"))}
    assert check_gate_order(gates) == ("format", "answer", "info")
    with pytest.raises(InvalidConfig, match="the gate of 'answer' \\(answer > 0\\) reads 'answer' itself"):
        check_gate_order({**gates, "answer": parse_gate("answer > 0")})
    with pytest.raises(InvalidConfig, match="cycle \\(format -> info -> answer -> format\\)"):
        check_gate_order({**gates, "format": parse_gate("info == 1")})
    with pytest.raises(UnknownComponent, match=r"reads unknown component 'anwser'.*Did you mean 'answer'"):
        check_gate_order({**gates, "info": parse_gate("anwser >= tau")})
