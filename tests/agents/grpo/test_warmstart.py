"""Warm-start stop criteria (pure) and the learner's criteria-based warm start on the tiny policy."""

from __future__ import annotations

import dataclasses

import pytest

from agents.grpo.config import TrainConfig
from agents.grpo.warmstart import criteria_met

PROBE = {
    "probe/format_error": 0.1,
    "probe/related": 0.9,
    "probe/choice_entropy": 0.7,
    "probe/route_rate": 0.5,
    "probe/em": 0.0,
}


@pytest.mark.parametrize(
    ("fields", "met", "reason"),
    [
        ({}, False, "no criteria set"),
        ({"warmstart_max_format_error": 0.1}, True, ""),
        ({"warmstart_max_format_error": 0.05}, False, "format_error"),
        ({"warmstart_min_related": 0.9, "warmstart_min_choice_entropy": 0.7}, True, ""),
        ({"warmstart_min_related": 0.95, "warmstart_min_choice_entropy": 0.8}, False, "related, choice_entropy"),
    ],
)
def test_criteria(fields, met, reason) -> None:
    assert criteria_met(PROBE, TrainConfig(**fields)) == (met, reason)


def test_related_and_entropy_need_some_route() -> None:
    cfg = TrainConfig(warmstart_min_related=0.0, warmstart_min_choice_entropy=0.0)
    assert criteria_met({**PROBE, "probe/route_rate": 0.0}, cfg) == (False, "related, choice_entropy")


def test_bad_criteria_are_rejected() -> None:
    from recal_gym.errors import InvalidConfig

    with pytest.raises(InvalidConfig, match=r"warmstart_min_related=1\.5"):
        dataclasses.replace(TrainConfig(), warmstart_min_related=1.5)
