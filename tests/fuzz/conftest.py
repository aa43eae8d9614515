"""Shared pieces of the fuzz suite: step invariants, a scripted hostile backend, a raw misbehaving server.

``RECAL_GYM_FUZZ_EXAMPLES`` (default 150) sets the examples per hypothesis test, for deeper local runs
(``RECAL_GYM_FUZZ_EXAMPLES=3000 pytest tests/fuzz``).

The server is a plain TCP socket on 127.0.0.1 (no HTTP library on its side), so a test can send any
bytes at all: broken status lines, lying ``Content-Length`` headers, truncated or endless bodies.
Responses are scripted per request ``model`` field: ``server.script[model_id] = raw_bytes``.
"""

from __future__ import annotations

import json
import math
import os
import socket
import threading
from collections.abc import Iterator, Sequence
from typing import Any

import pytest
from hypothesis import HealthCheck, settings

from recal_gym.pools.openai import ERROR_LABELS
from recal_gym.rewards import BUILTIN_COMPONENTS as COMPONENTS
from recal_gym.types import CallRequest, QARow

EXAMPLES = int(os.environ.get("RECAL_GYM_FUZZ_EXAMPLES", "150"))
FUZZ = settings(max_examples=EXAMPLES, deadline=None, suppress_health_check=[HealthCheck.too_slow])
"""Settings of every hypothesis test of the suite (no deadline: a few examples hold megabytes)."""

FAILURE_LABELS = frozenset(ERROR_LABELS)
"""Every label an OpenAI-backend call may fail with (``recal_gym/pools/openai.py``)."""


def fold(info: dict[str, Any]) -> float:
    """The reward recombined from ``info``: left fold of weight x component in key order."""
    total = 0.0
    for k in COMPONENTS:
        total = total + info["reward_weights"][k] * info["reward_components"][k]
    return total


def check_step(out: tuple[Any, ...], max_chars: int | None = None) -> None:
    """Invariants of one ``step`` result (types, finiteness, the fold, flag consistency)."""
    obs, reward, terminated, truncated, info = out
    assert isinstance(obs, str) and type(reward) is float and math.isfinite(reward)
    assert isinstance(terminated, bool) and isinstance(truncated, bool) and not (terminated and truncated)
    assert reward == fold(info)
    assert math.isfinite(info["raw_cost"]) and info["raw_cost"] >= 0.0
    assert all(math.isfinite(v) for v in info["reward_components"].values())
    if info["route_outcome"] == "call_failed":
        assert info["call_error"] and obs == "\n\n<information>None</information>\n\n" and info["call_cost"] == 0.0
    obs.encode("utf-8")  # no lone surrogate reaches an observation
    if max_chars is not None:
        assert info["kept_chars"] <= max_chars


class HostileBackend:
    """Answers calls with whatever objects it is given (one per call, cycling); may raise on demand."""

    def __init__(self, answers: Sequence[object] = (), raise_every: int = 0) -> None:
        self.answers = list(answers) or [None]
        self.raise_every = raise_every
        self.calls = 0
        self.raised = 0

    def call_batch(self, requests: Sequence[CallRequest]) -> list[object]:
        self.calls += 1
        if self.raise_every and self.calls % self.raise_every == 0:
            self.raised += 1
            raise ArithmeticError("injected backend bug")
        return [self.answers[(self.calls + i) % len(self.answers)] for i in range(len(requests))]

    def metrics(self) -> dict[str, float]:
        return {"calls": float(self.calls)}

    def attach_questions(self, rows: Sequence[QARow]) -> None:
        pass

    def close(self) -> None:
        pass


class RawServer:
    """A TCP server on 127.0.0.1 answering each HTTP request with scripted raw bytes, then closing."""

    def __init__(self) -> None:
        self.script: dict[str, bytes] = {}
        self.requests = 0
        self._sock = socket.create_server(("127.0.0.1", 0), backlog=64)
        self._sock.settimeout(0.1)
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._serve, daemon=True)
        self._thread.start()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self._sock.getsockname()[1]}/v1"

    def _serve(self) -> None:
        while not self._stop.is_set():
            try:
                conn, _ = self._sock.accept()
            except (TimeoutError, OSError):
                continue
            threading.Thread(target=self._handle, args=(conn,), daemon=True).start()

    def _handle(self, conn: socket.socket) -> None:
        with conn:
            conn.settimeout(5.0)
            try:
                data = b""
                while b"\r\n\r\n" not in data:
                    chunk = conn.recv(65536)
                    if not chunk:
                        return
                    data += chunk
                head, _, body = data.partition(b"\r\n\r\n")
                length = next(
                    (int(h.split(b":")[1]) for h in head.split(b"\r\n") if h.lower().startswith(b"content-length")), 0
                )
                while len(body) < length:
                    body += conn.recv(65536)
                self.requests += 1
                model = json.loads(body)["model"]
                conn.sendall(self.script.get(model, b"HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\n\r\n"))
            except OSError:  # the client hung up first (it read enough, or timed out)
                pass

    def close(self) -> None:
        self._stop.set()
        self._thread.join(timeout=2.0)
        self._sock.close()


def http_response(status: bytes, headers: Sequence[bytes], body: bytes) -> bytes:
    """A raw HTTP/1.1 response: status line, header lines, blank line, body."""
    return b"HTTP/1.1 " + status + b"\r\n" + b"".join(h + b"\r\n" for h in headers) + b"\r\n" + body


@pytest.fixture(scope="module")
def raw_server() -> Iterator[RawServer]:
    srv = RawServer()
    yield srv
    srv.close()
