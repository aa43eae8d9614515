"""Token-level clipped policy loss, KL estimators and loss aggregation (``docs/learner.md`` §7).

Pure functions over ``(N, T)`` tensors. The per-token loss is

    ℓ_{i,t} = ℓ^pg_{i,t} + β·KL_{i,t} − c_H·H_{i,t},
    ℓ^pg = −min(ρ·Â, clip(ρ, 1 − ε_low, 1 + ε_high)·Â),  ρ = exp(logp − logp_old),

with clip-higher (DAPO, arXiv 2503.14476), the PPO surrogate (arXiv 1707.06347), optional dual clip
for Â < 0 (arXiv 1912.09729) and the KL in the loss as in GRPO (arXiv 2402.03300). Aggregation modes
follow §7.3; the denominator is computed once for the whole (global) minibatch by
:func:`loss_denominator`, so micro-batch losses add up to the full-batch loss (§7.4).
"""

from __future__ import annotations

from typing import NamedTuple, get_args

import torch
from torch import Tensor

from agents.grpo.loss_config import KLEstimator, LossAgg, LossConfig
from recal_gym.errors import InvalidConfig, InvalidData

__all__ = [
    "KLEstimator",
    "LossAgg",
    "LossConfig",
    "LossOut",
    "kl_penalty",
    "loss_denominator",
    "token_policy_loss",
]

_DELTA_CLAMP = 20.0
_K3_MAX = 10.0


class LossOut(NamedTuple):
    """Loss and its metrics."""

    loss: Tensor
    """0-d, differentiable: this call's share of the minibatch loss (sum over micro-batches = total)."""
    metrics: dict[str, Tensor]
    """Detached 0-d tensors: ``loss/total|policy|kl|entropy`` (aggregated like ``loss``, so they add up
    over micro-batches), ``policy/clipfrac_low|clipfrac_high|approx_kl`` (token means over this call's
    policy tokens)."""


def kl_penalty(logp: Tensor, logp_ref: Tensor, estimator: KLEstimator) -> Tensor:
    """Per-token KL(π_θ ‖ π_ref) estimate, elementwise.

    With δ = logp_ref − logp: k1 = −δ (unbiased, may be negative), k2 = δ²/2, and
    k3 = e^δ − δ − 1 ≥ 0 with δ clamped to [−20, 20] before exponentiating and k3 clamped to ≤ 10.

    Args:
        logp: ``(N, T)`` log-probs of the taken tokens under the policy.
        logp_ref: ``(N, T)`` log-probs under the frozen reference.
        estimator: ``"k1"``, ``"k2"`` or ``"k3"``.

    Returns:
        ``(N, T)`` per-token penalty.

    Raises:
        InvalidConfig: Unknown estimator name.
    """
    delta = logp_ref - logp
    if estimator == "k1":
        return -delta
    if estimator == "k2":
        return 0.5 * delta * delta
    if estimator == "k3":
        d = delta.clamp(-_DELTA_CLAMP, _DELTA_CLAMP)
        # expm1(d) - d is e^d - d - 1 without the cancellation of e^d - 1 near d = 0; the clamp at 0 removes
        # the last rounding residue (k3 >= 0 exactly in real arithmetic).
        return (torch.expm1(d) - d).clamp(min=0.0, max=_K3_MAX)
    raise InvalidConfig(f"kl_estimator={estimator!r} is not one of {list(get_args(KLEstimator))}.")


