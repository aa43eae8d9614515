"""Tests of the pool description format and the Pool router (recal_gym.pools)."""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path

import pytest
import yaml

from recal_gym.errors import InvalidConfig, UnknownModel
from recal_gym.pools import Pool, PoolSpec, default_pool_spec, load_pool_spec
from recal_gym.pools.base import BACKEND_ENTRY_POINTS, build_pool, register_backend
from recal_gym.pools.options import PoolOptions, SimulatedConfig
from recal_gym.types import CallRequest, CallResult, QARow

ENTRY = {"name": "Tiny", "descriptor": "A tiny model.", "price_per_1m_output": 0.5, "backend": "openai"}


def test_router_r1_profile_loads_all_eight_models() -> None:
    spec = load_pool_spec("router-r1")
    assert len(spec.models) == 8
    assert [m.name for m in spec.listed] == list(default_pool_spec().names)
    qwen = spec.model("Qwen2.5-7B-Instruct")
    assert qwen.price_per_1m_output == 0.3 and qwen.model_id == "qwen/qwen2.5-7b-instruct"
    assert qwen.em_by_dataset["nq"] == 0.138
    assert spec.model("Gemma-2-27B-Instruct").temperature == 0.1
    assert spec.profile_for("triviaqa") == "nq"


def test_yaml_and_json_files_round_trip(tmp_path: Path) -> None:
    data = {"name": "mine", "defaults": {"base_url": "http://127.0.0.1:9/v1"}, "models": [ENTRY]}
    (tmp_path / "p.yaml").write_text(yaml.safe_dump(data))
    spec = load_pool_spec(tmp_path / "p.yaml")
    assert spec.model("Tiny").base_url == "http://127.0.0.1:9/v1"
    (tmp_path / "p.json").write_text(json.dumps(spec.to_dict()))
    assert load_pool_spec(str(tmp_path / "p.json")) == spec


def test_adding_a_model_is_one_entry() -> None:
    base = default_pool_spec().to_dict()
    base["models"].append(ENTRY)
    spec = PoolSpec.from_dict(base)
    assert spec.names[-1] == "Tiny"
    assert "Tiny" in spec.name_table().listed


@pytest.mark.parametrize(
    ("patch", "match"),
    [
        ({"price_per_1m_output": None}, "price_per_1m_output"),
        ({"price_per_1m_output": -1}, "price_per_1m_output"),
        ({"price_per_1m_output": float("nan")}, "price_per_1m_output"),
        ({"descriptor": ""}, "descriptor"),
        ({"descriptor": "good at </information> tricks"}, "reserved tag"),
        ({"name": "<answer>x"}, "reserved tag"),
        ({"name": "a:b"}, "must not contain ':'"),
        ({"backend": "openia"}, "openai"),
        ({"temperature": 3.0}, "temperature"),
        ({"max_tokens": 0}, "max_tokens"),
        ({"colour": "red"}, "unknown field"),
    ],
)
def test_bad_entries_raise(patch: dict, match: str) -> None:
    entry = {**ENTRY, **patch}
    with pytest.raises(InvalidConfig, match=match):
        PoolSpec.from_dict({"models": [entry]})


def test_pool_level_validation() -> None:
    with pytest.raises(InvalidConfig, match="duplicate"):
        PoolSpec.from_dict({"models": [ENTRY, ENTRY]})
    with pytest.raises(InvalidConfig, match="listed"):
        PoolSpec.from_dict({"models": [{**ENTRY, "listed": False}]})
    with pytest.raises(InvalidConfig, match="known profile"):
        load_pool_spec("router_r1")
    with pytest.raises(UnknownModel, match="Did you mean"):
        default_pool_spec().model("Qwen2.5-7B-Instruc")


@pytest.mark.parametrize(
    ("cls", "kwargs", "match"),
    [
        (SimulatedConfig, {"difficulty_correlation": 1.5}, "difficulty_correlation"),
        (SimulatedConfig, {"abstain_rate": -0.1}, "abstain_rate"),
        (PoolOptions, {"max_retries": -1}, "max_retries"),
        (PoolOptions, {"timeout_s": 0.0}, "timeout_s"),
        (PoolOptions, {"max_concurrency": 0}, "max_concurrency"),
    ],
)
def test_option_validation(cls: type, kwargs: dict, match: str) -> None:
    with pytest.raises(InvalidConfig, match=match):
        cls(**kwargs)


