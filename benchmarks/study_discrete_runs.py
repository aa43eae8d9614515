"""The jobs of the estimator study on ``RouterQADiscrete-v0``: baselines, estimator runs, SB3 references.

Each job is a plain function of JSON-ready arguments returning a JSON-ready dict, so
``study_discrete.py`` can run them in worker processes (one torch thread each).

Held-out rewards of every job are scored against one **frozen reference reward state** per
(setting, seed): the cost window and balance frequencies after ``Budget.reference_episodes`` episodes of
the masked uniform-random router on training questions (:func:`reference_state`). Without it each run's
cost component would be normalised against its own recent costs (Router-R1's normaliser,
``docs/rewards.md`` §10), and held-out rewards of different arms would not be comparable.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from typing import Any

import gymnasium as gym
import numpy as np
import torch
from stable_baselines3.common.env_util import make_vec_env
from study_discrete_setup import Budget, Setting, arm_config, build_setting, heldout_ids, make_envs, make_pool
from torch import Tensor

from agents.adapters.sb3 import DISCRETE_ENV_ID, RouterMetricsCallback
from agents.discrete.learner import DiscreteLearner
from agents.discrete.policy import sample_actions
from agents.discrete.rollout import ActionFn, Episode, run_episodes
from envs.discrete import FLAT_INFO_KEYS
from recal_gym.data import QuestionSet
from recal_gym.rewards.state import RewardState
from recal_gym.types import EpisodeRecord

__all__ = [
    "CURVE_KEYS",
    "reference_state",
    "run_arm",
    "run_baselines",
    "run_sb3",
    "summarise_episodes",
]

CURVE_KEYS: tuple[str, ...] = (
    "episode/reward",
    "episode/em",
    "episode/raw_cost",
    "episode/n_calls",
    "policy/entropy_first",
    "adv/std",
    "adv/frac_zero_std",
    "loss/policy",
    "policy/clipfrac_low",
    "policy/clipfrac_high",
)
"""Per-step training metrics kept in each run's curves (plus ``first_action_top_share``)."""

_EVAL_CALL_SEED = 7_000_000
"""Held-out episode i uses call seed ``_EVAL_CALL_SEED + i`` in every job (paired noise)."""


def _call_seeds(n: int) -> list[int]:
    return [_EVAL_CALL_SEED + i for i in range(n)]


def _uniform(generator: torch.Generator) -> ActionFn:
    def act(obs: Tensor, mask: Tensor) -> Tensor:
        return sample_actions(torch.zeros(mask.shape), mask, generator)

    return act


def _single(k: int) -> ActionFn:
    """Ask model k once, then answer."""

    def act(obs: Tensor, mask: Tensor) -> Tensor:
        return torch.where(mask[:, k], torch.tensor(k), torch.tensor(mask.shape[1] - 1))

    return act


def _questions(setting: Setting) -> QuestionSet:
    return QuestionSet(setting.rows)


def reference_state(setting: Setting, seed: int, budget: Budget, envs: Sequence[Any]) -> RewardState:
    """The reference reward state of (setting, seed): one batch update from masked-random episodes.

    ``envs`` must share one reward state in batch mode (the episodes leave it untouched); the returned
    state is a new object.
    """
    listed = tuple(envs[0].models)
    state = RewardState.default(setting.reward, listed)
    gen = torch.Generator().manual_seed(10_000 + seed)
    order = torch.randint(0, len(setting.train_ids), (budget.reference_episodes,), generator=gen).tolist()
    qids = [setting.train_ids[i] for i in order]
    episodes = run_episodes(envs, _uniform(gen), qids, _call_seeds(len(qids)))
    state.update_batch([EpisodeRecord.from_dict(ep.info["episode_record"]) for ep in episodes])
    return state


def listed_models(pool: Any) -> tuple[str, ...]:
    """Display names of the pool's listed models (the balance component's models)."""
    return tuple(m.name for m in pool.spec.listed)


