"""The vLLM backend on a stand-in ``vllm`` module, and on a real engine when vLLM is installed.

The stand-in checks engine sharing and result mapping; the real test is marked ``integration``.
"""

from __future__ import annotations

import types
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import ClassVar

import pytest

from recal_gym.errors import BackendError, InvalidConfig, UnknownModel
from recal_gym.pools import PoolSpec, build_pool
from recal_gym.pools.options import PoolOptions
from recal_gym.pools.spec import PoolModel
from recal_gym.pools.vllm import VLLMBackend
from recal_gym.prompt import render_candidate_prompt
from recal_gym.types import CallRequest, QARow

ROW = QARow(question_id="t/0", question="What is the capital of France?", golden_answers=("Paris",), data_source="t")


@dataclass
class _Params:
    temperature: float
    top_p: float
    seed: int
    max_tokens: int


class _FakeLLM:
    """Echoes ``<model>|<temperature>|<last word>`` with one token id per character."""

    started: ClassVar[list[_FakeLLM]] = []  # engines built so far; reset by the fixture

    def __init__(self, model: str, **kwargs: object) -> None:
        self.model, self.kwargs, self.fail = model, dict(kwargs), False
        self.chats: list = []
        _FakeLLM.started.append(self)

    def chat(self, conversations: list, sampling_params: list, use_tqdm: bool) -> list:
        if self.fail:
            raise RuntimeError("engine died")
        self.chats.append((conversations, sampling_params))
        outs = []
        for conv, p in zip(conversations, sampling_params, strict=True):
            text = f"{Path(self.model).name}|{p.temperature}|{conv[0]['content'].split()[-1]}"
            completion = types.SimpleNamespace(text=text, token_ids=list(range(len(text))))
            outs.append(types.SimpleNamespace(outputs=[completion], prompt_token_ids=[0] * 7))
        return outs


@pytest.fixture
def fake_vllm(monkeypatch: pytest.MonkeyPatch) -> Iterator[type[_FakeLLM]]:
    module = types.ModuleType("vllm")
    module.LLM = _FakeLLM  # type: ignore[attr-defined]
    module.SamplingParams = _Params  # type: ignore[attr-defined]
    _FakeLLM.started = []
    monkeypatch.setitem(__import__("sys").modules, "vllm", module)
    yield _FakeLLM
    _FakeLLM.started = []


def _model(name: str, model_id: str, **kw: object) -> PoolModel:
    return PoolModel(name=name, descriptor="d", backend="vllm", model_id=model_id, price_per_1m_output=1.5, **kw)  # type: ignore[arg-type]


MODELS = (
    _model("greedy", "/weights/a"),
    _model("warm", "/weights/a", temperature=0.7, seed=3),
    _model("other", "/weights/b", max_tokens=64),
)


def test_same_weights_share_one_engine_with_per_request_sampling(fake_vllm: type[_FakeLLM]) -> None:
    backend = VLLMBackend(MODELS, PoolOptions(), engine_kwargs={"enforce_eager": True})
    reqs = [CallRequest(model=n, query=f"q-{n}", question=ROW) for n in ("greedy", "other", "warm", "greedy")]
    results = backend.call_batch(reqs)
    assert [r.text for r in results] == ["a|0.0|q-greedy", "b|0.0|q-other", "a|0.7|q-warm", "a|0.0|q-greedy"]
    assert all(r.ok and r.prompt_tokens == 7 and r.completion_tokens == len(r.text) for r in results)
    assert [e.model for e in fake_vllm.started] == ["/weights/a", "/weights/b"]
    assert fake_vllm.started[0].kwargs == {"max_model_len": 4096, "enforce_eager": True}
    convs, params = fake_vllm.started[0].chats[0]
    assert convs[0] == [{"role": "user", "content": render_candidate_prompt("q-greedy")}]
    assert params[1] == _Params(temperature=0.7, top_p=1.0, seed=3, max_tokens=512)
    m = backend.metrics()
    assert (m["engines"], m["batches"], m["calls_ok"]) == (2.0, 2.0, 4.0)
    assert m["cost_micro_usd"] == 1.5 * sum(r.completion_tokens for r in results)
    backend.call_batch(reqs[:1])
    assert len(fake_vllm.started) == 2  # engines are reused across batches


def test_engine_failure_fails_only_its_calls(fake_vllm: type[_FakeLLM]) -> None:
    pool = build_pool(PoolSpec(name="v", models=MODELS))
    try:
        pool.call(CallRequest(model="other", query="warm up", question=ROW))
        fake_vllm.started[0].fail = True
        results = pool.call_batch([CallRequest(model=n, query="q", question=ROW) for n in ("other", "greedy")])
    finally:
        pool.close()
    assert [r.ok for r in results] == [False, True] and results[0].error == "generation"
    assert pool.metrics()["pool/vllm/calls_failed"] == 1.0


def test_errors(fake_vllm: type[_FakeLLM], monkeypatch: pytest.MonkeyPatch) -> None:
    with pytest.raises(InvalidConfig, match="needs a model_id"):
        VLLMBackend([_model("x", "")], PoolOptions())
    backend = VLLMBackend(MODELS, PoolOptions())
    with pytest.raises(UnknownModel, match="does not serve model 'gredy'"):
        backend.call_batch([CallRequest(model="gredy", query="q", question=ROW)])
    monkeypatch.setitem(__import__("sys").modules, "vllm", None)  # makes `import vllm` fail
    with pytest.raises(BackendError, match=r"pip install 'recal-gym\[vllm\]'"):
        backend.call_batch([CallRequest(model="greedy", query="q", question=ROW)])


@pytest.mark.integration
@pytest.mark.slow
@pytest.mark.timeout(600)
def test_real_vllm_engine_on_a_tiny_model(tmp_path: Path) -> None:
    pytest.importorskip("vllm")
    from agents.models.tiny_model import build_vllm_tiny_model

    path = build_vllm_tiny_model(tmp_path / "tiny")
    model = _model("tiny", str(path), max_tokens=8)
    backend = VLLMBackend(
        [model, _model("tiny-warm", str(path), temperature=1.0, max_tokens=8)],
        PoolOptions(),
        engine_kwargs={"max_model_len": 1024, "enforce_eager": True},
    )
    try:
        results = backend.call_batch(
            [CallRequest(model=n, query="hello?", question=ROW) for n in ("tiny", "tiny-warm")]
        )
    finally:
        backend.close()
    assert all(r.ok and 1 <= r.completion_tokens <= 8 for r in results)
    assert backend.metrics()["engines"] == 1.0
