"""Group-relative advantage estimators and their registry (``docs/learner.md`` §1-5, §8).

Estimators: ``grpo`` (arXiv 2402.03300), ``dr_grpo`` (arXiv 2503.20783), ``rloo`` (arXiv 2402.14740),
``gdpo`` (arXiv 2601.05242) and ``recal``, the ReCal reference design (arXiv 2606.12479, abstract only):
H (hierarchical gate) → C (component-wise advantage) → V (variance-aware weight, HERO arXiv 2510.07242)
→ N (final normalisation), then zero-fill. ``gdpo`` is the same pipeline with H and V off and a batch
z-score for N.

Every estimator satisfies :class:`AdvantageFn` and is built through :func:`make_estimator`. The math is
vectorised with segment reductions over group ids (``index_add_``/``scatter_reduce``), runs in float64,
returns float32, and never calls ``.item()``.

Statistics conventions (§1.1): NaN entries are excluded from every mean/std and zero-filled *after*;
std is Bessel-corrected plus ε in denominators; a group with fewer than 2 finite values is degenerate
(advantage 0); a constant group gives exactly 0.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Literal, NamedTuple, Protocol, cast

import torch
from torch import Tensor

from agents.grpo.calibration import (
    CalibrationState,
    moments_std,
    normalise_by_source,
    segment_moments,
)
from agents.grpo.estimator_config import EstimatorName, RecalConfig
from recal_gym.errors import InvalidConfig, InvalidData, UnknownComponent, UnknownName, close_matches_hint
from recal_gym.rewards.batch import RewardArrays
from recal_gym.rewards.components import BUILTIN_COMPONENTS

__all__ = [
    "ESTIMATORS",
    "AdvantageFn",
    "AdvantageOut",
    "RecalEstimator",
    "RewardBatch",
    "ScalarEstimator",
    "make_estimator",
    "register_estimator",
    "unregister_estimator",
]

_F64 = torch.float64
_ANSWER = "answer"
ScalarKind = Literal["grpo", "dr_grpo", "rloo"]


class RewardBatch(NamedTuple):
    """The gathered global batch of per-trajectory rewards (``docs/learner.md`` §1).

    Columns of ``raw``/``gated``/``weights`` are the K components ``names`` in the reward spec's order
    (:meth:`from_arrays` builds the batch from :class:`~recal_gym.rewards.batch.RewardArrays`). An empty
    ``names`` means the first K built-in components (a convenience for tests).
    """

    raw: Tensor
    """``(N, K)`` float32 pre-gate components R; NaN = unscorable."""
    gated: Tensor
    """``(N, K)`` float32 gated components Γ⊙R, from ``recal_gym.rewards.spec.compute_gates`` upstream."""
    scalar: Tensor
    """``(N,)`` float32 episode return x."""
    group: Tensor
    """``(N,)`` int64 group ids (any values; unique across datasets, e.g. from ``question_id``)."""
    source: Tensor
    """``(N,)`` int64 dataset ids, indices into ``source_names``."""
    source_names: tuple[str, ...]
    """Dataset id → ``data_source`` name (keys of the running statistics and ``calib/*`` metrics)."""
    weights: Tensor
    """``(K,)`` float32 component weights w (the env's reward spec)."""
    names: tuple[str, ...] = ()
    """The K component names in column order (``()``: the first K built-ins, for tests)."""

    @classmethod
    def from_arrays(
        cls, arrays: RewardArrays, group: Tensor, source: Tensor | None = None, source_names: Sequence[str] = ()
    ) -> RewardBatch:
        """Tensors of a :class:`~recal_gym.rewards.batch.RewardArrays` batch.

        Args:
            arrays: The batch's rewards (``reward_arrays_from_infos``/``reward_arrays_from_raw``).
            group: ``(N,)`` int64 group ids.
            source: ``(N,)`` int64 indices into ``source_names``; ``None`` numbers ``arrays.data_source`` in
                the order of ``source_names`` (default: sorted dataset names).
            source_names: Dataset id → name (the running statistics' keys; every dataset of the batch).

        Raises:
            InvalidData: a dataset missing from ``source_names``.
        """
        names = tuple(source_names) or tuple(sorted(set(arrays.data_source)))
        if source is None:
            index = {n: i for i, n in enumerate(names)}
            missing = sorted(set(arrays.data_source) - set(index))
            if missing:
                raise InvalidData(f"datasets {missing} are not in source_names {list(names)}")
            source = torch.tensor([index[s] for s in arrays.data_source], dtype=torch.int64)
        return cls(
            raw=torch.as_tensor(arrays.raw, dtype=torch.float32),
            gated=torch.as_tensor(arrays.gated, dtype=torch.float32),
            scalar=torch.as_tensor(arrays.scalar, dtype=torch.float32),
            group=group,
            source=source,
            source_names=names,
            weights=torch.as_tensor(arrays.weights, dtype=torch.float32),
            names=arrays.names,
        )


def component_names(batch: RewardBatch) -> tuple[str, ...]:
    """The batch's component names (``names``, or the first K built-ins when it is empty)."""
    return batch.names or BUILTIN_COMPONENTS[: batch.raw.shape[1]]


class AdvantageOut(NamedTuple):
    """Result of an estimator."""

    advantages: Tensor
    """``(N,)`` float32, finite. 0 for degenerate groups, fully unscorable trajectories, zero-variance
    groups and dropped groups."""
    valid: Tensor
    """``(N,)`` bool: the trajectory stays in the loss and its normaliser. False only for members of
    zero-variance groups removed by ``drop_zero_variance_groups``. Fill-value trajectories (degenerate
    groups, unscorable) stay True: their tokens remain in the normaliser (``docs/learner.md`` §5)."""
    metrics: dict[str, Tensor]
    """0-d tensors keyed as ``docs/learner.md`` §8 (``reward/*``, ``adv/*``, ``recal/*``, ``calib/*``)."""


class AdvantageFn(Protocol):
    """The one signature every registered estimator satisfies."""

    def __call__(self, batch: RewardBatch, state: CalibrationState | None) -> AdvantageOut:
        """Compute advantages for ``batch``; ``state`` may be None (a fresh throwaway state is used)."""
        ...


class _GroupZ(NamedTuple):
    z: Tensor  # (N, C) advantage per column, 0 where not computed or constant
    computed: Tensor  # (N, C) bool: finite and in a group with >= 2 finite values in that column
    n: Tensor  # (G, C) finite values per group
    std: Tensor  # (G, C) Bessel std, exactly 0 for constant groups
    const: Tensor  # (G, C) bool: all finite values equal (True for a single value, False for none)


# --------------------------------------------------------------------------------------------------
# Segment helpers
# --------------------------------------------------------------------------------------------------


def _group_index(group: Tensor) -> tuple[Tensor, int]:
    """Relabel arbitrary group ids to ``0..G-1``; returns ``(inverse (N,), G)``."""
    uniq, inverse = torch.unique(group, return_inverse=True)
    return inverse, int(uniq.shape[0])  # a shape, not a value sync


def _group_z(y: Tensor, seg: Tensor, n_groups: int, *, eps: float, kind: ScalarKind) -> _GroupZ:
    """Per-group, per-column advantage of ``y`` ``(N, C)`` float64 (NaN excluded).

    ``grpo``: (y − mean_g)/(std_g + ε); ``dr_grpo``: y − mean_g; ``rloo``: n_g/(n_g − 1)·(y − mean_g).
    """
    finite = torch.isfinite(y)
    mom = segment_moments(y, seg, finite, n_groups)
    idx = seg.unsqueeze(1).expand_as(y)
    inf = torch.tensor(float("inf"), dtype=_F64)
    lo = torch.full_like(mom.n, float("inf")).scatter_reduce(0, idx, torch.where(finite, y, inf), "amin")
    hi = torch.full_like(mom.n, -float("inf")).scatter_reduce(0, idx, torch.where(finite, y, -inf), "amax")
    const = lo == hi
    # Rounding in the mean can leave a constant group with a tiny spread; pin it to exactly 0.
    std = torch.where(const, torch.zeros((), dtype=_F64), moments_std(mom))
    # index_select, not x[seg]: 2-D advanced indexing is ~100x slower on CPU.
    count_i = mom.n.index_select(0, seg)
    computed = finite & (count_i >= 2)
    active = computed & (lo.index_select(0, seg) != hi.index_select(0, seg))
    centred = y - mom.mean.index_select(0, seg)
    if kind == "grpo":
        value = centred / (std.index_select(0, seg) + eps)
    elif kind == "dr_grpo":
        value = centred
    else:
        value = centred * count_i / (count_i - 1.0).clamp(min=1.0)
    z = torch.where(active, value, torch.zeros((), dtype=_F64))
    return _GroupZ(z, computed, mom.n, std, const)


def _masked_mean_std(x: Tensor, mask: Tensor) -> tuple[Tensor, Tensor]:
    """Mean and Bessel std of ``x[mask]`` as 0-d float64 tensors (0 when empty)."""
    mom = segment_moments(x, torch.zeros(x.shape[0], dtype=torch.long), mask, 1)
    return mom.mean[0], moments_std(mom)[0]


def _frac(flags: Tensor, among: Tensor | None = None) -> Tensor:
    """Share of True in ``flags`` among ``among`` (all entries when None); 0 when the set is empty."""
    base = torch.ones_like(flags, dtype=torch.bool) if among is None else among
    num = (flags & base).to(_F64).sum()
    return num / base.to(_F64).sum().clamp(min=1.0)


# --------------------------------------------------------------------------------------------------
# Inputs, weights, metrics
# --------------------------------------------------------------------------------------------------


def _check_batch(batch: RewardBatch) -> None:
    """Shape checks only (no value syncs).

    Raises:
        InvalidData: A tensor has the wrong shape or the batch is empty.
    """
    if batch.raw.dim() != 2 or batch.raw.shape[0] == 0:
        raise InvalidData(f"RewardBatch.raw must be a non-empty (N, K) tensor, got shape {tuple(batch.raw.shape)}.")
    n, k = batch.raw.shape
    if batch.names and len(batch.names) != k:
        raise InvalidData(f"RewardBatch.raw has K={k} columns but names holds {len(batch.names)}: {list(batch.names)}.")
    if not batch.names and k > len(BUILTIN_COMPONENTS):
        raise InvalidData(f"RewardBatch.raw has K={k} columns; name them (RewardBatch.names) beyond the built-ins.")
    expected = {
        "gated": (batch.gated, (n, k)),
        "scalar": (batch.scalar, (n,)),
        "group": (batch.group, (n,)),
        "source": (batch.source, (n,)),
        "weights": (batch.weights, (k,)),
    }
    for name, (tensor, shape) in expected.items():
        if tuple(tensor.shape) != shape:
            raise InvalidData(f"RewardBatch.{name} has shape {tuple(tensor.shape)}; expected {shape}.")
    if len(batch.source_names) == 0:
        raise InvalidData("RewardBatch.source_names is empty; it must name every dataset id.")


def _weights(batch: RewardBatch, overrides: Mapping[str, float] | None) -> Tensor:
    """Effective ``(K,)`` float64 weights: the batch's, with per-name overrides applied.

    Raises:
        UnknownComponent: An override names a component outside the batch's K columns.
    """
    w = batch.weights.to(_F64).clone()
    names = component_names(batch)
    for name, value in (overrides or {}).items():  # at most K names
        if name not in names:
            raise UnknownComponent(
                f"component_weights names {name!r}, but the batch holds {list(names)}.{close_matches_hint(name, names)}"
            )
        w[names.index(name)] = float(value)
    return w


def _weighted_total(m: Tensor, w: Tensor) -> Tensor:
    """Σ_k w_k·M_ik with NaN when any weighted (w_k ≠ 0) term is NaN; zero-weight NaNs are ignored."""
    used = w != 0
    nan_row = (torch.isnan(m) & used).any(dim=1)
    total = torch.where(used, m * w, torch.zeros((), dtype=_F64)).sum(dim=1)
    return torch.where(nan_row, torch.full_like(total, float("nan")), total)


def _scalar_signal(batch: RewardBatch, w: Tensor) -> Tensor:
    """y_i = x_i, NaN if x_i is not finite or any weighted raw component of i is NaN. ``(N,)`` float64."""
    x = batch.scalar.to(_F64)
    bad = ~torch.isfinite(x) | (torch.isnan(batch.raw.to(_F64)) & (w != 0)).any(dim=1)
    return torch.where(bad, torch.full_like(x, float("nan")), x)


def _reward_metrics(batch: RewardBatch, y: Tensor, seg: Tensor, n_groups: int) -> dict[str, Tensor]:
    """``reward/*`` metrics: per-component raw stats, the scalar's stats, zero-std and unscorable shares."""
    metrics: dict[str, Tensor] = {}
    raw = batch.raw.to(_F64)
    for k, name in enumerate(component_names(batch)):  # loop over the K components, not trajectories
        finite = torch.isfinite(raw[:, k])
        mean, std = _masked_mean_std(raw[:, k], finite)
        metrics[f"reward/{name}/mean"] = mean
        metrics[f"reward/{name}/std"] = std
        metrics[f"reward/{name}/frac_nan"] = _frac(~finite)
    finite_y = torch.isfinite(y)
    metrics["reward/total/mean"], metrics["reward/total/std"] = _masked_mean_std(y, finite_y)
    gz = _group_z(y.unsqueeze(1), seg, n_groups, eps=1.0, kind="dr_grpo")
    scored = gz.n[:, 0] >= 2
    metrics["reward/frac_zero_std"] = _frac(gz.const[:, 0], scored)
    metrics["reward/frac_unscorable"] = _frac(~finite_y)
    return metrics


def _adv_metrics(adv: Tensor, zero_var: Tensor, degenerate: Tensor, dropped: Tensor) -> dict[str, Tensor]:
    """``adv/*`` metrics over the whole batch (``adv`` float64 ``(N,)``, flags ``(G,)`` / ``(N,)``)."""
    all_rows = torch.ones_like(adv, dtype=torch.bool)
    mean, std = _masked_mean_std(adv, all_rows)
    return {
        "adv/mean": mean,
        "adv/std": std,
        "adv/abs_max": adv.abs().max(),
        "adv/frac_zero_std": _frac(zero_var),
        "adv/frac_degenerate_groups": _frac(degenerate),
        "adv/frac_dropped": _frac(dropped),
    }


def _finish(adv: Tensor, dropped: Tensor, metrics: dict[str, Tensor]) -> AdvantageOut:
    return AdvantageOut(adv.to(torch.float32), ~dropped, {k: v.to(torch.float32) for k, v in metrics.items()})


# --------------------------------------------------------------------------------------------------
# Scalar estimators
# --------------------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True, kw_only=True)
class ScalarEstimator:
    """``grpo`` / ``dr_grpo`` / ``rloo`` on the scalar return x (``docs/learner.md`` §2).

    With y = x (NaN if any weighted component is NaN), per group g over its finite members V_g:

    - ``grpo`` (arXiv 2402.03300): A_i = (y_i − mean_g y)/(std_g y + ε);
    - ``dr_grpo`` (arXiv 2503.20783): A_i = y_i − mean_g y;
    - ``rloo`` (arXiv 2402.14740): A_i = y_i − mean_{j∈V_g, j≠i} y_j = n_g/(n_g − 1)·(y_i − mean_g y).
    """

    kind: ScalarKind
    """Which formula."""
    eps: float = 1e-6
    """Std guard ε (``grpo`` only)."""
    component_weights: Mapping[str, float] | None = None
    """Weight overrides; decide which NaN components make y unscorable."""
    drop_zero_variance_groups: bool = False
    """Mark constant groups invalid (out of the loss)."""

    def __call__(self, batch: RewardBatch, state: CalibrationState | None) -> AdvantageOut:
        """Compute the scalar advantage; ``state`` is unused. See :class:`AdvantageFn`."""
        _check_batch(batch)
        w = _weights(batch, self.component_weights)
        y = _scalar_signal(batch, w)
        seg, n_groups = _group_index(batch.group)
        gz = _group_z(y.unsqueeze(1), seg, n_groups, eps=self.eps, kind=self.kind)
        degenerate = gz.n[:, 0] < 2
        zero_var = gz.const[:, 0] & ~degenerate
        dropped = (zero_var[seg]) & self.drop_zero_variance_groups
        adv = gz.z[:, 0]  # already exactly 0 for degenerate, NaN and constant-group members
        metrics = _reward_metrics(batch, y, seg, n_groups)
        metrics.update(_adv_metrics(adv, zero_var, degenerate, dropped))
        return _finish(adv, dropped, metrics)


# --------------------------------------------------------------------------------------------------
# The ReCal pipeline (gdpo is a configuration of it)
# --------------------------------------------------------------------------------------------------


class _StageC(NamedTuple):
    s: Tensor  # (N,) float64 S_i
    computed: Tensor  # (N,) bool: S_i is a computed value, not a fill
    zero_var: Tensor  # (G,) bool: non-degenerate and every weighted component constant
    degenerate: Tensor  # (G,) bool


def _stage_c(m: Tensor, w: Tensor, seg: Tensor, n_groups: int, *, componentwise: bool, eps: float) -> _StageC:
    """Stage C (§4.2): S = Σ_k w_k·A^k (GDPO steps 1-2), or ``grpo`` of Σ_k w_k·R̃_k when off."""
    if componentwise:
        gz = _group_z(m, seg, n_groups, eps=eps, kind="grpo")  # (N, K)
        used = w != 0  # (K,)
        s = (gz.z * w).sum(dim=1)
        computed = (gz.computed & used).any(dim=1)
        short = (gz.n < 2) | ~used  # (G, K): this column cannot produce an advantage in g
        degenerate = short.all(dim=1)
        zero_var = (short | gz.const).all(dim=1) & ~degenerate
        return _StageC(s, computed, zero_var, degenerate)
    gz = _group_z(_weighted_total(m, w).unsqueeze(1), seg, n_groups, eps=eps, kind="grpo")
    degenerate = gz.n[:, 0] < 2
    return _StageC(gz.z[:, 0], gz.computed[:, 0], gz.const[:, 0] & ~degenerate, degenerate)


def _stage_v(
    m: Tensor,
    w: Tensor,
    seg: Tensor,
    n_groups: int,
    cfg: RecalConfig,
    state: CalibrationState,
    names: tuple[str, ...],
) -> tuple[Tensor, dict[str, Tensor]]:
    """Stage V (§4.3): ω_g from σ_g = std_g(v) against σ̄, after updating σ̄. Returns ``((G,), metrics)``.

    Groups with fewer than 2 finite v have no σ_g; they get the neutral weight (w_min + w_max)/2,
    i.e. σ_g := σ̄. **[choice]**
    """
    if cfg.variance_source == "answer":
        if _ANSWER not in names:
            raise InvalidData(f"variance_source='answer' needs an 'answer' component; the batch has {list(names)}.")
        v = m[:, names.index(_ANSWER)]
    else:
        v = _weighted_total(m, w)
    gz = _group_z(v.unsqueeze(1), seg, n_groups, eps=cfg.eps, kind="dr_grpo")
    sigma = gz.std[:, 0]  # (G,)
    defined = gz.n[:, 0] >= 2
    state.update(sigma=sigma, sigma_mask=defined, std_ema=cfg.std_ema)
    omega = state.variance_weights(sigma, w_min=cfg.w_min, w_max=cfg.w_max, steepness=cfg.steepness)
    omega = torch.where(defined, omega, torch.full_like(omega, 0.5 * (cfg.w_min + cfg.w_max)))
    n_def = defined.to(_F64).sum().clamp(min=1.0)
    metrics = {
        "recal/weight/mean": omega.mean(),
        "recal/weight/min": omega.min(),
        "recal/weight/max": omega.max(),
        "recal/sigma_bar": state.sigma_bar.clone(),
        "recal/sigma_group/mean": torch.where(defined, sigma, torch.zeros((), dtype=_F64)).sum() / n_def,
    }
    return omega, metrics


def _stage_n(
    a: Tensor, keep: Tensor, batch: RewardBatch, cfg: RecalConfig, state: CalibrationState
) -> tuple[Tensor, dict[str, Tensor]]:
    """Stage N (§4.4) over the valid trajectories ``keep``; entries outside ``keep`` pass through."""
    if cfg.final_norm == "none":
        return a, {}
    if cfg.final_norm == "batch":
        mean, std = _masked_mean_std(a, keep)
        return torch.where(keep, (a - mean) / (std + cfg.eps), a), {}
    source = batch.source.long()
    names = batch.source_names
    if cfg.dataset_stats == "running":
        per = segment_moments(a, source, keep, len(names))
        state.update(moments=per, source_names=names, running_decay=cfg.running_decay)
        out, stats = state.transform(a, source, keep, names, eps=cfg.eps, min_count=cfg.min_dataset_count)
    else:
        per = segment_moments(a, source, keep, len(names))
        whole = segment_moments(a, torch.zeros_like(source), keep, 1)
        out, stats = normalise_by_source(a, source, keep, per, whole, eps=cfg.eps, min_count=cfg.min_dataset_count)
    metrics: dict[str, Tensor] = {}
    for d, name in enumerate(names):  # loop over datasets (metric keys), not groups
        metrics[f"calib/{name}/mean"] = stats.mean[d]
        metrics[f"calib/{name}/std"] = stats.std[d]
        metrics[f"calib/{name}/count"] = stats.n[d]
    return out, metrics


@dataclass(frozen=True, slots=True, kw_only=True)
class RecalEstimator:
    """ReCal reference pipeline H → C → V → N, then zero-fill (``docs/learner.md`` §4).

    - H: R̃ = ``batch.gated`` if ``hierarchy`` else ``batch.raw``;
    - C: S_i = Σ_k w_k·(R̃_ik − mean_g R̃_k)/(std_g R̃_k + ε) (GDPO, arXiv 2601.05242), or ``grpo`` of
      Σ_k w_k·R̃_ik when ``componentwise`` is off;
    - V: A′_i = ω_{g(i)}·S_i with ω_g = w_min + (w_max − w_min)·sigmoid(κ(σ_g − σ̄)) (HERO, arXiv
      2510.07242), σ̄ updated before use;
    - N: Â_i = (A′_i − μ)/(σ + ε) over valid trajectories of the batch (``"batch"``) or of each dataset
      (``"per_dataset"``, batch or running statistics);
    - zero-fill: degenerate groups, fully unscorable trajectories, zero-variance and dropped groups → 0.

    "Valid" = S_i was computed (some weighted component is finite in a group with ≥ 2 finite values)
    and the group was not dropped.
    """

    config: RecalConfig = dataclasses.field(default_factory=RecalConfig)
    """All switches and hyperparameters."""

    def __call__(self, batch: RewardBatch, state: CalibrationState | None) -> AdvantageOut:
        """Compute ReCal advantages; ``state=None`` uses a fresh throwaway :class:`CalibrationState`."""
        _check_batch(batch)
        cfg = self.config
        st = CalibrationState() if state is None else state
        w = _weights(batch, cfg.component_weights)
        m = (batch.gated if cfg.hierarchy else batch.raw).to(_F64)  # (N, K)
        seg, n_groups = _group_index(batch.group)
        c = _stage_c(m, w, seg, n_groups, componentwise=cfg.componentwise, eps=cfg.eps)
        dropped = c.zero_var[seg] & cfg.drop_zero_variance_groups
        keep = c.computed & ~dropped
        metrics = _reward_metrics(batch, _scalar_signal(batch, w), seg, n_groups)
        a = c.s
        if cfg.variance_weighting:
            omega, v_metrics = _stage_v(m, w, seg, n_groups, cfg, st, component_names(batch))
            a = omega[seg] * a
            metrics.update(v_metrics)
        a, n_metrics = _stage_n(a, keep, batch, cfg, st)
        metrics.update(n_metrics)
        # Zero-variance groups have S ≡ 0 and a group mean of 0, so their exact value is 0 after any
        # affine Stage N; pin it rather than keep a rounding residue of −μ/σ.
        fill = ~keep | c.zero_var[seg]
        adv = torch.where(fill, torch.zeros((), dtype=_F64), a)
        metrics.update(_adv_metrics(adv, c.zero_var, c.degenerate, dropped))
        return _finish(adv, dropped, metrics)


# --------------------------------------------------------------------------------------------------
# Registry
# --------------------------------------------------------------------------------------------------


def _make_grpo(config: RecalConfig) -> AdvantageFn:
    return _make_scalar("grpo", config)


def _make_dr_grpo(config: RecalConfig) -> AdvantageFn:
    return _make_scalar("dr_grpo", config)


def _make_rloo(config: RecalConfig) -> AdvantageFn:
    return _make_scalar("rloo", config)


def _make_scalar(kind: ScalarKind, config: RecalConfig) -> AdvantageFn:
    return ScalarEstimator(
        kind=kind,
        eps=config.eps,
        component_weights=config.component_weights,
        drop_zero_variance_groups=config.drop_zero_variance_groups,
    )


def _make_gdpo(config: RecalConfig) -> AdvantageFn:
    """GDPO = ReCal with H and V off and a batch z-score for N (``docs/learner.md`` §4.5)."""
    gdpo = dataclasses.replace(config, hierarchy=False, variance_weighting=False, final_norm="batch")
    return RecalEstimator(config=gdpo)


def _make_recal(config: RecalConfig) -> AdvantageFn:
    return RecalEstimator(config=config)


ESTIMATORS: dict[EstimatorName, Callable[..., AdvantageFn]] = {
    "grpo": _make_grpo,
    "dr_grpo": _make_dr_grpo,
    "rloo": _make_rloo,
    "gdpo": _make_gdpo,
    "recal": _make_recal,
}
"""Estimator name → factory ``(config: RecalConfig) -> AdvantageFn``. Change it only through
:func:`register_estimator` / :func:`unregister_estimator`."""


def register_estimator(name: str, factory: Callable[[RecalConfig], AdvantageFn]) -> None:
    """Add an estimator factory under ``name``.

    Raises:
        InvalidConfig: ``name`` is already registered.
    """
    if name in ESTIMATORS:
        raise InvalidConfig(f"estimator {name!r} is already registered; registered: {sorted(ESTIMATORS)}.")
    ESTIMATORS[cast(EstimatorName, name)] = factory


def unregister_estimator(name: str) -> None:
    """Remove ``name`` from the registry (for test fixtures).

    Raises:
        UnknownName: ``name`` is not registered.
    """
    if name not in ESTIMATORS:
        raise UnknownName(f"estimator {name!r} is not registered.{close_matches_hint(name, ESTIMATORS)}")
    del ESTIMATORS[cast(EstimatorName, name)]


def make_estimator(name: str, config: RecalConfig | None = None) -> AdvantageFn:
    """Build the estimator ``name`` with ``config`` (default ``RecalConfig()``).

    Scalar estimators read ``eps``, ``component_weights`` and ``drop_zero_variance_groups`` only;
    ``gdpo`` overrides ``hierarchy``, ``variance_weighting`` and ``final_norm``.

    Raises:
        UnknownName: ``name`` is not registered (the message lists valid names and close matches).
    """
    factory = ESTIMATORS.get(cast(EstimatorName, name))
    if factory is None:
        raise UnknownName(
            f"unknown estimator {name!r}; valid: {sorted(ESTIMATORS)}.{close_matches_hint(name, ESTIMATORS)}"
        )
    return factory(RecalConfig() if config is None else config)
