"""Tests for agents.grpo.losses: oracles 13-17 and split invariance 18 of docs/learner.md §9."""

from __future__ import annotations

import math

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from agents.grpo.losses import LossConfig, kl_penalty, loss_denominator, token_policy_loss
from recal_gym.errors import InvalidConfig, InvalidData

F64 = torch.float64
BASE = {"clip_low": 0.2, "clip_high": 0.28, "dual_clip": None, "kl_coef": 0.0, "kl_estimator": "k3", "l_norm": None}
MODES = ["token-mean", "seq-mean-token-mean", "seq-mean-token-sum-norm"]


def loss(logp, logp_old, adv, mask, **kw):
    args = {**BASE, "loss_agg": "token-mean", **kw}
    return token_policy_loss(logp, logp_old, adv, mask, **args)


def grad_of(logp, *args, **kw):
    lp = logp.clone().requires_grad_(True)
    out = loss(lp, *args, **kw)
    (g,) = torch.autograd.grad(out.loss, lp)
    return out._replace(loss=out.loss.detach()), g


def batch(seed=0, n=4, t=6):
    gen = torch.Generator().manual_seed(seed)
    logp = -torch.rand(n, t, generator=gen, dtype=F64) * 2
    logp_old = logp + 0.3 * torch.randn(n, t, generator=gen, dtype=F64)
    adv = torch.randn(n, generator=gen, dtype=F64)
    mask = torch.rand(n, t, generator=gen) > 0.3
    mask[:, 0] = True
    return logp, logp_old, adv, mask


def test_on_policy_token_mean_is_plain_policy_gradient():
    logp, _, adv, mask = batch()
    out, g = grad_of(logp, logp.clone(), adv, mask)
    m = mask.to(F64)
    torch.testing.assert_close(out.loss, -(m * adv[:, None]).sum() / m.sum())
    torch.testing.assert_close(g, -adv[:, None] * m / m.sum())
    assert float(out.metrics["policy/clipfrac_low"]) == 0.0 and float(out.metrics["policy/clipfrac_high"]) == 0.0
    assert float(out.metrics["policy/approx_kl"]) == 0.0


def test_clipped_tokens_have_zero_gradient_and_dual_clip_caps():
    logp = torch.zeros(4, 1, dtype=F64)
    logp_old = torch.log(torch.tensor([[1 / 1.5], [1 / 0.5], [1 / 1.1], [1 / 3.0]], dtype=F64))  # ρ = 1.5, .5, 1.1, 3
    adv = torch.tensor([1.0, -1.0, 1.0, -2.0], dtype=F64)
    mask = torch.ones(4, 1, dtype=torch.bool)
    out, g = grad_of(logp, logp_old, adv, mask)
    assert g[0, 0] == 0 and g[1, 0] == 0  # Â>0, ρ>1+ε_high and Â<0, ρ<1−ε_low
    assert g[2, 0] != 0 and g[3, 0] != 0
    assert float(out.metrics["policy/clipfrac_high"]) == pytest.approx(0.25)
    assert float(out.metrics["policy/clipfrac_low"]) == pytest.approx(0.25)
    # hand value: per-token ℓ = [−1.28, 0.8, −1.1, 6.0] → mean
    assert float(out.loss) == pytest.approx((-1.28 + 0.8 - 1.1 + 6.0) / 4)
    dual, _ = grad_of(logp, logp_old, adv, mask, dual_clip=3.0)
    assert float(dual.loss) == pytest.approx((-1.28 + 0.8 - 1.1 + 3.0 * 2.0 * 1.0) / 4)  # 6.0 ≤ c·|Â| = 6
    dual2, gd2 = grad_of(logp, logp_old, adv, mask, dual_clip=2.0)
    assert float(dual2.loss) == pytest.approx((-1.28 + 0.8 - 1.1 + 4.0) / 4)  # capped at −c·Â = 4
    assert gd2[3, 0] == 0


def test_kl_estimators():
    x = torch.linspace(-3, 0, 7, dtype=F64)
    for est in ("k1", "k2", "k3"):
        assert torch.equal(kl_penalty(x, x, est), torch.zeros_like(x))
    ref = x.flip(0)
    delta = ref - x
    torch.testing.assert_close(kl_penalty(x, ref, "k1"), -delta)
    torch.testing.assert_close(kl_penalty(x, ref, "k2"), 0.5 * delta**2)
    torch.testing.assert_close(kl_penalty(x, ref, "k3"), (torch.exp(delta) - delta - 1).clamp(max=10.0))
    huge = kl_penalty(torch.tensor([-100.0, 0.0]), torch.tensor([0.0, -100.0]), "k3")
    assert torch.isfinite(huge).all() and float(huge.max()) == 10.0
    with pytest.raises(InvalidConfig, match="kl_estimator='k4'"):
        kl_penalty(x, x, "k4")  # type: ignore[arg-type]


