"""The verl reward function (agents.adapters.verl_reward) on verl-shaped inputs, up to the recal estimator.

verl's reward manager calls ``compute_score(data_source=..., solution_str=..., ground_truth=..., extra_info=...)``
per response and keeps a dict result's keys per sample in ``reward_extra_info``, which becomes
``DataProto.non_tensor_batch``; the driver then computes advantages. Both sides are played here with plain
Python/NumPy/torch objects.
"""

from __future__ import annotations

import asyncio
import importlib.util
from collections import defaultdict
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import numpy as np
import pytest
import torch

from agents.adapters.trl import build_reward_batch
from agents.adapters.verl import VerlRecalEstimator, install_compute_advantage_hook
from agents.adapters.verl_episode import EPISODE_KEY, RouterQAEnvConfig, RouterQAEpisodes, routerqa_verl_rows
from agents.adapters.verl_reward import RouterQAReward, reward_dict
from agents.grpo.advantages import make_estimator
from agents.grpo.calibration import CalibrationState
from agents.models.tiny_model import build_tiny_tokenizer
from recal_gym.errors import InvalidData
from recal_gym.rewards import make_spec
from tests.agents.adapters.scripted import ScriptedEngine
from tests.agents.adapters.test_verl_episode import CONFIG, FakeServer, _generate, _kinds

EXAMPLES = Path(__file__).resolve().parents[3] / "examples" / "verl"
SPEC = make_spec("recal")


@pytest.fixture(scope="module")
def episodes() -> RouterQAEpisodes:
    return RouterQAEpisodes(CONFIG, build_tiny_tokenizer())


@pytest.fixture(scope="module")
def played(episodes: RouterQAEpisodes) -> list[tuple[dict[str, Any], Any]]:
    """Two questions x G=4 episodes of the agent loop: (verl row, episode output)."""
    questions = sorted(episodes.envs[0].questions.ids())[:3]
    kinds = _kinds(episodes, questions)  # route / answer / junk
    rows = routerqa_verl_rows(episodes.envs[0], [questions[0], questions[2]])
    out = []
    for row in rows:
        for g in range(4):
            engine = ScriptedEngine(episodes.codec.tokenizer, kinds if g % 2 == 0 else {})  # vary within the group
            episode = asyncio.run(
                episodes.play(
                    row["extra_info"]["question_id"], _generate(FakeServer(engine), f"{g}"),
                    sampling_params={}, response_length=4096,
                )
            )  # fmt: skip
            out.append((row, episode))
    return out


def _verl_extra_info(row: dict[str, Any], episode: Any) -> dict[str, Any]:
    """The row's extra_info plus the agent loop's extra fields, as verl merges them (tool_extra_fields)."""
    return {**row["extra_info"], EPISODE_KEY: episode.episode, "num_turns": episode.num_turns}


def test_scores_from_the_agent_loop_summary(played: list[tuple[dict[str, Any], Any]], episodes: Any) -> None:
    score = RouterQAReward(CONFIG)
    for row, episode in played:
        result = score(
            data_source=row["data_source"],
            solution_str=episodes.codec.decode(episode.response_ids),
            ground_truth=row["reward_model"]["ground_truth"],
            extra_info=_verl_extra_info(row, episode),
        )
        assert result["score"] == episode.episode["score"]
        assert {k: result[f"raw_{k}"] for k in SPEC.names} == episode.episode["raw"]
        assert {k: result[f"gated_{k}"] for k in SPEC.names} == episode.episode["gated"]
        assert all(isinstance(v, float) for v in result.values())
        assert result["episode_cost"] == episode.episode["raw_cost"]
    assert score.env is None  # the summary is read, no env was needed


def test_a_single_turn_response_is_played_in_the_env(episodes: RouterQAEpisodes) -> None:
    env = episodes.envs[0]
    qid = sorted(env.questions.ids())[5]
    golden = env.questions.by_id(qid).golden_answers[0]
    score = RouterQAReward(CONFIG, tokenizer=episodes.codec.tokenizer)
    extra = {"question_id": qid, "index": 0}
    for text in (f"<think>I know</think><answer> {golden} </answer>", "no tags at all", ""):
        result = score(env.questions.by_id(qid).data_source, text, golden, extra)
        env.reset(options={"question_id": qid})
        turn, reward, info = text, 0.0, {}
        while True:
            _, reward, terminated, truncated, info = env.step(turn)
            if terminated or truncated:
                break
            turn = ""
        assert result["score"] == reward and result["em"] == float(info["em"])
        assert {k: result[f"raw_{k}"] for k in SPEC.names} == info["reward_components_raw"]
    assert score(env.questions.by_id(qid).data_source, f"<answer> {golden} </answer>", None, extra)["em"] == 1.0


