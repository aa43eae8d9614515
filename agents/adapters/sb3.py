"""stable-baselines3 helpers for ``RouterQADiscrete-v0``: a metrics callback and a vector-env factory.

:class:`RouterMetricsCallback` logs every reward component and per-dataset metrics of the episodes that
ended during a rollout to SB3's logger (namespaced keys, one flat ``dict[str, float]`` per rollout):

- ``reward/<component>/mean`` (gated components), ``reward/total/mean`` (their weighted fold, i.e. the env
  reward), ``reward/agent/mean`` (the reward the agent saw, e.g. after :class:`~envs.calibration_wrapper.
  CalibratedReward`);
- ``episode/em``, ``episode/f1``, ``episode/format_ok``, ``episode/raw_cost``, ``episode/n_calls``,
  ``episode/count``;
- ``dataset/<data_source>/{em,reward,raw_cost,count}``; ``calls/<model>`` (mean calls per episode).

The env is used only through its ``info`` dict (``docs/protocol.md`` §12).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from envs.calibration_wrapper import CalibratedReward, CalibrationConfig, RunningRewardStats
from envs.discrete import flat_info_keys
from recal_gym.optional import missing_dependency
from recal_gym.rewards.presets import make_spec
from recal_gym.rewards.spec import fold_reward

try:
    from stable_baselines3.common.callbacks import BaseCallback
    from stable_baselines3.common.env_util import make_vec_env
    from stable_baselines3.common.vec_env import VecEnv
except ModuleNotFoundError as exc:  # one clear line naming the extra instead of a deep traceback
    raise missing_dependency(exc, feature="the stable-baselines3 adapter (agents.adapters.sb3)", extra="sb3") from None

__all__ = ["DISCRETE_ENV_ID", "EpisodeMetrics", "RouterMetricsCallback", "make_router_vec_env"]

DISCRETE_ENV_ID = "RouterQADiscrete-v0"
"""Gymnasium id of the discrete RouterQA env."""


class EpisodeMetrics:
    """Accumulates the terminal ``info`` of finished RouterQA episodes and summarises them.

    Example:
        >>> m = EpisodeMetrics()
        >>> m.summary()
        {}
    """

    __slots__ = ("_rows",)

    def __init__(self) -> None:
        """Start empty."""
        self._rows: list[tuple[dict[str, float], str, dict[str, float]]] = []

    def __len__(self) -> int:
        """Number of episodes held."""
        return len(self._rows)

    def add(self, info: Mapping[str, Any], agent_reward: float | None = None) -> None:
        """Record one scored episode from its terminal ``info`` (non-scored infos are ignored)."""
        if not info.get("scored", False):
            return
        comps: dict[str, float] = {k: float(v) for k, v in info["reward_components"].items()}
        total = fold_reward(comps, info["reward_weights"])
        row = {f"reward/{k}/mean": v for k, v in comps.items()}
        row.update(
            {
                "reward/total/mean": total,
                "reward/agent/mean": total if agent_reward is None else float(agent_reward),
                "episode/em": float(info["em"]),
                "episode/f1": float(info["f1"]),
                "episode/format_ok": 1.0 if info["format_ok"] else 0.0,
                "episode/raw_cost": float(info["raw_cost"]),
                "episode/n_calls": float(info["n_calls"]),
            }
        )
        calls = {f"calls/{m}": float(n) for m, n in dict(info.get("calls_per_model", {})).items()}
        self._rows.append((row, str(info["data_source"]), calls))

    def clear(self) -> None:
        """Drop every recorded episode."""
        self._rows.clear()

    def summary(self) -> dict[str, float]:
        """Means over the recorded episodes, overall and per dataset (``{}`` when empty)."""
        if not self._rows:
            return {}
        out: dict[str, float] = {}
        for key in self._rows[0][0]:
            out[key] = float(np.mean([row[key] for row, _, _ in self._rows]))
        out["episode/count"] = float(len(self._rows))
        for key in sorted({k for _, _, calls in self._rows for k in calls}):
            out[key] = float(np.mean([calls.get(key, 0.0) for _, _, calls in self._rows]))
        for source in sorted({s for _, s, _ in self._rows}):
            rows = [row for row, s, _ in self._rows if s == source]
            out[f"dataset/{source}/em"] = float(np.mean([r["episode/em"] for r in rows]))
            out[f"dataset/{source}/reward"] = float(np.mean([r["reward/total/mean"] for r in rows]))
            out[f"dataset/{source}/raw_cost"] = float(np.mean([r["episode/raw_cost"] for r in rows]))
            out[f"dataset/{source}/count"] = float(len(rows))
        return out


class RouterMetricsCallback(BaseCallback):
    """Log reward components and per-dataset metrics of finished episodes at each rollout end.

    Works with on-policy (PPO, A2C, MaskablePPO) and off-policy (DQN) algorithms: episodes are collected
    in ``_on_step`` from ``self.locals["infos"]``/``["dones"]``/``["rewards"]`` and written with
    ``self.logger.record`` in ``_on_rollout_end``. The last summary stays in :attr:`last_summary`.

    Args:
        verbose: SB3 verbosity.
    """

    def __init__(self, verbose: int = 0) -> None:
        """Create the callback."""
        super().__init__(verbose)
        self.metrics = EpisodeMetrics()
        self.last_summary: dict[str, float] = {}
        self.episodes_seen = 0

    def _on_step(self) -> bool:
        infos: Sequence[Mapping[str, Any]] = self.locals.get("infos", ())
        dones = self.locals.get("dones", np.zeros(len(infos), dtype=bool))
        rewards = self.locals.get("rewards", np.zeros(len(infos)))
        for info, done, reward in zip(infos, dones, rewards, strict=True):
            if done and info.get("scored", False):
                self.metrics.add(info, float(reward))
                self.episodes_seen += 1
        return True

    def _on_rollout_end(self) -> None:
        summary = self.metrics.summary()
        if summary:
            for key, value in summary.items():
                self.logger.record(key, value)
            self.last_summary = summary
        self.metrics.clear()


def make_router_vec_env(
    n_envs: int = 1,
    *,
    seed: int | None = 0,
    env_kwargs: Mapping[str, Any] | None = None,
    calibration: CalibrationConfig | None = None,
    env_id: str = DISCRETE_ENV_ID,
) -> VecEnv:
    """Build a ``DummyVecEnv`` of ``RouterQADiscrete-v0`` envs for SB3.

    Each sub-env is ``gym.make(env_id, **env_kwargs)`` inside ``Monitor(info_keywords=...)`` with the env's flat
    terminal keys (:func:`~envs.discrete.flat_info_keys` of its reward spec)
    (so the monitor records the env's own reward), optionally wrapped in
    :class:`~envs.calibration_wrapper.CalibratedReward` (the reward the agent learns from). The
    calibrated sub-envs share one :class:`~envs.calibration_wrapper.RunningRewardStats`.

    Args:
        n_envs: Number of sub-envs.
        seed: Seed of sub-env i is ``seed + i``.
        env_kwargs: Keyword arguments of the env (``dataset``, ``pool``, ``featurizer``, ...).
        calibration: Calibration settings, or ``None`` for the env's reward.
        env_id: Registered id (``import recal_gym`` registers it).
    """
    wrapper_class = None
    wrapper_kwargs: dict[str, Any] | None = None
    if calibration is not None:
        wrapper_class = CalibratedReward
        wrapper_kwargs = {"config": calibration, "stats": RunningRewardStats()}
    kwargs = dict(env_kwargs or {})
    return make_vec_env(
        env_id,
        n_envs=n_envs,
        seed=seed,
        env_kwargs=dict(env_kwargs or {}),
        monitor_kwargs={"info_keywords": flat_info_keys(make_spec(kwargs.get("reward", "recal")).names)},
        wrapper_class=wrapper_class,
        wrapper_kwargs=wrapper_kwargs,
    )
