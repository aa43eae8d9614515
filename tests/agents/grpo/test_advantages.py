"""Tests for agents.grpo.advantages: oracles, loop-vs-vectorised, properties and validation (docs/learner.md §9).

The plain-Python loop reference lives in ``advantage_reference.py`` next to this file.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Iterator

import pytest
import torch
from hypothesis import assume, given, settings
from hypothesis import strategies as st

from agents.grpo.advantages import (
    ESTIMATORS,
    RecalEstimator,
    RewardBatch,
    make_estimator,
    register_estimator,
    unregister_estimator,
)
from agents.grpo.calibration import CalibrationState, segment_moments
from agents.grpo.estimator_config import RecalConfig
from recal_gym.errors import InvalidConfig, InvalidData, UnknownComponent, UnknownName
from tests.agents.grpo.advantage_reference import (
    EPS,
    NAN,
    TOL,
    as_lists,
    batches,
    check_against,
    eff_weights,
    groups_of,
    make_batch,
    new_ref_state,
    ref_group,
    ref_recal,
    ref_scalar,
    ref_signal,
    ref_stage_c,
)

OFF = RecalConfig(variance_weighting=False, final_norm="none")

RECAL_CONFIGS = {
    "default": RecalConfig(),
    "sum_then_norm": RecalConfig(componentwise=False),
    "no_hierarchy": RecalConfig(hierarchy=False),
    "total_signal": RecalConfig(variance_source="total", steepness=2.0),
    "inverted": RecalConfig(steepness=-6.0),
    "final_none": RecalConfig(final_norm="none"),
    "final_batch": RecalConfig(final_norm="batch"),
    "running": RecalConfig(dataset_stats="running", running_decay=0.7),
    "min_count3": RecalConfig(min_dataset_count=3),
    "drop": RecalConfig(drop_zero_variance_groups=True),
    "no_weight": RecalConfig(variance_weighting=False),
    "overrides": RecalConfig(component_weights={"format": 1.0, "info": 0.0}, componentwise=False),
}


@pytest.mark.parametrize("kind", ["grpo", "dr_grpo", "rloo"])
@settings(max_examples=30, deadline=None)
@given(b=batches(), drop=st.booleans())
def test_scalar_matches_loop_reference(kind, b, drop):
    cfg = RecalConfig(drop_zero_variance_groups=drop)
    out = make_estimator(kind, cfg)(b, None)
    check_against(out, *ref_scalar(as_lists(b), kind, cfg))


@pytest.mark.parametrize("name", list(RECAL_CONFIGS))
@settings(max_examples=30, deadline=None)
@given(b=batches())
def test_recal_matches_loop_reference(name, b):
    cfg = RECAL_CONFIGS[name]
    out = make_estimator("recal", cfg)(b, CalibrationState())
    check_against(out, *ref_recal(as_lists(b), cfg, new_ref_state()))


@settings(max_examples=30, deadline=None)
@given(b=batches())
def test_gdpo_matches_loop_reference(b):
    cfg = RecalConfig(hierarchy=False, variance_weighting=False, final_norm="batch")
    check_against(make_estimator("gdpo")(b, None), *ref_recal(as_lists(b), cfg, new_ref_state()))


@pytest.mark.parametrize("decay", [1.0, 0.5])
@settings(max_examples=30, deadline=None)
@given(bs=st.lists(batches(ks=(6,), n_sources_max=2), min_size=3, max_size=3))
def test_streaming_matches_loop_reference(decay, bs):
    cfg = RecalConfig(dataset_stats="running", running_decay=decay)
    names = ("ds0", "ds1")
    state, ref = CalibrationState(), new_ref_state()
    est = make_estimator("recal", cfg)
    for b in bs:
        b = b._replace(source_names=names)
        check_against(est(b, state), *ref_recal(as_lists(b), cfg, ref))
        torch.testing.assert_close(state.sigma_bar, torch.tensor(ref["sigma_bar"], dtype=torch.float64))


# ----------------------------------------------------------------------------------------------
# Closed-form oracles
# ----------------------------------------------------------------------------------------------


def test_scalar_worked_oracle():
    b = make_batch([[1.0], [0.0], [0.0], [1.0], [1.0], [1.0]], group=[7, 7, 7, 3, 3, 3])
    expected = {
        "grpo": [1.1547, -0.5774, -0.5774, 0, 0, 0],
        "dr_grpo": [0.6667, -0.3333, -0.3333, 0, 0, 0],
        "rloo": [1.0, -0.5, -0.5, 0, 0, 0],
    }
    for name, values in expected.items():
        out = make_estimator(name)(b, None)
        torch.testing.assert_close(out.advantages, torch.tensor(values), atol=1e-4, rtol=0)
        assert (out.advantages[3:] == 0).all()


def test_gdpo_resolution_table():
    x = [[1, 0], [0, 0], [0, 0], [0, 0]]
    y = [[1, 1], [0, 0], [0, 0], [0, 0]]
    b = make_batch([[float(v) for v in r] for r in x + y], group=[0] * 4 + [1] * 4)
    grpo = make_estimator("grpo")(b, None).advantages
    torch.testing.assert_close(grpo, torch.tensor([1.5, -0.5, -0.5, -0.5] * 2), atol=1e-5, rtol=0)
    s_cfg = RecalConfig(hierarchy=False, variance_weighting=False, final_norm="none")
    s = make_estimator("recal", s_cfg)(b, None).advantages
    expected_s = torch.tensor([1.5, -0.5, -0.5, -0.5, 3.0, -1.0, -1.0, -1.0])
    torch.testing.assert_close(s, expected_s, atol=1e-5, rtol=0)
    gdpo = make_estimator("gdpo")(b, None).advantages
    torch.testing.assert_close(gdpo, expected_s / (expected_s.double().std().float() + EPS), atol=1e-5, rtol=0)


PRE = [[0.0, 1.0, 1.0], [0.0, 0.0, 1.0], [0.0, 1.0, 0.0], [-1.0, 1.0, 1.0]]
GATED = [[0.0, 1.0, 1.0], [0.0, 0.0, 0.0], [0.0, 1.0, 0.0], [-1.0, 0.0, 0.0]]
S_ITEM12 = [0.5 + 0.866 + 1.5, 0.5 - 0.866 - 0.5, 0.5 + 0.866 - 0.5, -1.5 - 0.866 - 0.5]


def test_recal_hand_computed_stages():
    b = make_batch(PRE, gated=GATED, group=[5] * 4)
    s = make_estimator("recal", OFF)(b, None).advantages
    torch.testing.assert_close(s, torch.tensor([2.866, -0.866, 0.866, -2.866]), atol=1e-3, rtol=0)
    torch.testing.assert_close(s, torch.tensor(S_ITEM12), atol=1e-3, rtol=0)
    summed = make_estimator("recal", dataclasses.replace(OFF, componentwise=False))(b, None).advantages
    torch.testing.assert_close(summed, torch.tensor([1.162, -0.387, 0.387, -1.162]), atol=1e-3, rtol=0)
    # Stage V: one group, σ_g = std([1, 0, 1, 0]) = 0.5774 = σ_batch = σ̄ → ω = (0.4 + 3.0)/2 = 1.7.
    state = CalibrationState()
    weighted = make_estimator("recal", RecalConfig(final_norm="none"))(b, state)
    torch.testing.assert_close(weighted.advantages, 1.7 * s, atol=1e-5, rtol=1e-5)
    assert math.isclose(float(state.sigma_bar), math.sqrt(1 / 3), rel_tol=1e-9)
    assert math.isclose(float(weighted.metrics["recal/weight/mean"]), 1.7, rel_tol=1e-6)
    # Stage N with a single group rescales it back: Â = S / std(S).
    full = make_estimator("recal")(b, None)
    sd = s.double().std()
    torch.testing.assert_close(full.advantages.double(), s.double() / (1.7 * sd + EPS) * 1.7, atol=1e-5, rtol=0)
    assert math.isclose(float(full.metrics["calib/ds/count"]), 4.0)


def test_nan_excluded_then_zero_filled():
    b = make_batch([[1.0], [0.0], [NAN], [NAN], [2.0]], group=[0, 0, 0, 1, 1])
    out = make_estimator("grpo")(b, None)
    r = 1 / math.sqrt(2)
    torch.testing.assert_close(out.advantages, torch.tensor([r, -r, 0, 0, 0]), atol=1e-5, rtol=0)
    assert float(out.metrics["reward/frac_unscorable"]) == pytest.approx(0.4)
    assert float(out.metrics["adv/frac_degenerate_groups"]) == pytest.approx(0.5)
    assert float(out.metrics["reward/format/frac_nan"]) == pytest.approx(0.4)


def test_zero_weight_nan_is_ignored_by_scalar():
    b = make_batch([[1.0, NAN], [0.0, NAN]], group=[0, 0], weights=[1.0, 0.0], scalar=[1.0, 0.0])
    out = make_estimator("grpo")(b, None)
    assert (out.advantages.abs() > 0.5).all()


# ----------------------------------------------------------------------------------------------
# Equivalences and properties
# ----------------------------------------------------------------------------------------------


@settings(max_examples=30, deadline=None)
@given(b=batches(ks=(1,)))
def test_single_component_reduces_to_grpo(b):
    b = b._replace(weights=torch.ones(1), scalar=b.raw[:, 0].clone())
    grpo = make_estimator("grpo")(b, None).advantages.double()
    cfg = RecalConfig(hierarchy=False, variance_weighting=False, final_norm="none")
    torch.testing.assert_close(make_estimator("recal", cfg)(b, None).advantages.double(), grpo, **TOL)
    # final_norm="batch": grpo times one positive constant (1/std_B).
    gdpo = make_estimator("gdpo")(b, None).advantages.double()
    if grpo.abs().sum() > 0:
        scale = (gdpo @ grpo) / (grpo @ grpo)  # least-squares constant
        assert float(scale) > 0
        torch.testing.assert_close(gdpo, scale * grpo, **TOL)
    else:
        torch.testing.assert_close(gdpo, grpo, **TOL)


@settings(max_examples=30, deadline=None)
@given(b=batches(), a=st.sampled_from([0.5, 2.0, 4.0]), shift=st.sampled_from([-1.0, 0.5, 3.0]), k=st.integers(0, 2))
def test_gdpo_per_component_affine_invariance(b, a, shift, k):
    raw = b.raw.clone()
    raw[:, k] = a * raw[:, k] + shift
    assume_no_residue(b, RecalConfig(hierarchy=False))
    assume_no_residue(b._replace(raw=raw), RecalConfig(hierarchy=False))  # ε scales with 1/a in the moved batch
    base = make_estimator("gdpo")(b, None).advantages
    moved = make_estimator("gdpo")(b._replace(raw=raw), None).advantages
    torch.testing.assert_close(moved, base, rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize("name", ["grpo", "rloo", "gdpo", "recal"])
@settings(max_examples=30, deadline=None)
@given(b=batches(), data=st.data())
def test_permutation_equivariance(name, b, data):
    n = b.raw.shape[0]
    perm = torch.tensor(data.draw(st.permutations(range(n))), dtype=torch.long)
    uniq = torch.unique(b.group)
    fresh = data.draw(st.lists(st.integers(0, 10**6), min_size=len(uniq), max_size=len(uniq), unique=True))
    relabel = dict(zip(uniq.tolist(), fresh, strict=True))
    group = torch.tensor([relabel[g] for g in b.group.tolist()], dtype=torch.long)
    moved = b._replace(
        raw=b.raw[perm], gated=b.gated[perm], scalar=b.scalar[perm], group=group[perm], source=b.source[perm]
    )
    base = make_estimator(name)(b, None)
    out = make_estimator(name)(moved, None)
    torch.testing.assert_close(out.advantages, base.advantages[perm], rtol=1e-5, atol=1e-6)
    assert torch.equal(out.valid, base.valid[perm])


@pytest.mark.parametrize("name", list(ESTIMATORS))
def test_zero_variance_groups_are_exactly_zero(name):
    raw = [[0.0, 1.0, 0.5]] * 3 + [[0.0, 1.0, 1.0], [0.0, 0.0, 0.0], [NAN, NAN, NAN]]
    b = make_batch(raw, group=[1, 1, 1, 2, 2, 2], scalar=[1.5] * 3 + [2.0, 0.0, 0.0], names=("ds",))
    b = b._replace(raw=b.raw.clone())
    b.raw[5] = NAN
    out = make_estimator(name)(b, CalibrationState())
    assert (out.advantages[:3] == 0).all()
    assert out.advantages[5] == 0
    assert torch.isfinite(out.advantages).all()
    assert float(out.metrics["adv/frac_zero_std"]) == pytest.approx(0.5)


def test_constant_sum_with_differing_components_keeps_signal():
    b = make_batch([[0.0, 1.0, 0.0], [0.0, 0.0, 1.0]], group=[0, 0])
    comp = make_estimator("recal", OFF)(b, None).advantages
    summed = make_estimator("recal", dataclasses.replace(OFF, componentwise=False))(b, None).advantages
    assert (summed == 0).all()
    assert comp.abs().sum() == 0  # symmetric z-scores cancel: answer and info weigh the same here
    weighted = make_estimator("recal", dataclasses.replace(OFF, component_weights={"answer": 2.0}))(b, None)
    assert (weighted.advantages.abs() > 0.1).all()


@settings(max_examples=30, deadline=None)
@given(b=batches())
def test_scalar_estimator_relations(b):
    grpo = make_estimator("grpo")(b, None).advantages.double()
    dr = make_estimator("dr_grpo")(b, None).advantages.double()
    rloo = make_estimator("rloo")(b, None).advantages.double()
    lists = as_lists(b)
    y = ref_signal(lists)
    for idx in groups_of(lists).values():
        _, _, n, std, _ = ref_group([y[i] for i in idx], "grpo")
        t = torch.tensor(idx)
        torch.testing.assert_close(grpo[t], dr[t] / (std + EPS), **TOL)
        torch.testing.assert_close(rloo[t], dr[t] * n / max(n - 1, 1), **TOL)


@settings(max_examples=30, deadline=None)
@given(b=batches(), drop=st.booleans())
def test_gdpo_entry_equals_recal_config(b, drop):
    cfg = RecalConfig(hierarchy=False, variance_weighting=False, final_norm="batch", drop_zero_variance_groups=drop)
    via_registry = make_estimator("gdpo", RecalConfig(drop_zero_variance_groups=drop))(b, None)
    direct = RecalEstimator(config=cfg)(b, None)
    assert torch.equal(via_registry.advantages, direct.advantages)
    assert torch.equal(via_registry.valid, direct.valid)


@settings(max_examples=30, deadline=None)
@given(b=batches(n_sources_max=1))
def test_per_dataset_single_source_equals_batch(b):
    per = make_estimator("recal", RecalConfig(variance_weighting=False))(b, None).advantages
    whole = make_estimator("recal", RecalConfig(variance_weighting=False, final_norm="batch"))(b, None).advantages
    torch.testing.assert_close(per, whole, **TOL)


def _valid_mask(b: RewardBatch, cfg: RecalConfig) -> torch.Tensor:
    """Trajectories whose Stage C value is computed (recomputed with the loop reference)."""
    lists = as_lists(b)
    m = lists["gated"] if cfg.hierarchy else lists["raw"]
    keep = [False] * len(m)
    for idx in groups_of(lists).values():
        _, comp, _, _ = ref_stage_c(m, eff_weights(lists, cfg), idx, cfg)
        for j, i in enumerate(idx):
            keep[i] = comp[j]
    return torch.tensor(keep)


@settings(max_examples=30, deadline=None)
@given(b=batches(ks=(6,)))
def test_per_dataset_mean_zero_std_one(b):
    cfg = RecalConfig()
    assume_no_residue(b, cfg)
    out = make_estimator("recal", cfg)(b, None).advantages.double()
    keep = _valid_mask(b, cfg)
    counts = torch.bincount(b.source[keep], minlength=len(b.source_names))
    for d in range(len(b.source_names)):
        sel = keep & (b.source == d)
        vals = out[sel]
        if int(counts[d]) >= 2 and float(vals.abs().sum()) > 0:
            assert abs(float(vals.mean())) < 1e-5
            assert float(vals.std()) == pytest.approx(1.0, abs=1e-4)


@settings(max_examples=30, deadline=None)
@given(b=batches())
def test_running_after_one_update_equals_batch(b):
    batch_mode = make_estimator("recal", RecalConfig())(b, None)
    running = make_estimator("recal", RecalConfig(dataset_stats="running"))(b, CalibrationState())
    torch.testing.assert_close(running.advantages, batch_mode.advantages, **TOL)


@settings(max_examples=30, deadline=None)
@given(bs=st.lists(batches(ks=(6,), n_sources_max=2), min_size=3, max_size=3))
def test_streaming_three_batches_equals_one_combine(bs):
    names = ("ds0", "ds1")
    cfg = RecalConfig(variance_weighting=False, dataset_stats="running")
    state = CalibrationState()
    values, sources, masks = [], [], []
    for b in bs:
        b = b._replace(source_names=names)
        make_estimator("recal", cfg)(b, state)
        values.append(make_estimator("recal", dataclasses.replace(cfg, final_norm="none"))(b, None).advantages)
        sources.append(b.source)
        masks.append(_valid_mask(b, cfg))
    expected = segment_moments(torch.cat(values), torch.cat(sources), torch.cat(masks), 2)
    got = state.running_moments(names)
    for e, g in zip(expected, got, strict=True):
        torch.testing.assert_close(g, e, rtol=1e-5, atol=1e-5)


def assume_no_residue(b: RewardBatch, cfg: RecalConfig) -> None:
    """Skip batches where Stage C leaves ε-sized residues.

    ε enters every z-score, so two components that cancel exactly (S = 0 mathematically) leave a
    residue of order ε; Stage N then divides it by a spread of the same order, and identities that hold
    "up to ε" no longer hold to any fixed tolerance.
    """
    s = make_estimator("recal", dataclasses.replace(cfg, variance_weighting=False, final_norm="none"))(b, None)
    # A cancelled S is exactly 0 only when ε's contributions cancel in float arithmetic too.
    assume(not ((s.advantages != 0) & (s.advantages.abs() < 1e-3)).any())


@settings(max_examples=30, deadline=None)
@given(b=batches(ks=(6,)), data=st.data())
def test_reward_level_normalisation_and_reward_weighting_are_noops(b, data):
    """Why ω multiplies advantages and Stage N acts on advantages (docs/learner.md §4.3-4.4)."""
    cfg = RecalConfig(variance_weighting=False)
    assume_no_residue(b, cfg)
    base = make_estimator("recal", cfg)(b, None).advantages
    gated = b.gated.double().clone()
    for d in range(len(b.source_names)):  # per-dataset, per-component z-score of the rewards
        sel = b.source == d
        for k in range(gated.shape[1]):
            col = gated[sel, k]
            fin = col[torch.isfinite(col)]
            if fin.numel() >= 2 and float(fin.std()) > 0:
                gated[sel, k] = (col - fin.mean()) / fin.std()
    assume_no_residue(b._replace(gated=gated.float()), cfg)
    normed = make_estimator("recal", cfg)(b._replace(gated=gated.float()), None).advantages
    torch.testing.assert_close(normed, base, rtol=1e-4, atol=1e-4)
    uniq, inv = torch.unique(b.group, return_inverse=True)
    omega = torch.tensor(data.draw(st.lists(st.sampled_from([0.5, 2.0, 4.0]), min_size=len(uniq), max_size=len(uniq))))
    scaled = make_estimator("recal", cfg)(b._replace(gated=b.gated * omega[inv].unsqueeze(1)), None).advantages
    torch.testing.assert_close(scaled, base, rtol=1e-4, atol=1e-4)


@settings(max_examples=30, deadline=None)
@given(b=batches(ks=(6,)))
def test_variance_weight_special_cases(b):
    off = make_estimator("recal", RecalConfig(variance_weighting=False, final_norm="none"))(b, None).advantages
    unit = make_estimator("recal", RecalConfig(w_min=1.0, w_max=1.0, final_norm="none"))(b, None).advantages
    torch.testing.assert_close(unit, off, **TOL)
    flat = make_estimator("recal", RecalConfig(steepness=0.0))(b, None).advantages
    plain = make_estimator("recal", RecalConfig(variance_weighting=False))(b, None).advantages
    assume_no_residue(b, RecalConfig())
    torch.testing.assert_close(flat, plain, rtol=1e-4, atol=1e-5)


def test_single_group_dataset_cancels_weight_unless_running():
    """A dataset with one group per batch is rescaled back by per-batch Stage N (docs/learner.md §4.3)."""
    b = make_batch(PRE, gated=GATED, group=[5] * 4)
    loud = make_estimator("recal", RecalConfig(w_min=3.0, w_max=3.0))(b, None).advantages
    quiet = make_estimator("recal", RecalConfig(w_min=0.5, w_max=0.5))(b, None).advantages
    torch.testing.assert_close(loud, quiet, rtol=1e-5, atol=1e-6)


def test_frozen_state_is_not_updated():
    b = make_batch(PRE, gated=GATED, group=[5] * 4)
    state = CalibrationState(frozen=True)
    make_estimator("recal", RecalConfig(dataset_stats="running"))(b, state)
    assert not bool(state.initialised) and float(state.sigma_bar) == 0.0
    assert float(state.running_moments(("ds",)).n[0]) == 0.0


def test_drop_zero_variance_groups_marks_invalid():
    raw = [[0.0, 1.0, 0.0]] * 2 + [[0.0, 1.0, 0.0], [0.0, 0.0, 0.0]]
    b = make_batch(raw, group=[0, 0, 1, 1])
    for name in ("grpo", "recal"):
        out = make_estimator(name, RecalConfig(drop_zero_variance_groups=True))(b, None)
        assert out.valid.tolist() == [False, False, True, True]
        assert (out.advantages[:2] == 0).all()
        assert float(out.metrics["adv/frac_dropped"]) == pytest.approx(0.5)
    assert make_estimator("recal")(b, None).valid.all()


def test_metric_keys():
    b = make_batch(PRE, gated=GATED, group=[5] * 4, names=("nq",))
    out = make_estimator("recal")(b, None)
    for key in (
        "reward/format/mean", "reward/answer/std", "reward/info/frac_nan", "reward/total/mean",
        "reward/total/std", "reward/frac_zero_std", "reward/frac_unscorable", "adv/mean", "adv/std",
        "adv/abs_max", "adv/frac_zero_std", "adv/frac_degenerate_groups", "recal/weight/mean",
        "recal/weight/min", "recal/weight/max", "recal/sigma_bar", "recal/sigma_group/mean",
        "calib/nq/mean", "calib/nq/std", "calib/nq/count",
    ):  # fmt: skip
        assert key in out.metrics, key
        assert out.metrics[key].dim() == 0
    grpo = make_estimator("grpo")(b, None)
    assert "adv/std" in grpo.metrics and not any(k.startswith("recal/") for k in grpo.metrics)


# ----------------------------------------------------------------------------------------------
# Registry and input validation
# ----------------------------------------------------------------------------------------------


@pytest.fixture
def extra_estimator() -> Iterator[str]:
    register_estimator("half_grpo", lambda cfg: make_estimator("grpo", cfg))
    yield "half_grpo"
    unregister_estimator("half_grpo")


def test_register_and_use(extra_estimator):
    b = make_batch([[1.0], [0.0]], group=[0, 0])
    assert torch.equal(make_estimator(extra_estimator)(b, None).advantages, make_estimator("grpo")(b, None).advantages)
    with pytest.raises(InvalidConfig, match="already registered"):
        register_estimator(extra_estimator, lambda cfg: make_estimator("grpo", cfg))


def test_registry_errors():
    with pytest.raises(InvalidConfig, match="'grpo' is already registered"):
        register_estimator("grpo", lambda cfg: make_estimator("rloo", cfg))
    with pytest.raises(UnknownName, match=r"unknown estimator 'grop'.*Did you mean 'grpo'"):
        make_estimator("grop")
    with pytest.raises(UnknownName, match=r"valid:.*recal"):
        make_estimator("ppo")
    with pytest.raises(UnknownName, match="not registered"):
        unregister_estimator("nope")
    assert set(ESTIMATORS) >= {"grpo", "dr_grpo", "rloo", "gdpo", "recal"}


def test_batch_validation():
    b = make_batch(PRE, gated=GATED, group=[5] * 4)
    with pytest.raises(InvalidData, match=r"RewardBatch.gated has shape \(4, 2\)"):
        make_estimator("recal")(b._replace(gated=b.gated[:, :2]), None)
    with pytest.raises(InvalidData, match=r"RewardBatch\.group has shape"):
        make_estimator("grpo")(b._replace(group=b.group[:2]), None)
    with pytest.raises(InvalidData, match="non-empty"):
        make_estimator("grpo")(b._replace(raw=b.raw[:0]), None)
    with pytest.raises(InvalidData, match="source_names is empty"):
        make_estimator("grpo")(b._replace(source_names=()), None)
    one = make_batch([[1.0], [0.0]], group=[0, 0])
    with pytest.raises(InvalidData, match="variance_source='answer' needs an 'answer' component"):
        make_estimator("recal")(one, None)
    with pytest.raises(UnknownComponent, match="'cost', but the batch holds"):
        make_estimator("recal", RecalConfig(component_weights={"cost": 1.0}))(b, None)
