from __future__ import annotations

import hashlib
import importlib.util
from collections.abc import Sequence
from pathlib import Path
from types import ModuleType
from typing import Any

import gymnasium as gym
import numpy as np
import pytest
import torch

import recal_gym  # noqa: F401 - registers RouterQA-v0
from agents.adapters.trl import (
    RouterQAScorer,
    build_reward_batch,
    component_reward_funcs,
    recal_advantages,
)
from agents.grpo.advantages import RewardBatch, make_estimator
from agents.grpo.calibration import CalibrationState
from recal_gym.errors import InvalidConfig, InvalidData
from recal_gym.rewards import BUILTIN_COMPONENTS as COMPONENTS
from recal_gym.rewards import compute_gates, make_spec

EXAMPLE = Path(__file__).resolve().parents[3] / "examples" / "trl_grpo_tiny.py"
SPEC = make_spec("recal")


class CountingResets(gym.Wrapper):
    def __init__(self, env: gym.Env) -> None:
        super().__init__(env)
        self.resets = 0

    def reset(self, **kwargs: Any) -> Any:
        self.resets += 1
        return self.env.reset(**kwargs)


def _manual_batch(raw: np.ndarray, sources: Sequence[str], g: int) -> RewardBatch:
    """Reference construction, written independently of build_reward_batch."""
    gates = compute_gates(raw, SPEC)
    gated = np.where(gates == 0.0, 0.0, gates * raw)
    names: list[str] = []
    for s in sources:
        if s not in names:
            names.append(s)
    scalar = [sum(w * c for w, c in zip(SPEC.weights, row, strict=True)) for row in gated]
    return RewardBatch(
        raw=torch.tensor(raw, dtype=torch.float32),
        gated=torch.tensor(gated, dtype=torch.float32),
        scalar=torch.tensor(scalar, dtype=torch.float32),
        group=torch.tensor([i // g for i in range(len(raw))]),
        source=torch.tensor([names.index(s) for s in sources]),
        source_names=tuple(names),
        weights=torch.tensor(SPEC.weights, dtype=torch.float32),
        names=SPEC.names,
    )


def _random_raw(n: int, seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    raw = rng.random((n, len(SPEC.names)))
    raw[:, 0] = np.where(rng.random(n) < 0.3, -1.0, 0.0)  # format
    raw[:, 1] = (rng.random(n) < 0.5).astype(float)  # EM answer
    return raw


# ----------------------------------------------------------------------------- reward functions
def test_reward_funcs_play_completions_in_the_env() -> None:
    env = CountingResets(gym.make("RouterQA-v0"))
    scorer = RouterQAScorer(env)
    funcs = component_reward_funcs(scorer, kind="gated")
    assert [f.__name__ for f in funcs] == [f"gated_{k}" for k in COMPONENTS]
    _, info = env.reset(seed=0)
    qid = info["question_id"]
    completions = ["<think>easy</think>\n<answer> unknown </answer>", "no tags at all"]
    kwargs = {"prompts": ["p", "p"], "completions": completions, "question_id": [qid, qid], "trainer_state": None}
    values = [f(**kwargs) for f in funcs]
    assert env.resets == 1 + 2  # the six functions share one play of the batch
    fmt = values[0]
    assert fmt == [0.0, -1.0]
    raw = component_reward_funcs(scorer, kind="raw", components=("route",))[0](**kwargs)
    assert raw == [1.0, 1.0]  # no search block: route_empty_value; scorer cache still valid
    assert env.resets == 3


def test_conversational_completions_and_bad_inputs() -> None:
    scorer = RouterQAScorer()
    _, info = scorer.env.reset(seed=1)
    qid = info["question_id"]
    msg = [[{"role": "assistant", "content": "<think>x</think>\n<answer> unknown </answer>"}]]
    (out,) = scorer.score(msg, [qid])
    assert out.gated["format"] == 0.0 and out.data_source == info["data_source"]
    with pytest.raises(InvalidData, match="question ids"):
        scorer.score(["a"], [qid, qid])
    with pytest.raises(InvalidData, match="completion"):
        scorer.score([3], [qid])
    with pytest.raises(InvalidConfig, match="kind"):
        component_reward_funcs(scorer, kind="both")  # type: ignore[arg-type]
    with pytest.raises(InvalidConfig, match="unknown components"):
        component_reward_funcs(scorer, components=("anser",))


# ----------------------------------------------------------------------------- advantages
def test_build_reward_batch_oracle_and_validation() -> None:
    raw = _random_raw(8, 0)
    sources = ["b", "b", "b", "b", "a", "a", "a", "a"]
    batch = build_reward_batch(raw, sources, 4, SPEC)
    ref = _manual_batch(raw, sources, 4)
    for got, want in zip(batch[:5], ref[:5], strict=True):
        torch.testing.assert_close(got, want)
    assert batch.source_names == ("b", "a") and batch.group.tolist() == [0, 0, 0, 0, 1, 1, 1, 1]
    with pytest.raises(InvalidData, match="multiple"):
        build_reward_batch(raw, sources, 3, SPEC)
    with pytest.raises(InvalidData, match=r"\(N, 8\)"):
        build_reward_batch(raw[:, :5], sources, 4, SPEC)


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_recal_advantages_equal_the_agents_estimator(seed: int) -> None:
    g = 4
    sources = ["x"] * 8 + ["y"] * 8
    state_a, state_b = CalibrationState(), CalibrationState()
    est = make_estimator("recal")
    for step in range(2):  # the calibration state evolves identically
        raw = _random_raw(16, 10 * seed + step)
        got = recal_advantages(raw, sources, g, spec=SPEC, estimator=est, state=state_a)
        want = make_estimator("recal")(_manual_batch(raw, sources, g), state_b)
        torch.testing.assert_close(got.advantages, want.advantages, rtol=0, atol=0)
        assert got.advantages.abs().sum() > 0
    assert state_a.state_dict() == state_b.state_dict()


# ----------------------------------------------------------------------------- the runnable example
def _example() -> ModuleType:
    spec = importlib.util.spec_from_file_location("trl_grpo_tiny", EXAMPLE)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _recompute(step: Any) -> torch.Tensor:
    state = CalibrationState()
    state.load_state_dict(step.state_before)
    raw = step.raw.double().numpy()
    return make_estimator("recal")(_manual_batch(raw, step.data_sources, step.num_generations), state).advantages


def _fake_funcs() -> list[Any]:
    def make(k: str) -> Any:
        def f(prompts: Sequence[Any], completions: Sequence[str], **_: Any) -> list[float]:
            out = []
            for c in completions:
                h = int.from_bytes(hashlib.sha256(f"{k}|{c}".encode()).digest()[:4], "little")
                out.append(-1.0 if k == "format" and h % 3 == 0 else float(h % 2) if k != "format" else 0.0)
            return out

        f.__name__ = f"raw_{k}"
        return f

    return [make(k) for k in COMPONENTS]


@pytest.mark.slow
def test_trl_example_runs_and_its_recal_advantages_equal_agents(tmp_path: Path) -> None:
    pytest.importorskip("trl")
    trainer = _example().run(tmp_path, steps=1)
    step = trainer.last_recal
    assert step is not None and step.raw.shape == (4, len(SPEC.names)) and step.num_generations == 4
    torch.testing.assert_close(step.advantages, _recompute(step), rtol=0, atol=0)
    assert step.raw[:, 0].tolist() == [-1.0] * 4  # a random tiny model does not follow the format


@pytest.mark.slow
def test_trl_trainer_recal_advantages_on_a_varied_batch(tmp_path: Path) -> None:
    pytest.importorskip("trl")
    trainer = _example().run(tmp_path, steps=1, num_generations=4, num_questions=2, reward_funcs=_fake_funcs())
    step = trainer.last_recal
    assert step is not None
    assert step.advantages.abs().sum() > 0, (step.raw.tolist(), step.advantages.tolist())
    torch.testing.assert_close(step.advantages, _recompute(step), rtol=0, atol=0)
    assert any("recal/adv/std" in row for row in trainer.state.log_history)
