"""Tests for agents.grpo.estimator_config: defaults and validation of RecalConfig (docs/learner.md §4.5)."""

from __future__ import annotations

import dataclasses
import subprocess
import sys

import pytest

from agents.grpo.estimator_config import RecalConfig
from recal_gym.errors import InvalidConfig, UnknownComponent
from recal_gym.rewards import BUILTIN_COMPONENTS as COMPONENTS


@pytest.mark.parametrize(
    ("kwargs", "err", "match"),
    [
        ({"w_min": 0.0}, InvalidConfig, "0 < w_min <= w_max"),
        ({"w_min": 2.0, "w_max": 1.0}, InvalidConfig, "w_min=2.0, w_max=1.0"),
        ({"w_max": float("inf")}, InvalidConfig, "w_max=inf must be a finite"),
        ({"steepness": float("nan")}, InvalidConfig, "steepness=nan"),
        ({"std_ema": 1.0}, InvalidConfig, r"std_ema=1.0 must lie in \[0, 1\)"),
        ({"std_ema": -0.1}, InvalidConfig, "std_ema=-0.1"),
        ({"running_decay": 0.0}, InvalidConfig, r"running_decay=0.0 must lie in \(0, 1\]"),
        ({"running_decay": 1.5}, InvalidConfig, "running_decay=1.5"),
        ({"eps": 0.0}, InvalidConfig, "eps=0.0 must be > 0"),
        ({"min_dataset_count": 1}, InvalidConfig, "min_dataset_count=1 must be an int >= 2"),
        ({"min_dataset_count": 2.0}, InvalidConfig, "min_dataset_count=2.0"),
        ({"answer_threshold": 1.5}, InvalidConfig, r"answer_threshold=1.5 must lie in \[0, 1\]"),
        ({"final_norm": "dataset"}, InvalidConfig, "final_norm='dataset' is not one of"),
        ({"dataset_stats": "ema"}, InvalidConfig, "dataset_stats='ema'"),
        ({"variance_source": "format"}, InvalidConfig, "variance_source='format'"),
        ({"hierarchy": 1}, InvalidConfig, "hierarchy=1 must be a bool"),
        ({"component_weights": {"answr": 1.0}}, UnknownComponent, "'answr'.*Did you mean 'answer'"),
        ({"component_weights": {"cost": float("nan")}}, InvalidConfig, "component_weights\\['cost'\\]=nan"),
        ({"component_weights": dict.fromkeys(COMPONENTS, 0.0)}, InvalidConfig, "at least one must be non-zero"),
        ({"component_weights": [("answer", 1.0)]}, InvalidConfig, "must be a mapping"),
    ],
)
def test_config_validation(kwargs, err, match):
    with pytest.raises(err, match=match):
        RecalConfig(**kwargs)


def test_config_defaults():
    cfg = RecalConfig()
    assert (cfg.hierarchy, cfg.componentwise, cfg.variance_weighting, cfg.variance_source) == (
        True, True, True, "answer",
    )  # fmt: skip
    assert (cfg.w_min, cfg.w_max, cfg.steepness, cfg.std_ema) == (0.4, 3.0, 6.0, 0.9)
    assert (cfg.final_norm, cfg.dataset_stats, cfg.running_decay, cfg.min_dataset_count) == (
        "per_dataset", "batch", 1.0, 2,
    )  # fmt: skip
    assert cfg.eps == 1e-6 and cfg.answer_threshold is None and cfg.drop_zero_variance_groups is False
    with pytest.raises(dataclasses.FrozenInstanceError):
        cfg.eps = 1.0  # type: ignore[misc]


def test_valid_edge_values_are_accepted():
    cfg = RecalConfig(component_weights={"cost": 0.0, "answer": 2}, answer_threshold=0.5, steepness=-3.0)
    assert cfg.component_weights == {"cost": 0.0, "answer": 2}
    assert RecalConfig(w_min=1.0, w_max=1.0, std_ema=0.0, running_decay=1.0, answer_threshold=0.0).w_max == 1.0


def test_import_does_not_pull_torch():
    code = "import sys, agents.grpo.estimator_config; sys.exit('torch' in sys.modules)"
    assert subprocess.run([sys.executable, "-c", code], check=False).returncode == 0
