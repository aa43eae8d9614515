"""Statistics, figures and the Markdown table of the ReCal learning study (``study_recal.py``).

Aggregates are over seeds: mean and Bessel std per arm, and paired differences against ``grpo``
(same seed = same warm start and question sequence) with a paired t-test and an exact two-sided sign
test. The t p-value integrates the Student-t density numerically (no SciPy needed).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

__all__ = ["aggregate", "paired_t", "plot_setting", "sign_test", "summary_markdown"]

_BASELINE = "grpo"


def _mean_std(values: Sequence[float]) -> dict[str, float]:
    x = np.asarray(values, dtype=np.float64)
    x = x[np.isfinite(x)]
    if x.size == 0:
        return {"mean": float("nan"), "std": float("nan"), "n": 0}
    std = float(x.std(ddof=1)) if x.size > 1 else 0.0
    return {"mean": float(x.mean()), "std": std, "n": int(x.size)}


def _t_sf_two_sided(t: float, df: int) -> float:
    """Two-sided p-value of Student's t with ``df`` degrees of freedom (Simpson integration of the density)."""
    if not math.isfinite(t):
        return 0.0
    a = abs(t)
    log_c = math.lgamma((df + 1) / 2) - math.lgamma(df / 2) - 0.5 * math.log(df * math.pi)
    xs = np.linspace(0.0, a, 4001)
    dens = np.exp(log_c - (df + 1) / 2 * np.log1p(xs * xs / df))
    h = a / 4000
    integral = h / 3 * (dens[0] + dens[-1] + 4 * dens[1:-1:2].sum() + 2 * dens[2:-1:2].sum())
    return float(min(1.0, max(0.0, 1.0 - 2.0 * integral)))


def paired_t(diffs: Sequence[float]) -> dict[str, float]:
    """Paired t-test of per-seed differences against 0: mean, std, t and two-sided p (NaN when n < 2)."""
    d = np.asarray(diffs, dtype=np.float64)
    n = d.size
    if n < 2:
        return {
            "mean": float(d.mean()) if n else float("nan"),
            "std": float("nan"),
            "t": float("nan"),
            "p": float("nan"),
        }
    sd = float(d.std(ddof=1))
    mean = float(d.mean())
    if sd == 0.0:
        return {
            "mean": mean,
            "std": 0.0,
            "t": float("nan") if mean == 0 else math.copysign(math.inf, mean),
            "p": 1.0 if mean == 0 else 0.0,
        }
    t = mean / (sd / math.sqrt(n))
    return {"mean": mean, "std": sd, "t": t, "p": _t_sf_two_sided(t, n - 1)}


def sign_test(diffs: Sequence[float]) -> dict[str, float]:
    """Exact two-sided sign test (ties dropped): wins, losses and p."""
    wins = sum(1 for d in diffs if d > 0)
    losses = sum(1 for d in diffs if d < 0)
    n = wins + losses
    if n == 0:
        return {"wins": 0, "losses": 0, "p": 1.0}
    k = min(wins, losses)
    p = min(1.0, 2.0 * sum(math.comb(n, i) for i in range(k + 1)) / 2**n)
    return {"wins": wins, "losses": losses, "p": p}


def _metric(run: dict[str, Any], key: str) -> float:
    if key.startswith("em/"):
        return float(run["final_em_per_dataset"][key[3:]])
    return float(run[key])


def aggregate(runs: Sequence[dict[str, Any]], arms: Sequence[str]) -> dict[str, Any]:
    """Per-arm mean ± std over seeds and paired differences against ``grpo`` for one setting."""
    if not runs:
        return {}
    sources = sorted(runs[0]["final_em_per_dataset"])
    keys = ["final_em", *[f"em/{s}" for s in sources], "auc_reward", "final_format_error", "warmstart_em"]
    by_arm = {a: sorted((r for r in runs if r["arm"] == a), key=lambda r: r["seed"]) for a in arms}
    out: dict[str, Any] = {"sources": sources, "arms": {}}
    base = {r["seed"]: r for r in by_arm.get(_BASELINE, [])}
    for arm, rs in by_arm.items():
        entry: dict[str, Any] = {k: _mean_std([_metric(r, k) for r in rs]) for k in keys}
        entry["collapsed"] = sum(int(r["collapsed"]) for r in rs)
        entry["seeds"] = len(rs)
        entry["wall_s"] = _mean_std([r["wall_s"] for r in rs])
        if arm != _BASELINE and base:
            entry["vs_grpo"] = {}
            for k in ("final_em", "auc_reward"):
                diffs = [_metric(r, k) - _metric(base[r["seed"]], k) for r in rs if r["seed"] in base]
                entry["vs_grpo"][k] = {**paired_t(diffs), "sign": sign_test(diffs), "diffs": diffs}
        out["arms"][arm] = entry
    return out


