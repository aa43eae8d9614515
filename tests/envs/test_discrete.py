from __future__ import annotations

import subprocess
import sys
import warnings
from collections.abc import Iterator

import gymnasium as gym
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from envs.discrete import FLAT_INFO_KEYS, HashingFeaturizer, RouterQADiscreteEnv, best_answer, reply_answer
from envs.router_qa import RouterQAEnv
from recal_gym.errors import InvalidAction, InvalidConfig, ResetNeeded
from recal_gym.rewards.spec import fold_reward

ENV_ID = "RouterQADiscrete-v0"


@pytest.fixture
def registered() -> Iterator[str]:
    added = ENV_ID not in gym.registry
    if added:
        gym.register(id=ENV_ID, entry_point="envs.discrete:RouterQADiscreteEnv")
    yield ENV_ID
    if added:
        del gym.registry[ENV_ID]


@pytest.fixture
def env() -> Iterator[RouterQADiscreteEnv]:
    e = RouterQADiscreteEnv()
    yield e
    e.close()


def _episode(env: RouterQADiscreteEnv, seed: int, actions: list[int]) -> list[tuple]:
    obs, info = env.reset(seed=seed)
    out = [(obs, info)]
    for a in actions:
        obs, r, term, trunc, info = env.step(a)
        out.append((obs, r, term, trunc, info))
        if term or trunc:
            break
    return out


# ----------------------------------------------------------------------------- contract
def test_sb3_and_gymnasium_check_env_pass_without_warnings(registered: str) -> None:
    from gymnasium.utils.env_checker import check_env as gym_check
    from stable_baselines3.common.env_checker import check_env as sb3_check

    env = gym.make(registered)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        gym_check(env.unwrapped)
        sb3_check(env.unwrapped)
    assert isinstance(env.unwrapped, RouterQADiscreteEnv)
    env.close()


def test_spaces_types_and_reward_recombines(env: RouterQADiscreteEnv) -> None:
    assert env.action_space == gym.spaces.Discrete(len(env.models) + 1)
    assert env.observation_space.shape == (64 + len(env.models) + 3,)
    for seed in range(20):
        obs, info = env.reset(seed=seed)
        assert obs in env.observation_space and obs.dtype == np.float32
        done = False
        while not done:
            obs, r, term, trunc, info = env.step(int(env.np_random.integers(env.action_space.n)))
            assert obs in env.observation_space
            assert type(r) is float and type(term) is bool and type(trunc) is bool
            assert not (term and trunc)
            assert r == fold_reward(info["reward_components"], info["reward_weights"])
            for k in FLAT_INFO_KEYS:
                assert type(info[k]) is float
            done = term or trunc
        assert info["scored"]
        assert info["reward_answer"] == info["reward_components"]["answer"]


def test_route_then_answer_matches_the_text_env(env: RouterQADiscreteEnv) -> None:
    text = RouterQAEnv()
    for seed in range(10):
        _, info = env.reset(seed=seed)
        qid = info["question_id"]
        _, r1, *_ = env.step(2)
        assert r1 == 0.0
        _, r, term, _, info = env.step(env.answer_action)
        text.reset(options={"question_id": qid})
        question = text.questions.by_id(qid).question
        obs, *_ = text.step(
            f"<think>I will ask {env.models[2]}.</think>\n<search> {env.models[2]}:{question} </search>"
        )
        answer = reply_answer(obs) or "unknown"
        _, r_text, _, _, info_text = text.step(f"<think>I have what I need.</think>\n<answer> {answer} </answer>")
        assert term and info["answer"] == info_text["answer"]
        assert info["em"] == info_text["em"] and r == r_text


def test_observation_tracks_turns_cost_and_asked_models(env: RouterQADiscreteEnv) -> None:
    k = len(env.models)
    obs, _ = env.reset(seed=3)
    state = obs[-(k + 3) :]
    assert state.tolist() == [0.0] * (k + 3)
    obs, _, _, _, info = env.step(1)
    state = obs[-(k + 3) :]
    assert state[0] == pytest.approx(1 / (env.text_env.max_routed_turns + 1))
    assert state[1] == pytest.approx(info["raw_cost"] / (info["raw_cost"] + env.cost_scale))
    assert state[2 : 2 + k].tolist() == [0.0, 1.0, 0.0, 0.0, 0.0, 0.0]
    assert info["model"] == env.models[1]
    features = obs[: -(k + 3)]
    np.testing.assert_array_equal(
        features, env.featurizer([env.text_env.questions.by_id(info["question_id"]).question])[0]
    )


