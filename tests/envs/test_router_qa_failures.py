"""RouterQA under failure (issue #12 items 1, 2, 3 and 6): nothing escapes ``step``, the env stays usable."""

from __future__ import annotations

import math
from collections.abc import Sequence

import gymnasium as gym
import pytest

import recal_gym  # noqa: F401  (registers the envs)
from envs.router_qa import CHARS_PER_TOKEN_BOUND, RouterQAEnv
from envs.vector import RouterQAVectorEnv
from recal_gym.data import QuestionSet
from recal_gym.errors import InvalidConfig
from recal_gym.pools import Pool, default_pool_spec
from recal_gym.pools.base import MAX_CALL_TOKENS
from recal_gym.rewards import BUILTIN_COMPONENTS as COMPONENTS
from recal_gym.tokens import TokenizerCounter
from recal_gym.types import CallRequest, CallResult, QARow
from tests.envs.conftest import ROWS, ScriptedBackend

QWEN = "Qwen2.5-7B-Instruct"
ROUTE = f"<think>ask</think>\n<search> {QWEN}: capital of France? </search>"
ANSWER = "<think>known</think>\n<answer> Paris </answer>"


def fold(info: dict) -> float:
    total = 0.0
    for k in COMPONENTS:
        total = total + info["reward_weights"][k] * info["reward_components"][k]
    return total


class _Returns:
    """A backend that answers every call with a fixed (possibly broken) result object."""

    def __init__(self, result: object) -> None:
        self.result = result

    def call_batch(self, requests: Sequence[CallRequest]) -> list:
        return [self.result for _ in requests]

    def metrics(self) -> dict[str, float]:
        return {}

    def attach_questions(self, rows: Sequence[QARow]) -> None:
        pass

    def close(self) -> None:
        pass


class _Bug(_Returns):
    """A buggy backend: raises on the first ``n_bad`` batches, then answers."""

    def __init__(self, n_bad: int = 1) -> None:
        super().__init__(CallResult(ok=True, text="The answer is Paris.", completion_tokens=5))
        self.n_bad = n_bad

    def call_batch(self, requests: Sequence[CallRequest]) -> list:
        if self.n_bad > 0:
            self.n_bad -= 1
            raise ZeroDivisionError("backend bug")
        return super().call_batch(requests)


def _env(backend: object, **kw: object) -> RouterQAEnv:
    pool = Pool(default_pool_spec(), {"simulated": backend})  # type: ignore[dict-item]
    return RouterQAEnv(list(ROWS), pool=pool, **kw)  # type: ignore[arg-type]


def test_lone_surrogate_in_an_unrelated_query_is_an_executed_route_and_deterministic() -> None:
    outs = []
    for _ in range(2):
        env = gym.make("RouterQA-v0").unwrapped
        env.reset(seed=0)
        outs.append(env.step("<search> LLaMA-3.1-70B-Instruct: x \ud800 </search>"))
        obs, reward, term, trunc, info = env.step(ANSWER)
        assert term and math.isfinite(reward) and reward == fold(info)
    obs, _r, _t, _tr, info = outs[0]
    assert info["route_outcome"] == "executed" and obs.startswith("\n\n<information>")
    assert "\ud800" not in obs and outs[0][0] == outs[1][0]


def test_a_backend_exception_leaves_the_episode_as_before_the_step() -> None:
    env = _env(_Bug(n_bad=1))
    env.reset(options={"question_id": "toy/0"})
    _, _, _, _, before = env.step("<think>warm up</think>")
    with pytest.raises(ZeroDivisionError, match="backend bug"):
        env.step(ROUTE)
    obs, _r, _t, _tr, info = env.step(ROUTE)  # the same turn again: no stuck pending call
    assert info["turn"] == before["turn"] + 1 and info["n_calls"] == 1.0 and info["n_route_attempts"] == 1.0
    assert info["route_outcome"] == "executed" and "Paris" in obs
    fresh = _env(_Bug(n_bad=0))
    fresh.reset(options={"question_id": "toy/0"})
    fresh.step("<think>warm up</think>")
    assert fresh.step(ROUTE)[4] == info


def test_a_vector_batch_that_raises_aborts_every_begun_sub_env() -> None:
    pool = Pool(default_pool_spec(), {"simulated": _Bug(n_bad=1)})
    envs = RouterQAVectorEnv(2, dataset=list(ROWS), pool=pool)
    envs.reset(options={"question_ids": ["toy/0", "toy/1"]})
    with pytest.raises(ZeroDivisionError):
        envs.step([ROUTE, ROUTE])
    _obs, _rew, _term, _trunc, infos = envs.step([ROUTE, ROUTE])
    assert list(infos["turn"]) == [1.0, 1.0] and list(infos["route_outcome"]) == ["executed", "executed"]


