"""Tests for agents.grpo.calibration: moments, variance weight, per-dataset normalisation, state."""

from __future__ import annotations

import json
import math

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from agents.grpo.calibration import (
    CalibrationState,
    Moments,
    combine_moments,
    moments_std,
    normalise_by_source,
    segment_moments,
    variance_weight,
)
from recal_gym.errors import InvalidData

F64 = torch.float64
HERO = {"w_min": 0.4, "w_max": 3.0, "steepness": 6.0}
finite = st.floats(-100, 100, allow_nan=False, width=32)


def loop_moments(values: list[float], segs: list[int], mask: list[bool], n: int) -> list[tuple[float, float, float]]:
    out = []
    for s in range(n):
        xs = [v for v, g, m in zip(values, segs, mask, strict=True) if m and g == s]
        mean = sum(xs) / len(xs) if xs else 0.0
        out.append((float(len(xs)), mean, sum((x - mean) ** 2 for x in xs)))
    return out


@st.composite
def segmented(draw, n_seg_max=4):
    n = draw(st.integers(1, 30))
    n_seg = draw(st.integers(1, n_seg_max))
    values = draw(st.lists(finite, min_size=n, max_size=n))
    segs = draw(st.lists(st.integers(0, n_seg - 1), min_size=n, max_size=n))
    mask = draw(st.lists(st.booleans(), min_size=n, max_size=n))
    return values, segs, mask, n_seg


@settings(max_examples=60, deadline=None)
@given(data=segmented())
def test_segment_moments_match_loop(data):
    values, segs, mask, n_seg = data
    got = segment_moments(torch.tensor(values), torch.tensor(segs), torch.tensor(mask), n_seg)
    want = torch.tensor(loop_moments(values, segs, mask, n_seg), dtype=F64)
    torch.testing.assert_close(torch.stack(got, dim=1), want, rtol=1e-9, atol=1e-9)


def test_segment_moments_ignore_nan_outside_mask_and_2d():
    y = torch.tensor([[1.0, float("nan")], [3.0, 2.0], [float("nan"), 4.0]])
    mask = torch.isfinite(y)
    m = segment_moments(y, torch.tensor([0, 0, 0]), mask, 1)
    torch.testing.assert_close(m.n, torch.tensor([[2.0, 2.0]], dtype=F64))
    torch.testing.assert_close(m.mean, torch.tensor([[2.0, 3.0]], dtype=F64))
    torch.testing.assert_close(m.m2, torch.tensor([[2.0, 2.0]], dtype=F64))


def test_moments_std_bessel_and_small_counts():
    m = Moments(torch.tensor([0.0, 1.0, 4.0], dtype=F64), torch.zeros(3, dtype=F64), torch.tensor([0, 0, 3.0]))
    torch.testing.assert_close(moments_std(m), torch.tensor([0.0, 0.0, 1.0], dtype=F64))


@settings(max_examples=60, deadline=None)
@given(parts=st.lists(st.lists(finite, min_size=0, max_size=8), min_size=3, max_size=3))
def test_streaming_three_combines_equal_one(parts):
    seg0 = lambda xs: torch.zeros(len(xs), dtype=torch.long)  # noqa: E731
    state = Moments(*(torch.zeros(1, dtype=F64) for _ in range(3)))
    for xs in parts:
        t = torch.tensor(xs, dtype=F64)
        state = combine_moments(state, segment_moments(t, seg0(xs), torch.ones(len(xs), dtype=torch.bool), 1))
    allx = [x for xs in parts for x in xs]
    once = segment_moments(torch.tensor(allx, dtype=F64), seg0(allx), torch.ones(len(allx), dtype=torch.bool), 1)
    for a, b in zip(state, once, strict=True):
        torch.testing.assert_close(a, b, rtol=1e-9, atol=1e-7)