def test_same_seed_same_episode(env: RouterQADiscreteEnv) -> None:
    actions = [4, 1, 6]
    first = _episode(env, 11, actions)
    other = RouterQADiscreteEnv()
    second = _episode(other, 11, actions)
    assert len(first) == len(second)
    for a, b in zip(first, second, strict=True):
        np.testing.assert_array_equal(a[0], b[0])
        assert a[1:-1] == b[1:-1]
        info_a = {k: v for k, v in a[-1].items() if not k.startswith(("reward_", "episode_record"))}
        info_b = {k: v for k, v in b[-1].items() if not k.startswith(("reward_", "episode_record"))}
        assert info_a == info_b


def test_call_seed_passes_through_to_the_noisy_pool() -> None:
    from recal_gym.pools.options import PoolOptions, SimulatedConfig

    env = RouterQADiscreteEnv(pool_options=PoolOptions(seed=3, simulated=SimulatedConfig(reply_noise=1.0)))
    qids = env.text_env.questions.ids()[:40]
    big = env.models.index("LLaMA-3.1-70B-Instruct")

    def em(qid: str, call_seed: int) -> float:
        env.reset(options={"question_id": qid, "call_seed": call_seed})
        env.step(big)
        return env.step(env.answer_action)[4]["em"]

    first = [em(q, 1) for q in qids]
    assert [em(q, 1) for q in qids] == first  # same call_seed, same outcome
    assert [em(q, 2) for q in qids] != first  # fresh noise for another call_seed


def test_action_masks(env: RouterQADiscreteEnv) -> None:
    k = len(env.models)
    env.reset(seed=0)
    assert env.action_masks().tolist() == [True] * (k + 1)
    env.step(0)
    assert env.action_masks().tolist() == [False] + [True] * k
    for a in (1, 2, 3):
        env.step(a)
    mask = env.action_masks()  # 4 routed turns used: only the answer remains
    assert mask.tolist() == [False] * k + [True]
    unmasked = RouterQADiscreteEnv(mask_repeats=False)
    unmasked.reset(seed=0)
    unmasked.step(0)
    assert unmasked.action_masks().tolist() == [True] * (k + 1)


def test_route_on_final_turn_truncates_with_format_failure(env: RouterQADiscreteEnv) -> None:
    env.reset(seed=0)
    for a in (0, 1, 2, 3):
        env.step(a)
    _, r, term, trunc, info = env.step(4)
    assert trunc and not term and info["scored"]
    assert info["format_ok_f"] == 0.0 and r == -1.0
    with pytest.raises(ResetNeeded, match="reset"):
        env.step(0)


def test_answer_without_replies_says_unknown(env: RouterQADiscreteEnv) -> None:
    env.reset(seed=0)
    _, r, term, _, info = env.step(env.answer_action)
    assert term and info["answer"] == "unknown" and info["format_ok"] and r == 0.0


def test_monitor_info_keywords(env: RouterQADiscreteEnv) -> None:
    from stable_baselines3.common.monitor import Monitor

    mon = Monitor(env, info_keywords=FLAT_INFO_KEYS)
    mon.reset(seed=0)
    mon.step(4)
    *_, r, _, _, info = mon.step(env.answer_action)
    episode = info["episode"]
    assert episode["r"] == pytest.approx(r) and episode["l"] == 2
    for k in FLAT_INFO_KEYS:
        assert episode[k] == info[k]


def test_custom_featurizer_protocol() -> None:
    class Const:
        dim = 3

        def __call__(self, texts: list[str]) -> np.ndarray:
            return np.full((len(texts), 3), 0.5, dtype=np.float32)

    env = RouterQADiscreteEnv(featurizer=Const())
    obs, _ = env.reset(seed=0)
    assert obs.shape == (3 + len(env.models) + 3,) and obs[:3].tolist() == [0.5] * 3


