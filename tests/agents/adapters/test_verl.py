"""Tests of the verl adapter against a stand-in for verl's registry.

verl cannot be installed here without changing torch/transformers (its wheel pulls ray and pins
transformers), so these tests use a stand-in with verl's registry semantics (``register_adv_est`` /
``get_adv_estimator_fn``) and its ``compute_advantage`` calling convention.
"""

from __future__ import annotations

import importlib.util
from collections.abc import Callable, Iterator
from types import SimpleNamespace
from typing import Any

import numpy as np
import pytest
import torch

from agents.adapters.trl import build_reward_batch
from agents.adapters.verl import (
    COMPONENT_KEYS,
    VerlRecalEstimator,
    install_compute_advantage_hook,
    recal_kwargs_from_batch,
    register_recal_with_verl,
    setup_recal,
)
from agents.grpo.advantages import make_estimator
from agents.grpo.calibration import CalibrationState
from recal_gym.errors import InvalidData
from recal_gym.rewards import make_spec


class StandInRegistry:
    """verl's ADV_ESTIMATOR_REGISTRY behaviour: duplicate names with a different function raise ValueError."""

    def __init__(self) -> None:
        self.table: dict[str, Any] = {}

    def register_adv_est(self, name: str) -> Callable[[Any], Any]:
        def decorator(fn: Any) -> Any:
            if name in self.table and self.table[name] is not fn:
                raise ValueError(f"Adv estimator {name} has already been registered")
            self.table[name] = fn
            return fn

        return decorator

    def get_adv_estimator_fn(self, name: str) -> Any:
        if name not in self.table:
            raise ValueError(f"Unknown advantage estimator simply: {name}")
        return self.table[name]


@pytest.fixture
def registry() -> Iterator[StandInRegistry]:
    reg = StandInRegistry()
    yield reg
    reg.table.clear()


def _batch(bs: int, length: int, seed: int) -> SimpleNamespace:
    rng = np.random.default_rng(seed)
    uid = np.array([f"q{i % (bs // 4)}" for i in rng.permutation(bs)], dtype=object)  # groups interleaved
    comps = rng.random((bs, len(COMPONENT_KEYS)))
    comps[:, 0] = np.where(rng.random(bs) < 0.25, -1.0, 0.0)
    comps[:, 1] = (rng.random(bs) < 0.5).astype(float)
    source = np.array(["nq" if u in ("q0", "q1") else "hotpotqa" for u in uid], dtype=object)
    non_tensor = {k: comps[:, j] for j, k in enumerate(COMPONENT_KEYS)} | {"uid": uid, "data_source": source}
    lengths = rng.integers(1, length + 1, size=bs)
    mask = (torch.arange(length)[None, :] < torch.tensor(lengths)[:, None]).float()  # (bs, L)
    rewards = torch.zeros(bs, length)
    return SimpleNamespace(non_tensor_batch=non_tensor, mask=mask, rewards=rewards, comps=comps)


def _compute_advantage(registry: StandInRegistry, name: str, data: SimpleNamespace) -> tuple[torch.Tensor, ...]:
    """The generic branch of verl's compute_advantage, plus the documented recal kwargs line."""
    fn = registry.get_adv_estimator_fn(name)
    adv_kwargs = {"token_level_rewards": data.rewards, "response_mask": data.mask, "config": None}
    adv_kwargs["index"] = data.non_tensor_batch["uid"]
    adv_kwargs.update(recal_kwargs_from_batch(data))
    return fn(**adv_kwargs)


@pytest.mark.parametrize("seed", [0, 1])
def test_registered_estimator_equals_agents_recal(registry: StandInRegistry, seed: int) -> None:
    fn = register_recal_with_verl("recal", register=registry.register_adv_est)
    assert registry.get_adv_estimator_fn("recal") is fn
    reference_state = CalibrationState()
    for step in range(2):
        data = _batch(16, 5, 10 * seed + step)
        adv, returns = _compute_advantage(registry, "recal", data)
        assert adv.shape == data.mask.shape and torch.equal(adv, returns)
        uid = list(data.non_tensor_batch["uid"])
        ref_batch = build_reward_batch(data.comps, list(data.non_tensor_batch["data_source"]), uid, make_spec("recal"))
        want = make_estimator("recal")(ref_batch, reference_state).advantages  # (bs,)
        torch.testing.assert_close(adv, want[:, None] * data.mask, rtol=0, atol=0)
        assert adv[data.mask == 0].abs().sum() == 0 and adv.abs().sum() > 0
    assert fn.state.state_dict() == reference_state.state_dict()
    assert "adv/std" in fn.last_metrics