class EchoBackend:
    """A minimal backend used to test the Pool's batching and order keeping."""

    def __init__(self, tag: str) -> None:
        self.tag = tag
        self.batches: list[int] = []

    @classmethod
    def from_spec(cls, spec: PoolSpec, models: Sequence[object], options: PoolOptions) -> EchoBackend:
        return cls("registered")

    def call_batch(self, requests: Sequence[CallRequest]) -> list[CallResult]:
        self.batches.append(len(requests))
        return [CallResult(ok=True, text=f"{self.tag}:{r.query}", completion_tokens=1) for r in requests]

    def metrics(self) -> dict[str, float]:
        return {"batches": float(len(self.batches))}

    def attach_questions(self, rows: Sequence[QARow]) -> None:
        pass

    def close(self) -> None:
        pass


def test_pool_batches_per_backend_and_keeps_order() -> None:
    spec = PoolSpec.from_dict(
        {"models": [ENTRY, {**ENTRY, "name": "Sim", "backend": "simulated"}, {**ENTRY, "name": "T2"}]}
    )
    a, b = EchoBackend("a"), EchoBackend("b")
    pool = Pool(spec, {"openai": a, "simulated": b})
    row = QARow(question_id="q/0", question="Who?", golden_answers=("x",), data_source="q")
    reqs = [CallRequest(model=m, query=str(i), question=row) for i, m in enumerate(["Tiny", "Sim", "T2"])]
    out = pool.call_batch(reqs)
    assert [r.text for r in out] == ["a:0", "b:1", "a:2"]
    assert a.batches == [2] and b.batches == [1]
    assert pool.metrics() == {"pool/openai/batches": 1.0, "pool/simulated/batches": 1.0}
    with pytest.raises(UnknownModel):
        pool.call(CallRequest(model="Nope", query="q", question=row))
    with pytest.raises(InvalidConfig, match="no backend"):
        Pool(spec, {"openai": a})


@pytest.fixture
def echo_backend_registered():
    register_backend("echo-test", f"{__name__}:EchoBackend")
    yield "echo-test"
    del BACKEND_ENTRY_POINTS["echo-test"]


def test_register_backend_and_build(echo_backend_registered: str) -> None:
    with pytest.raises(InvalidConfig, match="already registered"):
        register_backend(echo_backend_registered, "x:y")
    spec = PoolSpec.from_dict({"models": [ENTRY]}).with_backend(echo_backend_registered)  # type: ignore[arg-type]
    # with_backend validates names against BACKEND_NAMES only at construction of PoolModel
    assert spec.models[0].backend == echo_backend_registered
    pool = build_pool(spec)
    row = QARow(question_id="q/0", question="Who?", golden_answers=("x",), data_source="q")
    assert pool.call(CallRequest(model="Tiny", query="hi", question=row)).text == "registered:hi"


def test_unknown_backend_name() -> None:
    with pytest.raises(InvalidConfig, match="unknown backend"):
        from recal_gym.pools.base import _load_factory

        _load_factory("nope")


# ---------------------------------------------------------------------------- hostile pool files (issue #12 item 9)


@pytest.mark.parametrize(
    ("patch", "match"),
    [
        ({"max_tokens": "many"}, r"pool model 'Tiny': field 'max_tokens' must be an integer, got 'many'"),
        ({"max_tokens": 2.5}, r"field 'max_tokens' must be an integer, got 2\.5"),
        ({"max_tokens": 10**12}, r"field 'max_tokens' must be an integer in \[1, 10000000\]"),
        ({"temperature": [1]}, r"pool model 'Tiny': field 'temperature' must be a finite number, got \[1\]"),
        ({"temperature": "hot"}, r"field 'temperature' must be a finite number, got 'hot'"),
        ({"top_p": 0}, r"field 'top_p' must be a number in \(0, 1\]"),
        ({"seed": "42"}, r"field 'seed' must be an integer, got '42'"),
        ({"seed": True}, r"field 'seed' must be an integer, got True"),
        ({"listed": "false"}, r"field 'listed' must be true or false, got 'false'"),
        ({"aliases": "qwen"}, r"field 'aliases' must be a list of strings, got 'qwen'"),
        ({"aliases": [1]}, r"field 'aliases' must be a list of strings"),
        ({"model_id": 7}, r"field 'model_id' must be a string, got 7"),
        ({"base_url": ["x"]}, r"field 'base_url' must be a string"),
        ({"price_per_1m_output": "cheap"}, r"field 'price_per_1m_output' must be a finite number, got 'cheap'"),
        ({"price_per_1m_output": True}, r"field 'price_per_1m_output' must be a finite number, got True"),
        ({"price_per_1m_output": 10**401}, r"field 'price_per_1m_output' must be a finite number, got 1000"),
        ({"profile_em": {"nq": 10**401}}, r"field 'profile_em' must map datasets to numbers"),
        ({"profile_em": [0.1]}, r"field 'profile_em' must map datasets to numbers"),
        ({"profile_em": {"nq": "high"}}, r"field 'profile_em' must map datasets to numbers"),
        ({"mean_tokens": {"nq": float("inf")}}, r"field 'mean_tokens' must map datasets to numbers"),
        ({"single_model": {"nq": 0.3}}, r"field 'single_model' must map datasets to \{em: \.\.\.\}"),
        ({"name": 5}, r"pool model 'models\[0\]': field 'name' must be a string, got 5"),
        ({"descriptor": "x" * 500, "max_tokens": "y" * 500}, r"got 'yyyy.{0,70} \.\.\.\)$"),
    ],
)
def test_every_entry_field_is_type_checked_with_model_and_field(patch: dict, match: str) -> None:
    with pytest.raises(InvalidConfig, match=match):
        PoolSpec.from_dict({"models": [{**ENTRY, **patch}]})


