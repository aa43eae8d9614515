"""Tests of RouterQAVectorEnv: one batched pool call per turn, equivalence with single envs."""

from __future__ import annotations

import gymnasium as gym
import numpy as np
import pytest

import recal_gym  # noqa: F401
from envs.router_qa import RouterQAEnv
from envs.vector import RouterQAVectorEnv
from recal_gym.errors import InvalidConfig, ResetNeeded
from recal_gym.pools import Pool, default_pool_spec
from tests.envs.conftest import ROWS, ScriptedBackend

ROUTE = "<think>a</think><search> Qwen2.5-7B-Instruct: {q} </search>"
ANSWER = "<think>b</think><answer> Paris </answer>"


def test_make_vec_native_entry_point() -> None:
    envs = gym.make_vec("RouterQA-v0", num_envs=3, vectorization_mode="vector_entry_point")
    assert isinstance(envs, RouterQAVectorEnv)
    obs, infos = envs.reset(seed=0, options={"question_ids": ["fanoutqa_single/ff0d7990633e89ee"] * 3})
    assert len(set(obs)) == 1 and list(infos["question_id"]) == ["fanoutqa_single/ff0d7990633e89ee"] * 3
    envs.close()


def test_calls_of_a_turn_go_out_as_one_batch() -> None:
    backend = ScriptedBackend(lambda r: "The answer is Paris.")
    pool = Pool(default_pool_spec(), {"simulated": backend})
    envs = RouterQAVectorEnv(4, dataset=list(ROWS), pool=pool)
    calls_before = []
    original = backend.call_batch

    def spy(requests):
        calls_before.append(len(requests))
        return original(requests)

    backend.call_batch = spy  # type: ignore[method-assign]
    envs.reset(seed=0, options={"question_ids": ["toy/0", "toy/0", "toy/1", "toy/1"]})
    actions = [ROUTE.format(q="capital of France?"), ANSWER, ROUTE.format(q="Emma?"), "junk"]
    obs, rew, term, trunc, infos = envs.step(actions)
    assert calls_before == [2]
    assert obs[0].startswith("\n\n<information>") and obs[1] == "" and obs[3] == ""
    assert term.tolist() == [False, True, False, False]
    with pytest.raises(ResetNeeded, match="None"):
        envs.step([ANSWER] * 4)
    obs, _rew, term, _trunc, infos = envs.step([ANSWER, None, ANSWER, ANSWER])
    assert term.tolist() == [True, False, True, True] and infos["_em"].tolist() == [True, False, True, True]


def test_vector_equals_single_envs_under_the_same_seed() -> None:
    envs = RouterQAVectorEnv(3)
    singles = [RouterQAEnv() for _ in range(3)]
    obs_v, _ = envs.reset(seed=11)
    obs_s = [e.reset(seed=11 + i)[0] for i, e in enumerate(singles)]
    assert list(obs_v) == obs_s
    for env in singles:
        env.reward_state = envs.reward_state.copy()  # same starting state; shared in the vector env
    qs = [e._ep.row.question for e in envs.envs]
    out_v = envs.step([ROUTE.format(q=q) for q in qs])
    out_s = [e.step(ROUTE.format(q=q)) for e, q in zip(singles, qs, strict=True)]
    assert list(out_v[0]) == [o[0] for o in out_s]


def test_bad_arguments() -> None:
    with pytest.raises(InvalidConfig, match="num_envs"):
        RouterQAVectorEnv(0)
    envs = RouterQAVectorEnv(2, dataset=list(ROWS), pool=Pool(default_pool_spec(), {"simulated": ScriptedBackend(str)}))
    with pytest.raises(ValueError, match="reset_mask"):
        envs.reset(options={"reset_mask": np.ones(3, dtype=bool)})
    with pytest.raises(ValueError, match="question_ids"):
        envs.reset(options={"question_ids": ["toy/0"]})
    with pytest.raises(ValueError, match="actions"):
        envs.reset(seed=0)
        envs.step([ANSWER])


def test_call_seeds_option_sets_each_sub_envs_call_seed() -> None:
    """``call_seeds`` (one per sub-env) reaches every CallRequest of that sub-env's episode."""
    backend = ScriptedBackend(lambda r: "The answer is Paris.")
    pool = Pool(default_pool_spec(), {"simulated": backend})
    envs = RouterQAVectorEnv(3, dataset=list(ROWS), pool=pool)
    envs.reset(options={"question_ids": ["toy/0"] * 3, "call_seeds": [5, 6, 7]})
    envs.step([ROUTE.format(q="capital of France?")] * 3)
    assert sorted(r.call_seed for r in backend.requests) == [5, 6, 7]
    envs.reset(options={"question_ids": ["toy/0"] * 3})  # without the option: the env default 0
    envs.step([ROUTE.format(q="capital of France?")] * 3)
    assert [r.call_seed for r in backend.requests[3:]] == [0, 0, 0]
    with pytest.raises(ValueError, match="call_seeds must hold 3"):
        envs.reset(options={"call_seeds": [1, 2]})
