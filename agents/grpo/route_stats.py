"""What the policy routes to: model-choice shares, their spread and whether routes ask the question.

Pure functions over a rollout batch's executed routes (``RolloutBatch.routes``), used for the
``route/*`` metrics of RL steps, warm-start probes and evaluations (``docs/learner.md`` §8):

- ``route/rate``: share of trajectories with at least one executed route;
- ``route/related``: share of executed routes whose query asks the episode's question or one of its
  gold sub-questions (content-word F1 ≥ ``threshold`` against some target, the simulated pool's own
  relatedness test, :func:`recal_gym.pools.simulated.match_target`);
- ``route/share/<model>``: share of executed routes sent to each listed model (all models present,
  0 when unused), overall and as ``route/<data_source>/share/<model>``;
- ``route/choice_entropy``: entropy of the model shares divided by ``log K`` (1 = uniform over the K
  listed models, 0 = one model; 0 without routes).
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import NamedTuple

from recal_gym.pools.simulated import match_target, question_targets
from recal_gym.types import QARow

__all__ = ["RouteStats", "choice_entropy", "route_metrics", "route_stats"]


class RouteStats(NamedTuple):
    """Counts behind the ``route/*`` metrics."""

    trajectories: int
    """Trajectories seen."""
    routed: int
    """Trajectories with at least one executed route."""
    routes: int
    """Executed routes."""
    related: int
    """Executed routes whose query is related to the question."""
    per_model: dict[str, int]
    """Executed routes per listed model (every model present)."""
    per_source: dict[str, dict[str, int]]
    """Executed routes per data source and model."""


def route_stats(
    routes: Sequence[Sequence[tuple[str, str]]],
    rows: Sequence[QARow],
    models: Sequence[str],
    *,
    threshold: float = 0.5,
) -> RouteStats:
    """Count routes, related routes and model choices.

    Args:
        routes: Per trajectory, its executed ``(model, query)`` routes.
        rows: The question row of each trajectory (same length as ``routes``).
        models: The pool's listed models (the share keys).
        threshold: Content-word F1 a query needs against some target of its question to be related.

    Returns:
        The counts.
    """
    per_model = dict.fromkeys(models, 0)
    per_source: dict[str, dict[str, int]] = {}
    routed = n_routes = related = 0
    for traj, row in zip(routes, rows, strict=True):
        routed += bool(traj)
        targets = question_targets(row)
        source = per_source.setdefault(row.data_source, dict.fromkeys(models, 0))
        for model, query in traj:
            n_routes += 1
            related += match_target(query, targets, threshold) is not None
            per_model[model] = per_model.get(model, 0) + 1
            source[model] = source.get(model, 0) + 1
    return RouteStats(len(routes), routed, n_routes, related, per_model, per_source)


def choice_entropy(counts: Mapping[str, int]) -> float:
    """Entropy of the choice shares over ``log K`` (K = number of keys); 0 without choices or with K = 1."""
    total = sum(counts.values())
    if total == 0 or len(counts) < 2:
        return 0.0
    h = -sum(c / total * math.log(c / total) for c in counts.values() if c > 0)
    return h / math.log(len(counts))


def route_metrics(stats: RouteStats) -> dict[str, float]:
    """The flat ``route/*`` metrics of :func:`route_stats` counts (see the module docstring)."""
    out = {
        "route/rate": stats.routed / max(1, stats.trajectories),
        "route/related": stats.related / max(1, stats.routes),
        "route/choice_entropy": choice_entropy(stats.per_model),
    }
    out.update({f"route/share/{m}": c / max(1, stats.routes) for m, c in stats.per_model.items()})
    for source, counts in sorted(stats.per_source.items()):
        total = max(1, sum(counts.values()))
        out.update({f"route/{source}/share/{m}": c / total for m, c in counts.items()})
    return out