def test_combine_decay_matches_welford_and_skips_absent():
    old = Moments(torch.tensor([4.0, 3.0], dtype=F64), torch.tensor([1.0, 5.0], dtype=F64), torch.tensor([2.0, 1.0]))
    new_values = [2.0, 4.0]
    new = segment_moments(torch.tensor(new_values), torch.tensor([0, 0]), torch.tensor([True, True]), 2)
    got = combine_moments(old, new, decay=0.5)
    n, mean, m2 = 4.0 * 0.5, 1.0, 2.0 * 0.5
    for x in new_values:  # Welford with a fractional starting count
        n += 1
        d = x - mean
        mean += d / n
        m2 += d * (x - mean)
    torch.testing.assert_close(got.n, torch.tensor([n, 3.0], dtype=F64))
    torch.testing.assert_close(got.mean, torch.tensor([mean, 5.0], dtype=F64))
    torch.testing.assert_close(got.m2, torch.tensor([m2, 1.0], dtype=F64))


@pytest.mark.parametrize(("sigma", "omega"), [(0.0, 0.769), (0.5, 2.398), (0.577, 2.586), (0.3, 1.7)])
def test_variance_weight_examples(sigma, omega):
    got = variance_weight(torch.tensor([sigma]), 0.3, **HERO)
    assert float(got[0]) == pytest.approx(omega, abs=1e-3)


@settings(max_examples=100, deadline=None)
@given(
    sigmas=st.lists(st.floats(0, 5, allow_nan=False), min_size=2, max_size=10),
    ref=st.floats(0, 2),
    kappa=st.floats(-50, 50),
    lo=st.floats(0.01, 2),
    span=st.floats(0, 5),
)
def test_variance_weight_bounds_and_monotonicity(sigmas, ref, kappa, lo, span):
    s = torch.tensor(sorted(sigmas), dtype=F64)
    w = variance_weight(s, ref, w_min=lo, w_max=lo + span, steepness=kappa)
    assert bool(((w >= lo - 1e-12) & (w <= lo + span + 1e-12)).all())
    diffs = w[1:] - w[:-1]
    assert bool((diffs >= -1e-12).all()) if kappa >= 0 else bool((diffs <= 1e-12).all())
    mid = variance_weight(torch.tensor([ref]), ref, w_min=lo, w_max=lo + span, steepness=kappa)
    assert float(mid[0]) == pytest.approx(lo + span / 2)


def test_variance_weight_saturates_without_overflow():
    w = variance_weight(torch.tensor([0.0, 1e6]), 0.5, w_min=0.4, w_max=3.0, steepness=1e4)
    assert torch.isfinite(w).all()
    torch.testing.assert_close(w, torch.tensor([0.4, 3.0], dtype=F64))


def _norm_inputs():
    values = torch.tensor([1.0, -1.0, 2.0, 0.0, -2.0, 5.0], dtype=F64)
    source = torch.tensor([0, 0, 1, 1, 1, 2])
    mask = torch.tensor([True, True, True, True, True, True])
    return values, source, mask


def test_normalise_by_source_uses_own_stats_and_falls_back():
    values, source, mask = _norm_inputs()
    per = segment_moments(values, source, mask, 4)
    whole = segment_moments(values, torch.zeros_like(source), mask, 1)
    out, stats = normalise_by_source(values, source, mask, per, whole, eps=1e-6, min_count=2)
    torch.testing.assert_close(out[:2], torch.tensor([1.0, -1.0], dtype=F64) / (math.sqrt(2) + 1e-6))
    torch.testing.assert_close(out[2:5], torch.tensor([2.0, 0.0, -2.0], dtype=F64) / (2.0 + 1e-6))
    # dataset 2 has one trajectory: whole-batch statistics (mean 5/6, Bessel std over six values)
    mu, sd = values.mean(), values.std()
    torch.testing.assert_close(out[5], (5.0 - mu) / (sd + 1e-6))
    torch.testing.assert_close(stats.n, torch.tensor([2.0, 3.0, 6.0, 0.0], dtype=F64))
    torch.testing.assert_close(stats.mean[3], torch.tensor(0.0, dtype=F64))  # absent dataset reports zeros


