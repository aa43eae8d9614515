"""Shared builders and the plain-Python float64 reference for the advantage tests.

The reference loops over groups in Python (``docs/learner.md`` §9 item 3); the library never does. Not a test
module (no ``test_`` prefix): ``test_advantages.py`` imports it by name, which works because
``tests/agents`` has no ``__init__.py`` and pytest puts it on ``sys.path``.
"""

from __future__ import annotations

import math

import torch
from hypothesis import strategies as st

from agents.grpo.advantages import AdvantageOut, RewardBatch
from agents.grpo.estimator_config import RecalConfig
from recal_gym.rewards import BUILTIN_COMPONENTS as COMPONENTS

NAN = float("nan")
EPS = 1e-6
TOL = {"rtol": 1e-5, "atol": 1e-6}
DEFAULT = RecalConfig()

__all__ = [
    "DEFAULT", "EPS", "NAN", "TOL", "as_lists", "batches", "check_against", "eff_weights", "groups_of",
    "make_batch", "new_ref_state", "ref_group", "ref_recal", "ref_scalar", "ref_signal", "ref_stage_c",
]  # fmt: skip

# ----------------------------------------------------------------------------------------------
# Batch builders
# ----------------------------------------------------------------------------------------------


def make_batch(raw, *, group, gated=None, source=None, names=("ds",), weights=None, scalar=None) -> RewardBatch:
    """A RewardBatch from Python lists; scalar defaults to the weighted gated sum."""
    raw_t = torch.tensor(raw, dtype=torch.float32)
    gated_t = raw_t.clone() if gated is None else torch.tensor(gated, dtype=torch.float32)
    n, k = raw_t.shape
    w = torch.ones(k) if weights is None else torch.tensor(weights, dtype=torch.float32)
    x = (torch.nan_to_num(gated_t) * w).sum(1) if scalar is None else torch.tensor(scalar, dtype=torch.float32)
    src = torch.zeros(n, dtype=torch.long) if source is None else torch.tensor(source, dtype=torch.long)
    return RewardBatch(raw_t, gated_t, x, torch.tensor(group, dtype=torch.long), src, tuple(names), w)


def as_lists(b: RewardBatch) -> dict:
    return {
        "raw": b.raw.double().tolist(),
        "gated": b.gated.double().tolist(),
        "scalar": b.scalar.double().tolist(),
        "group": b.group.tolist(),
        "source": b.source.tolist(),
        "names": b.source_names,
        "weights": b.weights.double().tolist(),
    }


VALUES = [-1.0, -0.5, 0.0, 0.0, 0.25, 0.5, 1.0, 1.0, 2.0]


@st.composite
def batches(draw, ks=(3, 6), nan=True, n_sources_max=3) -> RewardBatch:
    """Ragged groups, several datasets, dyadic values (exact sums), optional NaNs, shuffled rows."""
    vals = st.sampled_from([*VALUES, NAN] if nan else VALUES)
    k = draw(st.sampled_from(ks))
    n_groups = draw(st.integers(1, 5))
    sizes = [draw(st.integers(1, 5)) for _ in range(n_groups)]
    n_sources = draw(st.integers(1, n_sources_max))
    gid = draw(st.lists(st.integers(-(10**12), 10**12), min_size=n_groups, max_size=n_groups, unique=True))
    gsrc = [draw(st.integers(0, n_sources - 1)) for _ in range(n_groups)]
    rows = [(gid[g], gsrc[g]) for g in range(n_groups) for _ in range(sizes[g])]
    order = draw(st.permutations(range(len(rows))))
    rows = [rows[i] for i in order]
    n = len(rows)
    raw = [[draw(vals) for _ in range(k)] for _ in range(n)]
    gated = [[draw(vals) for _ in range(k)] for _ in range(n)]
    scalar = [draw(vals) for _ in range(n)]
    weights = [draw(st.sampled_from([0.0, 0.25, 0.5, 1.0])) for _ in range(k)]
    names = tuple(f"ds{d}" for d in range(n_sources))
    return make_batch(
        raw, gated=gated, group=[r[0] for r in rows], source=[r[1] for r in rows], names=names,
        weights=weights, scalar=scalar,
    )  # fmt: skip


