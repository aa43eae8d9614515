"""pytest-benchmark: RouterQA-v0 step and episode throughput on the embedded default.

Run: ``pytest benchmarks/bench_env.py --benchmark-json=benchmarks/results/env.json``
"""

from __future__ import annotations

import gymnasium as gym
import pytest

import recal_gym  # noqa: F401

ROUTE = "<think>I need help.</think>\n<search> LLaMA-3.1-70B-Instruct: {q} </search>"
ANSWER = "<think>Known.</think>\n<answer> Paris </answer>"


@pytest.fixture(scope="module")
def env():
    e = gym.make("RouterQA-v0").unwrapped
    e.reset(seed=0)
    for _ in range(50):  # burn-in: fill the cost window, warm caches
        e.reset()
        e.step(ROUTE.format(q=e._ep.row.question))
        e.step(ANSWER)
    return e


def test_bench_route_step(benchmark, env) -> None:
    def setup():
        env.reset()
        return (ROUTE.format(q=env._ep.row.question),), {}

    out = benchmark.pedantic(env.step, setup=setup, rounds=300)
    assert out[4]["route_outcome"] == "executed"


def test_bench_answer_step_scoring(benchmark, env) -> None:
    def setup():
        env.reset()
        env.step(ROUTE.format(q=env._ep.row.question))
        return (ANSWER,), {}

    out = benchmark.pedantic(env.step, setup=setup, rounds=300)
    assert out[2] and out[4]["scored"]


def test_bench_full_episode(benchmark, env) -> None:
    def episode():
        env.reset()
        env.step(ROUTE.format(q=env._ep.row.question))
        return env.step(ANSWER)

    out = benchmark(episode)
    assert out[2]
