from __future__ import annotations

import math
import warnings

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from envs.calibration_wrapper import CALIBRATION_INFO_KEYS, CalibratedReward, CalibrationConfig, RunningRewardStats
from envs.discrete import RouterQADiscreteEnv
from recal_gym.errors import InvalidConfig, InvalidData
from recal_gym.rewards import BUILTIN_COMPONENTS as COMPONENTS
from recal_gym.rewards import compute_gates, fold_reward, gate_components, make_spec


def _play(env: CalibratedReward, seed: int, route: int | None) -> tuple[float, dict]:
    env.reset(seed=seed)
    if route is not None:
        env.step(route)
    _, r, term, trunc, info = env.step(env.unwrapped.answer_action)
    assert term or trunc
    return r, info


# ----------------------------------------------------------------------------- running statistics
@given(st.lists(st.floats(-5, 5, allow_nan=False), min_size=2, max_size=30))
@settings(max_examples=60, deadline=None)
def test_running_stats_match_numpy(values: list[float]) -> None:
    s = RunningRewardStats()
    for v in values:
        s.update("d", v)
    mean, std, count = s.mean_std("d")
    assert count == len(values)
    assert mean == pytest.approx(float(np.mean(values)), abs=1e-9)
    assert std == pytest.approx(float(np.std(values, ddof=1)), abs=1e-9)


def test_running_stats_decay_frozen_and_state_roundtrip() -> None:
    s = RunningRewardStats()
    for v in (1.0, 3.0):
        s.update("a", v, decay=0.5)
    # decay on (n, M2) before each combine: (1, 1, 0) then n = 0.5 -> mean = 1 + 2/1.5
    mean, _, count = s.mean_std("a")
    assert count == 1.5 and mean == pytest.approx(1.0 + 2.0 / 1.5)
    assert s.mean_std("unseen") == (0.0, 0.0, 0.0)
    snap = s.state_dict()
    t = RunningRewardStats(frozen=True)
    t.load_state_dict(snap)
    t.update("a", 100.0)  # frozen: no-op
    assert t.mean_std("a") == s.mean_std("a") and t.sources == ("a",)


@pytest.mark.parametrize("snapshot", [{}, {"moments": {"a": [1.0, 2.0]}}, {"moments": {"a": [-1.0, 0.0, 0.0]}}])
def test_running_stats_bad_snapshot(snapshot: dict) -> None:
    with pytest.raises(InvalidData, match="moments"):
        RunningRewardStats().load_state_dict(snapshot)


# ----------------------------------------------------------------------------- wrapper
def test_without_normalisation_the_recal_gate_reproduces_the_env_reward() -> None:
    env = CalibratedReward(RouterQADiscreteEnv(), CalibrationConfig(normalise=False))
    for seed in range(15):
        r, info = _play(env, seed, route=seed % 6)
        assert r == info["reward_env"] == info["reward_gated"]


def test_hierarchy_gates_an_ungated_env_reward() -> None:
    # router-r1 gates auxiliaries on answer > 0 and weights cost by alpha; the wrapper re-folds with recal.
    inner = RouterQADiscreteEnv(reward="router-r1")
    env = CalibratedReward(inner, CalibrationConfig(normalise=False))
    spec = make_spec("recal")
    for seed in range(15):
        r, info = _play(env, seed, route=4)
        raw = np.array([[info["reward_components_raw"][k] for k in spec.names]])
        comps = gate_components(raw, compute_gates(raw, spec))[0]
        expected = fold_reward(dict(zip(spec.names, comps.tolist(), strict=True)), spec.weights_dict())
        assert r == expected
    flat = CalibratedReward(RouterQADiscreteEnv(), CalibrationConfig(normalise=False, hierarchy=False))
    _, info = _play(flat, 0, route=None)
    raw = info["reward_components_raw"]
    assert info["reward_gated"] == fold_reward(raw, spec.weights_dict())


def test_per_dataset_running_normalisation_oracle() -> None:
    cfg = CalibrationConfig(clip=None)
    env = CalibratedReward(RouterQADiscreteEnv(), cfg)
    seen: dict[str, list[float]] = {}
    for seed in range(40):
        r, info = _play(env, seed, route=seed % 6)
        values = seen.setdefault(info["data_source"], [])
        values.append(info["reward_gated"])
        if len(values) < cfg.min_count:
            assert r == info["reward_gated"]
        else:
            mu, sd = float(np.mean(values)), float(np.std(values, ddof=1))
            assert r == pytest.approx((values[-1] - mu) / (sd + cfg.eps), rel=1e-9, abs=1e-9)
            assert info["calib_mean"] == pytest.approx(mu) and info["calib_count"] == len(values)
    assert set(env.stats.sources) == set(seen)


def test_non_terminal_steps_and_reset_info() -> None:
    env = CalibratedReward(RouterQADiscreteEnv())
    _, info = env.reset(seed=0)
    assert all(info[k] == 0.0 for k in CALIBRATION_INFO_KEYS)
    _, r, term, trunc, info = env.step(0)
    assert r == 0.0 and not (term or trunc) and info["reward_env"] == 0.0 and info["reward_gated"] == 0.0


def test_clip_frozen_and_shared_stats() -> None:
    stats = RunningRewardStats()
    stats.load_state_dict({"moments": {"fanoutqa_single": [10.0, 5.0, 1e-6], "fanoutqa_multi": [10.0, 5.0, 1e-6]}})
    stats.frozen = True
    a = CalibratedReward(RouterQADiscreteEnv(), CalibrationConfig(clip=2.0), stats=stats)
    b = CalibratedReward(RouterQADiscreteEnv(), stats=stats)
    assert a.stats is b.stats
    r, _ = _play(a, 0, route=None)  # gated 0.0 far below the mean 5 with a tiny std: clipped
    assert r == -2.0
    assert stats.mean_std("fanoutqa_single")[2] == 10.0


def test_unscorable_component_raises() -> None:
    env = CalibratedReward(RouterQADiscreteEnv())
    raw = dict.fromkeys(COMPONENTS, 0.0) | {"answer": math.nan}
    with pytest.raises(InvalidData, match="not finite"):
        env.gated_reward(raw)


def test_sb3_check_env_on_the_wrapped_env() -> None:
    from stable_baselines3.common.env_checker import check_env

    with warnings.catch_warnings():
        warnings.simplefilter("error")
        check_env(CalibratedReward(RouterQADiscreteEnv()))


def test_tau_override() -> None:
    env = CalibratedReward(RouterQADiscreteEnv(), CalibrationConfig(answer_threshold=0.5))
    assert env.tau == 0.5 and CalibratedReward(RouterQADiscreteEnv()).tau == 1.0


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("hierarchy", 1),
        ("answer_threshold", 1.5),
        ("running_decay", 0.0),
        ("running_decay", 1.1),
        ("min_count", 1),
        ("eps", 0.0),
        ("clip", -1.0),
        ("clip", math.inf),
    ],
)
def test_config_validation(field: str, value: object) -> None:
    with pytest.raises(InvalidConfig, match=field):
        CalibrationConfig(**{field: value})  # type: ignore[arg-type]


def test_bad_config_object() -> None:
    with pytest.raises(InvalidConfig, match="CalibrationConfig"):
        CalibratedReward(RouterQADiscreteEnv(), config={"clip": 1.0})  # type: ignore[arg-type]