@settings(max_examples=100, deadline=None)
@given(a=st.floats(-30, 0), b=st.floats(-30, 0))
def test_k2_k3_non_negative(a, b):
    lp, ref = torch.tensor([a], dtype=F64), torch.tensor([b], dtype=F64)
    assert float(kl_penalty(lp, ref, "k2")) >= 0
    assert float(kl_penalty(lp, ref, "k3")) >= 0


def test_aggregation_modes_equal_under_equal_lengths():
    logp, logp_old, adv, _ = batch(seed=3, n=3, t=5)
    mask = torch.zeros(3, 5, dtype=torch.bool)
    mask[:, 1:4] = True  # every sequence has 3 policy tokens
    values = [float(loss(logp, logp_old, adv, mask, loss_agg=m, l_norm=3.0).loss) for m in MODES]
    assert values == pytest.approx([values[0]] * 3, rel=1e-12)


def test_aggregation_hand_values():
    logp = torch.zeros(2, 3, dtype=F64)
    adv = torch.tensor([1.0, -2.0], dtype=F64)
    mask = torch.tensor([[1, 1, 1], [1, 0, 0]], dtype=torch.bool)
    # ρ = 1 → ℓ = −Â per token: row 0 three tokens of −1, row 1 one token of +2
    assert float(loss(logp, logp, adv, mask).loss) == pytest.approx((-3 + 2) / 4)
    assert float(loss(logp, logp, adv, mask, loss_agg="seq-mean-token-mean").loss) == pytest.approx((-1 + 2) / 2)
    dr = loss(logp, logp, adv, mask, loss_agg="seq-mean-token-sum-norm", l_norm=10.0)
    assert float(dr.loss) == pytest.approx((-3 + 2) / (2 * 10))
    wide = loss(logp, logp, adv, mask, loss_agg="seq-mean-token-sum-norm")  # L_norm = T = 3
    assert float(wide.loss) == pytest.approx((-3 + 2) / 6)
    ent = torch.full((2, 3), 0.5, dtype=F64)
    both = loss(logp, logp - 0.1, adv, mask, kl_coef=0.5, logp_ref=logp + 0.2, entropy=ent, entropy_coef=0.1)
    k3 = math.exp(0.2) - 0.2 - 1
    assert float(both.metrics["loss/kl"]) == pytest.approx(k3)
    assert float(both.metrics["loss/entropy"]) == pytest.approx(0.5)
    expected = float(both.metrics["loss/policy"]) + 0.5 * k3 - 0.1 * 0.5
    assert float(both.loss) == pytest.approx(expected)
    assert float(both.metrics["loss/total"]) == pytest.approx(expected)


@pytest.mark.parametrize("mode", MODES)
def test_masked_logprobs_do_not_leak(mode):
    logp, logp_old, adv, mask = batch(seed=1)
    ref, ent = logp - 0.5, torch.rand_like(logp)
    kw = {"loss_agg": mode, "kl_coef": 0.1, "logp_ref": ref, "entropy": ent, "entropy_coef": 0.01, "dual_clip": 3.0}
    out, g = grad_of(logp, logp_old, adv, mask, **kw)
    junk = logp.clone()
    fill = torch.tensor([float("inf"), -float("inf"), float("nan"), 1e30], dtype=F64).repeat(logp.numel())
    junk[~mask] = fill[: int((~mask).sum())]
    old_junk, ref_junk = logp_old.clone(), ref.clone()
    old_junk[~mask], ref_junk[~mask] = float("nan"), -float("inf")
    out2, g2 = grad_of(junk, old_junk, adv, mask, **{**kw, "logp_ref": ref_junk})
    assert torch.equal(out.loss, out2.loss)
    assert torch.equal(g, g2)
    assert (g2[~mask] == 0).all()
    assert all(torch.isfinite(v) for v in out2.metrics.values())