def summarise_episodes(episodes: Sequence[Episode], n_actions: int, sources: Sequence[str]) -> dict[str, Any]:
    """Mean EM, reward, cost and calls, EM per source, and the share of each first action."""
    first = np.bincount([ep.actions[0] for ep in episodes], minlength=n_actions) / len(episodes)
    out: dict[str, Any] = {
        "em": float(np.mean([float(ep.info["em"]) for ep in episodes])),
        "reward": float(np.mean([ep.reward for ep in episodes])),
        "raw_cost": float(np.mean([float(ep.info["raw_cost"]) for ep in episodes])),
        "n_calls": float(np.mean([float(ep.info["n_calls"]) for ep in episodes])),
        "first_action": [float(x) for x in first],
        "n": len(episodes),
    }
    by_source: dict[str, list[float]] = {s: [] for s in sources}
    for ep in episodes:
        by_source[str(ep.info["data_source"])].append(float(ep.info["em"]))
    out["em_by_source"] = {s: float(np.mean(v)) if v else float("nan") for s, v in by_source.items()}
    return out


class _Job:
    """Pool, questions, one set of envs sharing one reward state, and the reference state of (setting, seed).

    Training uses the shared state (fresh, batch mode: envs never change it, the learner does); held-out
    evaluation temporarily loads the frozen reference state into it and restores it afterwards.
    """

    def __init__(self, setting_name: str, seed: int, budget: Budget, reference: dict[str, Any] | None) -> None:
        self.setting = build_setting(setting_name)
        self.seed = seed
        self.budget = budget
        self.pool = make_pool(self.setting, seed)
        self.questions = _questions(self.setting)
        self.state = RewardState.default(self.setting.reward, listed_models(self.pool))
        self.envs = make_envs(self.setting, self.pool, self.questions, budget.envs, self.state)
        self.reference = RewardState.default(self.setting.reward, listed_models(self.pool))
        if reference is None:
            self.reference.assign(reference_state(self.setting, seed, budget, self.envs))
        else:
            self.reference.load_state_dict(reference)
        self.heldout = heldout_ids(self.setting, budget)
        self.n_actions = int(self.envs[0].action_space.n)

    def evaluate(self, act: ActionFn) -> dict[str, Any]:
        saved = self.state.copy()
        self.state.assign(self.reference)
        self.state.frozen = True
        try:
            episodes = run_episodes(self.envs, act, self.heldout, _call_seeds(len(self.heldout)))
        finally:
            self.state.frozen = False
            self.state.assign(saved)
        return summarise_episodes(episodes, self.n_actions, self.setting.source_names)


def run_baselines(setting_name: str, seed: int, budget: Budget) -> dict[str, Any]:
    """Reference state, single-model routers, the masked-random router and the untrained policy on held-out."""
    t0 = time.perf_counter()
    job = _Job(setting_name, seed, budget, None)
    models = job.envs[0].models
    routers: dict[str, ActionFn] = {f"single:{m}": _single(k) for k, m in enumerate(models)}
    routers["masked_random"] = _uniform(torch.Generator().manual_seed(20_000 + seed))
    untrained = DiscreteLearner(
        arm_config("grpo", seed, budget), job.envs, job.setting.train_ids, source_names=job.setting.source_names
    )
    routers["untrained_policy"] = untrained.greedy
    results = {name: job.evaluate(act) for name, act in routers.items()}
    return {
        "kind": "baselines",
        "setting": setting_name,
        "seed": seed,
        "models": list(models),
        "reference_state": job.reference.state_dict(),
        "heldout": len(job.heldout),
        "routers": results,
        "wall_s": time.perf_counter() - t0,
    }


def _top_share(metrics: dict[str, float], n_actions: int) -> float:
    return max(metrics[f"actions/first/{k}"] for k in range(n_actions))


def run_arm(setting_name: str, arm: str, seed: int, budget: Budget, reference: dict[str, Any]) -> dict[str, Any]:
    """Train one estimator arm and evaluate it greedily on the held-out questions."""
    t0 = time.perf_counter()
    job = _Job(setting_name, seed, budget, reference)
    config = arm_config(arm, seed, budget)
    learner = DiscreteLearner(
        config, job.envs, job.setting.train_ids, source_names=job.setting.source_names, reward_state=job.state
    )
    curves: dict[str, list[float]] = {k: [] for k in (*CURVE_KEYS, "first_action_top_share")}
    shares: list[list[float]] = []
    for _ in range(config.steps):
        m = learner.step()
        for k in CURVE_KEYS:
            curves[k].append(m.get(k, float("nan")))
        shares.append([m[f"actions/first/{k}"] for k in range(job.n_actions)])
        curves["first_action_top_share"].append(_top_share(m, job.n_actions))
    train_s = time.perf_counter() - t0
    final = job.evaluate(learner.greedy)
    return {
        "kind": "arm",
        "setting": setting_name,
        "arm": arm,
        "seed": seed,
        "estimator": config.estimator,
        "curves": curves,
        "first_action_last5": [float(x) for x in np.mean(shares[-5:], axis=0)],
        "final": final,
        "wall_s": time.perf_counter() - t0,
        "train_s": train_s,
    }