def test_groups_follow_uid_not_position(registry: StandInRegistry) -> None:
    fn = VerlRecalEstimator("grpo")
    data = _batch(8, 3, 5)
    order = np.argsort(data.non_tensor_batch["uid"], kind="stable")
    kwargs = recal_kwargs_from_batch(data)
    adv, _ = fn(data.rewards, data.mask, data.non_tensor_batch["uid"], **kwargs)
    perm = torch.from_numpy(order)
    sorted_kwargs = {
        "reward_components": kwargs["reward_components"][perm],
        "data_source": [kwargs["data_source"][i] for i in order],
    }
    adv_sorted, _ = fn(data.rewards[perm], data.mask[perm], data.non_tensor_batch["uid"][order], **sorted_kwargs)
    torch.testing.assert_close(adv[perm], adv_sorted)


def test_duplicate_registration_raises_like_verl(registry: StandInRegistry) -> None:
    register_recal_with_verl("recal", register=registry.register_adv_est)
    with pytest.raises(ValueError, match="already been registered"):
        register_recal_with_verl("recal", register=registry.register_adv_est)


def test_missing_inputs_raise() -> None:
    fn = VerlRecalEstimator()
    data = _batch(8, 3, 0)
    with pytest.raises(InvalidData, match="recal_kwargs_from_batch"):
        fn(data.rewards, data.mask, data.non_tensor_batch["uid"])
    with pytest.raises(InvalidData, match="shapes"):
        fn(
            data.rewards,
            data.mask,
            data.non_tensor_batch["uid"],
            reward_components=data.comps[:, :5],
            data_source=["a"] * 8,
        )
    del data.non_tensor_batch["raw_cost"]
    with pytest.raises(InvalidData, match="raw_cost"):
        recal_kwargs_from_batch(data)


@pytest.mark.skipif(importlib.util.find_spec("verl") is not None, reason="verl is installed")
def test_without_verl_registration_names_the_install() -> None:
    with pytest.raises(ImportError, match="pip install verl"):
        register_recal_with_verl()


def test_non_tensor_batch_keyword_equals_the_explicit_kwargs() -> None:
    """The non_tensor_batch keyword (verl passes it to gdpo; PR #7473 to any estimator) gives the same advantages."""
    data = _batch(16, 5, 3)
    uid = data.non_tensor_batch["uid"]
    explicit, _ = VerlRecalEstimator()(data.rewards, data.mask, uid, **recal_kwargs_from_batch(data))
    implicit, _ = VerlRecalEstimator()(data.rewards, data.mask, uid, non_tensor_batch=data.non_tensor_batch)
    torch.testing.assert_close(implicit, explicit, rtol=0, atol=0)
    with pytest.raises(InvalidData, match="needs index"):
        VerlRecalEstimator()(data.rewards, data.mask, None, non_tensor_batch=data.non_tensor_batch)
    with pytest.raises(InvalidData, match=r"data_source \(8,\).*index \(16,\)"):
        VerlRecalEstimator()(data.rewards, data.mask, uid, reward_components=data.comps, data_source=["a"] * 8)


def test_the_hook_wraps_compute_advantage_only_for_its_estimator() -> None:
    calls: list[tuple[str, Any]] = []

    def compute_advantage(data: Any, adv_estimator: Any, **kwargs: Any) -> str:
        calls.append((str(adv_estimator), fn.pending))
        return "done"

    fn = VerlRecalEstimator()
    module = SimpleNamespace(compute_advantage=compute_advantage)
    original = install_compute_advantage_hook(fn, module)
    data = _batch(8, 3, 1)
    assert module.compute_advantage(data, "grpo", gamma=1.0) == "done" and calls[-1] == ("grpo", None)
    module.compute_advantage(data, SimpleNamespace(value="recal"))  # verl's AdvantageEstimator enum member
    assert calls[-1][1] is not None and set(calls[-1][1]) == {"reward_components", "data_source"}
    assert original is compute_advantage and module.compute_advantage.__wrapped__ is compute_advantage


@pytest.mark.skipif(importlib.util.find_spec("verl") is not None, reason="verl is installed")
def test_setup_without_verl_names_the_install() -> None:
    with pytest.raises(ImportError, match="pip install verl"):
        setup_recal()
    with pytest.raises(ImportError, match="pip install verl"):
        install_compute_advantage_hook(VerlRecalEstimator())