# ----------------------------------------------------------------------------------------------
# Plain-Python float64 reference (per-group loops), docs/learner.md §1.1-4.4
# ----------------------------------------------------------------------------------------------


def ref_group(ys: list[float], kind: str, eps: float = EPS):
    """Advantages of one group; returns (adv, computed, n_finite, std, const)."""
    fin = [y for y in ys if math.isfinite(y)]
    n = len(fin)
    adv, comp = [0.0] * len(ys), [False] * len(ys)
    if n < 2:
        return adv, comp, n, 0.0, n == 1
    mean = sum(fin) / n
    const = min(fin) == max(fin)
    std = 0.0 if const else math.sqrt(sum((y - mean) ** 2 for y in fin) / (n - 1))
    for j, y in enumerate(ys):
        if not math.isfinite(y):
            continue
        comp[j] = True
        if const:
            continue
        d = y - mean
        adv[j] = d / (std + eps) if kind == "grpo" else d if kind == "dr_grpo" else d * n / (n - 1)
    return adv, comp, n, std, const


def groups_of(b: dict) -> dict[int, list[int]]:
    out: dict[int, list[int]] = {}
    for i, g in enumerate(b["group"]):
        out.setdefault(g, []).append(i)
    return out


def eff_weights(b: dict, cfg: RecalConfig) -> list[float]:
    w = list(b["weights"])
    for name, v in (cfg.component_weights or {}).items():
        w[COMPONENTS.index(name)] = v
    return w


def weighted_total(row: list[float], w: list[float]) -> float:
    if any(wk != 0 and math.isnan(v) for v, wk in zip(row, w, strict=True)):
        return NAN
    return sum(wk * v for v, wk in zip(row, w, strict=True) if wk != 0)


def ref_signal(b: dict, cfg: RecalConfig = DEFAULT) -> list[float]:
    """y_i = x_i, NaN when x_i is not finite or a weighted raw component is NaN."""
    w = eff_weights(b, cfg)
    return [
        x if math.isfinite(x) and math.isfinite(weighted_total(row, w)) else NAN
        for x, row in zip(b["scalar"], b["raw"], strict=True)
    ]


def ref_scalar(b: dict, kind: str, cfg: RecalConfig = DEFAULT):
    y = ref_signal(b, cfg)
    adv, valid = [0.0] * len(y), [True] * len(y)
    for idx in groups_of(b).values():
        a, _, cnt, _, const = ref_group([y[i] for i in idx], kind, cfg.eps)
        for j, i in enumerate(idx):
            adv[i] = a[j]
            valid[i] = not (cfg.drop_zero_variance_groups and cnt >= 2 and const)
    return adv, valid


def new_ref_state() -> dict:
    return {"sigma_bar": 0.0, "init": False, "mom": {}}


def ref_stage_c(m, w, idx, cfg):
    """Returns per-member S, computed flags, zero_var and degenerate for one group."""
    size = len(idx)
    s, comp = [0.0] * size, [False] * size
    if cfg.componentwise:
        shorts, consts = [], []
        for k, wk in enumerate(w):
            a, c, cnt, _, const = ref_group([m[i][k] for i in idx], "grpo", cfg.eps)
            shorts.append(cnt < 2 or wk == 0)
            consts.append(const)
            for j in range(size):
                s[j] += wk * a[j]
                comp[j] = comp[j] or (c[j] and wk != 0)
        degenerate = all(shorts)
        zero_var = all(sh or co for sh, co in zip(shorts, consts, strict=True)) and not degenerate
        return s, comp, zero_var, degenerate
    a, c, cnt, _, const = ref_group([weighted_total(m[i], w) for i in idx], "grpo", cfg.eps)
    return a, c, const and cnt >= 2, cnt < 2


