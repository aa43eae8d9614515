"""Tests of recal_gym.rewards.spec/presets: presets, validation, gates and the fold (docs/rewards.md §1, §11, §14)."""

from __future__ import annotations

import json
import math
from typing import Any

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from recal_gym.errors import InvalidConfig, InvalidData, UnknownComponent
from recal_gym.rewards import (
    BUILTIN_COMPONENTS,
    GATE_PRESETS,
    PRESETS,
    BalanceConfig,
    ComponentSpec,
    CostConfig,
    RewardSpec,
    compute_gates,
    fold_reward,
    fold_rewards,
    gate_components,
    make_spec,
    parse_gate,
    recal_spec,
    router_r1_spec,
)

COMPONENTS = BUILTIN_COMPONENTS
AUX = ("info", "route", "balance", "cost", "latency", "calls")
POS = GATE_PRESETS["format_ok_and_answer_positive"]
TAU = GATE_PRESETS["format_ok_and_answer_at_least_tau"]


def _row(fmt: float, ans: float, info: float = 1.0, route: float = 1.0, bal: float = 1.0, cost: float = 1.0):
    return np.array([[fmt, ans, info, route, bal, cost, 0.5, 0.75]], dtype=np.float64)


def _reward(spec: RewardSpec, raw: np.ndarray) -> float:
    gated = gate_components(raw, compute_gates(raw, spec))
    return fold_reward(dict(zip(spec.names, gated[0].tolist(), strict=True)), spec.weights_dict())


# --- presets -----------------------------------------------------------------------------------------


def test_router_r1_preset_weights_and_gates() -> None:
    spec = router_r1_spec()
    assert spec.name == "router-r1"
    assert spec.weights_dict() == {"format": 1.0, "answer": 1.0, **dict.fromkeys(AUX, 0.0)}
    assert spec.gates_dict() == {"format": "true", "answer": "format == 0", **dict.fromkeys(AUX, POS)}
    assert list(spec.weights_dict()) == list(COMPONENTS)
    spec = router_r1_spec(alpha=0.7)
    assert spec.weights_dict()["answer"] == 1.0 - 0.7
    assert spec.weights_dict()["cost"] == 0.7


def test_recal_preset_defaults() -> None:
    spec = recal_spec()
    assert spec.name == "recal"
    assert spec.weights == (1.0, 1.0, 0.1, 0.1, 0.1, 0.1, 0.0, 0.0)
    assert spec.gates_dict() == {"format": "true", "answer": "format == 0", **dict.fromkeys(AUX, TAU)}
    assert spec.names == COMPONENTS  # the latency and calls components are there with weight 0
    assert spec.tau == 1.0 and spec.format_penalty == -1.0
    assert spec.balance.decay == 0.99 and spec.balance.update == "episode"
    assert spec.cost == CostConfig()
    assert recal_spec(answer_metric="f1").tau == 0.5
    assert recal_spec(answer_metric="f1", tau=0.3).tau == 0.3
    assert make_spec("router-r1", answer_metric="f1").tau == 0.5


def test_make_spec_presets_and_overrides() -> None:
    assert PRESETS == ("router-r1", "recal")
    assert make_spec("router-r1") == router_r1_spec()
    assert make_spec("router-r1", alpha=0.6) == router_r1_spec(0.6)
    assert make_spec("recal") == recal_spec()
    spec = make_spec("recal", weights={"cost": 0.5}, gates={"info": "format_ok"})
    assert spec.weights_dict()["cost"] == 0.5 and spec.weights_dict()["info"] == 0.1
    assert spec.gates_dict()["info"] == "format == 0"
    again = make_spec(spec, tau=0.5)
    assert again.tau == 0.5 and again.weights == spec.weights
    spec = make_spec("recal", cost={"window": 10, "transform": "log1p"}, balance=BalanceConfig(decay=0.5))
    assert spec.cost.window == 10 and spec.cost.transform == "log1p" and spec.balance.decay == 0.5


def test_batch_update_mode_uses_the_suggested_decay_unless_given() -> None:
    spec = make_spec("recal", update_mode="batch")
    assert spec.balance.update == "batch" and spec.cost.update == "batch"
    assert spec.balance.decay == 0.9
    assert make_spec("recal", balance={"update": "batch"}).balance.decay == 0.9
    assert make_spec("recal", update_mode="batch", balance={"decay": 0.95}).balance.decay == 0.95
    assert make_spec("recal", update_mode="episode").balance.decay == 0.99


