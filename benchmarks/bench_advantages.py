"""Benchmark: advantage computation per estimator on one global batch (N=512, G=8, K=6).

Run: ``pytest benchmarks/bench_advantages.py --benchmark-json=benchmarks/results/advantages.json``.
Each case has a burn-in (``warmup_rounds``) before the measured rounds (nanoGPT's bench habit).
"""

from __future__ import annotations

import pytest
import torch

from agents.grpo.advantages import RewardBatch, make_estimator
from agents.grpo.calibration import CalibrationState
from agents.grpo.estimator_config import RecalConfig

N, G, K = 512, 8, 6
N_SOURCES = 7
CASES = {
    "grpo": ("grpo", None),
    "dr_grpo": ("dr_grpo", None),
    "rloo": ("rloo", None),
    "gdpo": ("gdpo", None),
    "recal": ("recal", RecalConfig()),
    "recal_running": ("recal", RecalConfig(dataset_stats="running")),
}


def make_batch(seed: int = 0) -> RewardBatch:
    """A seeded batch shaped like the recal preset's rewards, with 1% NaN components."""
    gen = torch.Generator().manual_seed(seed)
    fmt = -(torch.rand(N, generator=gen) < 0.2).float()
    answer = (torch.rand(N, generator=gen) < 0.5).float()
    aux = torch.rand(N, K - 2, generator=gen)
    raw = torch.cat([fmt[:, None], answer[:, None], aux], dim=1)  # (N, K)
    raw[torch.rand(N, K, generator=gen) < 0.01] = float("nan")
    ok = (fmt == 0).float()[:, None]
    gate = torch.cat([torch.ones(N, 1), ok, ok * answer[:, None].expand(N, K - 2)], dim=1)
    gated = raw * gate
    weights = torch.tensor([1.0, 1.0] + [0.1] * (K - 2))
    group = torch.randperm(N // G, generator=gen).repeat_interleave(G) * 1000 + 7  # (N,) sparse ids
    source = (group // 1000) % N_SOURCES
    scalar = (torch.nan_to_num(gated) * weights).sum(1)
    names = tuple(f"ds{i}" for i in range(N_SOURCES))
    components = ("format", "answer", *(f"aux{i}" for i in range(K - 2)))
    return RewardBatch(raw, gated, scalar, group, source, names, weights, components)


@pytest.mark.parametrize("case", list(CASES))
def test_advantages(benchmark, case):
    name, config = CASES[case]
    estimator = make_estimator(name, config)
    batch = make_batch()
    state = CalibrationState()
    benchmark.extra_info.update({"N": N, "G": G, "K": K, "estimator": name, "threads": torch.get_num_threads()})
    out = benchmark.pedantic(estimator, args=(batch, state), rounds=200, iterations=1, warmup_rounds=20)
    assert torch.isfinite(out.advantages).all()
    assert out.advantages.shape == (N,)
