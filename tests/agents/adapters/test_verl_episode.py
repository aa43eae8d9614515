"""RouterQA episodes for verl's agent loop (agents.adapters.verl_episode) on verl-shaped inputs.

verl is not installed: the server stand-in has the shape of verl's ``server_manager.generate`` (keyword
arguments ``request_id``, ``prompt_ids``, ``sampling_params``; a result with ``token_ids`` and ``log_probs``).
"""

from __future__ import annotations

import asyncio
import json
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pyarrow.parquet as pq
import pytest

from agents.adapters.verl_episode import (
    EPISODE_KEY,
    STOP_STRINGS,
    RouterQAEnvConfig,
    RouterQAEpisodes,
    episode_fields,
    routerqa_verl_rows,
)
from agents.eval.baselines import question_from_prompt
from agents.grpo.rollout import TextCodec
from agents.models.tiny_model import build_tiny_tokenizer
from recal_gym.errors import InvalidConfig, InvalidData
from tests.agents.adapters.scripted import LOGPROB, ScriptedEngine

ROOT = Path(__file__).resolve().parents[3]
CONFIG = RouterQAEnvConfig(max_routed_turns=1, max_turn_tokens=200)  # byte-level tokens: one per character


class FakeServer:
    """verl's ``server_manager`` shape; samples the scripted policy and records every request."""

    def __init__(self, engine: ScriptedEngine) -> None:
        self.engine = engine
        self.requests: list[dict[str, Any]] = []

    async def generate(self, *, request_id: str, prompt_ids: list[int], sampling_params: dict[str, Any]) -> Any:
        self.requests.append({"request_id": request_id, "sampling_params": dict(sampling_params)})
        await asyncio.sleep(0)  # let concurrent episodes interleave, as verl's coroutines do
        ids = self.engine.sample(prompt_ids, int(sampling_params["max_tokens"]))
        return SimpleNamespace(token_ids=ids, log_probs=[LOGPROB] * len(ids))


def _generate(server: FakeServer, request_id: str) -> Any:
    async def generate(ids: list[int], params: dict[str, Any]) -> tuple[list[int], list[float] | None]:
        out = await server.generate(request_id=request_id, prompt_ids=ids, sampling_params=params)
        return list(out.token_ids), list(out.log_probs)

    return generate


@pytest.fixture(scope="module")
def tokenizer() -> Any:
    return build_tiny_tokenizer()


@pytest.fixture(scope="module")
def episodes(tokenizer: Any) -> RouterQAEpisodes:
    return RouterQAEpisodes(CONFIG, tokenizer)


@pytest.fixture(scope="module")
def questions(episodes: RouterQAEpisodes) -> list[str]:
    return sorted(episodes.envs[0].questions.ids())[:3]


def _kinds(episodes: RouterQAEpisodes, questions: list[str]) -> dict[str, int]:
    env = episodes.envs[0]
    return {question_from_prompt(env.reset(options={"question_id": q})[0]): i for i, q in enumerate(questions)}


def _replay(episodes: RouterQAEpisodes, engine: ScriptedEngine, qid: str) -> tuple[list[int], list[int], Any, int]:
    """The same sampled turns in a fresh env with the learner's kept-ids rule."""
    codec = TextCodec(episodes.codec.tokenizer)
    env = CONFIG.build_env(codec.tokenizer, episodes.pool)
    prompt, _ = env.reset(options={"question_id": qid})
    context, ids, mask, splices = codec.prompt_ids(prompt), [], [], 0
    while True:
        sampled = engine.log[tuple(context + ids)]
        obs, reward, terminated, truncated, info = env.step(codec.decode(sampled))
        kept, splice = codec.kept_prefix(sampled, int(info["kept_chars"])), codec.encode(obs)
        ids += kept + splice
        mask += [1] * len(kept) + [0] * len(splice)
        splices += bool(splice)
        if terminated or truncated:
            return ids, mask, {**info, "reward": reward}, splices


def test_concurrent_episodes_equal_the_env_played_directly(
    episodes: RouterQAEpisodes, questions: list[str]
) -> None:
    engine = ScriptedEngine(episodes.codec.tokenizer, _kinds(episodes, questions))
    server = FakeServer(engine)
    params = {"temperature": 1.0, "top_p": 1.0, "logprobs": True}

    async def main() -> list[Any]:
        runs = [
            episodes.play(q, _generate(server, f"r{i}"), sampling_params=params, response_length=4096)
            for i, q in enumerate(questions)
        ]
        return list(await asyncio.gather(*runs))

    outputs = asyncio.run(main())
    assert len(episodes.envs) >= 2  # concurrent episodes took separate envs from the pool
    for qid, out in zip(questions, outputs, strict=True):
        ids, mask, info, splices = _replay(episodes, engine, qid)
        assert out.response_ids == ids and out.response_mask == mask
        assert out.response_logprobs == [LOGPROB if m else 0.0 for m in mask]
        assert out.prompt_ids == episodes.codec.prompt_ids(episodes.envs[0].reset(options={"question_id": qid})[0])
        assert episodes.codec.decode(ids) == info["episode_record"]["transcript"]
        assert out.episode == episode_fields(info)
        assert out.num_turns == 1 + int(info["turn"]) + splices  # verl counts the prompt, turns and tool replies
    routed, answered, junk = (o.episode for o in outputs)
    assert routed["n_calls"] == 1.0 and 0 in outputs[0].response_mask and routed["turns"] == 2.0
    assert answered["format_ok"] == 1.0 and answered["turns"] == 1.0
    assert junk["raw"]["format"] == -1.0
    json.dumps([o.episode for o in outputs])  # extra_fields cross Ray: plain JSON values only
    assert {tuple(r["sampling_params"]["stop"][:2]) for r in server.requests} == {STOP_STRINGS}


