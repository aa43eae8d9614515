"""Validation of DiscreteConfig."""

from __future__ import annotations

import pytest

from agents.discrete.config import DiscreteConfig
from agents.grpo.estimator_config import RecalConfig
from recal_gym.errors import InvalidConfig


def test_defaults_and_batch_size() -> None:
    cfg = DiscreteConfig(questions_per_step=3, group_size=4, minibatches=4)
    assert cfg.batch_size == 12 and cfg.estimator == "grpo" and isinstance(cfg.recal, RecalConfig)


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"steps": 0}, "steps"),
        ({"group_size": 1}, "group_size"),
        ({"questions_per_step": 2.5}, "questions_per_step"),
        ({"hidden_size": True}, "hidden_size"),
        ({"seed": -1}, "seed"),
        ({"lr": 0.0}, "lr"),
        ({"lr": float("nan")}, "lr"),
        ({"clip_low": 1.0}, "clip_low"),
        ({"clip_high": -0.1}, "clip_high"),
        ({"entropy_coef": -1.0}, "entropy_coef"),
        ({"max_grad_norm": -1.0}, "max_grad_norm"),
        ({"loss_agg": "mean"}, "loss_agg"),
        ({"recal": {"hierarchy": False}}, "recal"),
        ({"questions_per_step": 3, "group_size": 3, "minibatches": 2}, "minibatches"),
    ],
)
def test_bad_values_raise_naming_the_field(kwargs: dict, match: str) -> None:
    with pytest.raises(InvalidConfig, match=match):
        DiscreteConfig(**kwargs)
