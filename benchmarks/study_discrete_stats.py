"""Statistics of the discrete estimator study: paired tests, effect sizes, CIs, Holm, minimum detectable effects.

No SciPy: Student's t CDF is the regularised incomplete beta function (a Lentz continued fraction) and
its quantile a bisection of the CDF. Every comparison is paired by seed (same policy init, question
order, call seeds and pool seed):

- effect: the mean paired difference d̄ and Cohen's d_z = d̄ / s_d;
- 95 % CIs: Student t (d̄ ± t_{0.975, n−1}·s_d/√n) and a seeded percentile bootstrap of d̄;
- p: two-sided paired t-test, Holm-adjusted over the comparisons of one family;
- MDE: the smallest true mean difference a paired t-test at level α detects with 80 % power,
  ≈ (t_{1−α/2, n−1} + t_{0.8, n−1})·s_d/√n (the usual normal-shift approximation with t quantiles),
  at α = 0.05 and at the Bonferroni level α/m of the family.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np

__all__ = [
    "holm",
    "mean_std",
    "min_detectable_effect",
    "paired_comparison",
    "t_cdf",
    "t_ppf",
    "t_two_sided_p",
]

_BOOTSTRAP = 10_000
_BOOTSTRAP_SEED = 0


def _betacf(a: float, b: float, x: float) -> float:
    """Continued fraction of the incomplete beta function (modified Lentz, Numerical Recipes §6.4)."""
    tiny, eps = 1e-300, 1e-15
    qab, qap, qam = a + b, a + 1.0, a - 1.0
    c, d = 1.0, 1.0 - qab * x / qap
    d = 1.0 / (d if abs(d) > tiny else tiny)
    h = d
    for m in range(1, 500):
        m2 = 2 * m
        for aa in (m * (b - m) * x / ((qam + m2) * (a + m2)), -(a + m) * (qab + m) * x / ((a + m2) * (qap + m2))):
            d = 1.0 + aa * d
            d = 1.0 / (d if abs(d) > tiny else tiny)
            c = 1.0 + aa / c
            c = c if abs(c) > tiny else tiny
            h *= d * c
        if abs(d * c - 1.0) < eps:
            break
    return h


def _betainc(a: float, b: float, x: float) -> float:
    """Regularised incomplete beta I_x(a, b) for x in [0, 1]."""
    if x <= 0.0:
        return 0.0
    if x >= 1.0:
        return 1.0
    log_front = math.lgamma(a + b) - math.lgamma(a) - math.lgamma(b) + a * math.log(x) + b * math.log1p(-x)
    if x < (a + 1.0) / (a + b + 2.0):
        return math.exp(log_front) * _betacf(a, b, x) / a
    return 1.0 - math.exp(log_front) * _betacf(b, a, 1.0 - x) / b


def t_cdf(t: float, df: float) -> float:
    """P(T ≤ t) for Student's t with ``df`` degrees of freedom."""
    if math.isinf(t):
        return 1.0 if t > 0 else 0.0
    tail = 0.5 * _betainc(df / 2.0, 0.5, df / (df + t * t))
    return 1.0 - tail if t > 0 else tail


def t_two_sided_p(t: float, df: float) -> float:
    """Two-sided p-value of a t statistic."""
    if math.isnan(t):
        return float("nan")
    return min(1.0, 2.0 * (1.0 - t_cdf(abs(t), df)))


def t_ppf(q: float, df: float) -> float:
    """Quantile of Student's t (bisection of :func:`t_cdf` to 1e-12)."""
    if not 0.0 < q < 1.0:
        raise ValueError(f"t_ppf needs 0 < q < 1, got {q!r}")
    lo, hi = -1e3, 1e3
    for _ in range(200):
        mid = 0.5 * (lo + hi)
        if t_cdf(mid, df) < q:
            lo = mid
        else:
            hi = mid
        if hi - lo < 1e-12:
            break
    return 0.5 * (lo + hi)


def holm(pvalues: Sequence[float]) -> list[float]:
    """Holm's step-down adjusted p-values (NaN entries stay NaN and do not count towards m)."""
    finite = [(p, i) for i, p in enumerate(pvalues) if not math.isnan(p)]
    m = len(finite)
    out = [float("nan")] * len(pvalues)
    running = 0.0
    for rank, (p, i) in enumerate(sorted(finite)):
        running = max(running, min(1.0, (m - rank) * p))
        out[i] = running
    return out


def mean_std(values: Sequence[float]) -> dict[str, float]:
    """Mean, Bessel std and count of the finite values (NaN when none)."""
    x = np.asarray(values, dtype=np.float64)
    x = x[np.isfinite(x)]
    if x.size == 0:
        return {"mean": float("nan"), "std": float("nan"), "n": 0}
    return {"mean": float(x.mean()), "std": float(x.std(ddof=1)) if x.size > 1 else 0.0, "n": int(x.size)}


def min_detectable_effect(sd: float, n: int, *, alpha: float = 0.05, power: float = 0.8) -> float:
    """≈ smallest mean paired difference detected with ``power`` by a two-sided paired t-test at ``alpha``."""
    if n < 2 or not math.isfinite(sd):
        return float("nan")
    df = n - 1
    return (t_ppf(1.0 - alpha / 2.0, df) + t_ppf(power, df)) * sd / math.sqrt(n)


def _bootstrap_ci(d: np.ndarray) -> tuple[float, float]:
    rng = np.random.default_rng(_BOOTSTRAP_SEED)
    means = d[rng.integers(0, d.size, size=(_BOOTSTRAP, d.size))].mean(axis=1)
    lo, hi = np.quantile(means, [0.025, 0.975])
    return float(lo), float(hi)


def paired_comparison(diffs: Sequence[float], *, family_size: int = 1) -> dict[str, float]:
    """Effect size, CIs, t-test and MDE of per-seed paired differences (arm − baseline).

    Args:
        diffs: One difference per seed.
        family_size: m, the number of comparisons in the family (for the Bonferroni-level MDE).

    Returns:
        ``mean``, ``sd``, ``d_z``, ``t``, ``p`` (unadjusted), ``ci_t_low/high``, ``ci_boot_low/high``,
        ``mde`` (α = 0.05), ``mde_family`` (α = 0.05/m) and ``n``. NaN where undefined (n < 2).
    """
    d = np.asarray(diffs, dtype=np.float64)
    n = int(d.size)
    nan = float("nan")
    out = dict.fromkeys(
        ("mean", "sd", "d_z", "t", "p", "ci_t_low", "ci_t_high", "ci_boot_low", "ci_boot_high", "mde", "mde_family"),
        nan,
    )
    out["n"] = float(n)
    if n == 0:
        return out
    mean = float(d.mean())
    out["mean"] = mean
    if n < 2:
        return out
    sd = float(d.std(ddof=1))
    out["sd"] = sd
    out["mde"] = min_detectable_effect(sd, n)
    out["mde_family"] = min_detectable_effect(sd, n, alpha=0.05 / max(1, family_size))
    out["ci_boot_low"], out["ci_boot_high"] = _bootstrap_ci(d)
    if sd == 0.0:  # every seed moved by the same amount: the t machinery is undefined
        out.update(d_z=0.0 if mean == 0.0 else math.copysign(math.inf, mean), ci_t_low=mean, ci_t_high=mean)
        out["p"] = 1.0 if mean == 0.0 else 0.0
        return out
    se = sd / math.sqrt(n)
    half = t_ppf(0.975, n - 1) * se
    t = mean / se
    out.update(d_z=mean / sd, t=t, p=t_two_sided_p(t, n - 1), ci_t_low=mean - half, ci_t_high=mean + half)
    return out
