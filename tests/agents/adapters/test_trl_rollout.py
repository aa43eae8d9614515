"""Tests of the TRL ``rollout_func`` (agents.adapters.trl_rollout) without TRL: a stand-in trainer object.

The stand-in carries exactly what ``RouterQARollout`` reads from a ``GRPOTrainer`` (``args``, ``temperature``,
``top_p``, ``top_k``, ``processing_class``, ``model``); the real trainer runs in ``test_trl.py`` (slow).
"""

from __future__ import annotations

import dataclasses
from types import SimpleNamespace
from typing import Any

import pytest
import torch

from agents.adapters.trl_rollout import RouterQARollout, rollout_reward_funcs, routerqa_rows
from agents.eval.baselines import question_from_prompt
from agents.grpo.config import preset
from agents.grpo.learner import build_envs
from agents.grpo.rollout import TextCodec
from agents.models.tiny_model import build_tiny_model, build_tiny_tokenizer, load_tiny_tokenizer
from recal_gym.errors import InvalidConfig, InvalidData
from recal_gym.types import EpisodeRecord
from tests.agents.adapters.scripted import ScriptedEngine

CONFIG = dataclasses.replace(preset("tiny"), max_new_tokens=200)  # a byte-level token per character


@pytest.fixture(scope="module")
def tokenizer() -> Any:
    return build_tiny_tokenizer()


@pytest.fixture(scope="module")
def questions(tokenizer: Any) -> list[str]:
    env = build_envs(CONFIG, tokenizer, 1)[0]
    return sorted(env.unwrapped.questions.ids())[:6]


def _trainer(tokenizer: Any, model: torch.nn.Module | None = None, **args: Any) -> SimpleNamespace:
    defaults = {"mask_truncated_completions": False, "min_p": None, "repetition_penalty": 1.0}
    return SimpleNamespace(
        args=SimpleNamespace(**{**defaults, **args}),
        temperature=1.0,
        top_p=1.0,
        top_k=0,
        processing_class=tokenizer,
        model=model if model is not None else torch.nn.Linear(1, 1).train(),  # TRL trains in train mode
    )


def _rollout(tokenizer: Any, questions: list[str], n_envs: int = 4, **kw: Any) -> RouterQARollout:
    envs = build_envs(CONFIG, tokenizer, n_envs)
    engine = kw.pop("engine_factory", lambda model, tok: ScriptedEngine(tok, {}))
    return RouterQARollout(envs, question_ids=questions, engine_factory=engine, **kw)


# ----------------------------------------------------------------------------- equivalence with the env
def test_episodes_equal_the_env_played_directly_with_the_same_turns(tokenizer: Any, questions: list[str]) -> None:
    envs = build_envs(CONFIG, tokenizer, 6)
    rows = routerqa_rows(envs[0], questions[:3])
    kinds = {question_from_prompt(r["prompt"]): i for i, r in enumerate(rows)}  # route / answer / junk
    engine = ScriptedEngine(tokenizer, kinds)
    rollout = RouterQARollout(envs, question_ids=questions, engine_factory=lambda model, tok: engine)
    prompts = [r["prompt"] for r in rows for _ in range(2)]  # TRL repeats each prompt G times
    before = rollout.envs[0].unwrapped.reward_state_dict()
    out = rollout(prompts, _trainer(tokenizer))
    assert set(out) >= {"prompt_ids", "completion_ids", "logprobs", "env_mask", "data_source", "question_id"}
    codec = TextCodec(tokenizer)
    direct = build_envs(CONFIG, tokenizer, 1)[0]
    direct.unwrapped.load_reward_state(before)
    turns = []
    for i, prompt in enumerate(prompts):
        # Play the same sampled turns in a fresh env, with the learner's rule for the kept ids.
        env_prompt, info = direct.reset(options={"question_id": out["question_id"][i]})
        assert env_prompt == prompt and out["prompt_ids"][i] == codec.prompt_ids(prompt)
        context, ids, mask, done = list(out["prompt_ids"][i]), [], [], False
        while not done:
            sampled = engine.log[tuple(context)]
            obs, reward, terminated, truncated, info = direct.step(codec.decode(sampled))
            kept, splice = codec.kept_prefix(sampled, int(info["kept_chars"])), codec.encode(obs)
            ids += kept + splice
            mask += [1] * len(kept) + [0] * len(splice)
            context += kept + splice
            done = terminated or truncated
        turns.append(info["turn"])
        assert out["completion_ids"][i] == ids and out["env_mask"][i] == mask
        assert out["logprobs"][i] == [-0.25 if m else 0.0 for m in mask]
        assert codec.decode(ids) == info["episode_record"]["transcript"]
        assert out["episode_return"][i] == reward and out["turns"][i] == info["turn"]
        for name in rollout.spec.names:
            assert out[f"raw_{name}"][i] == info["reward_components_raw"][name]
            assert out[f"gated_{name}"][i] == info["reward_components"][name]
        assert out["data_source"][i] == info["data_source"] and out["em"][i] == float(info["em"])
    assert out["env_mask"][0].count(0) > 0 and max(turns) == 2  # routed episodes: a splice, then an answer
    assert out["raw_format"][4] == -1.0  # the junk question breaks the format