def test_spec_mapping_round_trip() -> None:
    for spec in (router_r1_spec(0.3, "f1"), make_spec("recal", update_mode="batch", info_match="substring")):
        d = json.loads(json.dumps(spec.to_dict()))
        assert RewardSpec.from_mapping(d) == spec
    assert RewardSpec.from_mapping({"preset": "router-r1", "alpha": 0.5}) == router_r1_spec(0.5)


# --- validation ----------------------------------------------------------------------------------------


def _comps(**changes: Any) -> tuple[ComponentSpec, ...]:
    base = list(recal_spec().components)
    for name, kw in changes.items():
        i = [c.name for c in base].index(name)
        base[i] = ComponentSpec(name=name, **kw)
    return tuple(base)


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"tau": 1.5}, r"tau=1.5.*\[0.0, 1.0\]"),
        ({"tau": -0.1}, "tau"),
        ({"tau": math.nan}, "tau=nan"),
        ({"answer_metric": "acc"}, "answer_metric='acc'"),
        ({"info_match": "regex"}, "info_match"),
        ({"format_penalty": 0.0}, "format_penalty=0.0"),
        ({"format_penalty": -math.inf}, "format_penalty"),
        ({"route_empty_value": 2.0}, "route_empty_value"),
        ({"balance": {"decay": 0.5}}, "must be a BalanceConfig"),
        ({"cost": None}, "must be a CostConfig"),
        ({"components": ()}, "non-empty tuple"),
        ({"components": (ComponentSpec(name="format"), ComponentSpec(name="format"))}, "'format' appears twice"),
        ({"components": ("format",)}, "must be a ComponentSpec"),
        ({"components": _comps(answer={"gate": parse_gate("answer > 0")})}, "reads 'answer' itself"),
        ({"components": _comps(format={"gate": parse_gate("answer == 1")})}, "cycle"),
    ],
)
def test_reward_spec_validation(kwargs: dict[str, Any], match: str) -> None:
    with pytest.raises(InvalidConfig, match=match):
        RewardSpec(**kwargs)


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"weight": math.nan}, r"components\['answer'\].weight=nan.*finite"),
        ({"weight": math.inf}, "finite"),
        ({"weight": "x"}, r"weight='x'"),
        ({"gate": "format == 0"}, "must be a Gate"),
        ({"params": {"a": 1}}, "params"),
        ({"function": "m:f"}, "needs a 'range'"),
        ({"range": (0.0, 1.0)}, "only for components with a 'function'"),
    ],
)
def test_component_spec_validation(kwargs: dict[str, Any], match: str) -> None:
    with pytest.raises(InvalidConfig, match=match):
        ComponentSpec(name="answer", **kwargs)


def test_unknown_component_in_a_spec_names_close_matches() -> None:
    with pytest.raises(UnknownComponent, match=r"unknown reward component 'latncy'.*Did you mean 'latency'"):
        RewardSpec(components=(*recal_spec().components, ComponentSpec(name="latncy")))


@pytest.mark.parametrize(
    ("cls", "kwargs", "match"),
    [
        (BalanceConfig, {"decay": 1.5}, "BalanceConfig.decay"),
        (BalanceConfig, {"empty_value": -1.0}, "BalanceConfig.empty_value"),
        (BalanceConfig, {"update": "episod"}, "Did you mean 'episode'"),
        (CostConfig, {"window": 0}, "CostConfig.window=0"),
        (CostConfig, {"window": 2.5}, "CostConfig.window"),
        (CostConfig, {"transform": "log"}, "CostConfig.transform"),
        (CostConfig, {"q_low": 0.9, "q_high": 0.1}, "q_low=0.9 must be < q_high"),
        (CostConfig, {"q_high": 1.5}, "q_high"),
        (CostConfig, {"eps": -1.0}, "eps"),
        (CostConfig, {"fallback": 2.0}, "fallback"),
        (CostConfig, {"update": "batches"}, "update"),
    ],
)
def test_sub_config_validation(cls: type, kwargs: dict[str, Any], match: str) -> None:
    with pytest.raises(InvalidConfig, match=match):
        cls(**kwargs)