class _TrainQuestions(gym.Wrapper):
    """Resets on a uniformly drawn training question with a fresh ``call_seed`` (as the estimator arms get).

    The env itself holds every question of the setting, so the pool's distractor bank is the same as in
    the estimator runs and in evaluation; only the draw is restricted to the training ids.
    """

    def __init__(self, env: gym.Env, train_ids: Sequence[str] = (), seed: int = 0) -> None:
        super().__init__(env)
        self._ids = tuple(train_ids)
        self._rng = np.random.default_rng(seed)

    def reset(self, *, seed: int | None = None, options: dict[str, Any] | None = None) -> tuple[Any, dict[str, Any]]:
        qid = self._ids[int(self._rng.integers(len(self._ids)))]
        opts = {**(options or {}), "question_id": qid, "call_seed": int(self._rng.integers(2**31 - 1))}
        return self.env.reset(seed=seed, options=opts)


def _sb3_model(algo: str, venv: Any, seed: int) -> Any:
    common = {
        "seed": seed,
        "device": "cpu",
        "verbose": 0,
        "n_steps": 128,
        "batch_size": 128,
        "learning_rate": 1e-3,
        "ent_coef": 0.01,
    }
    if algo == "ppo":
        from stable_baselines3 import PPO

        return PPO("MlpPolicy", venv, **common)
    from sb3_contrib import MaskablePPO

    return MaskablePPO("MlpPolicy", venv, **common)


def _sb3_act(model: Any, masked: bool) -> ActionFn:
    def act(obs: Tensor, mask: Tensor) -> Tensor:
        kwargs = {"action_masks": mask.numpy()} if masked else {}
        actions, _ = model.predict(obs.numpy(), deterministic=True, **kwargs)
        return torch.as_tensor(np.asarray(actions, dtype=np.int64))

    return act


def run_sb3(setting_name: str, algo: str, seed: int, budget: Budget, reference: dict[str, Any]) -> dict[str, Any]:
    """Train SB3 PPO or MaskablePPO on the training questions (episode-mode rewards) and evaluate on held-out."""
    t0 = time.perf_counter()
    job = _Job(setting_name, seed, budget, reference)
    spec = job.setting.reward_spec("episode")  # nobody calls update_batch in SB3's loop
    env_kwargs = {
        "dataset": job.questions,
        "pool": job.pool,
        "reward": spec,
        "reward_state": RewardState.default(spec, listed_models(job.pool)),  # one object, shared
        "render_mode": None,
    }
    venv = make_vec_env(
        DISCRETE_ENV_ID,
        n_envs=4,
        seed=seed,
        env_kwargs=env_kwargs,
        monitor_kwargs={"info_keywords": FLAT_INFO_KEYS},
        wrapper_class=_TrainQuestions,
        wrapper_kwargs={"train_ids": job.setting.train_ids, "seed": seed},
    )
    model = _sb3_model(algo, venv, seed)
    callback = _CurveRecorder()
    model.learn(budget.sb3_timesteps, callback=callback)
    venv.close()
    train_s = time.perf_counter() - t0
    final = job.evaluate(_sb3_act(model, masked=algo == "maskable_ppo"))
    return {
        "kind": "sb3",
        "setting": setting_name,
        "arm": algo,
        "seed": seed,
        "timesteps": budget.sb3_timesteps,
        "episodes": callback.episodes_seen,
        "curve": callback.curve,
        "final": final,
        "wall_s": time.perf_counter() - t0,
        "train_s": train_s,
    }


class _CurveRecorder(RouterMetricsCallback):
    """:class:`RouterMetricsCallback` that also keeps each rollout's training reward, EM and cost."""

    def __init__(self) -> None:
        super().__init__()
        self.curve: list[dict[str, float]] = []

    def _on_rollout_end(self) -> None:
        super()._on_rollout_end()
        s = self.last_summary
        self.curve.append(
            {
                "timesteps": float(self.num_timesteps),
                "reward": s.get("reward/total/mean", float("nan")),
                "em": s.get("episode/em", float("nan")),
                "raw_cost": s.get("episode/raw_cost", float("nan")),
            }
        )
