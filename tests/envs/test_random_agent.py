"""RandomAgent: a random router whose every turn parses as a route or an answer."""

from __future__ import annotations

from collections import Counter

import gymnasium as gym
import pytest

import recal_gym
from envs.random_agent import RandomAgent
from recal_gym.errors import InvalidConfig
from recal_gym.protocol import cut_action, parse_action


def _play(env: gym.Env, agent: RandomAgent, seed: int) -> tuple[list[str], dict]:
    prompt, info = env.reset(seed=seed)
    agent.reset(prompt, info)
    actions, obs, done = [], "", False
    while not done:
        actions.append(agent.act(obs, info))
        obs, _reward, terminated, truncated, info = env.step(actions[-1])
        done = terminated or truncated
    return actions, info


def test_every_turn_parses_and_every_episode_passes_the_format_rules() -> None:
    env = gym.make("RouterQA-v0")
    agent = RandomAgent.for_env(env, seed=0)
    kinds: Counter[str] = Counter()
    models: Counter[str] = Counter()
    for seed in range(60):
        actions, info = _play(env, agent, seed)
        kinds.update(parse_action(cut_action(a)[0]).kind for a in actions)
        models.update(k for k, v in info["calls_per_model"].items() if v > 0)
        assert info["format_ok"] and info["termination"] == "answer" and info["n_unknown_model"] == 0.0
    assert set(kinds) == {"route", "answer"} and kinds["answer"] == 60
    assert set(models) == {m.name for m in env.unwrapped.pool.spec.listed}  # uniform over the listed models


def test_the_final_turn_answers_even_when_it_could_route_again() -> None:
    env = gym.make("RouterQA-v0", max_routed_turns=1)
    agent = RandomAgent.for_env(env, seed=1, answer_prob=0.0, max_calls=5)
    for seed in range(5):
        actions, info = _play(env, agent, seed)
        assert len(actions) == 2 and info["termination"] == "answer"


def test_same_seed_same_turns_and_state_round_trip() -> None:
    env = gym.make("RouterQA-v0")
    a, b = RandomAgent.for_env(env, seed=5), RandomAgent.for_env(env, seed=5)
    assert [_play(env, a, s)[0] for s in range(5)] == [_play(env, b, s)[0] for s in range(5)]
    state = a.state_dict()
    first = _play(env, a, 9)[0]
    a.load_state_dict(state)
    assert _play(env, a, 9)[0] == first


def test_questions_with_colons_and_tags_still_give_one_colon_routes() -> None:
    agent = RandomAgent(["Qwen2.5-7B-Instruct"], seed=0)
    agent.reset("...Question: Ratio 3:4 in <b>bold</b>?\n\n", {})
    turn = agent.act("", {"routed_turns_left": 4.0})
    parsed = parse_action(cut_action(turn)[0])
    assert parsed.kind == "route" and turn.count(":") == 1 and "<b>" not in turn


def test_recal_gym_exports_it() -> None:
    assert recal_gym.RandomAgent is RandomAgent


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"models": []}, "at least one model"),
        ({"models": ["m"], "answer_prob": 1.5}, "answer_prob"),
        ({"models": ["m"], "max_calls": 0}, "max_calls"),
    ],
)
def test_bad_arguments(kwargs: dict, match: str) -> None:
    with pytest.raises(InvalidConfig, match=match):
        RandomAgent(**kwargs)


def test_for_env_needs_a_routerqa_env() -> None:
    with pytest.raises(InvalidConfig, match="needs a RouterQA env"):
        RandomAgent.for_env(gym.make("CartPole-v1"))