def test_sampling_params_per_turn(episodes: RouterQAEpisodes) -> None:
    user = {"temperature": 0.7, "stop": ["###"], "max_tokens": 150}
    params = episodes._params(user, budget=120)
    assert params["stop"] == [*STOP_STRINGS, "###"] and params["include_stop_str_in_output"] is True
    assert params["max_tokens"] == 120 and params["temperature"] == 0.7
    assert user == {"temperature": 0.7, "stop": ["###"], "max_tokens": 150}  # verl's dict is not mutated
    assert episodes._params({}, budget=10_000)["max_tokens"] == CONFIG.max_turn_tokens


def test_the_response_budget_caps_the_episode(episodes: RouterQAEpisodes, questions: list[str]) -> None:
    engine = ScriptedEngine(episodes.codec.tokenizer, _kinds(episodes, questions))
    out = asyncio.run(
        episodes.play(questions[0], _generate(FakeServer(engine), "r"), sampling_params={}, response_length=70)
    )
    assert len(out.response_ids) <= 70 and len(out.response_mask) == len(out.response_ids)
    assert out.episode["length_capped"] is True and out.episode["termination"] != "answer"


def test_a_failing_call_leaves_the_env_usable(episodes: RouterQAEpisodes, questions: list[str]) -> None:
    engine = ScriptedEngine(episodes.codec.tokenizer, _kinds(episodes, questions))

    async def broken(request: Any) -> Any:
        raise ConnectionError("backend down")

    with pytest.raises(ConnectionError):
        asyncio.run(
            episodes.play(
                questions[0], _generate(FakeServer(engine), "r"), sampling_params={}, response_length=4096, call=broken
            )
        )
    again = asyncio.run(
        episodes.play(questions[1], _generate(FakeServer(engine), "r"), sampling_params={}, response_length=4096)
    )
    assert again.episode["question_id"] == questions[1]


def test_rows_for_verl_and_the_parquet_script(episodes: RouterQAEpisodes, questions: list[str], tmp_path: Path):
    rows = routerqa_verl_rows(episodes.envs[0], questions[:2])
    row = rows[0]
    assert set(row) == {"data_source", "prompt", "ability", "reward_model", "extra_info", "agent_name"}
    assert row["prompt"][0]["role"] == "user" and "Question:" in row["prompt"][0]["content"]
    assert row["extra_info"]["question_id"] == questions[0] and row["agent_name"] == "routerqa_agent"
    assert row["extra_info"]["tools_kwargs"] == {"route": {"create_kwargs": {"question_id": questions[0]}}}
    golden = episodes.envs[0].questions.by_id(questions[0]).golden_answers
    assert json.loads(row["reward_model"]["ground_truth"]) == list(golden)

    import importlib.util

    spec = importlib.util.spec_from_file_location("prepare_data", ROOT / "examples" / "verl" / "prepare_data.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    train, val = module.write(tmp_path / "data", val=5, seed=1)
    table = pq.read_table(val).to_pylist()
    assert len(table) == 5 and {r["extra_info"]["split"] for r in table} == {"val"}
    n_train = pq.read_metadata(train).num_rows
    assert n_train + 5 == len(episodes.envs[0].questions.ids())
    assert table[0]["prompt"][0]["content"].endswith("?") or "Question:" in table[0]["prompt"][0]["content"]


@pytest.mark.parametrize(
    ("mapping", "match"),
    [
        ({"max_turn_token": 5}, r"unknown key\(s\) \['max_turn_token'\].*Did you mean 'max_turn_tokens'"),
        ({"max_turn_tokens": 0}, r"max_turn_tokens=0 must be an int >= 1"),
        ({"max_routed_turns": -1}, r"max_routed_turns=-1 must be an int >= 0"),
        ({"pool_seed": True}, r"pool_seed=True must be an int"),
        ({"dataset": 3}, r"dataset=3 must be a string"),
    ],
)
def test_env_config_validation(mapping: dict[str, Any], match: str) -> None:
    with pytest.raises(InvalidConfig, match=match):
        RouterQAEnvConfig.from_mapping(mapping, where="route tool config")


def test_episode_fields_needs_a_terminal_info(episodes: RouterQAEpisodes, questions: list[str]) -> None:
    _, info = episodes.envs[0].reset(options={"question_id": questions[0]})
    with pytest.raises(InvalidData, match="not terminal"):
        episode_fields(info)
    assert EPISODE_KEY == "routerqa"
