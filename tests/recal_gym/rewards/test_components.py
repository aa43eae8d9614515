"""The component registry, user components (functions, classes, spec files), range checks and the spec hash."""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import gymnasium as gym
import pytest

import recal_gym  # noqa: F401 - registers RouterQA-v0
from recal_gym.errors import InvalidConfig, RewardComponentError, UnknownComponent
from recal_gym.rewards import (
    BUILTIN_COMPONENTS,
    COMPONENT_REGISTRY,
    EpisodeView,
    RewardSpec,
    fold_reward,
    load_spec,
    make_spec,
    register_component,
    rescore,
    unregister_component,
)
from recal_gym.types import EpisodeRecord

USER = "tests.recal_gym.rewards.user_components"
ROUTE = "<think>ask</think>\n<search> LLaMA-3.1-70B-Instruct: {q} </search>"
ANSWER = "<think>done</think>\n<answer> {a} </answer>"


@pytest.fixture
def words() -> Iterator[str]:
    @register_component("answer_words", range=(0.0, 10.0))
    def answer_words(ep: EpisodeView, cap: int = 10) -> float:
        return float(min(cap, len(ep.answer.split())))

    yield "answer_words"
    unregister_component("answer_words")


def _episodes(env: gym.Env, n: int, answer: str = "Paris") -> list[tuple[float, dict]]:
    out = []
    for seed in range(n):
        prompt, info = env.reset(seed=seed)
        question = prompt.rsplit("Question: ", 1)[-1].strip()
        env.step(ROUTE.format(q=question))
        _, reward, term, trunc, info = env.step(ANSWER.format(a=answer))
        assert term and not trunc
        out.append((reward, info))
    return out


def test_builtins_are_registered_in_order() -> None:
    assert BUILTIN_COMPONENTS == ("format", "answer", "info", "route", "balance", "cost", "latency", "calls")
    assert all(COMPONENT_REGISTRY[n].builtin for n in BUILTIN_COMPONENTS)
    assert COMPONENT_REGISTRY["balance"].stateful and not COMPONENT_REGISTRY["answer"].stateful
    with pytest.raises(InvalidConfig, match="built-in and cannot be unregistered"):
        unregister_component("format")


def test_registry_validation(words: str) -> None:
    with pytest.raises(InvalidConfig, match="already registered"):
        register_component(words, range=(0, 1))
    with pytest.raises(InvalidConfig, match="must be an identifier"):
        register_component("answer-words", range=(0, 1))(lambda ep: 0.0)
    with pytest.raises(InvalidConfig, match="low <= high"):
        register_component("backwards", range=(1.0, 0.0))(lambda ep: 0.0)
    with pytest.raises(InvalidConfig, match="lacks"):
        register_component("half_state", range=(0.0, 1.0))(type("Half", (), {"score_episode": lambda s, ep: 0.0}))
    assert "backwards" not in COMPONENT_REGISTRY and "half_state" not in COMPONENT_REGISTRY
    with pytest.raises(UnknownComponent, match="Did you mean 'answer_words'"):
        make_spec("recal", components=[{"name": "answer_word", "weight": 0.1}])
    with pytest.raises(UnknownComponent, match="not registered"):
        unregister_component("nope")


def test_user_component_through_the_env(words: str) -> None:
    spec = make_spec("recal", components=[{"name": words, "weight": 0.05, "gate": "format == 0"}])
    assert spec.names == (*BUILTIN_COMPONENTS, words)
    env = gym.make("RouterQA-v0", reward=spec)
    for reward, info in _episodes(env, 5, answer="Paris France"):
        assert info["reward_components_raw"][words] == 2.0
        assert list(info["reward_components"]) == list(spec.names)
        assert reward == fold_reward(info["reward_components"], info["reward_weights"])
        assert info["reward_spec_hash"] == spec.hash


@pytest.mark.parametrize(
    ("function", "rng", "match"),
    [
        ("always_nan", (0.0, 1.0), r"'bad' returned a non-finite value nan for episode '.+'; declared range"),
        ("too_big", (0.0, 1.0), r"'bad' returned a value outside its declared range 2.0 for episode .*\[0.0, 1.0\]"),
        ("not_a_float", (0.0, 1.0), r"'bad' returned 'high' \(str\)"),
    ],
)
def test_bad_component_values_are_errors_never_clipped(function: str, rng: tuple, match: str) -> None:
    spec = make_spec("recal", components=[{"name": "bad", "function": f"{USER}:{function}", "range": list(rng)}])
    env = gym.make("RouterQA-v0", reward=spec)
    env.reset(seed=0)
    with pytest.raises(RewardComponentError, match=match):
        env.step(ANSWER.format(a="x"))


