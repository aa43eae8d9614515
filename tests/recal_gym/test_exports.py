"""``recal_gym`` is the one import for the common paths, and its public names load lazily."""

from __future__ import annotations

import subprocess
import sys

import pytest

import recal_gym


def test_import_recal_gym_loads_no_env_reward_or_pool_code() -> None:
    code = (
        "import sys, recal_gym; "
        "bad = sorted(m for m in sys.modules if m.split('.')[0] in ('envs', 'agents', 'torch') "
        "or m in ('recal_gym.rewards.scoring', 'recal_gym.rewards.state', 'recal_gym.pools.options')); "
        "print(bad); sys.exit(bool(bad))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=False)
    assert out.returncode == 0, out.stdout + out.stderr


def test_every_public_name_resolves_to_its_defining_object() -> None:
    from envs.discrete import RouterQADiscreteEnv
    from envs.random_agent import RandomAgent
    from envs.router_qa import RouterQAEnv
    from envs.vector import RouterQAVectorEnv
    from recal_gym.pools.options import PoolOptions
    from recal_gym.rewards.presets import make_spec
    from recal_gym.rewards.scoring import rescore, score_episode
    from recal_gym.rewards.spec import RewardSpec
    from recal_gym.rewards.state import RewardState

    expected = {
        "RouterQAEnv": RouterQAEnv,
        "RouterQADiscreteEnv": RouterQADiscreteEnv,
        "RouterQAVectorEnv": RouterQAVectorEnv,
        "RandomAgent": RandomAgent,
        "PoolOptions": PoolOptions,
        "RewardSpec": RewardSpec,
        "make_spec": make_spec,
        "RewardState": RewardState,
        "score_episode": score_episode,
        "rescore": rescore,
    }
    for name, obj in expected.items():
        assert getattr(recal_gym, name) is obj
    assert set(expected) | {"__version__", "register_envs"} == set(recal_gym.__all__)
    assert set(recal_gym.__all__) <= set(dir(recal_gym))


def test_the_common_path_needs_only_recal_gym() -> None:
    spec = recal_gym.make_spec("recal", tau=1.0)
    env = recal_gym.RouterQAEnv(reward=spec, pool_options=recal_gym.PoolOptions(seed=1))
    prompt, info = env.reset(seed=0)
    agent = recal_gym.RandomAgent.for_env(env, seed=0)
    agent.reset(prompt, info)
    obs, done = "", False
    while not done:
        obs, reward, terminated, truncated, info = env.step(agent.act(obs, info))
        done = terminated or truncated
    record = env.unwrapped.last_episode_record()
    score = recal_gym.score_episode(record, recal_gym.make_spec("recal", tau=1.0))  # None = a fresh state
    assert score.reward == reward
    env.close()


def test_unknown_attribute_is_an_attribute_error() -> None:
    with pytest.raises(AttributeError, match="no attribute 'RouterQA'"):
        recal_gym.RouterQA  # noqa: B018
