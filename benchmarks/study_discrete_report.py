"""Per-run metrics, aggregates, Markdown tables and figures of the discrete estimator study.

Definitions (also written into ``results.json``):

- **held-out EM / reward / cost**: greedy policy (argmax over allowed actions), one episode per held-out
  question, reward scored against the frozen reference reward state of (setting, seed);
- **AUC**: mean training reward over all steps (the normalised area under the training reward curve;
  training rewards use the run's own reward state, i.e. what the learner optimised);
- **steps to 90 %**: the first step at which the trailing 5-step mean of the training reward covers 90 % of
  its improvement from the first 5 steps' mean to the last 5 steps' mean; undefined (NaN) when the last
  5 steps are not above the first 5;
- **concentration**: share of the most frequent first action among the sampled trajectories of the last
  5 steps (1.0 = the sampling policy always starts the same way);
- **collapsed**: concentration ≥ 0.95 *and* held-out reward more than 0.05 below the best single-model
  router of the same (setting, seed): the policy stopped exploring on a worse mode.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
from study_discrete_stats import holm, mean_std, paired_comparison

__all__ = ["DEFINITIONS", "aggregate", "plot_setting", "run_metrics", "summary_markdown"]

BASELINE_ARM = "grpo"
ABLATIONS: dict[str, str] = {
    "no_hierarchy": "H (hierarchical gate)",
    "no_componentwise": "C (component-wise advantages)",
    "no_variance_weighting": "V (variance-aware weights)",
    "batch_norm": "N per dataset (vs one batch z-score)",
    "running_stats": "N batch statistics (vs running moments)",
}
"""Ablation arm → the ReCal stage (or choice) that ``recal`` has and the ablation lacks."""
COMPARED = ("final_em", "final_reward", "auc_reward")
_WINDOW = 5
_CONCENTRATED = 0.95
_COLLAPSE_MARGIN = 0.05

DEFINITIONS: dict[str, str] = {
    "heldout": "greedy policy, one episode per held-out question; reward scored against the frozen reference "
    "reward state of (setting, seed)",
    "reference_state": "cost window and balance frequencies after Budget.reference_episodes masked-random episodes "
    "on training questions, one batch update, frozen",
    "auc_reward": "mean training reward over all steps (run's own reward state)",
    "steps_to_90": f"first step where the trailing {_WINDOW}-step mean training reward covers 90% of the improvement "
    f"from the first {_WINDOW} steps' mean to the last {_WINDOW} steps' mean; NaN without improvement",
    "concentration": f"share of the most frequent first action among sampled trajectories of the last {_WINDOW} steps",
    "collapsed": f"concentration >= {_CONCENTRATED} and held-out reward < best single-model router's held-out reward "
    f"- {_COLLAPSE_MARGIN} (same setting and seed)",
    "paired_tests": "arm - grpo per seed; Cohen's d_z; 95% t and bootstrap CIs; paired t-test p Holm-adjusted over "
    "the arms compared with grpo within one setting and metric; MDE at 80% power (alpha 0.05 and 0.05/m)",
    "stage_effects": "recal - ablation per seed (positive = keeping the stage helps), same statistics, Holm over the "
    "ablations within one setting and metric",
}


def _trailing_mean(x: np.ndarray, k: int) -> np.ndarray:
    c = np.cumsum(np.insert(x, 0, 0.0))
    idx = np.arange(1, x.size + 1)
    lo = np.maximum(idx - k, 0)
    return (c[idx] - c[lo]) / (idx - lo)


def steps_to_90(rewards: Sequence[float]) -> float:
    """See the module docstring; returns a 1-based step count or NaN."""
    r = np.asarray(rewards, dtype=np.float64)
    k = min(_WINDOW, r.size)
    start, final = float(r[:k].mean()), float(r[-k:].mean())
    if not final > start:
        return float("nan")
    target = start + 0.9 * (final - start)
    hits = np.flatnonzero(_trailing_mean(r, k) >= target)
    return float(hits[0] + 1)


def run_metrics(run: dict[str, Any], best_single_reward: float) -> dict[str, Any]:
    """Scalar metrics of one estimator or SB3 run (``best_single_reward`` of the same setting and seed)."""
    final = run["final"]
    out: dict[str, Any] = {
        "final_em": final["em"],
        "final_reward": final["reward"],
        "final_cost": final["raw_cost"],
        "final_calls": final["n_calls"],
        **{f"em/{s}": v for s, v in final["em_by_source"].items()},
    }
    if run["kind"] == "arm":
        curves = run["curves"]
        out["auc_reward"] = float(np.mean(curves["episode/reward"]))
        out["auc_em"] = float(np.mean(curves["episode/em"]))
        out["steps_to_90"] = steps_to_90(curves["episode/reward"])
        out["concentration"] = float(np.mean(curves["first_action_top_share"][-_WINDOW:]))
    else:
        out["concentration"] = float(max(final["first_action"]))
    out["collapsed"] = bool(
        out["concentration"] >= _CONCENTRATED and final["reward"] < best_single_reward - _COLLAPSE_MARGIN
    )
    return out


def _best_single(baselines: Sequence[dict[str, Any]]) -> dict[int, float]:
    return {b["seed"]: max(v["reward"] for k, v in b["routers"].items() if k.startswith("single:")) for b in baselines}


def _arm_entry(metrics: list[dict[str, Any]]) -> dict[str, Any]:
    keys = [k for k in metrics[0] if k != "collapsed"]
    entry: dict[str, Any] = {k: mean_std([m[k] for m in metrics]) for k in keys}
    entry["collapsed"] = int(sum(m["collapsed"] for m in metrics))
    entry["seeds"] = len(metrics)
    return entry


def _comparisons(
    per_arm: dict[str, dict[int, dict[str, Any]]], reference: str, others: Sequence[str], *, sign: float = 1.0
) -> dict[str, dict[str, Any]]:
    """Paired comparisons of ``others`` with ``reference``: Δ = sign·(other − reference), Holm over ``others``."""
    base = per_arm.get(reference, {})
    present = [a for a in others if a != reference and a in per_arm and base]
    out: dict[str, dict[str, Any]] = {a: {} for a in present}
    for key in COMPARED:
        stats = {}
        for arm in present:
            seeds = sorted(set(per_arm[arm]) & set(base))
            diffs = [sign * (per_arm[arm][s][key] - base[s][key]) for s in seeds]
            stats[arm] = {**paired_comparison(diffs, family_size=len(present)), "diffs": diffs}
        adjusted = holm([stats[a]["p"] for a in present])
        for arm, p_holm in zip(present, adjusted, strict=True):
            out[arm][key] = {**stats[arm], "p_holm": p_holm}
    return out


def _router_entry(baselines: Sequence[dict[str, Any]], name: str) -> dict[str, Any]:
    rows = [b["routers"][name] for b in baselines]
    return {k: mean_std([r[k] for r in rows]) for k in ("em", "reward", "raw_cost", "n_calls")}


def aggregate(
    runs: Sequence[dict[str, Any]],
    sb3: Sequence[dict[str, Any]],
    baselines: Sequence[dict[str, Any]],
    arms: Sequence[str],
) -> dict[str, Any]:
    """Aggregates of one setting: per-arm means ± std, paired comparisons against grpo, SB3 and baselines."""
    best = _best_single(baselines)
    per_arm: dict[str, dict[int, dict[str, Any]]] = {}
    for run in runs:
        per_arm.setdefault(run["arm"], {})[run["seed"]] = run_metrics(run, best[run["seed"]])
    per_sb3: dict[str, dict[int, dict[str, Any]]] = {}
    for run in sb3:
        per_sb3.setdefault(run["arm"], {})[run["seed"]] = run_metrics(run, best[run["seed"]])
    router_names = list(baselines[0]["routers"]) if baselines else []
    return {
        "arms": {a: _arm_entry([per_arm[a][s] for s in sorted(per_arm[a])]) for a in arms if a in per_arm},
        "vs_grpo": _comparisons(per_arm, BASELINE_ARM, arms),
        "stage_effects": _comparisons(per_arm, "recal", [a for a in ABLATIONS if a in arms], sign=-1.0),
        "sb3": {a: _arm_entry([v[s] for s in sorted(v)]) for a, v in per_sb3.items()},
        "routers": {name: _router_entry(baselines, name) for name in router_names},
        "per_run": {a: {str(s): m for s, m in v.items()} for a, v in {**per_arm, **per_sb3}.items()},
    }


# ----------------------------------------------------------------------------------- Markdown
def _ms(entry: dict[str, float], digits: int = 3) -> str:
    if entry["n"] == 0 or math.isnan(entry["mean"]):
        return "—"
    return f"{entry['mean']:.{digits}f} ± {entry['std']:.{digits}f}"


def _cmp(c: dict[str, float]) -> str:
    if math.isnan(c["mean"]):
        return "—"
    ci = f"[{c['ci_t_low']:+.3f}, {c['ci_t_high']:+.3f}]" if not math.isnan(c["ci_t_low"]) else "[—]"
    dz = "—" if math.isnan(c["d_z"]) else f"{c['d_z']:+.2f}"
    p = "—" if math.isnan(c["p_holm"]) else f"{c['p_holm']:.3f}"
    mde = "—" if math.isnan(c["mde"]) else f"{c['mde']:.3f}"
    return f"{c['mean']:+.3f} {ci}, d_z {dz}, p_Holm {p}, MDE {mde}"


def _steps(entry: dict[str, float]) -> str:
    return "—" if entry["n"] == 0 else f"{entry['mean']:.1f} ({entry['n']})"


def _performance_table(agg: dict[str, Any]) -> list[str]:
    lines = [
        "| arm | held-out EM | held-out reward | cost (µ$) | calls | AUC reward | steps to 90 % (n) | concentration "
        "| collapsed |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for arm, e in agg["arms"].items():
        lines.append(
            f"| {arm} | {_ms(e['final_em'])} | {_ms(e['final_reward'])} | {_ms(e['final_cost'], 1)} "
            f"| {_ms(e['final_calls'], 2)} | {_ms(e['auc_reward'])} | {_steps(e['steps_to_90'])} "
            f"| {_ms(e['concentration'], 2)} | {e['collapsed']}/{e['seeds']} |"
        )
    for arm, e in agg["sb3"].items():
        lines.append(
            f"| SB3 {arm} (reference) | {_ms(e['final_em'])} | {_ms(e['final_reward'])} | {_ms(e['final_cost'], 1)} "
            f"| {_ms(e['final_calls'], 2)} | — | — | {_ms(e['concentration'], 2)} | {e['collapsed']}/{e['seeds']} |"
        )
    for name, e in agg["routers"].items():
        lines.append(
            f"| *{name}* | {_ms(e['em'])} | {_ms(e['reward'])} | {_ms(e['raw_cost'], 1)} | {_ms(e['n_calls'], 2)} "
            "| — | — | — | — |"
        )
    return lines


def _comparison_table(agg: dict[str, Any]) -> list[str]:
    lines = [
        "| arm vs grpo | Δ held-out EM | Δ held-out reward | Δ AUC reward |",
        "|---|---|---|---|",
    ]
    for arm, c in agg["vs_grpo"].items():
        lines.append(f"| {arm} | {_cmp(c['final_em'])} | {_cmp(c['final_reward'])} | {_cmp(c['auc_reward'])} |")
    return lines


def _stage_table(agg: dict[str, Any]) -> list[str]:
    lines = [
        "| stage kept (recal − ablation) | Δ held-out EM | Δ held-out reward | Δ AUC reward |",
        "|---|---|---|---|",
    ]
    for arm, c in agg["stage_effects"].items():
        lines.append(
            f"| {ABLATIONS[arm]} (vs `{arm}`) | {_cmp(c['final_em'])} | {_cmp(c['final_reward'])} "
            f"| {_cmp(c['auc_reward'])} |"
        )
    return lines


def summary_markdown(aggregates: dict[str, Any], settings: dict[str, Any]) -> str:
    """Both tables of every setting as Markdown (``summary.md``)."""
    out: list[str] = []
    for name, agg in aggregates.items():
        info = settings[name]
        out += [
            f"## Setting `{name}` (built to favour: {info['favours']})",
            "",
            f"{info['train']} training / {info['heldout']} held-out questions; sources {info['sources']}.",
            "",
            *_performance_table(agg),
            "",
            "Mean ± std over seeds. Rows in italics are fixed routers on the same held-out questions.",
            "",
            *_comparison_table(agg),
            "",
            "Δ = arm − grpo, paired by seed: mean [95 % t CI], Cohen's d_z, Holm-adjusted p over the "
            f"{len(agg['vs_grpo'])} comparisons of the column, minimum detectable effect at 80 % power (α = 0.05).",
            "",
        ]
        if agg["stage_effects"]:
            out += [
                *_stage_table(agg),
                "",
                "Δ = recal − ablation, paired by seed (positive: keeping the stage helps); Holm over the "
                f"{len(agg['stage_effects'])} ablations of the column.",
                "",
            ]
    return "\n".join(out)


# ----------------------------------------------------------------------------------- figures
def _band(ax: Any, ys: np.ndarray, label: str, color: Any) -> None:
    x = np.arange(1, ys.shape[1] + 1)
    mean = ys.mean(axis=0)
    std = ys.std(axis=0, ddof=1) if ys.shape[0] > 1 else np.zeros_like(mean)
    ax.plot(x, mean, label=label, color=color, lw=1.3)
    ax.fill_between(x, mean - std, mean + std, color=color, alpha=0.12, lw=0)


_ESTIMATOR_PANEL = ("grpo", "dr_grpo", "rloo", "gdpo", "recal")
_ABLATION_PANEL = (
    "grpo",
    "recal",
    "no_hierarchy",
    "no_componentwise",
    "no_variance_weighting",
    "batch_norm",
    "running_stats",
)


def _dots(ax: Any, agg: dict[str, Any], names: Sequence[str], key: str, colors: dict[str, Any]) -> None:
    for i, name in enumerate(names):
        vals = [m[key] for m in agg["per_run"][name].values()]
        ax.scatter(
            np.full(len(vals), i) + np.linspace(-0.15, 0.15, len(vals)), vals, color=colors.get(name, "grey"), s=12
        )
        ax.hlines(np.mean(vals), i - 0.3, i + 0.3, color="k", lw=1.5)
    labels = [n if n in agg["arms"] else f"SB3 {n}" for n in names]
    ax.set_xticks(range(len(names)), labels, rotation=45, ha="right", fontsize=8)


def plot_setting(
    name: str, runs: Sequence[dict[str, Any]], agg: dict[str, Any], arms: Sequence[str], path: Path
) -> None:
    """Training curves (trailing 3-step mean; mean ± std band over seeds) and held-out results per arm.

    Rows: training reward, training EM, training cost, held-out EM / cost per seed. Columns of the curve rows:
    the estimators (``grpo``, ``dr_grpo``, ``rloo``, ``gdpo``, ``recal``) and the ReCal ablations (with ``grpo``
    and ``recal`` for reference).
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    present = [a for a in arms if any(r["arm"] == a for r in runs)]
    colors = {a: plt.get_cmap("tab10")(i % 10) for i, a in enumerate(present)}
    fig, axes = plt.subplots(4, 2, figsize=(13, 15))
    rows = (
        ("episode/reward", "training reward"),
        ("episode/em", "training EM"),
        ("episode/raw_cost", "training cost (µ$)"),
    )
    for col, panel in enumerate((_ESTIMATOR_PANEL, _ABLATION_PANEL)):
        shown = [a for a in panel if a in present] or present
        for row, (key, title) in enumerate(rows):
            ax = axes[row, col]
            for arm in shown:
                ys = np.array([_trailing_mean(np.asarray(r["curves"][key]), 3) for r in runs if r["arm"] == arm])
                _band(ax, ys, arm, colors[arm])
            ax.set_title(f"{title}: {'estimators' if col == 0 else 'ReCal ablations'}", fontsize=10)
            ax.set_xlabel("step")
            if row == 0:
                ax.legend(fontsize=7, ncol=2)
    everything = [*present, *agg["sb3"]]
    _dots(axes[3, 0], agg, everything, "final_em", colors)
    axes[3, 0].set_title("held-out EM (greedy), one dot per seed", fontsize=10)
    singles = {k: v for k, v in agg["routers"].items() if k.startswith("single:")}
    if singles:
        best = max(singles, key=lambda k: singles[k]["em"]["mean"])
        axes[3, 0].axhline(
            singles[best]["em"]["mean"], color="tab:red", ls="--", lw=1, label=f"best single: {best[7:]}"
        )
        axes[3, 0].legend(fontsize=7)
    _dots(axes[3, 1], agg, everything, "final_cost", colors)
    axes[3, 1].set_title("held-out cost per question (µ$), one dot per seed", fontsize=10)
    fig.suptitle(f"RouterQADiscrete-v0 estimator study, setting '{name}' (bands: mean ± std over seeds)")
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