def _band(ax: Any, x: np.ndarray, ys: np.ndarray, label: str, color: Any) -> None:
    mean = np.nanmean(ys, axis=0)
    std = np.nanstd(ys, axis=0, ddof=1) if ys.shape[0] > 1 else np.zeros_like(mean)
    ax.plot(x, mean, label=label, color=color, lw=1.4)
    ax.fill_between(x, mean - std, mean + std, color=color, alpha=0.15, lw=0)


def _smooth(y: np.ndarray, k: int) -> np.ndarray:
    if k <= 1 or y.shape[-1] < k:
        return y
    kernel = np.ones(k) / k
    return np.stack([np.convolve(row, kernel, mode="valid") for row in y])


def plot_setting(runs: Sequence[dict[str, Any]], arms: Sequence[str], path: Path, title: str) -> Path:
    """Three panels (train reward, fixed-question EM, train format-error rate), mean ± std over seeds per arm."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 3, figsize=(15, 4.2))
    cmap = plt.get_cmap("tab10")
    for i, arm in enumerate(arms):
        rs = [r for r in runs if r["arm"] == arm]
        if not rs:
            continue
        color = cmap(i % 10)
        k = 5 if len(rs[0]["train"]["reward"]) >= 20 else 1
        reward = _smooth(np.array([r["train"]["reward"] for r in rs]), k)
        fmt = _smooth(np.array([r["train"]["format_error"] for r in rs]), k)
        steps = np.arange(1, reward.shape[1] + 1) + (k - 1)
        _band(axes[0], steps, reward, arm, color)
        _band(axes[2], steps, fmt, arm, color)
        ev_steps = np.array([e["step"] for e in rs[0]["eval"]])
        em = np.array([[e["em"] for e in r["eval"]] for r in rs])
        _band(axes[1], ev_steps, em, arm, color)
    titles = (
        "train reward (episode return, 5-step mean)",
        "fixed-question EM",
        "train format-error rate (5-step mean)",
    )
    for ax, t in zip(axes, titles, strict=True):
        ax.set_title(t, fontsize=10)
        ax.set_xlabel("RL step")
        ax.grid(alpha=0.3)
    axes[0].legend(fontsize=7, loc="best")
    fig.suptitle(f"ReCal study, setting '{title}' (mean ± std over seeds)", fontsize=11)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def _fmt(cell: dict[str, float], digits: int = 3) -> str:
    return f"{cell['mean']:.{digits}f} ± {cell['std']:.{digits}f}"


def _diff(entry: dict[str, Any], key: str) -> str:
    if "vs_grpo" not in entry:
        return "—"
    d = entry["vs_grpo"][key]
    s = d["sign"]
    return f"{d['mean']:+.3f} (p_t={d['p']:.2f}, {s['wins']}/{s['losses']})"


def summary_markdown(results: dict[str, Any]) -> str:
    """The study's tables as Markdown (one table per setting)."""
    lines = ["# ReCal learning study: results", "", f"Command: `{results['provenance']['command']}`", ""]
    for name, agg in results["aggregates"].items():
        if not agg:
            continue
        src = agg["sources"]
        head = ["arm", "final EM", *[f"EM {s}" for s in src], "AUC reward", "final fmt-err", "collapsed"]
        head += ["ΔEM vs grpo (p, wins/losses)", "ΔAUC vs grpo (p, wins/losses)"]
        lines += [f"## Setting `{name}`", "", "| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
        for arm, e in agg["arms"].items():
            row = [arm, _fmt(e["final_em"]), *[_fmt(e[f"em/{s}"]) for s in src], _fmt(e["auc_reward"])]
            row += [_fmt(e["final_format_error"]), f"{e['collapsed']}/{e['seeds']}"]
            row += [_diff(e, "final_em"), _diff(e, "auc_reward")]
            lines.append("| " + " | ".join(row) + " |")
        ws = next(iter(agg["arms"].values()))["warmstart_em"]
        lines += ["", f"EM on the fixed evaluation questions after the warm start (step 0, all arms): {_fmt(ws)}.", ""]
    lines.append(
        "Mean ± std over seeds; Δ = paired difference against `grpo` (same seed), p_t = paired t-test, "
        "wins/losses = seeds where the arm beat / lost to `grpo` (exact sign test in results.json)."
    )
    return "\n".join(lines) + "\n"
