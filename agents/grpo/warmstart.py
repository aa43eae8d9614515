"""Stop criteria of the supervised warm start (``docs/learner.md`` §10.3).

The warm start clones scripted routers until the policy writes well-formed transcripts, routes
questions it was asked (not unrelated text) and still spreads its model choice, instead of for a fixed
number of steps. The learner probes the policy (one sampled rollout on each of a fixed set of training
questions); :func:`probe_metrics` names the probe's numbers and :func:`criteria_met` decides.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

__all__ = ["PROBE_KEYS", "criteria_met", "probe_metrics"]

PROBE_KEYS = ("probe/format_error", "probe/related", "probe/choice_entropy", "probe/route_rate", "probe/em")
"""Metrics of a warm-start probe."""


def probe_metrics(episode: Mapping[str, float]) -> dict[str, float]:
    """The ``probe/*`` metrics from a probe batch's ``episode/*`` and ``route/*`` metrics."""
    return {
        "probe/format_error": float(episode["episode/format_error"]),
        "probe/related": float(episode["route/related"]),
        "probe/choice_entropy": float(episode["route/choice_entropy"]),
        "probe/route_rate": float(episode["route/rate"]),
        "probe/em": float(episode["episode/em"]),
    }


def criteria_met(probe: Mapping[str, float], config: Any) -> tuple[bool, str]:
    """Whether every stop criterion set in ``config`` holds for ``probe``, and which fail.

    Args:
        probe: :func:`probe_metrics` output.
        config: A ``TrainConfig`` (its ``warmstart_max_format_error``, ``warmstart_min_related`` and
            ``warmstart_min_choice_entropy``; ``None`` skips a criterion). The related and
            entropy criteria also need some probe rollout to route.

    Returns:
        ``(met, reason)``: ``reason`` lists the failing criteria (``""`` when met). With no criterion
        set, never met (the warm start then runs its whole budget).
    """
    checks = []
    if config.warmstart_max_format_error is not None:
        checks.append(("format_error", probe["probe/format_error"] <= config.warmstart_max_format_error))
    routed = probe["probe/route_rate"] > 0.0
    if config.warmstart_min_related is not None:
        checks.append(("related", routed and probe["probe/related"] >= config.warmstart_min_related))
    if config.warmstart_min_choice_entropy is not None:
        ok = routed and probe["probe/choice_entropy"] >= config.warmstart_min_choice_entropy
        checks.append(("choice_entropy", ok))
    if not checks:
        return False, "no criteria set"
    failing = [name for name, ok in checks if not ok]
    return not failing, ", ".join(failing)
