"""ReCal-style reward calibration for scalar-reward agents (``docs/learner.md`` §4.1, §4.4; ``docs/rewards.md`` §11).

Group-relative estimators calibrate *advantages*; agents such as PPO, A2C and DQN only see a scalar
reward. :class:`CalibratedReward` gives them the two ReCal ingredients that make sense per episode:

1. **Hierarchical gate** (Stage H): the terminal reward is recomputed from the env's *raw* components
   with a reward spec's gate rules (``RewardSpec.compute_gates``; format gates everything,
   answer ≥ τ gates the auxiliaries) and folded with its weights.
2. **Per-dataset normalisation** (Stage N, ``dataset_stats="running"``): one running-moments object per
   ``data_source`` (count, mean, M2; parallel combine with optional forgetting) standardises the gated
   terminal reward, updated *before* normalising, so easy and hard datasets contribute on one scale.

Non-terminal steps keep the env's reward (0.0 in RouterQA). The statistics live in an explicit
:class:`RunningRewardStats` object with ``state_dict()``/``load_state_dict()``; pass one object to the
wrappers of several sub-envs to share it, and set ``frozen`` for evaluation.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import gymnasium as gym
import numpy as np

from recal_gym.errors import InvalidConfig, InvalidData
from recal_gym.rewards.presets import make_spec
from recal_gym.rewards.spec import RewardSpec, fold_rewards, gate_components

__all__ = ["CALIBRATION_INFO_KEYS", "CalibratedReward", "CalibrationConfig", "RunningRewardStats"]

CALIBRATION_INFO_KEYS: tuple[str, ...] = ("reward_env", "reward_gated", "calib_mean", "calib_std", "calib_count")
"""Flat float keys the wrapper adds to every step's ``info`` (meaningful on the terminal step)."""


@dataclass(frozen=True, slots=True, kw_only=True)
class CalibrationConfig:
    """Settings of :class:`CalibratedReward`."""

    hierarchy: bool = True
    """Recompute the terminal reward from raw components with the spec's gate rules; ``False`` folds
    the raw (ungated) components."""
    answer_threshold: float | None = None
    """τ override of the auxiliary gates, in [0, 1]; ``None`` = the spec's τ."""
    normalise: bool = True
    """Standardise the gated terminal reward per ``data_source``."""
    center: bool = True
    """Subtract the running mean (else only divide by the running std)."""
    running_decay: float = 1.0
    """Factor on the stored count and M2 before each update, in (0, 1]; 1 = exact cumulative moments."""
    min_count: int = 2
    """A dataset with fewer stored rewards than this passes the gated reward through unnormalised."""
    eps: float = 1e-6
    """Added to the std in the denominator."""
    clip: float | None = 10.0
    """Clip the calibrated reward to ``[-clip, clip]``; ``None`` = no clip."""

    def __post_init__(self) -> None:
        """Validate every field; never mutate."""
        for name in ("hierarchy", "normalise", "center"):
            if not isinstance(getattr(self, name), bool):
                raise InvalidConfig(f"CalibrationConfig.{name}={getattr(self, name)!r}: must be a bool")
        tau = self.answer_threshold
        if tau is not None and (not _is_real(tau) or not 0.0 <= tau <= 1.0):
            raise InvalidConfig(f"CalibrationConfig.answer_threshold={tau!r}: must be None or a number in [0, 1]")
        if not _is_real(self.running_decay) or not 0.0 < self.running_decay <= 1.0:
            raise InvalidConfig(f"CalibrationConfig.running_decay={self.running_decay!r}: must be in (0, 1]")
        if isinstance(self.min_count, bool) or not isinstance(self.min_count, int) or self.min_count < 2:
            raise InvalidConfig(f"CalibrationConfig.min_count={self.min_count!r}: must be an int >= 2")
        if not _is_real(self.eps) or not self.eps > 0.0:
            raise InvalidConfig(f"CalibrationConfig.eps={self.eps!r}: must be a finite number > 0")
        if self.clip is not None and (not _is_real(self.clip) or not self.clip > 0.0):
            raise InvalidConfig(f"CalibrationConfig.clip={self.clip!r}: must be None or a finite number > 0")


def _is_real(x: object) -> bool:
    return not isinstance(x, bool) and isinstance(x, int | float) and math.isfinite(x)


