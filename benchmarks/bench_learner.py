"""One learner step (rollout + update) on the tiny preset.

Run: ``pytest benchmarks/bench_learner.py --benchmark-json=benchmarks/results/learner.json``.
The first call (burn-in) is excluded by pytest-benchmark's warm-up round.
"""

from __future__ import annotations

import pytest
import torch

from agents.grpo.build import build_learner
from agents.grpo.config import preset

torch.set_num_threads(2)


@pytest.fixture(scope="module")
def learner(tmp_path_factory: pytest.TempPathFactory):
    return build_learner(preset("tiny"), tmp_path_factory.mktemp("bench"))


def test_learner_step_tiny(benchmark, learner) -> None:
    metrics = benchmark.pedantic(learner.step, rounds=3, iterations=1, warmup_rounds=1)
    assert metrics["episode/policy_tokens"] > 0


def test_learner_update_only_tiny(benchmark, learner) -> None:
    batch = learner.rollout()
    metrics = benchmark.pedantic(learner.update, args=(batch,), rounds=3, iterations=1, warmup_rounds=1)
    assert metrics["loss/total"] == metrics["loss/total"]