def test_stateful_user_component_state_is_explicit_and_rescored_exactly() -> None:
    spec = make_spec(
        "recal", components=[{"name": "novelty", "function": f"{USER}:Novelty", "range": [0, 1], "weight": 0.2}]
    )
    env = gym.make("RouterQA-v0", reward=spec)
    env.reset(seed=0)
    state0 = env.unwrapped.reward_state.copy()
    assert "novelty" in state0 and state0.state_dict()["novelty"] == {"seen": []}
    results = []
    for seed in (0, 1, 0):  # the third episode repeats the first question
        results.extend(_episodes_seeded(env, seed))
    assert [i["reward_components_raw"]["novelty"] for _, i in results] == [1.0, 1.0, 0.0]
    records = [EpisodeRecord.from_dict(i["episode_record"]) for _, i in results]
    scores, final = rescore(records, spec, state0)
    assert [s.reward for s in scores] == [r for r, _ in results]
    assert [s.components for s in scores] == [i["reward_components"] for _, i in results]
    assert final.state_dict() == env.unwrapped.reward_state.state_dict()
    batch = make_spec(spec, update_mode="batch")
    assert batch.component("novelty").params_dict == {"update": "batch"}


def _episodes_seeded(env: gym.Env, seed: int) -> list[tuple[float, dict]]:
    env.reset(seed=seed)
    _, reward, _, _, info = env.step(ANSWER.format(a="x"))
    return [(reward, info)]


def test_latency_and_calls_components() -> None:
    spec = make_spec("recal", weights={"latency": 0.1, "calls": 0.1}, params={"latency": {"budget_s": 10.0}})
    env = gym.make("RouterQA-v0", reward=spec)
    pool = env.unwrapped.pool.backends["simulated"]
    for _, info in _episodes(env, 6):
        tokens = info["episode_record"]["calls"][0]["completion_tokens"]
        latency = pool.latency("LLaMA-3.1-70B-Instruct", tokens)
        assert info["latency_s"] == info["episode_record"]["calls"][0]["latency_s"] == latency == 0.6 + tokens / 30.0
        assert info["reward_components_raw"]["latency"] == 1.0 - min(1.0, latency / 10.0)
        assert info["reward_components_raw"]["calls"] == 1.0 - 1 / 4
    _, info = _episodes_seeded(env, 0)[0]  # a direct answer: no call
    assert info["reward_components_raw"]["calls"] == 1.0 and info["reward_components_raw"]["latency"] == 1.0


def test_presets_keep_latency_and_calls_at_weight_zero() -> None:
    for name in ("recal", "router-r1"):
        spec = make_spec(name)
        assert spec.weight_of("latency") == 0.0 and spec.weight_of("calls") == 0.0


def test_spec_hash_is_stable_content_identity(tmp_path: Path) -> None:
    spec = make_spec("recal")
    assert spec.hash.startswith("rs-") and len(spec.hash) == 19
    assert make_spec("recal").hash == spec.hash
    import dataclasses

    assert dataclasses.replace(spec, name="renamed").hash == spec.hash  # the label is not content
    assert make_spec("recal", weights={"cost": 0.2}).hash != spec.hash
    assert make_spec("recal", gates={"cost": "format_ok"}).hash != spec.hash
    out = subprocess.run(
        [sys.executable, "-c", "from recal_gym.rewards import make_spec; print(make_spec('recal').hash)"],
        capture_output=True, text=True, check=True,
    )  # fmt: skip
    assert out.stdout.strip() == spec.hash  # no process-salted hashing
    path = tmp_path / "recal.json"
    path.write_text(json.dumps(spec.to_dict()))
    assert load_spec(path) == spec and load_spec(path).hash == spec.hash


def test_presets_are_expressible_as_files(tmp_path: Path) -> None:
    import yaml

    for spec in (make_spec("router-r1", alpha=0.6), make_spec("recal", update_mode="batch")):
        path = tmp_path / f"{spec.name}.yaml"
        path.write_text(yaml.safe_dump(spec.to_dict(), sort_keys=False))
        assert make_spec(str(path)) == spec
        assert RewardSpec.from_mapping(json.loads(json.dumps(spec.to_dict()))) == spec


YAML_SPEC = f"""
preset: recal
name: shaped
weights: {{cost: 0.3}}
components:
  - name: short
    function: {USER}:short_answer
    range: [0, 1]
    weight: 0.2
    gate: format == 0 and answer >= tau
    params: {{max_words: 2}}
"""


def test_yaml_spec_with_a_user_component(tmp_path: Path) -> None:
    path = tmp_path / "shaped.yaml"
    path.write_text(YAML_SPEC)
    spec = load_spec(path)
    assert spec.name == "shaped" and spec.names[-1] == "short" and spec.weight_of("cost") == 0.3
    env = gym.make("RouterQA-v0", reward=str(path))
    for reward, info in _episodes(env, 4, answer="Jane Austen"):
        assert info["reward_components_raw"]["short"] == 1.0
        assert reward == fold_reward(info["reward_components"], info["reward_weights"])


