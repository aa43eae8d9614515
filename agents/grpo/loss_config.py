"""Configuration of the token policy loss (``docs/learner.md`` §7), kept free of torch.

:class:`LossConfig` is nested in :class:`~agents.grpo.config.TrainConfig` (``TrainConfig.loss``), so the
CLI can parse and validate it without importing torch; :mod:`agents.grpo.losses` re-exports it.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Literal, get_args

from recal_gym.errors import InvalidConfig

__all__ = ["EntropyScope", "KLEstimator", "LossAgg", "LossConfig"]

KLEstimator = Literal["k1", "k2", "k3"]
"""Schulman's KL approximations: k1 = −δ, k2 = δ²/2, k3 = e^δ − δ − 1, with δ = logp_ref − logp."""

EntropyScope = Literal["all", "route"]
"""Tokens the entropy bonus acts on: every policy token, or only the model-name tokens of routes."""

LossAgg = Literal["token-mean", "seq-mean-token-mean", "seq-mean-token-sum-norm"]
"""Aggregation of masked token losses (``docs/learner.md`` §7.3)."""


def _check_finite(field: str, value: object) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
        raise InvalidConfig(f"LossConfig.{field}={value!r} must be a finite number.")
    return float(value)


@dataclass(frozen=True, slots=True, kw_only=True)
class LossConfig:
    """Hyperparameters of :func:`token_policy_loss` (``docs/learner.md`` §7).

    Raises:
        InvalidConfig: A field is outside its range (the message names field, value and rule).
    """

    clip_low: float = 0.2
    """ε_low in [0, 1): the ratio is clipped below at 1 − ε_low."""
    clip_high: float = 0.28
    """ε_high ≥ 0 (clip-higher, DAPO); ε_high = ε_low is PPO's symmetric clip."""
    dual_clip: float | None = None
    """c > 1 caps the loss of Â < 0 tokens at −c·Â (verl uses 3); None = off."""
    kl_coef: float = 0.0
    """β ≥ 0; 0 loads no reference model."""
    kl_estimator: KLEstimator = "k3"
    """Which KL approximation enters the loss."""
    entropy_coef: float = 0.0
    """c_H ≥ 0 of the entropy bonus (Router-R1 used 0.001)."""
    entropy_scope: EntropyScope = "all"
    """``"route"``: the bonus acts only on the model-name tokens inside ``<search>`` (the model choice),
    other tokens contribute 0 to it; the loss's denominator is unchanged."""
    loss_agg: LossAgg = "token-mean"
    """Aggregation mode."""
    l_norm: float | None = None
    """L_norm > 0 of ``seq-mean-token-sum-norm``; None = the padded width T of the minibatch."""

    def __post_init__(self) -> None:
        """Validate every field; never mutate."""
        low = _check_finite("clip_low", self.clip_low)
        if not 0.0 <= low < 1.0:
            raise InvalidConfig(f"LossConfig.clip_low={low!r} must lie in [0, 1).")
        if _check_finite("clip_high", self.clip_high) < 0.0:
            raise InvalidConfig(f"LossConfig.clip_high={self.clip_high!r} must be >= 0.")
        if self.dual_clip is not None and _check_finite("dual_clip", self.dual_clip) <= 1.0:
            raise InvalidConfig(f"LossConfig.dual_clip={self.dual_clip!r} must be > 1 (or None).")
        if _check_finite("kl_coef", self.kl_coef) < 0.0:
            raise InvalidConfig(f"LossConfig.kl_coef={self.kl_coef!r} must be >= 0.")
        if self.kl_estimator not in get_args(KLEstimator):
            raise InvalidConfig(
                f"LossConfig.kl_estimator={self.kl_estimator!r} is not one of {list(get_args(KLEstimator))}."
            )
        if _check_finite("entropy_coef", self.entropy_coef) < 0.0:
            raise InvalidConfig(f"LossConfig.entropy_coef={self.entropy_coef!r} must be >= 0.")
        if self.entropy_scope not in get_args(EntropyScope):
            raise InvalidConfig(
                f"LossConfig.entropy_scope={self.entropy_scope!r} is not one of {list(get_args(EntropyScope))}."
            )
        if self.loss_agg not in get_args(LossAgg):
            raise InvalidConfig(f"LossConfig.loss_agg={self.loss_agg!r} is not one of {list(get_args(LossAgg))}.")
        if self.l_norm is not None and _check_finite("l_norm", self.l_norm) <= 0.0:
            raise InvalidConfig(f"LossConfig.l_norm={self.l_norm!r} must be > 0 (or None).")