def test_state_sigma_first_update_then_ema_and_frozen():
    state = CalibrationState()
    state.update(sigma=torch.tensor([0.2, 0.4, 9.0]), sigma_mask=torch.tensor([True, True, False]), std_ema=0.9)
    assert bool(state.initialised)
    assert float(state.sigma_bar) == pytest.approx(0.3)
    state.update(sigma=torch.tensor([0.5]), std_ema=0.9)
    assert float(state.sigma_bar) == pytest.approx(0.9 * 0.3 + 0.1 * 0.5)
    state.update(sigma=torch.tensor([7.0]), sigma_mask=torch.tensor([False]), std_ema=0.9)  # no groups
    assert float(state.sigma_bar) == pytest.approx(0.32)
    state.frozen = True
    state.update(sigma=torch.tensor([5.0]), std_ema=0.0)
    assert float(state.sigma_bar) == pytest.approx(0.32)


def test_state_without_groups_stays_uninitialised():
    state = CalibrationState()
    state.update(sigma=torch.tensor([1.0]), sigma_mask=torch.tensor([False]))
    assert not bool(state.initialised) and float(state.sigma_bar) == 0.0
    state.update(sigma=torch.tensor([0.6]))
    assert float(state.sigma_bar) == pytest.approx(0.6)  # first real batch is compared with itself


def test_running_after_one_update_equals_batch_normalisation():
    values, source, mask = _norm_inputs()
    names = ("a", "b", "c", "d")
    per = segment_moments(values, source, mask, 4)
    whole = segment_moments(values, torch.zeros_like(source), mask, 1)
    batch_out, _ = normalise_by_source(values, source, mask, per, whole, eps=1e-6, min_count=2)
    state = CalibrationState()
    state.update(moments=per, source_names=names, running_decay=0.5)
    run_out, _ = state.transform(values, source, mask, names, eps=1e-6, min_count=2)
    torch.testing.assert_close(run_out, batch_out)
    assert state.source_names == names


def test_transform_is_pure_and_state_dict_round_trips():
    values, source, mask = _norm_inputs()
    names = ("a", "b", "c", "d")
    state = CalibrationState()
    for shift in (0.0, 1.0, -2.0):
        per = segment_moments(values + shift, source, mask, 4)
        state.update(moments=per, source_names=names, running_decay=0.8)
        state.update(sigma=torch.tensor([0.1 + shift**2]), std_ema=0.5)
    before = state.transform(values, source, mask, names, eps=1e-6, min_count=2)
    again = state.transform(values, source, mask, names, eps=1e-6, min_count=2)
    torch.testing.assert_close(before, again)
    snapshot = json.loads(json.dumps(state.state_dict()))
    restored = CalibrationState(frozen=True)
    restored.load_state_dict(snapshot)
    assert restored.frozen  # a mode, not part of the snapshot
    after = restored.transform(values, source, mask, names, eps=1e-6, min_count=2)
    torch.testing.assert_close(after, before, rtol=0, atol=0)
    assert torch.equal(restored.sigma_bar, state.sigma_bar)
    assert bool(restored.initialised)
    sig = torch.tensor([0.0, 0.3, 1.0])
    torch.testing.assert_close(restored.variance_weights(sig, **HERO), state.variance_weights(sig, **HERO))


@pytest.mark.parametrize(
    ("snapshot", "match"),
    [
        ({"sigma_bar": 0.1, "initialised": True}, r"lacks keys \['moments'\]"),
        ({"sigma_bar": float("nan"), "initialised": True, "moments": {}}, "sigma_bar=nan"),
        ({"sigma_bar": 0.1, "initialised": True, "moments": {"nq": [1.0, 2.0]}}, r"moments\['nq'\]"),
        ({"sigma_bar": "x", "initialised": True, "moments": {}}, "sigma_bar='x'"),
    ],
)
def test_load_state_dict_rejects_malformed(snapshot, match):
    with pytest.raises(InvalidData, match=match):
        CalibrationState().load_state_dict(snapshot)
