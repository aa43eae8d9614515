"""Fault tests of the OpenAI-compatible backend against a local misbehaving HTTP server.

The server (``http.server`` in a thread on 127.0.0.1) picks its behaviour from the request's
``model`` field, e.g. ``"ok"``, ``"e500"`` (always 500), ``"burst500:2"`` (500 twice for a query, then
200), ``"hang"``, ``"trickle"``, ``"reset"``, ``"malformed"``. Every fault test is guarded by
``pytest.mark.timeout`` (the hang guard) and asserts the attempt counts, the failure label and the
metrics; nothing asserts wall-clock time.
"""

from __future__ import annotations

import asyncio
import json
import logging
import math
import socket
import struct
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from recal_gym.errors import BackendError, InvalidConfig, UnknownModel
from recal_gym.pools import build_pool
from recal_gym.pools.openai import (
    RETRYABLE_ERRORS,
    OpenAIBackend,
    chat_request_body,
    completion_token_bound,
    failure_bound_s,
)
from recal_gym.pools.options import PoolOptions
from recal_gym.pools.spec import PoolModel, PoolSpec
from recal_gym.prompt import render_candidate_prompt
from recal_gym.types import CallRequest, QARow

SECRET = "sk-test-SECRET-d0n0tl3ak-4242"
ROW = QARow(question_id="t/0", question="What is the capital of France?", golden_answers=("Paris",), data_source="t")


