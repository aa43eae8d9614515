"""Training-curve figures from a metrics JSONL file (matplotlib, imported lazily)."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from agents.grpo.metrics_log import read_jsonl

__all__ = ["DEFAULT_CURVES", "plot_curves"]

DEFAULT_CURVES: tuple[str, ...] = (
    "reward/total/mean",
    "reward/format/mean",
    "reward/answer/mean",
    "reward/frac_zero_std",
    "loss/policy",
    "policy/entropy",
)
"""Keys drawn by :func:`plot_curves` when present."""


def plot_curves(metrics_path: str | Path, out_path: str | Path, keys: Sequence[str] = DEFAULT_CURVES) -> Path:
    """Draw one panel per key against ``step`` and save a PNG.

    Args:
        metrics_path: A JSONL file written by :class:`agents.grpo.metrics_log.JSONLSink`.
        out_path: PNG to write.
        keys: Metric keys; absent keys are skipped.

    Returns:
        ``out_path`` as a Path.

    Raises:
        MissingDependency: matplotlib is not installed (an ``ImportError`` naming the extra).
    """
    from recal_gym.optional import require

    matplotlib = require("matplotlib", feature="the training curves (curves.png)", extra="train")
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    records = read_jsonl(metrics_path)
    present = [k for k in keys if any(r.get(k) is not None for r in records)]
    n = max(1, len(present))
    fig, axes = plt.subplots(n, 1, figsize=(6, 2.2 * n), squeeze=False)
    for ax, key in zip(axes[:, 0], present, strict=False):
        pts = [(r["step"], r[key]) for r in records if r.get(key) is not None]
        ax.plot([p[0] for p in pts], [p[1] for p in pts], marker=".")
        ax.set_title(key, fontsize=9)
        ax.grid(alpha=0.3)
    axes[-1, 0].set_xlabel("step")
    fig.tight_layout()
    out = Path(out_path)
    out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out, dpi=80)
    plt.close(fig)
    return out