def test_render_ansi() -> None:
    env = RouterQADiscreteEnv(render_mode="ansi")
    env.reset(seed=0)
    env.step(0)
    text = env.render()
    assert isinstance(text, str) and "<search>" in text


def test_import_does_not_load_torch_or_agents() -> None:
    code = (
        "import sys; from envs.discrete import RouterQADiscreteEnv; import envs.calibration_wrapper;"
        "e = RouterQADiscreteEnv(); e.reset(seed=0); e.step(0);"
        "bad = [m for m in ('torch', 'agents', 'transformers') if m in sys.modules]; print(bad); sys.exit(bool(bad))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=False)
    assert out.returncode == 0, out.stdout + out.stderr


# ----------------------------------------------------------------------------- validation
@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"cost_scale": 0.0}, "cost_scale"),
        ({"cost_scale": True}, "cost_scale"),
        ({"mask_repeats": 1}, "mask_repeats"),
        ({"featurizer": object()}, "QueryFeaturizer"),
        ({"render_mode": "human"}, "render_mode"),
        ({"text_env": "x", "max_routed_turns": 2}, "text_env"),
    ],
)
def test_bad_arguments(kwargs: dict, match: str) -> None:
    with pytest.raises(InvalidConfig, match=match):
        RouterQADiscreteEnv(**kwargs)


@pytest.mark.parametrize("action", [-1, 7, 1.0, "0", True])
def test_bad_actions(env: RouterQADiscreteEnv, action: object) -> None:
    env.reset(seed=0)
    with pytest.raises(InvalidAction, match="action"):
        env.step(action)  # type: ignore[arg-type]


def test_step_before_reset(env: RouterQADiscreteEnv) -> None:
    with pytest.raises(ResetNeeded, match="reset"):
        env.step(0)


# ----------------------------------------------------------------------------- featuriser and helpers
@given(st.lists(st.text(max_size=60), min_size=1, max_size=4), st.integers(0, 5))
@settings(max_examples=40, deadline=None)
def test_hashing_featurizer_range_norm_and_determinism(texts: list[str], seed: int) -> None:
    f = HashingFeaturizer(dim=32, seed=seed)
    x = f(texts)
    assert x.shape == (len(texts), 32) and x.dtype == np.float32
    assert np.all(np.abs(x) <= 1.0)
    norms = np.linalg.norm(x, axis=1)
    assert np.all((np.abs(norms - 1.0) < 1e-5) | (norms == 0.0))
    np.testing.assert_array_equal(x, HashingFeaturizer(dim=32, seed=seed)(texts))


def test_hashing_featurizer_oracle_cases() -> None:
    f = HashingFeaturizer(dim=16, ngrams=1)
    assert f([""]).tolist() == [[0.0] * 16]
    one = f(["Paris"])[0]
    assert sorted(np.abs(one).tolist())[-1] == 1.0 and np.count_nonzero(one) == 1
    np.testing.assert_array_equal(f(["PARIS!"]), f(["paris"]))
    assert not np.array_equal(
        HashingFeaturizer(dim=64, seed=1)(["who wrote emma"]), HashingFeaturizer(dim=64)(["who wrote emma"])
    )


@pytest.mark.parametrize(("field", "value"), [("dim", 0), ("ngrams", 0), ("seed", -1), ("dim", 2.0)])
def test_hashing_featurizer_validation(field: str, value: object) -> None:
    with pytest.raises(InvalidConfig, match=field):
        HashingFeaturizer(**{field: value})  # type: ignore[arg-type]


def test_best_answer_majority_then_earliest() -> None:
    assert best_answer([]) is None
    assert best_answer(["Paris", "Lyon", "paris."]) == "Paris"
    assert best_answer(["Lyon", "Paris"]) == "Lyon"


def test_reply_answer() -> None:
    assert reply_answer("") is None
    assert reply_answer("\n\n<information>None</information>\n\n") is None
    assert reply_answer("<information>I cannot help with this.</information>") is None
    assert reply_answer("<information>Marie Curie won it. She was Polish.</information>") == "Marie Curie won it"