@pytest.mark.parametrize(
    ("preset", "overrides", "err", "match"),
    [
        ("recall", {}, InvalidConfig, r"allowed: \['router-r1', 'recal'\] or a spec file.*Did you mean 'recal'"),
        ("router_r1", {}, InvalidConfig, "Did you mean 'router-r1'"),
        ("recal", {"weights": {"cots": 1.0}}, UnknownComponent, "unknown component 'cots'.*Did you mean 'cost'"),
        ("recal", {"gates": {"answr": "always"}}, UnknownComponent, "Did you mean 'answer'"),
        ("recal", {"tua": 0.5}, InvalidConfig, "unknown reward spec field 'tua'.*Did you mean 'tau'"),
        ("recal", {"alpha": 0.5}, InvalidConfig, "unknown reward spec field 'alpha'"),
        ("recal", {"cost": {"windw": 3}}, InvalidConfig, "Did you mean 'window'"),
        ("recal", {"update_mode": "batches"}, InvalidConfig, "update_mode"),
        ("recal", {"weights": {"cost": math.nan}}, InvalidConfig, "finite"),
        ("recal", {"weights": {"cost": "high"}}, InvalidConfig, r"weights\['cost'\]='high' must be a number"),
        ("recal", {"gates": {"cost": "format = 0"}}, InvalidConfig, r"gates\['cost'\].*unexpected"),
        ("recal", {"gates": {"cost": "anser >= tau"}}, UnknownComponent, "Did you mean 'answer'"),
        ("recal", {"components": [{"name": "x", "wieght": 1}]}, InvalidConfig, "Did you mean 'weight'"),
        ("recal", {"params": {"calls": 3}}, InvalidConfig, r"params\['calls'\]=3 must be a mapping"),
        ("router-r1", {"alpha": 1.5}, InvalidConfig, "alpha=1.5"),
        ("router-r1", {"alpha": math.inf}, InvalidConfig, "alpha"),
    ],
)
def test_make_spec_validation(preset: str, overrides: dict[str, Any], err: type, match: str) -> None:
    with pytest.raises(err, match=match):
        make_spec(preset, **overrides)


def test_spec_is_frozen() -> None:
    spec = recal_spec()
    with pytest.raises(AttributeError):
        spec.tau = 0.5  # type: ignore[misc]


# --- outcome tables (docs/rewards.md §11) ---------------------------------------------------------------------

_unit = st.floats(0.0, 1.0)


@given(st.sampled_from([0.0, 0.6, 0.7, 0.8, 0.9]), _unit, _unit, _unit, _unit, st.sampled_from([0.0, 1.0]))
def test_router_r1_em_outcome_table(
    alpha: float, info: float, route: float, bal: float, cost: float, em: float
) -> None:
    spec = router_r1_spec(alpha)
    assert _reward(spec, _row(-1.0, em, info, route, bal, cost)) == -1.0
    assert _reward(spec, _row(0.0, 0.0, info, route, bal, cost)) == 0.0
    # Router-R1's arithmetic: (score + 0) * (1 - alpha) + cost * alpha, bit for bit.
    assert _reward(spec, _row(0.0, 1.0, info, route, bal, cost)) == (1.0 + 0) * (1 - alpha) + cost * alpha


@given(_unit, st.floats(0.01, 1.0), _unit)
def test_router_r1_f1_outcome_table(alpha: float, f1: float, cost: float) -> None:
    spec = router_r1_spec(alpha, "f1")
    assert _reward(spec, _row(-1.0, f1, cost=cost)) == -1.0
    assert _reward(spec, _row(0.0, 0.0, cost=cost)) == 0.0
    assert _reward(spec, _row(0.0, f1, cost=cost)) == (f1 + 0) * (1 - alpha) + cost * alpha


def test_router_r1_alpha_zero_takes_three_values() -> None:
    spec = router_r1_spec()
    values = {_reward(spec, _row(f, a, cost=c)) for f in (0.0, -1.0) for a in (0.0, 1.0) for c in (0.0, 0.3, 1.0)}
    assert values == {-1.0, 0.0, 1.0}