def loss_denominator(loss_mask: Tensor, loss_agg: LossAgg, l_norm: float | None = None) -> Tensor:
    """The global normaliser of :func:`token_policy_loss`, computed once over the whole minibatch.

    - ``token-mean``: Σ_{i,t} m (at least 1);
    - ``seq-mean-token-mean``: N′ = sequences with ≥ 1 policy token (at least 1);
    - ``seq-mean-token-sum-norm``: N·L_norm (Dr.GRPO, arXiv 2503.20783), L_norm = ``l_norm`` or T.

    Under DDP (gradients averaged over ranks) gather this over ranks and multiply each rank's loss by
    the world size.

    Args:
        loss_mask: ``(N, T)`` bool/0-1, 1 on policy-sampled tokens.
        loss_agg: Aggregation mode.
        l_norm: L_norm for ``seq-mean-token-sum-norm``.

    Returns:
        0-d float tensor.

    Raises:
        InvalidConfig: Unknown mode or non-positive ``l_norm``.
    """
    m = loss_mask.to(torch.float64)
    if loss_agg == "token-mean":
        return m.sum().clamp(min=1.0)
    if loss_agg == "seq-mean-token-mean":
        return (m.sum(dim=1) > 0).to(torch.float64).sum().clamp(min=1.0)
    if loss_agg == "seq-mean-token-sum-norm":
        width = float(m.shape[1]) if l_norm is None else float(l_norm)
        if not width > 0.0:
            raise InvalidConfig(f"l_norm={l_norm!r} must be > 0.")
        return torch.tensor(m.shape[0] * width, dtype=torch.float64)
    raise InvalidConfig(f"loss_agg={loss_agg!r} is not one of {list(get_args(LossAgg))}.")


def _aggregate(values: Tensor, mask: Tensor, loss_agg: LossAgg, denominator: Tensor) -> Tensor:
    """Σ over this call's tokens of the mode's numerator, divided by the global denominator."""
    masked = values * mask
    if loss_agg == "seq-mean-token-mean":
        lengths = mask.sum(dim=1)
        per_seq = masked.sum(dim=1) / lengths.clamp(min=1.0)  # (N,); empty sequences add 0
        return per_seq.sum() / denominator
    return masked.sum() / denominator


def _check_shapes(logp: Tensor, logp_old: Tensor, advantages: Tensor, loss_mask: Tensor) -> None:
    if logp.dim() != 2:
        raise InvalidData(f"logp must be (N, T), got shape {tuple(logp.shape)}.")
    if logp_old.shape != logp.shape or loss_mask.shape != logp.shape:
        raise InvalidData(
            f"logp {tuple(logp.shape)}, logp_old {tuple(logp_old.shape)} and loss_mask "
            f"{tuple(loss_mask.shape)} must have the same (N, T) shape."
        )
    if tuple(advantages.shape) != (logp.shape[0],):
        raise InvalidData(f"advantages must be (N,) = ({logp.shape[0]},), got {tuple(advantages.shape)}.")


def _policy_term(
    logp: Tensor, logp_old: Tensor, adv: Tensor, clip_low: float, clip_high: float, dual_clip: float | None
) -> tuple[Tensor, Tensor, Tensor]:
    """ℓ^pg per token and the low/high clip-binding indicators (all ``(N, T)``)."""
    log_ratio = (logp - logp_old).clamp(-_DELTA_CLAMP, _DELTA_CLAMP)  # guards exp against overflow
    ratio = torch.exp(log_ratio)
    surrogate = -adv * ratio
    clipped = -adv * ratio.clamp(1.0 - clip_low, 1.0 + clip_high)
    pg = torch.maximum(surrogate, clipped)
    if dual_clip is not None:
        pg = torch.where(adv < 0, torch.minimum(pg, -dual_clip * adv), pg)
    ratio_d = ratio.detach()
    low = (adv < 0) & (ratio_d < 1.0 - clip_low)
    high = (adv > 0) & (ratio_d > 1.0 + clip_high)
    return pg, low, high


