"""Calibration math and state for ReCal's Stages V and N (``docs/learner.md`` §4.3-4.4, §4.6).

Pure, vectorised functions:

- :func:`segment_moments`: masked (count, mean, M2) per segment with ``index_add_``;
- :func:`combine_moments`: the parallel-variance combine (Chan, Golub and LeVeque), with decay;
- :func:`moments_std`: Bessel std from moments;
- :func:`variance_weight`: HERO's sigmoid weight ω (arXiv 2510.07242);
- :func:`normalise_by_source`: per-dataset z-scoring with whole-batch fallback.

One explicit state object, :class:`CalibrationState`: the running reference σ̄ (plus an "initialised"
flag) and per-``data_source`` running moments. Reads (:meth:`CalibrationState.transform`,
:meth:`CalibrationState.variance_weights`, :meth:`CalibrationState.running_moments`) never mutate; only
:meth:`CalibrationState.update` does, and it is a no-op while ``frozen``. All tensors are float64.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any, NamedTuple

import torch
from torch import Tensor

from recal_gym.errors import InvalidData

__all__ = [
    "CalibrationState",
    "Moments",
    "SourceStats",
    "combine_moments",
    "moments_std",
    "normalise_by_source",
    "segment_moments",
    "variance_weight",
]

_F64 = torch.float64


class Moments(NamedTuple):
    """Sufficient statistics per segment (float64; shapes ``(S,)`` or ``(S, C)``)."""

    n: Tensor
    """Number of (possibly decayed) observations."""
    mean: Tensor
    """Mean of the observations (0 where count is 0)."""
    m2: Tensor
    """Sum of squared deviations from the mean."""


class SourceStats(NamedTuple):
    """Statistics Stage N actually used for each data source, all ``(S,)`` float64."""

    mean: Tensor
    std: Tensor
    n: Tensor


def segment_moments(values: Tensor, segment: Tensor, mask: Tensor, num_segments: int) -> Moments:
    """Masked two-pass moments per segment.

    count_s = Σ_{i: seg(i)=s, mask_i} 1, mean_s = Σ y_i / count_s, M2_s = Σ (y_i − mean_s)².

    Args:
        values: ``(N,)`` or ``(N, C)`` float; entries outside ``mask`` may be NaN.
        segment: ``(N,)`` int64 segment ids in ``[0, num_segments)``.
        mask: bool, same shape as ``values``; False entries are excluded.
        num_segments: S.

    Returns:
        :class:`Moments` of shape ``(S,)`` or ``(S, C)``; mean and M2 are 0 for empty segments.
    """
    y = values.to(_F64)
    w = mask.to(_F64)
    shape = (num_segments, *y.shape[1:])
    y0 = torch.where(mask, y, torch.zeros((), dtype=_F64))
    count = torch.zeros(shape, dtype=_F64).index_add_(0, segment, w)
    total = torch.zeros(shape, dtype=_F64).index_add_(0, segment, y0)
    mean = total / count.clamp(min=1.0)
    dev = torch.where(mask, y - mean.index_select(0, segment), torch.zeros((), dtype=_F64))
    m2 = torch.zeros(shape, dtype=_F64).index_add_(0, segment, dev * dev)
    return Moments(count, mean, m2)


def combine_moments(old: Moments, new: Moments, *, decay: float = 1.0) -> Moments:
    """Parallel-variance combine of stored and batch moments, with exponential forgetting.

    With n_a = decay·count_old, M2_a = decay·M2_old, δ = mean_new − mean_old, n = n_a + n_b:
    mean = mean_old + δ·n_b/n and M2 = M2_a + M2_b + δ²·n_a·n_b/n. Segments with ``new.n == 0`` are
    left untouched (no decay without a combine). With ``decay = 1`` streaming batches equals one combine
    over their concatenation.

    Args:
        old: Stored moments, ``(S,)``.
        new: Batch moments, ``(S,)``.
        decay: Factor in (0, 1] applied to the stored count and M2 before combining.

    Returns:
        The combined :class:`Moments`.
    """
    has_new = new.n > 0
    n_a = old.n * decay
    m2_a = old.m2 * decay
    n = n_a + new.n
    safe_n = torch.where(n > 0, n, torch.ones((), dtype=_F64))
    delta = new.mean - old.mean
    mean = old.mean + delta * new.n / safe_n
    m2 = m2_a + new.m2 + delta * delta * n_a * new.n / safe_n
    return Moments(
        torch.where(has_new, n, old.n),
        torch.where(has_new, mean, old.mean),
        torch.where(has_new, m2, old.m2),
    )


def moments_std(moments: Moments) -> Tensor:
    """Bessel-corrected std sqrt(M2 / (count − 1)); 0 where count ≤ 1."""
    denom = (moments.n - 1.0).clamp(min=1.0)
    var = (moments.m2 / denom).clamp(min=0.0)
    return torch.where(moments.n > 1.0, var.sqrt(), torch.zeros((), dtype=_F64))


def variance_weight(
    sigma: Tensor, sigma_bar: Tensor | float, *, w_min: float, w_max: float, steepness: float
) -> Tensor:
    """HERO's variance-aware weight (arXiv 2510.07242), ``docs/learner.md`` §4.3.

    ω = w_min + (w_max − w_min) / (1 + exp(−κ·(σ − σ̄))), so w_min ≤ ω ≤ w_max, σ = σ̄ gives
    (w_min + w_max)/2, and ω is non-decreasing in σ for κ ≥ 0 (non-increasing for κ < 0).

    Args:
        sigma: ``(G,)`` group spreads σ_g.
        sigma_bar: 0-d running reference σ̄.
        w_min: Lower asymptote.
        w_max: Upper asymptote.
        steepness: κ.

    Returns:
        ``(G,)`` float64 weights.
    """
    s = sigma.to(_F64)
    ref = torch.as_tensor(sigma_bar, dtype=_F64)
    # torch.sigmoid saturates to exactly 0 or 1 instead of overflowing exp, so ω stays in bounds.
    return w_min + (w_max - w_min) * torch.sigmoid(steepness * (s - ref))


def normalise_by_source(
    values: Tensor,
    source: Tensor,
    mask: Tensor,
    per_source: Moments,
    whole: Moments,
    *,
    eps: float,
    min_count: int,
    running: Moments | None = None,
) -> tuple[Tensor, SourceStats]:
    """Per-dataset z-score: Â_i = (A_i − μ_d) / (σ_d + ε) on masked entries (``docs/learner.md`` §4.4).

    The statistics of dataset d are, in order of preference: ``running`` moments when their count is
    ≥ ``min_count``; the batch's own moments of d when its count is ≥ ``min_count``; the whole batch.
    Unmasked entries are returned unchanged (the caller zero-fills them).

    Args:
        values: ``(N,)`` float64 advantages A′.
        source: ``(N,)`` int64 dataset ids in ``[0, S)``.
        mask: ``(N,)`` bool, the valid trajectories.
        per_source: Batch moments per dataset, ``(S,)``.
        whole: Batch moments of all masked entries, ``(1,)``.
        eps: Std guard ε.
        min_count: Fallback threshold.
        running: Optional running moments per dataset, ``(S,)``.

    Returns:
        The normalised ``(N,)`` float64 values and the :class:`SourceStats` used per dataset
        (count 0, mean 0, std 0 for datasets absent from the batch).
    """
    use_own = per_source.n >= min_count
    mean = torch.where(use_own, per_source.mean, whole.mean)
    std = torch.where(use_own, moments_std(per_source), moments_std(whole))
    count = torch.where(use_own, per_source.n, whole.n)
    if running is not None:
        use_run = running.n >= min_count
        mean = torch.where(use_run, running.mean, mean)
        std = torch.where(use_run, moments_std(running), std)
        count = torch.where(use_run, running.n, count)
    normed = (values.to(_F64) - mean.index_select(0, source)) / (std.index_select(0, source) + eps)
    out = torch.where(mask, normed, values.to(_F64))
    present = per_source.n > 0
    zero = torch.zeros((), dtype=_F64)
    stats = SourceStats(
        torch.where(present, mean, zero), torch.where(present, std, zero), torch.where(present, count, zero)
    )
    return out, stats


class CalibrationState:
    """The learner's calibration state: σ̄ and per-``data_source`` running moments (``docs/learner.md`` §4.6).

    Stage V reads σ̄ through :meth:`variance_weights`; Stage N reads the running moments through
    :meth:`transform`. Both reads are pure. :meth:`update` is the only mutation; the pipeline calls it
    *before* reading, so the first batch is compared with itself. While ``frozen`` (evaluation),
    :meth:`update` does nothing. Hyperparameters (``std_ema``, ``running_decay``) are passed by the
    estimator, which binds them from its config. No global state: pass the object in.

    Attributes:
        frozen: When True, :meth:`update` is a no-op.
        sigma_bar: 0-d float64 running reference σ̄ (0 until initialised).
        initialised: 0-d bool, True once σ̄ has seen a batch with at least one non-degenerate group.
    """

    __slots__ = ("_moments", "frozen", "initialised", "sigma_bar")

    def __init__(self, *, frozen: bool = False) -> None:
        """Create an empty state (σ̄ uninitialised, no datasets seen)."""
        self.frozen = frozen
        self.sigma_bar = torch.zeros((), dtype=_F64)
        self.initialised = torch.zeros((), dtype=torch.bool)
        self._moments: dict[str, Tensor] = {}

    @property
    def source_names(self) -> tuple[str, ...]:
        """Data sources with stored running moments, in insertion order."""
        return tuple(self._moments)

    def running_moments(self, source_names: Sequence[str]) -> Moments:
        """Stored moments for ``source_names`` as ``(S,)`` tensors (zeros for unseen names). Pure."""
        zero = torch.zeros(3, dtype=_F64)
        rows = [self._moments.get(name, zero) for name in source_names]  # loop over datasets, not groups
        table = torch.stack(rows) if rows else torch.zeros((0, 3), dtype=_F64)  # (S, 3)
        return Moments(table[:, 0], table[:, 1], table[:, 2])

    def variance_weights(self, sigma: Tensor, *, w_min: float, w_max: float, steepness: float) -> Tensor:
        """ω_g = :func:`variance_weight` (σ_g, σ̄). Pure read of σ̄."""
        return variance_weight(sigma, self.sigma_bar, w_min=w_min, w_max=w_max, steepness=steepness)

    def transform(
        self,
        values: Tensor,
        source: Tensor,
        mask: Tensor,
        source_names: Sequence[str],
        *,
        eps: float,
        min_count: int,
    ) -> tuple[Tensor, SourceStats]:
        """Per-dataset normalisation with the stored running moments (Stage N, ``"running"``). Pure.

        Args:
            values: ``(N,)`` advantages A′.
            source: ``(N,)`` int64 indices into ``source_names``.
            mask: ``(N,)`` bool valid trajectories.
            source_names: id → ``data_source`` name.
            eps: Std guard ε.
            min_count: Datasets whose running count is below it fall back to batch statistics.

        Returns:
            As :func:`normalise_by_source`.
        """
        n_src = len(source_names)
        per = segment_moments(values, source, mask, n_src)
        whole = segment_moments(values, torch.zeros_like(source), mask, 1)
        running = self.running_moments(source_names)
        return normalise_by_source(values, source, mask, per, whole, eps=eps, min_count=min_count, running=running)

    def update(
        self,
        *,
        sigma: Tensor | None = None,
        sigma_mask: Tensor | None = None,
        std_ema: float = 0.9,
        moments: Moments | None = None,
        source_names: Sequence[str] = (),
        running_decay: float = 1.0,
    ) -> None:
        """Fold one batch into the state (no-op while ``frozen``).

        σ_batch = mean of ``sigma[sigma_mask]`` (the non-degenerate groups). σ̄ ← σ_batch on the first
        batch that has such a group, afterwards σ̄ ← m·σ̄ + (1 − m)·σ_batch. Each dataset's moments are
        combined with :func:`combine_moments` (``decay = running_decay``).

        Args:
            sigma: ``(G,)`` group spreads σ_g, or None to leave σ̄ alone.
            sigma_mask: ``(G,)`` bool, groups whose σ_g is defined.
            std_ema: m.
            moments: Batch moments per dataset ``(S,)`` aligned with ``source_names``, or None.
            source_names: id → ``data_source`` name for ``moments``.
            running_decay: Forgetting factor in (0, 1].
        """
        if self.frozen:
            return
        if sigma is not None:
            mask = torch.ones_like(sigma, dtype=torch.bool) if sigma_mask is None else sigma_mask
            n = mask.to(_F64).sum()
            batch = torch.where(mask, sigma.to(_F64), torch.zeros((), dtype=_F64)).sum() / n.clamp(min=1.0)
            ema = std_ema * self.sigma_bar + (1.0 - std_ema) * batch
            new = torch.where(self.initialised, ema, batch)
            self.sigma_bar = torch.where(n > 0, new, self.sigma_bar)
            self.initialised = self.initialised | (n > 0)
        if moments is not None:
            combined = combine_moments(self.running_moments(source_names), moments, decay=running_decay)
            table = torch.stack(combined, dim=1)  # (S, 3)
            for idx, name in enumerate(source_names):  # loop over datasets, not groups
                self._moments[name] = table[idx].clone()

    def state_dict(self) -> dict[str, Any]:
        """Plain, JSON-serialisable snapshot (called at checkpoint time; it syncs the tensors).

        ``frozen`` is a mode, like ``nn.Module.training``, and is not part of the snapshot.
        """
        return {
            "sigma_bar": float(self.sigma_bar),
            "initialised": bool(self.initialised),
            "moments": {name: [float(v) for v in row.tolist()] for name, row in self._moments.items()},
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Restore a snapshot made by :meth:`state_dict`.

        Raises:
            InvalidData: A key is missing or a value is malformed.
        """
        missing = {"sigma_bar", "initialised", "moments"} - set(state)
        if missing:
            raise InvalidData(f"CalibrationState snapshot lacks keys {sorted(missing)}.")
        sigma_bar = state["sigma_bar"]
        if not isinstance(sigma_bar, int | float) or not math.isfinite(sigma_bar):
            raise InvalidData(f"CalibrationState snapshot sigma_bar={sigma_bar!r} must be a finite number.")
        moments: dict[str, Tensor] = {}
        for name, row in dict(state["moments"]).items():
            if len(row) != 3 or not all(isinstance(v, int | float) and math.isfinite(v) for v in row):
                raise InvalidData(f"CalibrationState moments[{name!r}]={row!r} must be 3 finite numbers.")
            moments[str(name)] = torch.tensor([float(v) for v in row], dtype=_F64)
        self.sigma_bar = torch.tensor(float(sigma_bar), dtype=_F64)
        self.initialised = torch.tensor(bool(state["initialised"]))
        self._moments = moments