@given(_unit, _unit, _unit, _unit, st.sampled_from([0.0, 1.0]))
def test_recal_em_outcome_table(info: float, route: float, bal: float, cost: float, em: float) -> None:
    spec = recal_spec()
    assert _reward(spec, _row(-1.0, em, info, route, bal, cost)) == -1.0
    assert _reward(spec, _row(0.0, 0.0, info, route, bal, cost)) == 0.0
    r = _reward(spec, _row(0.0, 1.0, info, route, bal, cost))
    assert r == (((((0.0 + 0.0) + 1.0) + 0.1 * info) + 0.1 * route) + 0.1 * bal) + 0.1 * cost
    assert 1.0 <= r <= 1.4 + 1e-12


def test_recal_f1_partial_credit_below_tau() -> None:
    spec = recal_spec(answer_metric="f1")
    assert _reward(spec, _row(0.0, 0.4)) == 0.4  # answer counts, auxiliaries gated off
    assert _reward(spec, _row(0.0, 0.5)) == 0.5 + 0.1 + 0.1 + 0.1 + 0.1


# --- gates ---------------------------------------------------------------------------------------------


def _pad(raw: np.ndarray) -> np.ndarray:
    """Six built-in columns -> the presets' eight (latency and calls appended)."""
    return np.concatenate([raw, np.broadcast_to(np.array([[0.5, 0.75]]), (raw.shape[0], 2))], axis=1)


def test_gate_oracle_from_the_learner_doc() -> None:
    # docs/learner.md §9 item 12: rows (format, answer, info); pre-gate (0,1,1),(0,0,1),(0,1,0),(-1,1,1).
    raw = _pad(np.array([[0, 1, 1, 0, 0, 0], [0, 0, 1, 0, 0, 0], [0, 1, 0, 0, 0, 0], [-1, 1, 1, 0, 0, 0]], dtype=float))
    spec = recal_spec()
    gated = gate_components(raw, compute_gates(raw, spec))
    assert gated[:, :3].tolist() == [[0, 1, 1], [0, 0, 0], [0, 1, 0], [-1, 0, 0]]


def test_gate_values_by_preset_rule() -> None:
    raw = _pad(np.array([[0.0, 0.3, 1, 1, 1, 1], [0.0, 0.0, 1, 1, 1, 1], [-1.0, 1.0, 1, 1, 1, 1]]))
    rules = ("always", "format_ok", "format_ok_and_answer_positive", "format_ok_and_answer_at_least_tau")
    spec = make_spec("recal", tau=0.3, gates=dict(zip(("info", "route", "balance", "cost"), rules, strict=True)))
    g = compute_gates(raw, spec)
    assert g.dtype == np.float64 and g.shape == (3, 8)
    assert g[:, 2:6].tolist() == [[1, 1, 1, 1], [1, 1, 0, 0], [1, 0, 0, 0]]


def test_gate_nan_propagation() -> None:
    nan = math.nan
    raw = _pad(np.array([[nan, 1.0, 1, 1, 1, 1], [0.0, nan, 1, 1, 1, 1], [-1.0, nan, 1, 1, 1, 1]]))
    spec = recal_spec()
    g = compute_gates(raw, spec)
    assert g[0, 0] == 1.0 and np.isnan(g[0, 1:]).all()  # format NaN: every gate reading format is NaN
    assert g[1, :2].tolist() == [1.0, 1.0] and np.isnan(g[1, 2:]).all()  # answer NaN: answer-gated NaN
    assert g[2, :2].tolist() == [1.0, 0.0] and np.isnan(g[2, 2:]).all()
    gated = gate_components(raw, g)
    assert np.isnan(gated[0]).all()  # NaN raw values stay NaN under an open gate, the rest under NaN gates
    assert gated[1, 0] == 0.0 and np.isnan(gated[1, 1:]).all()
    assert gated[2, 0] == -1.0 and np.isnan(gated[2, 1:]).all()
    assert np.isnan(compute_gates(raw, router_r1_spec())[1, 2:]).all()