def token_policy_loss(
    logp: Tensor,
    logp_old: Tensor,
    advantages: Tensor,
    loss_mask: Tensor,
    *,
    clip_low: float,
    clip_high: float,
    dual_clip: float | None,
    kl_coef: float,
    kl_estimator: KLEstimator,
    logp_ref: Tensor | None = None,
    entropy: Tensor | None = None,
    entropy_coef: float = 0.0,
    loss_agg: LossAgg,
    l_norm: float | None,
    denominator: Tensor | None = None,
) -> LossOut:
    """Clipped token-level policy loss with optional KL and entropy terms (``docs/learner.md`` §7.1-7.4).

    ℓ_{i,t} = −min(ρÂ_i, clip(ρ, 1−ε_low, 1+ε_high)Â_i) [then min(·, −cÂ_i) for Â_i < 0 with dual clip]
    + β·KL_{i,t} − c_H·H_{i,t}, aggregated by ``loss_agg`` over m = ``loss_mask``. Entries at m = 0 are
    replaced before any arithmetic, so their values never reach the loss and their gradient is exactly 0.

    Args:
        logp: ``(N, T)`` float log-probs of the taken tokens under π_θ (requires grad).
        logp_old: ``(N, T)`` log-probs under the sampling policy (treated as constants).
        advantages: ``(N,)`` trajectory advantages Â_i, broadcast to tokens.
        loss_mask: ``(N, T)`` bool/0-1, 1 on policy-sampled tokens only.
        clip_low: ε_low.
        clip_high: ε_high.
        dual_clip: c > 1 or None.
        kl_coef: β; with β > 0, ``logp_ref`` is required.
        kl_estimator: ``"k1"``, ``"k2"`` or ``"k3"`` (see :func:`kl_penalty`).
        logp_ref: ``(N, T)`` reference log-probs, or None.
        entropy: ``(N, T)`` per-token policy entropy H, or None.
        entropy_coef: c_H; with c_H ≠ 0, ``entropy`` is required.
        loss_agg: Aggregation mode.
        l_norm: L_norm for ``seq-mean-token-sum-norm``.
        denominator: The global normaliser from :func:`loss_denominator`, computed over the whole
            minibatch before a micro-batch loop; None = compute it from this call's ``loss_mask``.

    Returns:
        :class:`LossOut`.

    Raises:
        InvalidData: Shapes disagree.
        InvalidConfig: β > 0 without ``logp_ref`` or c_H ≠ 0 without ``entropy``.
    """
    _check_shapes(logp, logp_old, advantages, loss_mask)
    if kl_coef != 0.0 and logp_ref is None:
        raise InvalidConfig(f"kl_coef={kl_coef!r} needs logp_ref (a reference model).")
    if entropy_coef != 0.0 and entropy is None:
        raise InvalidConfig(f"entropy_coef={entropy_coef!r} needs the per-token entropy.")
    on = loss_mask.bool()
    m = on.to(logp.dtype)
    denom = loss_denominator(loss_mask, loss_agg, l_norm) if denominator is None else denominator
    denom = denom.to(logp.dtype)
    zero = torch.zeros((), dtype=logp.dtype)
    # Masked entries may hold anything (even ±inf); `where` cuts both their value and their gradient.
    lp = torch.where(on, logp, zero)
    lp_old = torch.where(on, logp_old.detach().to(logp.dtype), zero)
    adv = advantages.detach().to(logp.dtype).unsqueeze(1)  # (N, 1)
    pg, low, high = _policy_term(lp, lp_old, adv, clip_low, clip_high, dual_clip)
    policy = _aggregate(pg, m, loss_agg, denom)
    total = policy
    kl_value = zero
    if logp_ref is not None:
        lp_ref = torch.where(on, logp_ref.detach().to(logp.dtype), zero)
        kl_value = _aggregate(kl_penalty(lp, lp_ref, kl_estimator), m, loss_agg, denom)
        total = total + kl_coef * kl_value
    ent_value = zero
    if entropy is not None:
        ent_value = _aggregate(torch.where(on, entropy, zero), m, loss_agg, denom)
        total = total - entropy_coef * ent_value
    n_tok = m.sum().clamp(min=1.0)
    approx_kl = (kl_penalty(lp.detach(), lp_old, "k3") * m).sum() / n_tok
    metrics = {
        "loss/total": total.detach(),
        "loss/policy": policy.detach(),
        "loss/kl": kl_value.detach(),
        "loss/entropy": ent_value.detach(),
        "policy/clipfrac_low": (low & on).to(logp.dtype).sum() / n_tok,
        "policy/clipfrac_high": (high & on).to(logp.dtype).sum() / n_tok,
        "policy/approx_kl": approx_kl,
    }
    return LossOut(total, metrics)