def ref_stage_n(a, keep, src, names, cfg, state):
    n = len(a)
    kv = [a[i] for i in range(n) if keep[i]]

    def mstd(vals):
        if not vals:
            return 0.0, 0.0, 0
        mu = sum(vals) / len(vals)
        sd = math.sqrt(sum((v - mu) ** 2 for v in vals) / (len(vals) - 1)) if len(vals) > 1 else 0.0
        return mu, sd, len(vals)

    whole = mstd(kv)
    if cfg.final_norm == "none":
        return a
    if cfg.final_norm == "batch":
        return [(a[i] - whole[0]) / (whole[1] + cfg.eps) if keep[i] else a[i] for i in range(n)]
    stats = {}
    for d, name in enumerate(names):
        vals = [a[i] for i in range(n) if keep[i] and src[i] == d]
        own = mstd(vals)
        stats[d] = own if own[2] >= cfg.min_dataset_count else whole
        if cfg.dataset_stats == "running":
            cnt, mu, m2 = state["mom"].get(name, (0.0, 0.0, 0.0))
            if vals:
                cnt, m2 = cnt * cfg.running_decay, m2 * cfg.running_decay
                for v in vals:  # Welford, one value at a time
                    cnt += 1.0
                    d_old = v - mu
                    mu += d_old / cnt
                    m2 += d_old * (v - mu)
                state["mom"][name] = (cnt, mu, m2)
            if cnt >= cfg.min_dataset_count:
                stats[d] = (mu, math.sqrt(m2 / (cnt - 1)), cnt)
    return [(a[i] - stats[src[i]][0]) / (stats[src[i]][1] + cfg.eps) if keep[i] else a[i] for i in range(n)]


def ref_recal(b: dict, cfg: RecalConfig, state: dict):
    m = b["gated"] if cfg.hierarchy else b["raw"]
    w = eff_weights(b, cfg)
    n = len(m)
    s, comp, zv, dropped = [0.0] * n, [False] * n, [False] * n, [False] * n
    sig, defined = {}, {}
    for g, idx in groups_of(b).items():
        gs, gc, zero_var, _ = ref_stage_c(m, w, idx, cfg)
        if cfg.variance_source == "answer":
            v = [m[i][1] for i in idx]
        else:
            v = [weighted_total(m[i], w) for i in idx]
        _, _, cnt, std, _ = ref_group(v, "dr_grpo")
        sig[g], defined[g] = std, cnt >= 2
        for j, i in enumerate(idx):
            s[i], comp[i], zv[i] = gs[j], gc[j], zero_var
            dropped[i] = zero_var and cfg.drop_zero_variance_groups
    a = list(s)
    if cfg.variance_weighting:
        sigmas = [sig[g] for g in sig if defined[g]]
        if sigmas:
            batch_sigma = sum(sigmas) / len(sigmas)
            ema = cfg.std_ema * state["sigma_bar"] + (1 - cfg.std_ema) * batch_sigma
            state["sigma_bar"] = ema if state["init"] else batch_sigma
            state["init"] = True
        for i, g in enumerate(b["group"]):
            omega = 0.5 * (cfg.w_min + cfg.w_max)
            if defined[g]:
                x = cfg.steepness * (sig[g] - state["sigma_bar"])
                omega = cfg.w_min + (cfg.w_max - cfg.w_min) / (1 + math.exp(-x))
            a[i] = omega * s[i]
    keep = [comp[i] and not dropped[i] for i in range(n)]
    a = ref_stage_n(a, keep, b["source"], b["names"], cfg, state)
    adv = [0.0 if (not keep[i] or zv[i]) else a[i] for i in range(n)]
    return adv, [not d for d in dropped]


def check_against(out: AdvantageOut, adv: list[float], valid: list[bool]) -> None:
    assert out.advantages.dtype == torch.float32
    assert torch.isfinite(out.advantages).all()
    torch.testing.assert_close(out.advantages.double(), torch.tensor(adv, dtype=torch.float64), **TOL)
    assert out.valid.tolist() == valid
