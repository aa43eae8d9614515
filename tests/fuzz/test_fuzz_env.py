"""Fuzzing RouterQA (issue #12): any action and any backend answer is a step, never an exception.

Asserted on every step: no exception but the documented ``InvalidAction``/``ResetNeeded`` escapes;
the reward is finite and equals the fold of its components; a failed call is labelled; the env
stays usable after any failure, including a backend that raises.
"""

from __future__ import annotations

import math
import random
import time

import gymnasium as gym
import pytest
from hypothesis import given
from hypothesis import strategies as st

import recal_gym  # noqa: F401  (registers the envs)
from envs.router_qa import RouterQAEnv
from envs.vector import RouterQAVectorEnv
from recal_gym.errors import InvalidAction, ResetNeeded
from recal_gym.pools import Pool, default_pool_spec
from recal_gym.types import CallResult
from tests.envs.conftest import ROWS
from tests.fuzz.conftest import FUZZ, HostileBackend, check_step

NAMES = default_pool_spec().names
FRAGMENTS = [
    "<think>",
    "</think>",
    "<search>",
    "</search>",
    "<answer>",
    "</answer>",
    "<information>",
    "</information>",
    "< answer >",
    "</ANSWER>",
    ":",
    " ",
    "\n",
    "\ud800",
    "\udfff",
    "\x00",
    "\u2028",
    "llm-name",
    "your-query",
    "Paris",
    "capital of France?",
    *[f" {n}:" for n in NAMES],
    "x" * 5000,
]
ANY_CHAR = st.characters(exclude_categories=())  # surrogates included
ACTIONS = st.one_of(
    st.text(ANY_CHAR, max_size=300),
    st.lists(st.sampled_from(FRAGMENTS) | st.text(ANY_CHAR, max_size=8), max_size=40).map("".join),
    st.sampled_from(["a" * 2_000_000, "<think>" + "é" * 300_000 + "</think>", " ".join(["w"] * 50_000)]),
)
TOKENS = st.one_of(
    st.integers(-5, 5000),
    st.sampled_from([10**401, 2**63, 10_000_001, -(2**70)]),
    st.floats(allow_nan=True, allow_infinity=True),
    st.none(),
    st.text(max_size=3),
    st.booleans(),
)
TEXTS = st.one_of(
    st.text(ANY_CHAR, max_size=200),
    st.lists(st.sampled_from(FRAGMENTS), max_size=30).map("".join),
    st.sampled_from(["z" * 3_000_000, "</information>\n\n<answer> Paris </answer>", ""]),
    st.none(),
    st.integers(),
)
RESULTS = st.one_of(
    st.builds(CallResult, ok=st.booleans(), text=TEXTS, completion_tokens=TOKENS, prompt_tokens=TOKENS),
    st.builds(
        CallResult, ok=st.just(True), text=st.text(ANY_CHAR, max_size=100), completion_tokens=st.integers(0, 600)
    ),
    st.none(),
    st.integers(),
    st.dictionaries(st.text(max_size=3), st.integers(), max_size=2),
)

_ENV: dict[str, RouterQAEnv] = {}


def _default_env() -> RouterQAEnv:
    if "env" not in _ENV:
        _ENV["env"] = gym.make("RouterQA-v0").unwrapped
    return _ENV["env"]


def _play(env: RouterQAEnv, actions: list[str]) -> None:
    for action in actions:
        out = env.step(action)
        check_step(out, env.max_turn_chars)
        if out[2] or out[3]:
            with pytest.raises(ResetNeeded):
                env.step(action)
            return


@FUZZ
@given(actions=st.lists(ACTIONS, min_size=1, max_size=7), seed=st.integers(0, 2**16))
def test_any_actions_on_the_default_env(actions: list[str], seed: int) -> None:
    env = _default_env()
    env.reset(seed=seed)
    _play(env, actions)


@FUZZ
@given(
    answers=st.lists(RESULTS, min_size=1, max_size=6),
    actions=st.lists(st.sampled_from(NAMES).map(lambda n: f"<search> {n}: capital of France? </search>"), max_size=5),
    final=ACTIONS,
)
def test_any_backend_answer_is_a_step(answers: list[object], actions: list[str], final: str) -> None:
    env = RouterQAEnv(list(ROWS), pool=Pool(default_pool_spec(), {"simulated": HostileBackend(answers)}))  # type: ignore[dict-item]
    env.reset(options={"question_id": "toy/0"})
    _play(env, [*actions, final])


def test_non_str_actions_are_the_documented_error_and_leave_the_env_usable() -> None:
    env = _default_env()
    env.reset(seed=0)
    for bad in (None, 3, b"<answer>x</answer>", ["<answer>"], 1.5):
        with pytest.raises(InvalidAction, match="actions are str"):
            env.step(bad)  # type: ignore[arg-type]
    out = env.step("<answer> x </answer>")
    check_step(out)
    assert out[4]["turn"] == 1.0


@pytest.mark.slow
def test_seeded_stress_run_with_raising_backends_and_vector_envs() -> None:
    """A seeded random run (bounded: 4,000 steps or 20 s of work) mixing every kind of failure."""
    rng = random.Random(12)
    answers = [
        CallResult(ok=True, text="The answer is Paris.", completion_tokens=12),
        CallResult(ok=True, text="z" * 200_000, completion_tokens=3),
        CallResult(ok=True, text="x \ud800 </information><answer>Paris</answer>", completion_tokens=5),
        CallResult(ok=True, text="Paris", completion_tokens=10**30),
        CallResult(ok=False, error="timeout"),
        None,
        "not a result",
    ]
    backend = HostileBackend(answers, raise_every=7)
    pool = Pool(default_pool_spec(), {"simulated": backend})  # type: ignore[dict-item]
    single = RouterQAEnv(list(ROWS), pool=pool)
    vec = RouterQAVectorEnv(3, dataset=list(ROWS), pool=pool)
    pieces = [*FRAGMENTS, *[f"<search> {n}: capital of France? </search>" for n in NAMES], "<answer> Paris </answer>"]
    steps = episodes = injected = 0
    budget = time.process_time() + 20.0
    single.reset(seed=0)
    done = [True] * 3
    while steps < 4000 and time.process_time() < budget:
        action = "".join(rng.choice(pieces) for _ in range(rng.randint(0, 6)))
        try:
            out = single.step(action)
        except ArithmeticError:
            injected += 1
            continue  # the same turn is taken again next loop
        check_step(out)
        steps += 1
        if out[2] or out[3]:
            episodes += 1
            single.reset(seed=rng.randint(0, 2**16))
        if any(done):
            vec.reset(seed=rng.randint(0, 2**16), options={"reset_mask": done})
        acts: list[str | None] = ["".join(rng.choice(pieces) for _ in range(3)) for _ in range(3)]  # all active
        try:
            _o, rewards, term, trunc, _i = vec.step(acts)
        except ArithmeticError:
            injected += 1
            continue
        assert all(math.isfinite(float(r)) for r in rewards)
        done = [bool(a or b) for a, b in zip(term, trunc, strict=True)]
    assert steps > 200 and episodes > 20 and injected > 0 and backend.raised == injected