@pytest.mark.parametrize(
    ("data", "match"),
    [
        ({"models": []}, r"field 'models' must be a non-empty list"),
        ({"models": {"a": ENTRY}}, r"field 'models' must be a non-empty list"),
        ({"models": [5]}, r"models\[0\]: a pool model entry must be a mapping, got 5"),
        ({"models": [ENTRY], "defaults": [1]}, r"field 'defaults' must be a mapping"),
        ({"models": [ENTRY], "alias_rules": {"a": 1}}, r"field 'alias_rules' must be a list"),
        ({"models": [ENTRY], "alias_rules": [{"keywords": "qwen"}]}, r"'keywords' must be a non-empty list of strings"),
        ({"models": [ENTRY], "alias_rules": [{"keywords": ["q"], "model": 3}]}, r"'model' must be a model name"),
        ({"models": [ENTRY], "dataset_profile_map": ["nq"]}, r"field 'dataset_profile_map' must map"),
        ({"models": [ENTRY], "name": ["p"]}, r"field 'name' must be a string"),
        ({"model": [ENTRY]}, r"must be a mapping with a 'models' list"),
        ({"models": [ENTRY], "defualts": {}}, r"unknown top-level field\(s\) \['defualts'\].*Did you mean 'defaults'"),
    ],
)
def test_pool_level_fields_are_type_checked(data: dict, match: str) -> None:
    with pytest.raises(InvalidConfig, match=match):
        PoolSpec.from_dict(data)


@pytest.mark.parametrize(
    ("name", "content", "match"),
    [
        ("p.yaml", b"models:\n  - name: a\n    descriptor: [unclosed\n", r"p\.yaml: line 4, column 1: not valid YAML"),
        ("p.yaml", b"models: [\n", r"p\.yaml: line 2, column 1: not valid YAML"),
        ("p.json", b'{"models": [\n  {"name": }]}', r"p\.json: line 2, column 12: not valid JSON"),
        ("p.json", b"[" * 100_000, r"p\.json: not valid JSON \(RecursionError"),
        ("p.yaml", b"name: caf\xe9\n", r"p\.yaml: not UTF-8 text \(byte offset 9\)"),
        ("p.yaml", b"", r"p\.yaml: a pool file must be a mapping with a 'models' list, got None"),
        ("p.yaml", b"models:\n  - name: Tiny\n    descriptor: d\n    price_per_1m_output: 1\n    max_tokens: many\n",
         r"p\.yaml: pool model 'Tiny': field 'max_tokens' must be an integer, got 'many'"),
    ],
)  # fmt: skip
def test_pool_file_errors_name_the_file_and_line_or_field(
    tmp_path: Path, name: str, content: bytes, match: str
) -> None:
    path = tmp_path / name
    path.write_bytes(content)
    with pytest.raises(InvalidConfig, match=match):
        load_pool_spec(path)
    with pytest.raises(InvalidConfig, match=match):
        build_pool(str(path))


def test_a_missing_pool_file_names_the_path(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match=r"pool file '.*missing\.yaml' does not exist"):
        load_pool_spec(tmp_path / "missing.yaml")
    (tmp_path / "dir.yaml").mkdir()
    with pytest.raises(FileNotFoundError, match=r"dir\.yaml' does not exist \(or is not a file\)"):
        load_pool_spec(tmp_path / "dir.yaml")


def test_yaml_integers_and_nulls_still_load(tmp_path: Path) -> None:
    path = tmp_path / "p.yaml"
    path.write_text("models:\n  - {name: T, descriptor: d, price_per_1m_output: 1, temperature: 0, model_id: null}\n")
    model = load_pool_spec(path).models[0]
    assert (model.price_per_1m_output, model.temperature, model.model_id) == (1.0, 0.0, "")
    assert isinstance(model.temperature, float)