def test_reward_state_is_updated_once_per_batch_and_pushed_to_every_env(
    tokenizer: Any, questions: list[str]
) -> None:
    rollout = _rollout(tokenizer, questions, n_envs=6)
    rows = routerqa_rows(rollout.envs[0], questions[:3])
    prompts = [r["prompt"] for r in rows for _ in range(2)]
    state = rollout.envs[0].unwrapped.reward_state.copy()
    rollout(prompts, _trainer(tokenizer))
    call = rollout.last
    assert call is not None and call.question_ids == tuple(r["question_id"] for r in rows for _ in range(2))
    state.load_state_dict(call.reward_state_before)
    state.update_batch([EpisodeRecord.from_dict(r) for r in call.batch.records], rollout.spec)
    for env in rollout.envs:
        assert env.unwrapped.reward_state_dict() == state.state_dict()
    assert state.state_dict() != call.reward_state_before  # the batch moved the balance/cost state


def test_evaluation_calls_leave_the_reward_state_alone(tokenizer: Any, questions: list[str]) -> None:
    rollout = _rollout(tokenizer, questions)
    prompts = [r["prompt"] for r in routerqa_rows(rollout.envs[0], questions[:2]) for _ in range(2)]
    before = rollout.envs[0].unwrapped.reward_state_dict()
    rollout(prompts, _trainer(tokenizer, torch.nn.Linear(1, 1).eval()))
    assert all(env.unwrapped.reward_state_dict() == before for env in rollout.envs)
    rollout(prompts, _trainer(tokenizer))
    assert rollout.envs[0].unwrapped.reward_state_dict() != before


def test_reward_funcs_return_the_rollout_fields(tokenizer: Any, questions: list[str]) -> None:
    rollout = _rollout(tokenizer, questions)
    prompts = [routerqa_rows(rollout.envs[0], questions[:1])[0]["prompt"]] * 3
    out = rollout(prompts, _trainer(tokenizer))
    raw = rollout_reward_funcs(rollout.spec)
    gated = rollout_reward_funcs(rollout.spec, kind="gated")
    assert [f.__name__ for f in raw] == [f"raw_{k}" for k in rollout.spec.names]
    kwargs = {k: v for k, v in out.items() if k not in ("prompt_ids", "completion_ids", "logprobs")}
    for f, name in zip(raw, rollout.spec.names, strict=True):
        assert f(prompts=prompts, completions=["c"] * 3, **kwargs) == out[f"raw_{name}"]
    assert gated[0](prompts=prompts, completions=["c"] * 3, **kwargs) == out["gated_format"]
    with pytest.raises(InvalidData, match="use rollout_func=RouterQARollout"):
        raw[0](prompts=prompts, completions=["c"] * 3)
    with pytest.raises(InvalidConfig, match="kind"):
        rollout_reward_funcs(rollout.spec, kind="both")