class _State:
    """Shared state of the fake server: request log, per-key counters, in-flight gauge."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.bodies: list[dict] = []
        self.auth: list[str] = []
        self.counts: dict[tuple[str, str], int] = {}
        self.in_flight = 0
        self.max_in_flight = 0
        self.release = threading.Event()  # set at teardown: hanging handlers give up


def _completion(text: str, *, usage: bool = True) -> bytes:
    payload: dict = {
        "id": "x",
        "object": "chat.completion",
        "choices": [{"index": 0, "message": {"role": "assistant", "content": text}, "finish_reason": "stop"}],
    }
    if usage:
        payload["usage"] = {"prompt_tokens": 11, "completion_tokens": 7, "total_tokens": 18}
    return json.dumps(payload).encode()


def _usage_body(usage: str) -> bytes:
    head = b'{"choices": [{"message": {"role": "assistant", "content": "Paris"}}], "usage": '
    return head + usage.encode() + b"}"


_ODD_BODIES: dict[str, bytes] = {
    "deepjson": b"[" * 200_000,
    "deepobject": b'{"choices": ' + b'{"a": ' * 50_000 + b"1" + b"}" * 50_000 + b"}",
    "bigusage": _usage_body('{"completion_tokens": ' + "9" * 401 + "}"),
    "floatusage": _usage_body('{"completion_tokens": 1e30}'),
    "negusage": _usage_body('{"completion_tokens": -1}'),
    "strusage": _usage_body('{"completion_tokens": "7"}'),
    "boolusage": _usage_body('{"completion_tokens": true}'),
    "overusage": _usage_body('{"completion_tokens": 1041}'),  # 2 * 512 + 17
    "badprompt": _usage_body('{"completion_tokens": 7, "prompt_tokens": 1e400}'),
    "edgeusage": _usage_body('{"completion_tokens": 1040}'),  # exactly the bound for max_tokens=512
    "surrogate": b'{"choices": [{"message": {"content": "Paris \\ud800 is it"}}], "usage": {"completion_tokens": 3}}',
    "notutf8": b'{"choices": [{"message": {"content": "\xff\xfe"}}]}',
}
"""200 bodies the client must survive: too deep to decode, out-of-range usage, lone surrogates, bad bytes."""


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server: _Server

    def log_message(self, format: str, *args: object) -> None:  # keep test output quiet
        pass

    def _send(self, status: int, body: bytes, headers: dict[str, str] | None = None) -> None:
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        for k, v in (headers or {}).items():
            self.send_header(k, v)
        self.end_headers()
        self.wfile.write(body)

    def _reset(self) -> None:
        # SO_LINGER with a zero timeout makes close() send a TCP RST instead of a FIN.
        self.connection.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        self.connection.close()
        self.close_connection = True

    def do_POST(self) -> None:
        state = self.server.state
        body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
        model, query = body["model"], body["messages"][0]["content"]
        with state.lock:
            state.bodies.append(body)
            state.auth.append(self.headers.get("Authorization", ""))
            n = state.counts[(model, query)] = state.counts.get((model, query), 0) + 1
            state.in_flight += 1
            state.max_in_flight = max(state.max_in_flight, state.in_flight)
        try:
            self._behave(model, n, query)
        except OSError:  # the client gave up (timeout) and closed the socket
            self.close_connection = True
        finally:
            with state.lock:
                state.in_flight -= 1

    def _behave(self, model: str, n: int, query: str) -> None:  # noqa: C901 - one branch per fault
        kind, _, arg = model.partition(":")
        burst = int(arg) if kind.startswith("burst") and arg else 0
        state = self.server.state
        if kind == "ok" or (kind.startswith("burst") and n > burst):
            self._send(200, _completion(f"echo {n}: {query[-30:]}"))
        elif kind in ("e500", "burst500"):
            self._send(500, b'{"error": "boom"}')
        elif kind == "e503html":
            self._send(503, b"<html>overloaded</html>")
        elif kind in ("e429", "burst429"):
            self._send(429, b'{"error": "slow down"}', {"Retry-After": "0.01"})
        elif kind == "e404":
            self._send(404, b'{"error": "no such model"}')
        elif kind == "hang":
            state.release.wait(10.0)
        elif kind == "slow":  # answers, but only after a delay (for the concurrency gauge)
            state.release.wait(float(arg))
            self._send(200, _completion("slow answer"))
        elif kind == "trickle":  # correct headers, then one body byte every 50 ms
            body = _completion("trickled")
            self.send_response(200)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            for b in body:
                if state.release.wait(0.05):
                    return
                self.wfile.write(bytes([b]))
                self.wfile.flush()
        elif kind in ("reset", "burstreset"):
            self._reset()
        elif kind == "malformed":
            self._send(200, b'{"choices": [{"message": {"content": "cut')
        elif kind == "nochoices":
            self._send(200, b'{"object": "chat.completion", "choices": []}')
        elif kind == "nullcontent":
            self._send(200, b'{"choices": [{"message": {"content": null}}]}')
        elif kind == "nousage":
            self._send(200, _completion("Paris is the capital.", usage=False))
        elif kind in _ODD_BODIES:
            self._send(200, _ODD_BODIES[kind])
        elif kind == "huge":  # a valid completion far over the client's byte cap
            self._send(200, _completion("w" * 3_000_000))
        elif kind == "declaredhuge":  # announces 1 GB, sends a few bytes, then hangs up
            self.send_response(200)
            self.send_header("Content-Length", str(10**9))
            self.end_headers()
            self.wfile.write(b'{"choices": ')
            self.close_connection = True
        elif kind == "chunkedhuge":  # no Content-Length: chunked, endless
            self.send_response(200)
            self.send_header("Transfer-Encoding", "chunked")
            self.end_headers()
            chunk = b"x" * 65536
            for _ in range(200):
                if state.release.is_set():
                    return
                self.wfile.write(b"%x\r\n%s\r\n" % (len(chunk), chunk))
            self.wfile.write(b"0\r\n\r\n")
        else:
            self._send(400, b'{"error": "unknown test model"}')


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    block_on_close = False
    request_queue_size = 64  # the default backlog of 5 drops SYNs when many calls connect at once

    def __init__(self) -> None:
        super().__init__(("127.0.0.1", 0), _Handler)
        self.state = _State()

    def handle_error(self, request: object, client_address: object) -> None:  # client hung up: expected
        pass

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server_address[1]}/v1"


@pytest.fixture
def server() -> Iterator[_Server]:
    srv = _Server()
    thread = threading.Thread(target=srv.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    yield srv
    srv.state.release.set()
    srv.shutdown()
    srv.server_close()


@pytest.fixture
def api_key(monkeypatch: pytest.MonkeyPatch) -> str:
    monkeypatch.setenv("RECAL_TEST_KEY", SECRET)
    return "RECAL_TEST_KEY"


OPTS = PoolOptions(timeout_s=1.0, max_retries=2, backoff_s=0.01, max_concurrency=8)


def _model(server: _Server, model_id: str, name: str | None = None, **kw: object) -> PoolModel:
    return PoolModel(
        name=name or model_id.replace(":", "-"),
        descriptor="test model",
        backend="openai",
        model_id=model_id,
        base_url=server.url,
        price_per_1m_output=0.5,
        **kw,  # type: ignore[arg-type]
    )


def _backend(server: _Server, *model_ids: str, options: PoolOptions = OPTS) -> OpenAIBackend:
    return OpenAIBackend([_model(server, m) for m in model_ids], options)


def _req(model_id: str, query: str = "capital of France?") -> CallRequest:
    return CallRequest(model=model_id.replace(":", "-"), query=query, question=ROW)


# ---------------------------------------------------------------------------- happy path


@pytest.mark.timeout(20)
def m_latency(backend: OpenAIBackend) -> float:
    return backend.metrics()["latency_s_sum"]


def test_success_reads_usage_and_sends_protocol_body(server: _Server, api_key: str) -> None:
    model = _model(server, "ok", temperature=0.1, seed=7, max_tokens=64, api_key_env=api_key)
    backend = OpenAIBackend([model], OPTS)
    try:
        [res] = backend.call_batch([_req("ok")])
    finally:
        backend.close()
    assert res.ok and res.error == "" and res.attempts == 1 and not res.cached
    assert (res.completion_tokens, res.prompt_tokens) == (7, 11)
    assert res.latency_s is not None and 0.0 < res.latency_s <= m_latency(backend)  # the measured attempt
    assert res.text.startswith("echo 1:")
    [body] = server.state.bodies
    assert body["messages"] == [{"role": "user", "content": render_candidate_prompt("capital of France?")}]
    assert (body["model"], body["temperature"], body["top_p"], body["seed"], body["max_tokens"]) == (
        "ok",
        0.1,
        1.0,
        7,
        64,
    )
    assert body == json.loads(json.dumps(chat_request_body(model, "capital of France?")))
    assert server.state.auth == [f"Bearer {SECRET}"]
    m = backend.metrics()
    assert m["calls"] == m["calls_ok"] == m["attempts"] == 1.0
    assert m["completion_tokens"] == 7.0 and m["cost_micro_usd"] == 3.5
    assert all(isinstance(v, float) for v in m.values())


@pytest.mark.timeout(20)
def test_batch_keeps_order_and_mixes_failures(server: _Server) -> None:
    backend = _backend(server, "ok", "e404", "malformed")
    queries = [f"q{i}" for i in range(6)]
    reqs = [_req(("ok", "e404", "malformed")[i % 3], q) for i, q in enumerate(queries)]
    try:
        results = backend.call_batch(reqs)
    finally:
        backend.close()
    assert [r.ok for r in results] == [True, False, False] * 2
    assert [r.error for r in results] == ["", "http_4xx", "malformed"] * 2
    assert results[0].text.endswith("q0") and results[3].text.endswith("q3")


@pytest.mark.timeout(20)
def test_usage_missing_falls_back_to_word_punct_count(server: _Server) -> None:
    backend = _backend(server, "nousage")
    try:
        [res] = backend.call_batch([_req("nousage")])
    finally:
        backend.close()
    assert res.ok and res.text == "Paris is the capital."
    assert res.completion_tokens == 5  # Paris / is / the / capital / .
    assert backend.metrics()["usage_missing"] == 1.0


# ---------------------------------------------------------------------------- faults


@pytest.mark.timeout(30)
@pytest.mark.parametrize(
    ("model_id", "error"),
    [
        ("e500", "http_5xx"),
        ("e503html", "http_5xx"),
        ("e429", "http_429"),
        ("hang", "timeout"),
        ("trickle", "timeout"),
        ("reset", "connection"),
    ],
)
def test_retryable_faults_fail_after_bounded_retries(server: _Server, model_id: str, error: str) -> None:
    backend = _backend(server, model_id)
    try:
        [res] = backend.call_batch([_req(model_id)])
    finally:
        backend.close()
    assert error in RETRYABLE_ERRORS
    assert not res.ok and res.error == error and res.text == "" and res.completion_tokens == 0
    assert res.attempts == OPTS.max_retries + 1
    m = backend.metrics()
    assert m[f"errors/{error}"] == OPTS.max_retries + 1
    assert m[f"failed/{error}"] == 1.0 and m["calls_failed"] == 1.0 and m["retries"] == OPTS.max_retries
    assert len(server.state.bodies) == OPTS.max_retries + 1


@pytest.mark.timeout(30)
@pytest.mark.parametrize(
    ("model_id", "error"),
    [("malformed", "malformed"), ("nochoices", "malformed"), ("nullcontent", "malformed"), ("e404", "http_4xx")],
)
def test_permanent_faults_are_not_retried(server: _Server, model_id: str, error: str) -> None:
    backend = _backend(server, model_id)
    try:
        [res] = backend.call_batch([_req(model_id)])
    finally:
        backend.close()
    assert not res.ok and res.error == error and res.attempts == 1
    assert backend.metrics()["retries"] == 0.0 and len(server.state.bodies) == 1


@pytest.mark.timeout(30)
@pytest.mark.parametrize(("model_id", "error"), [("burst500:2", "http_5xx"), ("burst429:2", "http_429")])
def test_bursts_shorter_than_the_retry_budget_recover(server: _Server, model_id: str, error: str) -> None:
    backend = _backend(server, model_id)
    try:
        results = backend.call_batch([_req(model_id, "a"), _req(model_id, "b")])
    finally:
        backend.close()
    assert all(r.ok and r.attempts == 3 for r in results)
    assert [r.text[:7] for r in results] == ["echo 3:", "echo 3:"]
    m = backend.metrics()
    assert m[f"errors/{error}"] == 4.0 and m["retries"] == 4.0 and m["calls_failed"] == 0.0


@pytest.mark.timeout(30)
def test_burst_longer_than_the_retry_budget_fails(server: _Server) -> None:
    backend = _backend(server, "burst500:3")  # 3 failures > 1 + max_retries(=2) - 1
    try:
        [res] = backend.call_batch([_req("burst500:3")])
    finally:
        backend.close()
    assert not res.ok and res.error == "http_5xx" and res.attempts == 3


@pytest.mark.timeout(20)
def test_connection_refused_is_a_connection_failure() -> None:
    with socket.socket() as s:  # find a port with nobody listening
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    model = PoolModel(
        name="gone",
        descriptor="d",
        backend="openai",
        model_id="gone",
        base_url=f"http://127.0.0.1:{port}/v1",
        price_per_1m_output=1.0,
    )
    backend = OpenAIBackend([model], OPTS)
    try:
        [res] = backend.call_batch([CallRequest(model="gone", query="q", question=ROW)])
    finally:
        backend.close()
    assert not res.ok and res.error == "connection" and res.attempts == OPTS.max_retries + 1


@pytest.mark.timeout(30)
def test_every_fault_in_one_batch_returns_with_every_result(server: _Server) -> None:
    kinds = ["ok", "e500", "e429", "hang", "trickle", "reset", "malformed", "burst500:1"]
    backend = _backend(server, *kinds)
    try:
        results = backend.call_batch([_req(k) for k in kinds])
    finally:
        backend.close()
    assert [r.ok for r in results] == [True, False, False, False, False, False, False, True]
    assert max(r.attempts for r in results) <= OPTS.max_retries + 1
    m = backend.metrics()
    assert m["calls"] == 8.0 and m["calls_ok"] == 2.0 and m["calls_failed"] == 6.0


def test_failure_bound_oracle() -> None:
    opts = PoolOptions(timeout_s=2.0, max_retries=3, backoff_s=0.5)
    assert failure_bound_s(opts) == 4 * 2.0 + 0.5 * 7


def test_backoff_is_jittered_within_its_cap(server: _Server) -> None:
    backend = _backend(server, "ok", options=PoolOptions(backoff_s=1.0, max_retries=4))
    delays = [backend._backoff(k, 0.0) for k in range(1, 5) for _ in range(50)]
    for k in range(1, 5):
        chunk = delays[(k - 1) * 50 : k * 50]
        assert all(2 ** (k - 1) / 2 <= d <= 2 ** (k - 1) for d in chunk)
        assert len(set(chunk)) > 1
    assert backend._backoff(1, 100.0) == 1.0  # Retry-After is honoured only up to the cap
    assert backend._backoff(2, 1.9) == 1.9


# ---------------------------------------------------------------------------- concurrency and loops


@pytest.mark.timeout(30)
def test_concurrency_is_bounded(server: _Server) -> None:
    opts = PoolOptions(timeout_s=5.0, max_retries=0, backoff_s=0.0, max_concurrency=3)
    backend = _backend(server, "slow:0.1", options=opts)
    try:
        results = backend.call_batch([_req("slow:0.1", f"q{i}") for i in range(9)])
    finally:
        backend.close()
    assert all(r.ok for r in results)
    assert 2 <= server.state.max_in_flight <= 3


@pytest.mark.timeout(20)
def test_call_batch_works_inside_a_running_event_loop(server: _Server) -> None:
    backend = _backend(server, "ok")

    async def notebook_cell() -> list:
        return backend.call_batch([_req("ok")])

    try:
        [res] = asyncio.run(notebook_cell())
        [again] = backend.call_batch([_req("ok")])  # and from plain sync code afterwards
    finally:
        backend.close()
    assert res.ok and again.ok


@pytest.mark.timeout(30)
def test_call_batch_from_several_threads_at_once(server: _Server) -> None:
    from concurrent.futures import ThreadPoolExecutor

    backend = _backend(server, "ok")
    try:
        with ThreadPoolExecutor(4) as pool:
            jobs = [[_req("ok", f"t{t}-{i}") for i in range(5)] for t in range(4)]
            batches = list(pool.map(backend.call_batch, jobs))
    finally:
        backend.close()
    assert all(r.ok for batch in batches for r in batch)
    assert [r.text.split()[-1] for r in batches[2]] == [f"t2-{i}" for i in range(5)]
    assert backend.metrics()["calls_ok"] == 20.0


# ---------------------------------------------------------------------------- secrets


@pytest.mark.timeout(20)
def test_api_key_never_in_repr_logs_or_cache(
    server: _Server, api_key: str, tmp_path, caplog: pytest.LogCaptureFixture
) -> None:
    spec = PoolSpec(
        name="t",
        models=(_model(server, "ok", api_key_env=api_key), _model(server, "e500", api_key_env=api_key)),
    )
    caplog.set_level(logging.DEBUG)
    pool = build_pool(spec, PoolOptions(cache_path=str(tmp_path / "c.sqlite"), timeout_s=1.0, backoff_s=0.01))
    try:
        results = pool.call_batch([_req("ok"), _req("e500")])
        texts = [repr(pool.backends["openai"]), repr(pool.backends["openai"].inner), repr(spec)]  # type: ignore[attr-defined]
    finally:
        pool.close()
    assert results[0].ok and not results[1].ok
    assert server.state.auth[0] == f"Bearer {SECRET}"
    assert caplog.records, "the failed call must be logged"
    dumped = "\n".join([*texts, caplog.text, *(r.getMessage() for r in caplog.records)])
    assert SECRET not in dumped
    for f in tmp_path.iterdir():
        assert SECRET.encode() not in f.read_bytes()
    assert (tmp_path / "c.sqlite").exists()


@pytest.mark.timeout(20)
def test_missing_key_at_call_time_fails_without_sending(
    server: _Server, api_key: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    backend = OpenAIBackend([_model(server, "ok", api_key_env=api_key)], OPTS)
    monkeypatch.delenv(api_key)
    try:
        [res] = backend.call_batch([_req("ok")])
    finally:
        backend.close()
    assert not res.ok and res.error == "missing_api_key" and res.attempts == 0
    assert server.state.bodies == []


# ---------------------------------------------------------------------------- validation


def test_missing_key_at_construction_raises(server: _Server, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("RECAL_ABSENT_KEY", raising=False)
    with pytest.raises(BackendError, match="RECAL_ABSENT_KEY"):
        OpenAIBackend([_model(server, "ok", api_key_env="RECAL_ABSENT_KEY")], OPTS)


@pytest.mark.parametrize(
    ("fields", "match"),
    [({"base_url": "127.0.0.1:8000/v1"}, "base_url must start with http"), ({"model_id": ""}, "needs a model_id")],
)
def test_bad_model_entries_raise(fields: dict, match: str) -> None:
    base = {"name": "m", "descriptor": "d", "backend": "openai", "price_per_1m_output": 1.0}
    base |= {"model_id": "x", "base_url": "http://127.0.0.1:1/v1"} | fields
    with pytest.raises(InvalidConfig, match=match):
        OpenAIBackend([PoolModel(**base)], OPTS)


def test_unknown_model_and_closed_backend_raise(server: _Server) -> None:
    backend = _backend(server, "ok")
    with pytest.raises(UnknownModel, match="does not serve model 'okk'"):
        backend.call_batch([CallRequest(model="okk", query="q", question=ROW)])
    backend.close()
    backend.close()  # idempotent
    with pytest.raises(BackendError, match="after close"):
        backend.call_batch([_req("ok")])


@pytest.mark.timeout(20)
def test_build_pool_namespaces_metrics(server: _Server) -> None:
    pool = build_pool(PoolSpec(name="t", models=(_model(server, "ok"),)), OPTS)
    try:
        assert pool.call(_req("ok")).ok
        assert pool.metrics()["pool/openai/calls_ok"] == 1.0
    finally:
        pool.close()


# ---------------------------------------------------------------------------- environment


@pytest.mark.timeout(60)
def test_env_episode_survives_a_misbehaving_server(server: _Server) -> None:
    import gymnasium as gym

    import recal_gym  # noqa: F401 - registers RouterQA-v0

    spec = PoolSpec(
        name="live",
        models=(_model(server, "ok", name="Good-Model"), _model(server, "e500", name="Broken-Model")),
    )
    opts = PoolOptions(timeout_s=1.0, max_retries=1, backoff_s=0.01)
    env = gym.make("RouterQA-v0", dataset=[ROW], pool=spec, pool_options=opts)
    try:
        env.reset(seed=0)
        obs, _, term, trunc, info = env.step("<think>ask</think>\n<search> Broken-Model: capital? </search>")
        assert info["route_outcome"] == "call_failed" and info["n_failed_calls"] == 1.0
        assert obs == "\n\n<information>None</information>\n\n" and not (term or trunc)
        assert info["call_cost"] == 0.0 and info["model"] == "Broken-Model"
        obs, _, term, _, info = env.step("<think>again</think>\n<search> Good-Model: capital? </search>")
        assert info["route_outcome"] == "executed" and "echo" in obs and not term
        assert info["call_cost"] == 7 * 0.5  # usage.completion_tokens x price
        _, _, term, _, info = env.step("<think>done</think>\n<answer> Paris </answer>")
        assert term and info["scored"] and info["em"] == 1.0
        outcomes = [c["outcome"] for c in info["episode_record"]["calls"]]
        assert outcomes == ["call_failed", "executed"]
        metrics = env.unwrapped.pool.metrics()
        assert metrics["pool/openai/failed/http_5xx"] == 1.0 and metrics["pool/openai/errors/http_5xx"] == 2.0
    finally:
        env.close()


# ---------------------------------------------------------------------------- hostile bodies (issue #12)


@pytest.mark.timeout(30)
@pytest.mark.parametrize(
    ("model_id", "error"),
    [
        ("deepjson", "malformed"),
        ("deepobject", "malformed"),
        ("notutf8", "malformed"),
        ("bigusage", "bad_usage"),
        ("floatusage", "bad_usage"),
        ("negusage", "bad_usage"),
        ("strusage", "bad_usage"),
        ("boolusage", "bad_usage"),
        ("overusage", "bad_usage"),
        ("badprompt", "bad_usage"),
        ("huge", "too_large"),
        ("declaredhuge", "too_large"),
        ("chunkedhuge", "too_large"),
    ],
)
def test_hostile_bodies_are_failed_calls_never_exceptions(server: _Server, model_id: str, error: str) -> None:
    backend = _backend(server, model_id, options=PoolOptions(timeout_s=5.0, max_retries=2, max_response_bytes=2**20))
    try:
        [res] = backend.call_batch([_req(model_id)])
    finally:
        backend.close()
    assert not res.ok and res.error == error and res.attempts == 1 and res.text == ""
    m = backend.metrics()
    assert m[f"failed/{error}"] == 1.0 and m["cost_micro_usd"] == 0.0 and m["retries"] == 0.0


@pytest.mark.timeout(20)
def test_usage_at_the_bound_and_lone_surrogates_are_accepted(server: _Server) -> None:
    backend = _backend(server, "edgeusage", "surrogate")
    try:
        edge, sur = backend.call_batch([_req("edgeusage"), _req("surrogate")])
    finally:
        backend.close()
    assert completion_token_bound(512) == 1040
    assert edge.ok and edge.completion_tokens == 1040
    assert sur.ok and sur.text == "Paris \ud800 is it" and sur.completion_tokens == 3


@pytest.mark.timeout(60)
def test_env_steps_through_every_hostile_body(server: _Server) -> None:
    import gymnasium as gym

    import recal_gym  # noqa: F401

    kinds = [*_ODD_BODIES, "huge", "declaredhuge", "chunkedhuge"]
    spec = PoolSpec(name="hostile", models=tuple(_model(server, k, name=f"m{i}") for i, k in enumerate(kinds)))
    opts = PoolOptions(timeout_s=5.0, max_retries=0, max_response_bytes=2**20)
    env = gym.make("RouterQA-v0", dataset=[ROW], pool=spec, pool_options=opts, max_routed_turns=len(kinds)).unwrapped
    try:
        env.reset(seed=0)
        for i, kind in enumerate(kinds):
            obs, reward, term, trunc, info = env.step(f"<search> m{i}: capital of France? </search>")
            ok = kind in ("edgeusage", "surrogate")
            assert info["route_outcome"] == ("executed" if ok else "call_failed"), kind
            assert "\ud800" not in obs and math.isfinite(info["raw_cost"])
        obs, reward, term, trunc, info = env.step("<answer> Paris </answer>")
        assert term and math.isfinite(reward)
    finally:
        env.close()