def test_closed_gate_zeroes_finite_values_and_keeps_nan() -> None:
    raw = _pad(np.array([[-1.0, 1.0, math.nan, math.inf, 0.3, 0.5]]))
    gated = gate_components(raw, compute_gates(raw, recal_spec()))
    assert gated[0, [0, 1, 4, 5]].tolist() == [-1.0, 0.0, 0.0, 0.0]
    assert np.isnan(gated[0, 2:4]).all()  # unscorable stays unscorable
    neg = gate_components(np.array([[-1.0] * 6]), np.zeros((1, 6)))
    assert not np.signbit(neg).any()  # +0.0, never -0.0


@pytest.mark.parametrize(
    ("raw", "tau", "err", "match"),
    [
        (np.zeros((2, 5)), None, InvalidData, r"shape \(N, 8\)"),
        (np.zeros(8), None, InvalidData, "shape"),
        (np.zeros((2, 8)), math.nan, InvalidConfig, "tau"),
        (np.zeros((2, 8)), 1.5, InvalidConfig, "tau"),
    ],
)
def test_compute_gates_validation(raw: np.ndarray, tau: float | None, err: type, match: str) -> None:
    with pytest.raises(err, match=match):
        compute_gates(raw, recal_spec(), tau)


_cell = st.one_of(st.floats(-1.0, 1.0), st.just(0.0), st.just(1.0), st.just(-1.0), st.just(math.nan))
_rows = st.lists(st.lists(_cell, min_size=8, max_size=8), min_size=1, max_size=8)


@given(_rows, st.sampled_from(["router-r1", "recal", "recal-f1"]))
def test_gate_idempotence(rows: list[list[float]], preset: str) -> None:
    spec = recal_spec(answer_metric="f1") if preset == "recal-f1" else make_spec(preset)
    raw = np.array(rows)
    g = compute_gates(raw, spec)
    assert np.isin(g[~np.isnan(g)], (0.0, 1.0)).all()
    once = gate_components(raw, g)
    g2 = compute_gates(once, spec)
    np.testing.assert_array_equal(g2, g)  # gating the gated values opens and closes the same gates
    np.testing.assert_array_equal(gate_components(once, g2), once)


@given(st.lists(st.lists(st.floats(0.0, 1.0), min_size=8, max_size=8), min_size=1, max_size=8))
def test_gates_match_a_plain_loop_reference(rows: list[list[float]]) -> None:
    raw = np.array(rows)
    raw[:, 0] = np.where(raw[:, 0] > 0.5, -1.0, 0.0)
    for spec, rule in ((recal_spec(answer_metric="f1"), ">="), (router_r1_spec(), ">")):
        g = compute_gates(raw, spec)
        for i in range(len(rows)):
            ok = raw[i, 0] == 0.0
            aux = ok and (raw[i, 1] >= spec.tau if rule == ">=" else raw[i, 1] > 0.0)
            assert g[i].tolist() == [1.0, float(ok), *[float(aux)] * 6]
    assert set(GATE_PRESETS) == {
        "always",
        "format_ok",
        "format_ok_and_answer_positive",
        "format_ok_and_answer_at_least_tau",
    }


# --- fold ----------------------------------------------------------------------------------------------

_finite = st.floats(-10.0, 10.0, allow_nan=False)


@given(st.lists(_finite, min_size=8, max_size=8), st.lists(_finite, min_size=8, max_size=8))
def test_fold_is_the_left_fold_in_key_order(c: list[float], w: list[float]) -> None:
    comps = dict(zip(COMPONENTS, c, strict=True))
    weights = dict(zip(COMPONENTS, w, strict=True))
    expected = 0.0
    for k in COMPONENTS:
        expected = expected + weights[k] * comps[k]
    value = fold_reward(dict(reversed(comps.items())), weights)  # mapping order does not matter
    assert type(value) is float and value == expected
    assert fold_rewards(np.array([c, c]), np.array(w)).tolist() == [expected, expected]


def test_fold_validation() -> None:
    comps = dict.fromkeys(COMPONENTS, 0.0)
    with pytest.raises(UnknownComponent, match=r"component 'costs' has no weight.*Did you mean 'cost'"):
        fold_reward({**comps, "costs": 1.0}, comps)
    with pytest.raises(InvalidData, match=r"missing component\(s\) \['cost'\]"):
        fold_reward({k: v for k, v in comps.items() if k != "cost"}, comps)
    with pytest.raises(InvalidData, match="fold_rewards"):
        fold_rewards(np.zeros((2, 5)), np.zeros(8))