@pytest.mark.parametrize(
    ("result", "label"),
    [
        (CallResult(ok=True, text="Paris", completion_tokens=10**401), "bad_usage"),  # 401 digits
        (CallResult(ok=True, text="Paris", completion_tokens=1e30), "bad_usage"),  # type: ignore[arg-type]
        (CallResult(ok=True, text="Paris", completion_tokens=-1), "bad_usage"),
        (CallResult(ok=True, text="Paris", completion_tokens=MAX_CALL_TOKENS + 1), "bad_usage"),
        (CallResult(ok=True, text="Paris", prompt_tokens=math.nan), "bad_usage"),  # type: ignore[arg-type]
        (CallResult(ok=True, text=None, completion_tokens=3), "bad_result"),  # type: ignore[arg-type]
        ({"ok": True, "text": "Paris"}, "bad_result"),
        (CallResult(ok=False, error="timeout"), "timeout"),
        (CallResult(ok=False), "failed"),
    ],
)
def test_unusable_call_results_are_failed_calls_with_a_label(result: object, label: str) -> None:
    env = _env(_Returns(result))
    env.reset(options={"question_id": "toy/0"})
    obs, _r, _t, _tr, info = env.step(ROUTE)
    assert obs == "\n\n<information>None</information>\n\n"
    assert info["route_outcome"] == "call_failed" and info["call_error"] == label
    assert info["raw_cost"] == 0.0 and info["call_cost"] == 0.0 and info["n_failed_calls"] == 1.0
    _o, reward, term, _tr, info = env.step(ANSWER)
    assert term and math.isfinite(reward) and reward == fold(info)


def test_a_ten_megabyte_action_without_spaces_is_clipped_by_characters() -> None:
    env = _env(ScriptedBackend(lambda r: "x"))
    env.reset(options={"question_id": "toy/0"})
    action = "<think>" + "a" * 10_000_000 + "</think><answer> Paris </answer>"
    _obs, _r, term, _tr, info = env.step(action)
    assert env.max_turn_chars == CHARS_PER_TOKEN_BOUND * env.max_turn_tokens
    assert info["action_clipped"] and not term and info["action_kind"] == "none"
    assert info["kept_chars"] == env.max_turn_chars and info["discarded_chars"] == len(action) - env.max_turn_chars
    assert len(env._ep.transcript) == env.max_turn_chars  # type: ignore[union-attr]


def test_max_turn_chars_is_configurable_and_validated() -> None:
    env = _env(ScriptedBackend(lambda r: "x"), max_turn_chars=20)
    env.reset(options={"question_id": "toy/0"})
    *_, info = env.step("<think>" + "b" * 30 + "</think>")
    assert info["action_clipped"] and info["kept_chars"] == 20.0
    *_, info = env.step("<think>ok</think>")
    assert not info["action_clipped"]
    for bad in (0, -3, 2.5, True):
        with pytest.raises(InvalidConfig, match=r"max_turn_chars must be None or an int >= 1, got"):
            _env(ScriptedBackend(lambda r: "x"), max_turn_chars=bad)


def test_a_huge_reply_without_spaces_is_clipped_by_characters() -> None:
    env = _env(ScriptedBackend(lambda r: "z" * 5_000_000))
    env.reset(options={"question_id": "toy/0"})
    obs, *_, info = env.step(ROUTE)
    assert info["route_outcome"] == "executed" and info["obs_truncated"]
    assert obs.endswith("</information>\n\n") and obs.count("z") == CHARS_PER_TOKEN_BOUND * env.max_obs_length


def test_lone_surrogates_reach_no_tokenizer() -> None:
    class StrictTokenizer:  # like a Rust tokenizer: refuses text that is not valid Unicode
        def encode(self, text: str) -> list[int]:
            return list(text.encode("utf-8"))

        def decode(self, ids: list[int]) -> str:
            return bytes(ids).decode("utf-8", "replace")

    counter = TokenizerCounter(StrictTokenizer())
    limits = {"max_start_length": 10**5, "max_transcript_tokens": 10**5, "max_obs_length": 10**4}
    env = _env(ScriptedBackend(lambda r: "Paris \udc80 is it"), token_counter=counter, **limits)
    env.reset(options={"question_id": "toy/0"})
    obs, *_, info = env.step(f"<think>\ud800</think><search> {QWEN}: capital \udfff? </search>")
    assert info["route_outcome"] == "executed" and "\ufffd" in obs
    _o, reward, term, _tr, info = env.step(ANSWER)
    assert term and reward == fold(info)


def test_an_empty_dataset_is_a_clear_error() -> None:
    with pytest.raises(InvalidConfig, match="dataset holds no questions"):
        RouterQAEnv(QuestionSet([]))
