"""Configuration of the group-relative advantage estimators (``docs/learner.md`` §4.5).

One frozen dataclass, :class:`RecalConfig`, holds every switch of the ReCal reference pipeline
(H → C → V → N). The scalar estimators (``grpo``, ``dr_grpo``, ``rloo``) read only ``eps``,
``component_weights`` and ``drop_zero_variance_groups`` from it; ``gdpo`` is the same pipeline with
``hierarchy=False, variance_weighting=False, final_norm="batch"`` (built by the registry in
:mod:`agents.grpo.advantages`).

This module imports neither torch nor any env code, so configs can be parsed at the CLI edge cheaply.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Literal, get_args

from recal_gym.errors import InvalidConfig, UnknownComponent, close_matches_hint
from recal_gym.rewards.components import COMPONENT_REGISTRY

__all__ = [
    "DatasetStats",
    "EstimatorName",
    "FinalNorm",
    "RecalConfig",
    "VarianceSource",
]

EstimatorName = Literal["grpo", "dr_grpo", "rloo", "gdpo", "recal"]
"""Names of the built-in advantage estimators."""

VarianceSource = Literal["answer", "total"]
"""Signal whose group spread drives Stage V: the gated answer component, or the weighted total."""

FinalNorm = Literal["none", "batch", "per_dataset"]
"""Stage N: no final normalisation, one z-score over the batch (GDPO step 3), or one per data source."""

DatasetStats = Literal["batch", "running"]
"""Where Stage N's per-dataset statistics come from: the current batch, or running moments."""


def _check_literal(field: str, value: object, alias: object) -> None:
    allowed = get_args(alias)
    if value not in allowed:
        raise InvalidConfig(f"RecalConfig.{field}={value!r} is not one of {list(allowed)}.")


def _check_bool(field: str, value: object) -> None:
    if not isinstance(value, bool):
        raise InvalidConfig(f"RecalConfig.{field}={value!r} must be a bool.")


def _check_finite(field: str, value: object) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
        raise InvalidConfig(f"RecalConfig.{field}={value!r} must be a finite number.")
    return float(value)


