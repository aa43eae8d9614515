"""FreeText: an honest repr and sample(), and vector envs that fail clearly or work."""

from __future__ import annotations

import gymnasium as gym
import pytest

import recal_gym  # noqa: F401
from envs.spaces import PRINTABLE_ASCII, FreeText
from tests.envs.conftest import ROWS, make_pool


def test_repr_says_what_the_space_holds_and_what_sample_draws() -> None:
    assert repr(FreeText()) == "FreeText(contains=any str, sample=printable ASCII of 0-256 chars)"
    assert FreeText(sample_length=8).sample_length == 8
    space = gym.make("RouterQA-v0").observation_space
    assert "any str" in repr(space) and space.contains("x" * 100_000)


def test_sample_is_printable_junk_within_the_sample_length() -> None:
    space = FreeText(sample_length=40, seed=3)
    samples = [space.sample() for _ in range(200)]
    assert all(isinstance(s, str) and len(s) <= 40 and set(s) <= set(PRINTABLE_ASCII) for s in samples)
    assert max(len(s) for s in samples) > 30 and FreeText(seed=3).sample() == FreeText(seed=3).sample()


def test_a_sampled_action_is_a_malformed_non_terminal_turn() -> None:
    from envs.router_qa import RouterQAEnv

    env = RouterQAEnv(list(ROWS), pool=make_pool(lambda r: "x"))
    env.reset(seed=0)
    env.action_space.seed(0)
    for _ in range(4):
        obs, reward, terminated, truncated, info = env.step(env.action_space.sample())
        assert (obs, reward, terminated) == ("", 0.0, False) and info["action_kind"] == "none"


def test_default_async_vector_env_fails_at_construction_naming_shared_memory_false() -> None:
    with pytest.raises(ValueError, match="shared_memory=False") as caught:
        gym.vector.AsyncVectorEnv([lambda: gym.make("RouterQA-v0")] * 2)
    assert "shared_memory=False" in str(caught.value.__cause__)  # our reason: text of any length
    with pytest.raises(ValueError, match="shared_memory=False"):
        gym.make_vec("RouterQA-v0", num_envs=2, vectorization_mode="async")


@pytest.mark.slow
def test_async_vector_env_with_shared_memory_false_plays_episodes() -> None:
    envs = gym.make_vec(
        "RouterQA-v0", num_envs=2, vectorization_mode="async", vector_kwargs={"shared_memory": False}
    )
    obs, infos = envs.reset(seed=0)
    assert all(isinstance(o, str) and "Question: " in o for o in obs)
    obs, rewards, terminated, truncated, infos = envs.step(["<think>a</think>\n<answer> x </answer>"] * 2)
    assert terminated.all() and list(infos["termination"]) == ["answer", "answer"]
    envs.close()
