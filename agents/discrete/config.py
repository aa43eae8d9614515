"""Configuration of the group-sampled policy-gradient learner for ``RouterQADiscrete-v0``.

One frozen dataclass, :class:`DiscreteConfig`. The estimator and its switches are the token learner's
(:class:`~agents.grpo.estimator_config.RecalConfig`, ``docs/learner.md`` §4.5); the loss hyperparameters
are those of :func:`agents.grpo.losses.token_policy_loss` (``docs/learner.md`` §7). This module imports
no torch.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Literal, get_args

from agents.grpo.estimator_config import EstimatorName, RecalConfig
from recal_gym.errors import InvalidConfig

__all__ = ["DiscreteConfig"]

_LossAgg = Literal["token-mean", "seq-mean-token-mean", "seq-mean-token-sum-norm"]
_POSITIVE_INTS = ("steps", "questions_per_step", "group_size", "epochs", "minibatches", "hidden_size", "num_layers")


def _finite(name: str, value: object) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
        raise InvalidConfig(f"DiscreteConfig.{name}={value!r} must be a finite number.")
    return float(value)


@dataclass(frozen=True, slots=True, kw_only=True)
class DiscreteConfig:
    """One run of :class:`~agents.discrete.learner.DiscreteLearner`.

    Each step samples ``questions_per_step`` distinct training questions, rolls out ``group_size``
    trajectories per question, computes one advantage per trajectory with the registered estimator and
    takes ``epochs × minibatches`` clipped-surrogate steps on the action log-probs.

    Raises:
        InvalidConfig: a field is outside its range (the message names field, value and rule).
    """

    estimator: EstimatorName = "grpo"
    """Registered advantage estimator (``agents.grpo.advantages.ESTIMATORS``)."""
    recal: RecalConfig = field(default_factory=RecalConfig)
    """Switches and hyperparameters of the estimator (ablations: ``hierarchy``, ``componentwise``,
    ``variance_weighting``, ``final_norm``, ``dataset_stats``)."""
    steps: int = 40
    """Update steps (one rollout batch each)."""
    questions_per_step: int = 12
    """Distinct training questions per step (one group each)."""
    group_size: int = 8
    """Trajectories per question G."""
    lr: float = 3e-3
    """Adam learning rate (constant)."""
    epochs: int = 2
    """Passes over each rollout batch."""
    minibatches: int = 2
    """Optimiser steps per pass; the batch is split into this many shuffled, equal parts."""
    clip_low: float = 0.2
    """ε_low of the clipped surrogate."""
    clip_high: float = 0.2
    """ε_high of the clipped surrogate (= ε_low: PPO's symmetric clip)."""
    entropy_coef: float = 0.0
    """c_H of the entropy bonus (0 = pure policy gradient)."""
    loss_agg: _LossAgg = "token-mean"
    """Aggregation of the per-action losses (``docs/learner.md`` §7.3); actions play the role of tokens."""
    max_grad_norm: float = 1.0
    """Global gradient-norm clip; 0 disables it."""
    hidden_size: int = 64
    """Width of the policy MLP."""
    num_layers: int = 2
    """Hidden layers of the policy MLP."""
    seed: int = 0
    """Seeds the policy init, the question order, the call seeds and the action sampling (separate streams)."""

    def __post_init__(self) -> None:
        """Validate every field; never mutate."""
        if not isinstance(self.recal, RecalConfig):
            raise InvalidConfig(f"DiscreteConfig.recal={self.recal!r} must be a RecalConfig.")
        for name in _POSITIVE_INTS:
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise InvalidConfig(f"DiscreteConfig.{name}={value!r} must be an int >= 1.")
        if self.group_size < 2:
            raise InvalidConfig(f"DiscreteConfig.group_size={self.group_size!r} must be >= 2 (group baselines).")
        if isinstance(self.seed, bool) or not isinstance(self.seed, int) or self.seed < 0:
            raise InvalidConfig(f"DiscreteConfig.seed={self.seed!r} must be an int >= 0.")
        if not _finite("lr", self.lr) > 0.0:
            raise InvalidConfig(f"DiscreteConfig.lr={self.lr!r} must be > 0.")
        if not 0.0 <= _finite("clip_low", self.clip_low) < 1.0:
            raise InvalidConfig(f"DiscreteConfig.clip_low={self.clip_low!r} must lie in [0, 1).")
        for name in ("clip_high", "entropy_coef", "max_grad_norm"):
            if _finite(name, getattr(self, name)) < 0.0:
                raise InvalidConfig(f"DiscreteConfig.{name}={getattr(self, name)!r} must be >= 0.")
        if self.loss_agg not in get_args(_LossAgg):
            raise InvalidConfig(f"DiscreteConfig.loss_agg={self.loss_agg!r} is not one of {list(get_args(_LossAgg))}.")
        if self.batch_size % self.minibatches:
            raise InvalidConfig(
                f"DiscreteConfig: {self.batch_size} trajectories per step (questions_per_step × group_size) "
                f"cannot form minibatches={self.minibatches} equal parts."
            )

    @property
    def batch_size(self) -> int:
        """Trajectories per step N = questions_per_step × group_size."""
        return self.questions_per_step * self.group_size