@dataclass(frozen=True, slots=True, kw_only=True)
class RecalConfig:
    """Switches and hyperparameters of the ReCal reference pipeline (``docs/learner.md`` §4).

    ReCal (arXiv 2606.12479) publishes only its abstract; every stage below is our reference design
    (GDPO arXiv 2601.05242, HERO arXiv 2510.07242) with an ablation switch.

    Raises:
        InvalidConfig: A field is outside its allowed set or range (the message names field, value, rule).
        UnknownComponent: ``component_weights`` names a component that does not exist.
    """

    hierarchy: bool = True
    """Stage H. ``True``: use the env's gated components Γ⊙R (``RewardBatch.gated``); ``False``: the raw,
    pre-gate components R (``RewardBatch.raw``). With a learner-side ``answer_threshold`` override the
    caller must recompute ``gated`` upstream with ``recal_gym.rewards.spec.compute_gates``; the estimator
    never re-implements the gate."""

    answer_threshold: float | None = None
    """τ override for the auxiliary gates, in [0, 1]; ``None`` = the reward spec's τ. Only read by the
    code that builds ``RewardBatch.gated`` (see ``hierarchy``)."""

    componentwise: bool = True
    """Stage C. ``True``: z-score each component inside its group, then weight and sum (GDPO steps 1-2);
    ``False``: sum the weighted components first, then group-normalise the sum (``grpo`` on the total)."""

    component_weights: Mapping[str, float] | None = None
    """Per-name override of the reward spec's weights (``RewardBatch.weights``); names not listed keep
    the spec's weight. ``None`` = the spec's weights unchanged."""

    variance_weighting: bool = True
    """Stage V. ``False`` = ω ≡ 1."""

    variance_source: VarianceSource = "answer"
    """Signal v whose group std σ_g sets ω_g. With ``"total"``, divide ``steepness`` by the total's range."""

    w_min: float = 0.4
    """Lower asymptote of ω (HERO appendix A.1)."""

    w_max: float = 3.0
    """Upper asymptote of ω (HERO appendix A.1)."""

    steepness: float = 6.0
    """κ of the sigmoid; a negative value inverts the direction (an ablation)."""

    std_ema: float = 0.9
    """m in σ̄ ← m·σ̄ + (1 − m)·σ_batch."""

    final_norm: FinalNorm = "per_dataset"
    """Stage N. ``"batch"`` is GDPO's step 3."""

    dataset_stats: DatasetStats = "batch"
    """Stage N statistics: the current batch, or running per-``data_source`` moments."""

    running_decay: float = 1.0
    """Factor on the stored count and M2 before each running combine, in (0, 1]; 1 = exact cumulative."""

    min_dataset_count: int = 2
    """A dataset with fewer valid trajectories than this uses whole-batch statistics."""

    eps: float = 1e-6
    """Added to every std in a denominator (verl's value)."""

    drop_zero_variance_groups: bool = False
    """Remove groups whose weighted components are all constant from the loss and its normaliser
    (DAPO's dynamic sampling without refilling, arXiv 2503.14476); reported through ``AdvantageOut.valid``."""

    def __post_init__(self) -> None:
        """Validate every field; never mutate."""
        for name in ("hierarchy", "componentwise", "variance_weighting", "drop_zero_variance_groups"):
            _check_bool(name, getattr(self, name))
        _check_literal("variance_source", self.variance_source, VarianceSource)
        _check_literal("final_norm", self.final_norm, FinalNorm)
        _check_literal("dataset_stats", self.dataset_stats, DatasetStats)
        self._check_ranges()
        self._check_weights()

    def _check_ranges(self) -> None:
        w_min = _check_finite("w_min", self.w_min)
        w_max = _check_finite("w_max", self.w_max)
        if not 0.0 < w_min <= w_max:
            raise InvalidConfig(f"RecalConfig needs 0 < w_min <= w_max, got w_min={w_min!r}, w_max={w_max!r}.")
        _check_finite("steepness", self.steepness)
        std_ema = _check_finite("std_ema", self.std_ema)
        if not 0.0 <= std_ema < 1.0:
            raise InvalidConfig(f"RecalConfig.std_ema={std_ema!r} must lie in [0, 1).")
        decay = _check_finite("running_decay", self.running_decay)
        if not 0.0 < decay <= 1.0:
            raise InvalidConfig(f"RecalConfig.running_decay={decay!r} must lie in (0, 1].")
        eps = _check_finite("eps", self.eps)
        if eps <= 0.0:
            raise InvalidConfig(f"RecalConfig.eps={eps!r} must be > 0.")
        count = self.min_dataset_count
        if isinstance(count, bool) or not isinstance(count, int) or count < 2:
            raise InvalidConfig(f"RecalConfig.min_dataset_count={count!r} must be an int >= 2.")
        if self.answer_threshold is not None:
            tau = _check_finite("answer_threshold", self.answer_threshold)
            if not 0.0 <= tau <= 1.0:
                raise InvalidConfig(f"RecalConfig.answer_threshold={tau!r} must lie in [0, 1].")

    def _check_weights(self) -> None:
        weights = self.component_weights
        if weights is None:
            return
        if not isinstance(weights, Mapping):
            raise InvalidConfig(f"RecalConfig.component_weights={weights!r} must be a mapping name -> weight.")
        for name, value in weights.items():
            if name not in COMPONENT_REGISTRY:
                raise UnknownComponent(
                    f"RecalConfig.component_weights names unknown component {name!r}; "
                    f"registered: {sorted(COMPONENT_REGISTRY)}.{close_matches_hint(str(name), COMPONENT_REGISTRY)}"
                )
            _check_finite(f"component_weights[{name!r}]", value)
        if weights and all(float(v) == 0.0 for v in weights.values()) and len(weights) == len(COMPONENT_REGISTRY):
            raise InvalidConfig(
                f"RecalConfig.component_weights={dict(weights)!r} sets every weight to 0; "
                "at least one must be non-zero."
            )
