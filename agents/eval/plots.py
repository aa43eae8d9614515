"""PNG plots of ``recal-gym eval`` runs: the cost–quality Pareto scatter and per-dataset bars.

matplotlib is imported lazily inside each function and drawn on an explicit Agg canvas
(``matplotlib.figure.Figure`` + ``FigureCanvasAgg``), so importing this module is cheap and no
global pyplot state or backend switch is touched.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from agents.eval.evaluation import EvalReport, Quality, summarise
from agents.eval.pareto import non_decreasing_hull, pareto_frontier

__all__ = ["plot_pareto", "plot_per_dataset"]


def _figure(width: float, height: float) -> Any:
    """A Figure on an Agg canvas; MissingDependency (one line) when matplotlib is missing."""
    from recal_gym.optional import require

    FigureCanvasAgg = require("matplotlib.backends.backend_agg", feature="drawing the eval plots").FigureCanvasAgg
    from matplotlib.figure import Figure
    fig = Figure(figsize=(width, height), dpi=110)
    FigureCanvasAgg(fig)
    return fig


def _save(fig: Any, path: str | Path) -> Path:
    out = Path(path)
    out.parent.mkdir(parents=True, exist_ok=True)
    fig.tight_layout()
    fig.savefig(out, format="png")
    return out


def plot_pareto(reports: Sequence[EvalReport], path: str | Path, *, quality: Quality = "em") -> Path:
    """Scatter every run at (mean cost, quality) with the Pareto frontier and the hull R̃ drawn.

    Frontier runs are filled markers joined by a step line; the dashed line is the non-decreasing
    convex hull of all runs, extended flat to the dearest run; the title carries its AIQ.

    Args:
        reports: The runs (at least one).
        path: Output PNG file (parent directories are created).
        quality: ``"em"`` (default), ``"f1"`` or ``"reward"``.

    Returns:
        ``path`` as a :class:`~pathlib.Path`.
    """
    summary = summarise(reports, quality=quality)
    costs = np.array([p.cost for p in summary.points])
    quals = np.array([p.quality for p in summary.points])
    fig = _figure(7.5, 5.0)
    ax = fig.add_subplot(1, 1, 1)
    for p in summary.points:
        ax.scatter(
            p.cost, p.quality, s=46, marker="o", facecolors="C0" if p.on_frontier else "none", edgecolors="C0", zorder=3
        )
        ax.annotate(p.router, (p.cost, p.quality), textcoords="offset points", xytext=(5, 4), fontsize=7)
    front = pareto_frontier(np.stack([costs, quals], axis=1))
    ax.step(costs[front], quals[front], where="post", color="C0", lw=1.0, alpha=0.6, label="Pareto frontier")
    hc, hq = non_decreasing_hull(costs, quals)
    hi = summary.cost_range[1]
    ax.plot([*hc, hi], [*hq, hq[-1]], "--", color="C3", lw=1.2, label="non-decreasing convex hull")
    ax.set_xlabel("mean raw cost per question (µ$)")
    ax.set_ylabel(quality.upper() if quality != "reward" else "mean reward")
    ax.set_title(f"Cost–quality of {len(reports)} runs; AIQ of the hull = {summary.aiq_all:.3f}", fontsize=10)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8, loc="lower right")
    return _save(fig, path)


def plot_per_dataset(reports: Sequence[EvalReport], path: str | Path, *, metric: Quality = "em") -> Path:
    """Grouped bars: one group per data source (plus ``all``), one bar per router.

    Args:
        reports: The runs (at least one).
        path: Output PNG file (parent directories are created).
        metric: ``"em"`` (default), ``"f1"`` or ``"reward"``.

    Returns:
        ``path`` as a :class:`~pathlib.Path`.
    """
    sources = [*sorted({r.data_source for rep in reports for r in rep.rows}), "all"]
    fig = _figure(max(6.0, 1.1 * len(sources) * max(1, len(reports)) ** 0.5 + 3.0), 4.8)
    ax = fig.add_subplot(1, 1, 1)
    width = 0.8 / max(1, len(reports))
    x = np.arange(len(sources))
    for k, rep in enumerate(reports):
        by_source = {r.data_source: float(getattr(r, metric)) for r in (*rep.rows, rep.overall)}
        heights = [by_source.get(s, 0.0) for s in sources]
        ax.bar(x - 0.4 + width * (k + 0.5), heights, width=width, label=rep.router, color=f"C{k % 10}")
    ax.set_xticks(x, sources)
    ax.set_ylabel(metric.upper() if metric != "reward" else "mean reward")
    ax.set_title(f"{metric.upper() if metric != 'reward' else 'Reward'} per dataset", fontsize=10)
    ax.grid(axis="y", alpha=0.3)
    ax.legend(fontsize=7, ncols=2, loc="upper left", bbox_to_anchor=(1.0, 1.0))
    return _save(fig, path)