@pytest.mark.parametrize(
    ("text", "err", "match"),
    [
        ("preset: recal\ncomponents:\n  - {name: nosuch, weight: 1}\n", UnknownComponent, r"bad.yaml.*'nosuch'"),
        ("preset: recal\ngates: {format: answer == 1}\n", InvalidConfig, r"bad.yaml.*cycle"),
        (f"preset: recal\ncomponents:\n  - {{name: s, function: '{USER}:short_answer', range: [1, 0]}}\n",
         InvalidConfig, r"bad.yaml.*range=\(1.0, 0.0\)"),
        ("preset: recal\ncomponents:\n  - {name: s, function: 'mypkg.nowhere:fn', range: [0, 1]}\n",
         InvalidConfig, r"bad.yaml.*cannot import module 'mypkg.nowhere'"),
        (f"preset: recal\ncomponents:\n  - {{name: s, function: '{USER}:missing', range: [0, 1]}}\n",
         InvalidConfig, r"bad.yaml.*has no attribute 'missing'"),
        ("preset: recal\nweights: {cost: lots}\n", InvalidConfig,
         r"bad.yaml.*weights\['cost'\]='lots' must be a number"),
        ("preset: recal\ncomponents:\n  - {name: s, weight: [1]}\n", InvalidConfig, r"bad.yaml.*component 's': weight"),
        ("preset: recal\nweights: {cost: 0.1\n", InvalidConfig, r"bad.yaml.*not valid YAML at line"),
        ("- just\n- a list\n", InvalidConfig, r"bad.yaml.*must be a mapping"),
        ("preset: recal\ntua: 0.5\n", InvalidConfig, r"bad.yaml.*unknown reward spec field 'tua'.*Did you mean 'tau'"),
    ],
)  # fmt: skip
def test_bad_spec_files_name_the_file_and_field(tmp_path: Path, text: str, err: type, match: str) -> None:
    path = tmp_path / "bad.yaml"
    path.write_text(text)
    with pytest.raises(err, match=match):
        load_spec(path)


def test_missing_spec_file() -> None:
    with pytest.raises(InvalidConfig, match=r"'nowhere/spec\.yaml' cannot be read"):
        make_spec("nowhere/spec.yaml")


PREDICATE_SPEC = f"""
preset: recal
predicates:
  - {{name: answered_in_words, function: "{USER}:answered_in_words", reads: [answer, short]}}
components:
  - {{name: short, function: "{USER}:short_answer", range: [0, 1], weight: 0.1, gate: "format == 0"}}
  - {{name: calls, weight: 0.2, gate: "format == 0 and answered_in_words"}}
"""


@pytest.fixture
def predicate_spec(tmp_path: Path) -> Iterator[Path]:
    path = tmp_path / "pred.yaml"
    path.write_text(PREDICATE_SPEC)
    yield path
    from recal_gym.rewards import unregister_gate

    unregister_gate("answered_in_words")


def test_a_spec_file_defines_a_gate_predicate(predicate_spec: Path) -> None:
    spec = load_spec(predicate_spec)
    assert spec.gates_dict()["calls"] == "format == 0 and answered_in_words"
    assert spec.predicates[0].reads == ("answer", "short") and load_spec(predicate_spec) == spec  # idempotent
    assert "answered_in_words" in json.dumps(spec.to_dict()) and load_spec(predicate_spec).hash == spec.hash
    env = gym.make("RouterQA-v0", reward=str(predicate_spec))
    seen = set()
    questions = env.unwrapped.questions
    for seed in range(12):
        _, info = env.reset(seed=seed)
        gold = questions.by_id(info["question_id"]).golden_answers[0]
        _, reward, _, _, info = env.step(ANSWER.format(a=gold if seed % 2 else "Paris"))
        gate = info["reward_gates"]["calls"]
        expected = info["reward_components_raw"]["answer"] >= 1.0 and info["reward_components_raw"]["short"] > 0
        assert gate == float(expected and info["format_ok"])
        assert reward == fold_reward(info["reward_components"], info["reward_weights"])
        seen.add(gate)
    assert seen == {0.0, 1.0}  # the predicate both opened and closed the gate


def test_a_predicate_name_cannot_be_taken_twice(predicate_spec: Path, tmp_path: Path) -> None:
    load_spec(predicate_spec)
    other = tmp_path / "other.yaml"
    other.write_text(PREDICATE_SPEC.replace("answered_in_words\", reads", "short_answer\", reads"))
    with pytest.raises(InvalidConfig, match="registered already with another function"):
        load_spec(other)