@pytest.mark.parametrize("mode", MODES)
def test_micro_batch_split_invariance(mode):
    logp, logp_old, adv, mask = batch(seed=2, n=6, t=7)
    mask[5] = False  # one sequence without policy tokens
    ref, ent = logp - 0.3, torch.rand_like(logp)
    kw = {"loss_agg": mode, "l_norm": 5.0, "kl_coef": 0.2, "logp_ref": ref, "entropy": ent, "entropy_coef": 0.05}
    full, g_full = grad_of(logp, logp_old, adv, mask, **kw)
    denom = loss_denominator(mask, mode, 5.0)
    lp = logp.clone().requires_grad_(True)
    total = torch.zeros((), dtype=F64)
    metric_sum = dict.fromkeys(("loss/total", "loss/policy", "loss/kl", "loss/entropy"), 0.0)
    for rows in (slice(0, 2), slice(2, 3), slice(3, 6)):
        part = loss(
            lp[rows], logp_old[rows], adv[rows], mask[rows],
            **{**kw, "logp_ref": ref[rows], "entropy": ent[rows]}, denominator=denom,
        )  # fmt: skip
        part.loss.backward()
        total = total + part.loss.detach()
        for key in metric_sum:
            metric_sum[key] += float(part.metrics[key])
    torch.testing.assert_close(total, full.loss.detach())
    torch.testing.assert_close(lp.grad, g_full)
    for key, value in metric_sum.items():
        assert value == pytest.approx(float(full.metrics[key]), abs=1e-12)


def test_denominators():
    mask = torch.tensor([[1, 1, 0], [0, 0, 0], [1, 0, 0]], dtype=torch.bool)
    assert float(loss_denominator(mask, "token-mean")) == 3.0
    assert float(loss_denominator(mask, "seq-mean-token-mean")) == 2.0
    assert float(loss_denominator(mask, "seq-mean-token-sum-norm", 4.0)) == 12.0
    assert float(loss_denominator(mask, "seq-mean-token-sum-norm")) == 9.0
    empty = torch.zeros(2, 3, dtype=torch.bool)
    assert float(loss_denominator(empty, "token-mean")) == 1.0
    with pytest.raises(InvalidConfig, match="loss_agg='sum'"):
        loss_denominator(mask, "sum")  # type: ignore[arg-type]
    with pytest.raises(InvalidConfig, match=r"l_norm=0\.0 must be > 0"):
        loss_denominator(mask, "seq-mean-token-sum-norm", 0.0)


def test_loss_input_validation():
    logp, logp_old, adv, mask = batch()
    with pytest.raises(InvalidConfig, match=r"kl_coef=0\.1 needs logp_ref"):
        loss(logp, logp_old, adv, mask, kl_coef=0.1)
    with pytest.raises(InvalidConfig, match=r"entropy_coef=0\.01 needs"):
        loss(logp, logp_old, adv, mask, entropy_coef=0.01)
    with pytest.raises(InvalidData, match=r"advantages must be \(N,\)"):
        loss(logp, logp_old, adv[:2], mask)
    with pytest.raises(InvalidData, match="same"):
        loss(logp, logp_old[:, :2], adv, mask)


def test_loss_config_defaults():
    cfg = LossConfig()
    assert (cfg.clip_low, cfg.clip_high, cfg.dual_clip, cfg.kl_coef, cfg.kl_estimator) == (0.2, 0.28, None, 0.0, "k3")
    assert (cfg.entropy_coef, cfg.loss_agg, cfg.l_norm) == (0.0, "token-mean", None)


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"clip_low": 1.0}, r"clip_low=1.0 must lie in \[0, 1\)"),
        ({"clip_low": -0.1}, "clip_low=-0.1"),
        ({"clip_high": -0.2}, "clip_high=-0.2 must be >= 0"),
        ({"clip_high": float("nan")}, "clip_high=nan must be a finite"),
        ({"dual_clip": 1.0}, "dual_clip=1.0 must be > 1"),
        ({"kl_coef": -1e-3}, "kl_coef=-0.001 must be >= 0"),
        ({"kl_estimator": "low_var_kl"}, "kl_estimator='low_var_kl' is not one of"),
        ({"entropy_coef": -0.1}, "entropy_coef=-0.1"),
        ({"loss_agg": "dapo"}, "loss_agg='dapo' is not one of"),
        ({"l_norm": 0.0}, "l_norm=0.0 must be > 0"),
        ({"kl_coef": True}, "kl_coef=True must be a finite"),
    ],
)
def test_loss_config_validation(kwargs, match):
    with pytest.raises(InvalidConfig, match=match):
        LossConfig(**kwargs)
