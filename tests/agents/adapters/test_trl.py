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


# ----------------------------------------------------------------------------- TRL runs (slow)
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


class LoggingEngines:
    """An engine factory for RouterQARollout that logs every generate call of the latest rollout call."""

    def __init__(self) -> None:
        self.calls: list[list[tuple[list[int], list[int]]]] = []

    def __call__(self, model: Any, tokenizer: Any) -> Any:
        from agents.grpo.engines import HFEngine

        log: list[list[tuple[list[int], list[int]]]] = []
        self.calls = log
        engine = HFEngine(model, tokenizer)
        inner = engine.generate

        def generate(contexts: Any, params: Any, generator: Any) -> Any:
            samples = inner(contexts, params, generator)
            log.append([(list(c), list(s.ids)) for c, s in zip(contexts, samples, strict=True)])
            return samples

        engine.generate = generate  # type: ignore[method-assign]
        return engine


@pytest.fixture(scope="module")
def trained(tmp_path_factory: pytest.TempPathFactory) -> tuple[Any, LoggingEngines]:
    pytest.importorskip("trl")
    engines = LoggingEngines()
    trainer = _example().run(tmp_path_factory.mktemp("trl"), steps=2, warmstart_steps=60, engine_factory=engines)
    return trainer, engines


@pytest.mark.slow
def test_trl_trains_a_router_through_multi_turn_episodes(trained: tuple[Any, LoggingEngines]) -> None:
    trainer, _ = trained
    steps = [row for row in trainer.state.log_history if "adv/std" in row]
    assert len(steps) == 2
    assert trainer.last_recal is not None and trainer.last_recal.advantages.abs().sum() > 0
    learning = [row for row in steps if row["adv/std"] > 0.0]
    assert learning and all(row["loss"] != 0.0 and row["grad_norm"] > 0.0 for row in learning)
    assert min(row["frac_reward_zero_std"] for row in steps) < 1.0
    assert max(row["episode/turns"] for row in steps) > 1.0  # some episodes took several turns
    keys = set(steps[0])
    assert {"adv/std", "recal/weight/mean", "reward/format/mean", "episode/return", "episode/em"} <= keys
    assert any(k.startswith("calib/") and k.endswith("/mean") for k in keys)
    assert not [k for k in keys if k.startswith(("recal/recal/", "recal/adv/", "recal/calib/", "recal/reward/"))]


@pytest.mark.slow
def test_trl_recal_advantages_equal_the_agents_estimator(trained: tuple[Any, LoggingEngines]) -> None:
    step = trained[0].last_recal
    assert step is not None and step.raw.shape == (8, len(SPEC.names)) and step.num_generations == 4
    torch.testing.assert_close(step.advantages, _recompute(step), rtol=0, atol=0)


@pytest.mark.slow
def test_an_episode_in_trl_equals_the_env_played_directly(trained: tuple[Any, LoggingEngines]) -> None:
    """Replay the last batch's sampled turns in fresh envs, in the rollout's lockstep order."""
    from agents.grpo.config import preset
    from agents.grpo.learner import build_envs
    from agents.grpo.rollout import TextCodec

    trainer, engines = trained
    rollout = trainer.rollout_func
    call = rollout.last
    assert call is not None
    codec = TextCodec(trainer.processing_class)
    envs = build_envs(preset("tiny"), codec.tokenizer, len(call.question_ids))
    contexts, ids, masks, infos = [], [], [], []
    for env, qid in zip(envs, call.question_ids, strict=True):
        env.unwrapped.load_reward_state(call.reward_state_before)
        prompt, _ = env.reset(options={"question_id": qid})
        contexts.append(codec.prompt_ids(prompt))
        ids.append([])
        masks.append([])
        infos.append(None)
    live = list(range(len(envs)))
    for generate_call in engines.calls:
        assert len(generate_call) == len(live)
        for i, (context, sampled) in zip(live, generate_call, strict=True):
            assert context == contexts[i]  # the sampler saw exactly the replayed context
            obs, reward, terminated, truncated, info = envs[i].step(codec.decode(sampled))
            kept, splice = codec.kept_prefix(sampled, int(info["kept_chars"])), codec.encode(obs)
            ids[i] += kept + splice
            masks[i] += [1] * len(kept) + [0] * len(splice)
            contexts[i] = contexts[i] + kept + splice
            infos[i] = (reward, info) if terminated or truncated else None
        live = [i for i in live if infos[i] is None]
    assert not live
    fields = call.fields
    for i, done in enumerate(infos):
        assert done is not None
        reward, info = done
        assert fields["completion_ids"][i] == ids[i] and fields["env_mask"][i] == masks[i]
        assert codec.decode(ids[i]) == info["episode_record"]["transcript"]
        assert fields["episode_return"][i] == reward
        assert [fields[f"raw_{k}"][i] for k in SPEC.names] == [info["reward_components_raw"][k] for k in SPEC.names]


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
def test_single_turn_trl_generation_with_recal_advantages(tmp_path: Path) -> None:
    """TRL's own (single-turn) generation with the scorer-free reward functions: ReCal advantages equal agents'."""
    pytest.importorskip("trl")
    from datasets import Dataset
    from transformers import AutoModelForCausalLM
    from trl import GRPOConfig

    from agents.adapters.trl import recal_grpo_trainer_class
    from agents.adapters.trl_rollout import routerqa_rows
    from agents.models.tiny_model import build_tiny_model, load_tiny_tokenizer

    model_dir = build_tiny_model(tmp_path / "model", max_position_embeddings=4096, seed=0)
    env = gym.make("RouterQA-v0")
    rows = routerqa_rows(env, sorted(env.unwrapped.questions.ids())[:2])
    args = GRPOConfig(
        output_dir=str(tmp_path / "run"), per_device_train_batch_size=4, num_generations=4, max_completion_length=16,
        max_steps=1, learning_rate=1e-3, logging_steps=1, save_strategy="no", report_to=[], use_cpu=True,
        bf16=False, seed=0,
    )  # fmt: skip
    trainer = recal_grpo_trainer_class()(
        model=AutoModelForCausalLM.from_pretrained(model_dir, local_files_only=True),
        args=args,
        train_dataset=Dataset.from_list(rows),
        processing_class=load_tiny_tokenizer(model_dir),
        reward_funcs=_fake_funcs(),
    )
    trainer.train()
    step = trainer.last_recal
    assert step is not None and step.advantages.abs().sum() > 0, (step.raw.tolist(), step.advantages.tolist())
    torch.testing.assert_close(step.advantages, _recompute(step), rtol=0, atol=0)
    assert any("adv/std" in row for row in trainer.state.log_history)