def test_conversational_prompts_and_an_env_factory(tokenizer: Any, questions: list[str]) -> None:
    envs = iter(build_envs(CONFIG, tokenizer, 3))
    rollout = RouterQARollout(
        lambda: next(envs), question_ids=questions[:2], engine_factory=lambda m, t: ScriptedEngine(t, {})
    )
    rows = routerqa_rows(rollout.envs[0], questions[:2])
    prompts = [[{"role": "user", "content": r["prompt"]}] for r in rows for _ in range(1)]
    out = rollout(prompts, _trainer(tokenizer))
    assert out["question_id"] == [r["question_id"] for r in rows] and len(rollout.envs) == 2


# ----------------------------------------------------------------------------- a real sampler: determinism
def test_same_seed_same_episodes_with_the_hf_sampler(tokenizer: Any, questions: list[str], tmp_path: Any) -> None:
    from transformers import AutoModelForCausalLM

    path = build_tiny_model(tmp_path / "m", max_position_embeddings=4096, seed=0)
    model = AutoModelForCausalLM.from_pretrained(path, local_files_only=True)
    tok = load_tiny_tokenizer(path)
    prompts = [routerqa_rows(build_envs(CONFIG, tok, 1)[0], questions[:1])[0]["prompt"]] * 2

    def play(seed: int) -> dict[str, Any]:
        envs = build_envs(dataclasses.replace(CONFIG, max_new_tokens=8), tok, 2)
        return RouterQARollout(envs, question_ids=questions[:1], seed=seed)(prompts, _trainer(tok, model))

    first, again, other = play(0), play(0), play(1)
    assert first == again
    assert first["completion_ids"] != other["completion_ids"]
    assert all(lp < 0 for lps, m in zip(first["logprobs"], first["env_mask"], strict=True)
               for lp, b in zip(lps, m, strict=True) if b == 1)  # fmt: skip


def test_state_dict_round_trip_replays_the_next_call(tokenizer: Any, questions: list[str], tmp_path: Any) -> None:
    from transformers import AutoModelForCausalLM

    path = build_tiny_model(tmp_path / "m", max_position_embeddings=4096, seed=1)
    model = AutoModelForCausalLM.from_pretrained(path, local_files_only=True).train()
    tok = load_tiny_tokenizer(path)
    config = dataclasses.replace(CONFIG, max_new_tokens=6)
    rollout = RouterQARollout(build_envs(config, tok, 2), question_ids=questions[:1], seed=3)
    prompts = [routerqa_rows(rollout.envs[0], questions[:1])[0]["prompt"]] * 2
    rollout(prompts, _trainer(tok, model))
    assert model.training  # restored after sampling in eval mode
    saved = rollout.state_dict()
    second = rollout(prompts, _trainer(tok, model))
    rollout.load_state_dict(saved)
    assert rollout(prompts, _trainer(tok, model)) == second


# ----------------------------------------------------------------------------- bad input
def test_bad_inputs_are_named(tokenizer: Any, questions: list[str]) -> None:
    rollout = _rollout(tokenizer, questions, n_envs=2)
    prompt = routerqa_rows(rollout.envs[0], questions[:1])[0]["prompt"]
    with pytest.raises(InvalidData, match="not a RouterQA prompt"):
        rollout(["What is the capital of France?"], _trainer(tokenizer))
    with pytest.raises(InvalidData, match="expected str or messages"):
        rollout([3], _trainer(tokenizer))
    with pytest.raises(InvalidConfig, match="has 2 envs but TRL asked for 3"):
        rollout([prompt] * 3, _trainer(tokenizer))
    with pytest.raises(InvalidConfig, match="mask_truncated_completions"):
        rollout([prompt], _trainer(tokenizer, mask_truncated_completions=True))
    with pytest.raises(InvalidConfig, match="use_vllm=True"):
        rollout([prompt], _trainer(tokenizer, use_vllm=True))
    with pytest.raises(InvalidConfig, match="repetition_penalty"):
        rollout([prompt], _trainer(tokenizer, repetition_penalty=1.1))
    with pytest.raises(InvalidConfig, match="needs at least one env"):
        RouterQARollout([])