def test_bad_inputs_name_what_is_missing(played: list[tuple[dict[str, Any], Any]]) -> None:
    score = RouterQAReward(CONFIG)
    row, episode = played[0]
    with pytest.raises(InvalidData, match=r"neither 'routerqa'.*nor 'question_id'.*keys present: \['index'\]"):
        score(row["data_source"], "x", None, {"index": 3})
    with pytest.raises(InvalidData, match="a 5-turn response without extra_info\\['routerqa'\\]"):
        score(row["data_source"], "x", None, {**row["extra_info"], "num_turns": 5})
    with pytest.raises(InvalidData, match="data_source 'gsm8k' is not the dataset"):
        score("gsm8k", "x", None, _verl_extra_info(row, episode))
    with pytest.raises(InvalidData, match="not a RouterQA episode summary"):
        reward_dict({"score": 1.0})


def test_the_example_reward_file_loads_as_verl_loads_it() -> None:
    spec = importlib.util.spec_from_file_location("custom_module", EXAMPLES / "routerqa_reward.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    assert isinstance(module.compute_score, RouterQAReward)
    assert module.compute_score.config == RouterQAEnvConfig(max_routed_turns=4)


def _stand_in_compute_advantage(data: Any, adv_estimator: str, registry: dict[str, Any], config: Any = None) -> Any:
    """The generic branch of verl 0.8's compute_advantage, without the one-line hook."""
    adv_estimator_fn = registry[adv_estimator]
    adv_kwargs = {
        "token_level_rewards": data.batch["token_level_rewards"],
        "response_mask": data.batch["response_mask"],
        "config": config,
    }
    if "uid" in data.non_tensor_batch:
        adv_kwargs["index"] = data.non_tensor_batch["uid"]
    advantages, returns = adv_estimator_fn(**adv_kwargs)
    data.batch["advantages"], data.batch["returns"] = advantages, returns
    return data


def test_rewards_to_recal_advantages_through_the_hook(
    played: list[tuple[dict[str, Any], Any]], episodes: RouterQAEpisodes
) -> None:
    score = RouterQAReward(CONFIG)
    length = max(len(e.response_ids) for _, e in played)
    token_rewards = torch.zeros(len(played), length)
    response_mask = torch.zeros(len(played), length)
    extra: dict[str, list[Any]] = defaultdict(list)  # verl's reward_extra_info
    for i, (row, episode) in enumerate(played):
        n = len(episode.response_ids)
        text = episodes.codec.decode(episode.response_ids)
        result = score(row["data_source"], text, None, _verl_extra_info(row, episode))
        token_rewards[i, n - 1] = result["score"]  # verl puts the score on the last valid token
        response_mask[i, :n] = 1.0
        for key, value in result.items():
            extra[key].append(value)
    non_tensor = {k: np.array(v) for k, v in extra.items()}
    non_tensor["uid"] = np.array([row["extra_info"]["question_id"] for row, _ in played], dtype=object)
    non_tensor["data_source"] = np.array([row["data_source"] for row, _ in played], dtype=object)
    data = SimpleNamespace(
        batch={"token_level_rewards": token_rewards, "response_mask": response_mask}, non_tensor_batch=non_tensor
    )
    fn = VerlRecalEstimator()
    module = SimpleNamespace(compute_advantage=lambda d, est, **kw: _stand_in_compute_advantage(d, est, {"recal": fn}))
    original = install_compute_advantage_hook(fn, module)
    module.compute_advantage(data, "recal")
    assert fn.pending is None  # consumed by the estimator call
    raw = np.array([[e.episode["raw"][k] for k in SPEC.names] for _, e in played])
    batch = build_reward_batch(raw, list(non_tensor["data_source"]), list(non_tensor["uid"]), SPEC)
    want = make_estimator("recal")(batch, CalibrationState()).advantages
    torch.testing.assert_close(data.batch["advantages"], want[:, None] * response_mask, rtol=0, atol=0)
    assert data.batch["advantages"].abs().sum() > 0  # the groups differ: a real learning signal
    module.compute_advantage = original
    with pytest.raises(InvalidData, match="install_compute_advantage_hook"):
        module.compute_advantage(data, "recal")  # without the hook, the estimator says what is missing