class RunningRewardStats:
    """Per-``data_source`` running moments (count, mean, M2) of the gated terminal reward.

    :meth:`update` combines one value with the stored moments (Chan et al.'s parallel formula, after
    multiplying the stored count and M2 by ``decay``); it does nothing while ``frozen``. Reads are pure.

    Example:
        >>> s = RunningRewardStats()
        >>> for r in (0.0, 1.0):
        ...     s.update("nq", r)
        >>> s.mean_std("nq")
        (0.5, 0.7071067811865476, 2.0)
    """

    __slots__ = ("_moments", "frozen")

    def __init__(self, *, frozen: bool = False) -> None:
        """Create empty statistics."""
        self.frozen = frozen
        self._moments: dict[str, tuple[float, float, float]] = {}

    @property
    def sources(self) -> tuple[str, ...]:
        """Data sources seen so far, in insertion order."""
        return tuple(self._moments)

    def update(self, source: str, value: float, *, decay: float = 1.0) -> None:
        """Fold one reward of ``source`` into its moments (no-op while ``frozen``)."""
        if self.frozen:
            return
        n, mean, m2 = self._moments.get(source, (0.0, 0.0, 0.0))
        n, m2 = n * decay, m2 * decay
        total = n + 1.0
        delta = value - mean
        self._moments[source] = (total, mean + delta / total, m2 + delta * delta * n / total)

    def mean_std(self, source: str) -> tuple[float, float, float]:
        """``(mean, std, count)`` of ``source``; std is Bessel-corrected (0.0 while count ≤ 1)."""
        n, mean, m2 = self._moments.get(source, (0.0, 0.0, 0.0))
        std = math.sqrt(max(m2, 0.0) / (n - 1.0)) if n > 1.0 else 0.0
        return mean, std, n

    def state_dict(self) -> dict[str, Any]:
        """JSON-ready snapshot (``frozen`` is a mode, not state)."""
        return {"moments": {k: list(v) for k, v in self._moments.items()}}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Restore a :meth:`state_dict` snapshot.

        Raises:
            InvalidData: a missing key or a malformed entry.
        """
        if "moments" not in state:
            raise InvalidData("RunningRewardStats snapshot lacks the key 'moments'")
        moments: dict[str, tuple[float, float, float]] = {}
        for name, row in dict(state["moments"]).items():
            if len(row) != 3 or not all(_is_real(v) for v in row) or row[0] < 0 or row[2] < 0:
                raise InvalidData(f"RunningRewardStats moments[{name!r}]={row!r}: must be 3 finite numbers, n, M2 >= 0")
            moments[str(name)] = (float(row[0]), float(row[1]), float(row[2]))
        self._moments = moments


class CalibratedReward(gym.Wrapper):
    """Replace the terminal scalar reward by its gated, per-dataset standardised value.

    Needs the RouterQA ``info`` keys ``reward_components_raw``, ``data_source`` and ``scored``. The
    weights are the spec's (pass the env's own spec to keep its weights). The reward on a scored step is::

        r̃ = Σ_k w_k · Γ_k(R) · R_k                      (spec's gates and weights, τ override)
        r  = clip((r̃ − μ_d) / (σ_d + ε))              (μ_d, σ_d: running moments of dataset d, updated first)

    and on other steps the env's reward, unchanged.

    Args:
        env: A RouterQA env or a wrapper of one (e.g. ``RouterQADiscrete-v0``).
        config: Calibration settings.
        reward_spec: Reward spec whose gate rules, τ and weights define r̃ (``"recal"`` by default).
        stats: Shared running statistics (a fresh object when ``None``).

    Example:
        >>> from envs.discrete import RouterQADiscreteEnv
        >>> env = CalibratedReward(RouterQADiscreteEnv())
        >>> _ = env.reset(seed=0)
        >>> _, r, *_ , info = env.step(env.unwrapped.answer_action)
        >>> sorted(k for k in info if k.startswith("calib_"))
        ['calib_count', 'calib_mean', 'calib_std']
    """

    def __init__(
        self,
        env: gym.Env,
        config: CalibrationConfig | None = None,
        *,
        reward_spec: RewardSpec | str = "recal",
        stats: RunningRewardStats | None = None,
    ) -> None:
        """Wrap ``env``; see the class docstring."""
        super().__init__(env)
        self.config = CalibrationConfig() if config is None else config
        if not isinstance(self.config, CalibrationConfig):
            raise InvalidConfig(f"config={config!r}: must be a CalibrationConfig")
        self.reward_spec = make_spec(reward_spec)
        self.stats = RunningRewardStats() if stats is None else stats

    @property
    def tau(self) -> float:
        """The answer threshold in use (the override, else the spec's τ)."""
        return self.reward_spec.tau if self.config.answer_threshold is None else float(self.config.answer_threshold)

    def gated_reward(self, raw: dict[str, float]) -> float:
        """Fold the raw components through the spec's gates (``hierarchy``) and weights. Pure.

        Raises:
            InvalidData: the result is not finite (an unscorable component cannot feed a scalar agent).
        """
        row = np.array([[float(raw[k]) for k in self.reward_spec.names]], dtype=np.float64)  # (1, K)
        if self.config.hierarchy:
            comps = gate_components(row, self.reward_spec.compute_gates(row, tau=self.tau))
        else:
            comps = row
        value = float(fold_rewards(comps, self.reward_spec.weights)[0])
        if not math.isfinite(value):
            raise InvalidData(f"calibrated reward is not finite ({value}); raw components {raw}")
        return value

    def calibrate(self, gated: float, source: str) -> float:
        """Standardise ``gated`` with ``source``'s running moments (read only; call ``stats.update`` first)."""
        cfg = self.config
        if not cfg.normalise:
            return gated
        mean, std, count = self.stats.mean_std(source)
        if count < cfg.min_count:
            return gated
        value = ((gated - mean) if cfg.center else gated) / (std + cfg.eps)
        return value if cfg.clip is None else min(max(value, -cfg.clip), cfg.clip)

    def step(self, action: Any) -> tuple[Any, float, bool, bool, dict[str, Any]]:
        """Step the env and calibrate the reward of a scored step."""
        obs, reward, terminated, truncated, info = self.env.step(action)
        info = dict(info)
        info["reward_env"] = float(reward)
        out, gated = float(reward), 0.0
        source = str(info["data_source"])
        if info["scored"]:
            gated = self.gated_reward(info["reward_components_raw"])
            if self.config.normalise:
                self.stats.update(source, gated, decay=self.config.running_decay)
            out = self.calibrate(gated, source)
        mean, std, count = self.stats.mean_std(source)
        info.update(reward_gated=gated, calib_mean=float(mean), calib_std=float(std), calib_count=float(count))
        return obs, float(out), bool(terminated), bool(truncated), info

    def reset(self, *, seed: int | None = None, options: dict[str, Any] | None = None) -> tuple[Any, dict[str, Any]]:
        """Reset the env and add the calibration keys (zeros) to ``info``."""
        obs, info = self.env.reset(seed=seed, options=options)
        info = dict(info)
        info.update(dict.fromkeys(CALIBRATION_INFO_KEYS, 0.0))
        return obs, info
