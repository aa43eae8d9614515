"""Fuzzing candidate replies through a local misbehaving server on 127.0.0.1 (issue #12).

Hypothesis writes raw HTTP responses (any status line, lying headers, truncated, deep, huge or
non-UTF-8 bodies, out-of-range usage); the OpenAI backend must turn each into a result or a labelled
failure, and an env routed to that server must take a normal step.
"""

from __future__ import annotations

import json
import math

import gymnasium as gym
from hypothesis import given, settings
from hypothesis import strategies as st

import recal_gym  # noqa: F401  (registers the envs)
from recal_gym.pools.openai import OpenAIBackend, completion_token_bound
from recal_gym.pools.options import PoolOptions
from recal_gym.pools.spec import PoolModel, PoolSpec
from recal_gym.types import CallRequest, QARow
from tests.fuzz.conftest import EXAMPLES, FAILURE_LABELS, FUZZ, RawServer, check_step, http_response

ROW = QARow(question_id="t/0", question="What is the capital of France?", golden_answers=("Paris",), data_source="t")
OPTS = PoolOptions(timeout_s=2.0, max_retries=1, backoff_s=0.0, max_response_bytes=64 * 1024)
JSON_VALUES = st.recursive(
    st.none()
    | st.booleans()
    | st.integers()
    | st.floats()
    | st.text(st.characters(exclude_categories=()), max_size=20),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner, max_size=4),
    max_leaves=12,
)
USAGE_VALUES = st.one_of(
    st.integers(0, 1040),  # in range for max_tokens=512
    st.integers(1041, 10**12) | st.integers(max_value=-1),
    st.sampled_from(["9" * 401, "1e30", "-0", "1.5", '"7"', "true", "null", "[]", "Infinity", "NaN"]).map(
        lambda raw: json.loads(raw) if raw not in ("Infinity", "NaN") else float(raw)
    ),
)


def _completion(content: object, usage: object) -> bytes:
    payload: dict = {"choices": [{"message": {"role": "assistant", "content": content}}]}
    if usage is not None:
        payload["usage"] = usage
    return json.dumps(payload).encode()


BODIES = st.one_of(
    st.binary(max_size=300),
    JSON_VALUES.map(lambda v: json.dumps(v).encode()),
    st.builds(
        _completion,
        content=st.text(st.characters(exclude_categories=()), max_size=100) | JSON_VALUES,
        usage=st.none() | st.fixed_dictionaries({"completion_tokens": USAGE_VALUES, "prompt_tokens": USAGE_VALUES}),
    ),
    st.sampled_from(
        [
            b"[" * 100_000,
            b'{"choices": ' + b'{"a": ' * 30_000,
            _completion("w" * 100_000, {"completion_tokens": 3}),
            _completion("Paris \udc80".encode("utf-8", "surrogatepass").decode("utf-8", "replace"), None),
            b'{"choices": [{"message": {"content": "\\ud800 x"}}], "usage": {"completion_tokens": 2}}',
        ]
    ),
)
STATUS = st.sampled_from([b"200 OK", b"200 OK", b"200 OK", b"500 Oops", b"429 Slow", b"404 No", b"999 What", b"OK"])


COMPLETIONS = st.builds(
    _completion,
    content=st.text(st.characters(exclude_categories=()), max_size=100) | JSON_VALUES,
    usage=st.none()
    | st.fixed_dictionaries({"completion_tokens": USAGE_VALUES}, optional={"prompt_tokens": USAGE_VALUES}),
)


@st.composite
def anything(draw: st.DrawFn) -> bytes:
    """Any status line, any (lying) length header, any body."""
    body = draw(BODIES)
    length = draw(st.sampled_from(["exact", "short", "none", "huge", "junk"]))
    headers = [b"Content-Type: application/json"]
    headers += {
        "exact": [b"Content-Length: %d" % len(body)],
        "short": [b"Content-Length: %d" % max(0, len(body) - 3)],
        "none": [b"Connection: close"],
        "huge": [b"Content-Length: 99999999999999999999"],
        "junk": [b"Content-Length: twelve"],
    }[length]
    if draw(st.booleans()):
        headers.append(draw(st.sampled_from([b"Retry-After: 1e400", b"Content-Encoding: gzip", b"X: \xff\xfe"])))
    return http_response(draw(STATUS), headers, body)


def _well_formed(body: bytes) -> bytes:
    return http_response(b"200 OK", [b"Content-Length: %d" % len(body)], body)


responses = lambda: st.one_of(COMPLETIONS.map(_well_formed), anything())  # noqa: E731
"""A well-formed 200 around a completion with fuzzed content and usage, or anything at all."""


def _model(server: RawServer, model_id: str, name: str = "m") -> PoolModel:
    return PoolModel(
        name=name, descriptor="fuzzed server", backend="openai", model_id=model_id, base_url=server.url,
        price_per_1m_output=0.5,
    )  # fmt: skip


@FUZZ
@given(raw=responses())
def test_any_server_response_is_a_result_or_a_labelled_failure(raw_server: RawServer, raw: bytes) -> None:
    raw_server.script["fuzz"] = raw
    backend = OpenAIBackend([_model(raw_server, "fuzz")], OPTS)
    try:
        [res] = backend.call_batch([CallRequest(model="m", query="capital of France?", question=ROW)])
    finally:
        backend.close()
    if res.ok:
        assert isinstance(res.text, str) and res.error == ""
        assert 0 <= res.completion_tokens <= completion_token_bound(512) and isinstance(res.completion_tokens, int)
        assert len(res.text.encode("utf-8", "surrogatepass")) <= OPTS.max_response_bytes
    else:
        assert res.error in FAILURE_LABELS and res.text == "" and res.completion_tokens == 0
    assert 1 <= res.attempts <= OPTS.max_retries + 1
    assert all(math.isfinite(v) for v in backend.metrics().values())


@settings(FUZZ, max_examples=max(5, EXAMPLES // 6))
@given(raws=st.lists(responses(), min_size=2, max_size=2))
def test_env_steps_through_any_server_responses(raw_server: RawServer, raws: list[bytes]) -> None:
    for i, raw in enumerate(raws):
        raw_server.script[f"env{i}"] = raw
    spec = PoolSpec(name="fuzz", models=tuple(_model(raw_server, f"env{i}", f"m{i}") for i in range(len(raws))))
    env = gym.make("RouterQA-v0", dataset=[ROW], pool=spec, pool_options=OPTS).unwrapped
    try:
        env.reset(seed=0)
        for i in range(len(raws)):
            out = env.step(f"<search> m{i}: capital of France? </search>")
            check_step(out)
            assert out[4]["route_outcome"] in ("executed", "call_failed")
        check_step(env.step("<answer> Paris </answer>"))
    finally:
        env.close()
