"""Backend for any OpenAI-compatible chat-completions server (``vllm serve``, hosted APIs).

Every batch goes out concurrently on one event loop that runs in a dedicated daemon thread, so
:meth:`OpenAIBackend.call_batch` is a plain blocking call that works from synchronous ``step()`` code
and from inside an already running loop (Jupyter). At most ``options.max_concurrency`` requests are in
flight at once.

**Attempts.** Each attempt has a hard deadline of ``options.timeout_s`` (connect, send, headers and the
whole body: a server that trickles its body slowly still times out). Failures are classified as:

========================  =========  ==========================================================
label                     retried    cause
========================  =========  ==========================================================
``timeout``               yes        the attempt passed its deadline
``http_429``              yes        rate limited (``Retry-After`` honoured up to the backoff cap)
``http_5xx``              yes        server error
``connection``            yes        refused, reset or dropped connection, protocol error
``malformed``             no         a 200 whose body is not a chat completion (incl. nesting too deep
                                     to decode, invalid UTF-8)
``too_large``             no         the body is longer than ``options.max_response_bytes`` (declared
                                     or read; reading stops at the cap, nothing is kept)
``bad_usage``             no         ``usage`` reports a token count that is not an int in range (below)
``http_4xx``              no         any other non-200 status (bad request, auth, ...)
``missing_api_key``       no         the variable named by ``api_key_env`` is unset at call time
========================  =========  ==========================================================

Retry ``k`` (1-based) first sleeps an "equal jitter" backoff drawn uniformly from
``[b/2, b]`` with ``b = backoff_s * 2**(k-1)``, so a failing call ends within
``(max_retries + 1) * timeout_s + backoff_s * (2**max_retries - 1)`` seconds (plus waiting for a free
concurrency slot). A call that still fails returns ``CallResult(ok=False, error=label)``: the
environment turns it into ``route_outcome="call_failed"`` and the episode goes on.

**Tokens and cost.** ``completion_tokens`` and ``prompt_tokens`` come from the response's ``usage``.
``completion_tokens`` must be a JSON integer in ``[0, 2 * max_tokens + 16]`` (the pool entry's
``max_tokens``: a server reporting more than twice what was asked is reporting nonsense) and
``prompt_tokens``, when present, an integer in ``[0, MAX_CALL_TOKENS]``; anything else (``1e30``, a
401-digit number, ``-1``, ``"7"``) fails the call as ``bad_usage`` so no absurd cost reaches an
episode. When a server omits ``usage`` (or its ``completion_tokens``), both are counted with
:class:`~recal_gym.tokens.WordPunctCounter` (words plus punctuation marks, a rough stand-in for
sub-word tokens) and the metric ``usage_missing`` counts such calls.

**Secrets.** The API key is read from ``os.environ[model.api_key_env]`` at every attempt and only put
in the request's ``Authorization`` header; it is never stored on the backend, logged, or cached.

**Metrics** (flat floats): ``calls``, ``calls_ok``, ``calls_failed``, ``attempts``, ``retries``,
``errors/<label>`` (per failed attempt), ``failed/<label>`` (per failed call), ``prompt_tokens``,
``completion_tokens``, ``cost_micro_usd``, ``usage_missing``, ``batches``, ``latency_s_sum`` and
``latency_s_max`` (per attempt). A successful call's ``CallResult.latency_s`` is the wall time of its successful
attempt (live latency is measured, so it is not deterministic; the response cache replays it exactly).
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import dataclasses
import json
import logging
import math
import os
import random
import threading
import time
from collections.abc import AsyncGenerator, Coroutine, Sequence
from dataclasses import dataclass
from typing import Any, Literal, cast, get_args

import httpx

from recal_gym.errors import BackendError, InvalidConfig, UnknownModel, close_matches_hint
from recal_gym.pools.base import MAX_CALL_TOKENS
from recal_gym.pools.options import PoolOptions
from recal_gym.pools.spec import PoolModel, PoolSpec
from recal_gym.prompt import render_candidate_prompt
from recal_gym.tokens import WordPunctCounter
from recal_gym.types import CallRequest, CallResult, QARow

__all__ = [
    "RETRYABLE_ERRORS",
    "ErrorLabel",
    "OpenAIBackend",
    "chat_request_body",
    "completion_token_bound",
    "failure_bound_s",
]

logger = logging.getLogger(__name__)

ErrorLabel = Literal[
    "timeout",
    "http_429",
    "http_5xx",
    "http_4xx",
    "connection",
    "malformed",
    "too_large",
    "bad_usage",
    "missing_api_key",
]
ERROR_LABELS: tuple[str, ...] = get_args(ErrorLabel)
"""Every label a failed call may carry, in :data:`ErrorLabel` order."""
RETRYABLE_ERRORS: frozenset[str] = frozenset({"timeout", "http_429", "http_5xx", "connection"})
"""Failure labels that are retried with backoff; the others fail the call at once."""

_GUARD_SLACK_S = 5.0  # extra time the blocking caller waits beyond the computed bound (a last resort)


def chat_request_body(model: PoolModel, query: str) -> dict[str, Any]:
    """Return the chat-completions JSON body for ``query`` (``docs/protocol.md`` §9).

    One user message (:func:`~recal_gym.prompt.render_candidate_prompt`), no system message, and the
    pool entry's ``temperature``, ``top_p``, ``seed`` and ``max_tokens``.
    """
    return {
        "model": model.model_id,
        "messages": [{"role": "user", "content": render_candidate_prompt(query)}],
        "temperature": model.temperature,
        "top_p": model.top_p,
        "seed": model.seed,
        "max_tokens": model.max_tokens,
        "stream": False,
    }


def completion_token_bound(max_tokens: int) -> int:
    """Largest ``usage.completion_tokens`` accepted for a call with ``max_tokens``: ``2 * max_tokens + 16``."""
    return 2 * max_tokens + 16


def failure_bound_s(options: PoolOptions) -> float:
    """Longest time one call may take before it returns: every attempt times out, every backoff is full.

    ``(max_retries + 1) * timeout_s + backoff_s * (2**max_retries - 1)``.
    """
    return (options.max_retries + 1) * options.timeout_s + options.backoff_s * (2**options.max_retries - 1)


@dataclass(frozen=True, slots=True)
class _Attempt:
    """Outcome of one HTTP attempt: a result, or a failure label (and a server-requested delay)."""

    result: CallResult | None = None
    error: str = ""
    retry_after: float = 0.0
    usage_missing: bool = False


def _retry_after(headers: httpx.Headers) -> float:
    raw = headers.get("retry-after", "")
    try:
        value = float(raw)
    except ValueError:  # HTTP-date form or junk: fall back to our own backoff
        return 0.0
    return value if math.isfinite(value) and value > 0 else 0.0


def _is_count(value: object, bound: int) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and 0 <= value <= bound


def _parse_completion(payload: object, prompt: str, max_tokens: int) -> _Attempt:
    """Turn a decoded 200 body into a result, ``malformed`` or ``bad_usage``."""
    if not isinstance(payload, dict):
        return _Attempt(error="malformed")
    choices = payload.get("choices")
    if not isinstance(choices, list) or not choices or not isinstance(choices[0], dict):
        return _Attempt(error="malformed")
    message = choices[0].get("message")
    text = message.get("content") if isinstance(message, dict) else None
    if not isinstance(text, str):
        return _Attempt(error="malformed")
    usage = payload.get("usage")
    completion = usage.get("completion_tokens") if isinstance(usage, dict) else None
    prompt_tokens = usage.get("prompt_tokens") if isinstance(usage, dict) else None
    if completion is not None:
        if not _is_count(completion, completion_token_bound(max_tokens)):
            return _Attempt(error="bad_usage")
        if prompt_tokens is not None and not _is_count(prompt_tokens, MAX_CALL_TOKENS):
            return _Attempt(error="bad_usage")
        p = 0 if prompt_tokens is None else prompt_tokens
        return _Attempt(result=CallResult(ok=True, text=text, completion_tokens=completion, prompt_tokens=p))
    counter = WordPunctCounter()
    result = CallResult(ok=True, text=text, completion_tokens=counter.count(text), prompt_tokens=counter.count(prompt))
    return _Attempt(result=result, usage_missing=True)


@dataclass(frozen=True, slots=True)
class _Session:
    """The loop-bound HTTP client and concurrency limit of one backend."""

    client: httpx.AsyncClient
    sem: asyncio.Semaphore


async def _drain(loop: asyncio.AbstractEventLoop) -> None:
    await asyncio.sleep(0)
    await loop.shutdown_asyncgens()
    await asyncio.sleep(0)


class _LoopThread:
    """An asyncio event loop running forever in a daemon thread; coroutines are submitted to it."""

    def __init__(self) -> None:
        self.loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._run, name="recal-gym-openai-loop", daemon=True)
        self._thread.start()

    def _run(self) -> None:
        asyncio.set_event_loop(self.loop)
        self.loop.run_forever()

    def submit(self, coro: Coroutine[Any, Any, Any]) -> concurrent.futures.Future[Any]:
        return asyncio.run_coroutine_threadsafe(coro, self.loop)

    def stop(self) -> None:
        try:  # let pending async-generator finalisers run (httpx streams left early by a decode error)
            self.submit(_drain(self.loop)).result(timeout=10.0)
        except (concurrent.futures.TimeoutError, RuntimeError) as exc:
            logger.debug("openai backend: draining the loop failed: %s", type(exc).__name__)
        self.loop.call_soon_threadsafe(self.loop.stop)
        self._thread.join(timeout=10.0)
        if not self._thread.is_alive():
            self.loop.close()


class OpenAIBackend:
    """Serves pool models from OpenAI-compatible ``/chat/completions`` endpoints.

    Args:
        models: The pool entries this backend serves (each needs ``model_id`` and an http(s)
            ``base_url``; ``api_key_env``, when set, names the variable holding the key).
        options: Timeouts, retries, backoff, concurrency and the seed of the backoff jitter.

    Raises:
        InvalidConfig: a model lacks ``model_id`` or has a ``base_url`` that is not http(s).
        BackendError: a variable named by ``api_key_env`` is not set.

    Example:
        >>> backend = OpenAIBackend.from_spec(spec, spec.models, PoolOptions())  # doctest: +SKIP
        >>> backend.call_batch([CallRequest(model="m", query="Capital of France?", question=row)])
    """

    def __init__(self, models: Sequence[PoolModel], options: PoolOptions) -> None:
        """Validate the models; the event loop and HTTP client start on the first call."""
        for m in models:
            if not m.model_id:
                raise InvalidConfig(f"openai backend: model {m.name!r} needs a model_id (the API model name)")
            if not m.base_url.startswith(("http://", "https://")):
                raise InvalidConfig(
                    f"openai backend: model {m.name!r} base_url must start with http:// or https://, got {m.base_url!r}"
                )
            if m.api_key_env and m.api_key_env not in os.environ:
                raise BackendError(
                    f"openai backend: model {m.name!r} reads its API key from the environment variable "
                    f"{m.api_key_env!r}, which is not set"
                )
        self._models = {m.name: m for m in models}
        self._options = options
        self._rng = random.Random(options.seed)  # backoff jitter only; never affects results
        self._runner: _LoopThread | None = None
        self._session: _Session | None = None
        self._lock = threading.Lock()
        self._counters: dict[str, float] = dict.fromkeys(
            (
                "calls",
                "calls_ok",
                "calls_failed",
                "attempts",
                "retries",
                "prompt_tokens",
                "completion_tokens",
                "cost_micro_usd",
                "usage_missing",
                "batches",
                "latency_s_sum",
                "latency_s_max",
            ),
            0.0,
        )
        self._closed = False

    @classmethod
    def from_spec(cls, spec: PoolSpec, models: Sequence[PoolModel], options: PoolOptions) -> OpenAIBackend:
        """Entry point used by :func:`~recal_gym.pools.build_pool`."""
        return cls(models, options)

    def __repr__(self) -> str:
        """Name the models and servers (never a key)."""
        served = ", ".join(f"{m.name}@{m.base_url}" for m in self._models.values())
        return f"OpenAIBackend([{served}], max_concurrency={self._options.max_concurrency})"

    # ------------------------------------------------------------------ public protocol

    def call_batch(self, requests: Sequence[CallRequest]) -> list[CallResult]:
        """Send every request concurrently (bounded) and return the results in order.

        Raises:
            UnknownModel: a request names a model this backend does not serve.
            BackendError: the backend was closed.
        """
        if self._closed:
            raise BackendError("openai backend: call_batch after close()")
        models = [self._model(r.model) for r in requests]
        if not requests:
            return []
        runner = self._ensure_runner()
        future = runner.submit(self._run_batch(models, [r.query for r in requests]))
        waves = math.ceil(len(requests) / self._options.max_concurrency)
        guard = waves * failure_bound_s(self._options) + _GUARD_SLACK_S
        try:
            results: list[CallResult] = future.result(timeout=guard)
        except concurrent.futures.TimeoutError:  # should not happen: every attempt has a deadline
            future.cancel()
            logger.error("openai backend: batch of %d exceeded its %.1f s guard", len(requests), guard)
            results = [CallResult(ok=False, error="timeout", attempts=0) for _ in requests]
            self._bump("calls_failed", len(requests))
        self._bump("batches")
        return results

    def metrics(self) -> dict[str, float]:
        """Running counters (see the module docstring)."""
        with self._lock:
            return dict(self._counters)

    def attach_questions(self, rows: Sequence[QARow]) -> None:
        """Live backends ignore the question set."""

    def close(self) -> None:
        """Close the HTTP client and stop the loop thread (idempotent)."""
        if self._closed:
            return
        self._closed = True
        if self._runner is None:
            return
        if self._session is not None:
            try:
                self._runner.submit(self._session.client.aclose()).result(timeout=10.0)
            except (concurrent.futures.TimeoutError, httpx.HTTPError, OSError) as exc:
                logger.warning("openai backend: closing the HTTP client failed: %s", type(exc).__name__)
        self._runner.stop()
        self._runner = None
        self._session = None

    # ------------------------------------------------------------------ internals

    def _model(self, name: str) -> PoolModel:
        model = self._models.get(name)
        if model is None:
            raise UnknownModel(
                f"openai backend does not serve model {name!r}; it serves {sorted(self._models)}"
                + close_matches_hint(name, self._models)
            )
        return model

    def _ensure_runner(self) -> _LoopThread:
        with self._lock:  # two threads calling at once must not start two loops
            if self._runner is None:
                self._runner = _LoopThread()
            return self._runner

    def _bump(self, key: str, by: float = 1.0) -> None:
        with self._lock:
            self._counters[key] = self._counters.get(key, 0.0) + by

    def _note_latency(self, seconds: float) -> None:
        with self._lock:
            self._counters["latency_s_sum"] += seconds
            self._counters["latency_s_max"] = max(self._counters["latency_s_max"], seconds)

    async def _run_batch(self, models: Sequence[PoolModel], queries: Sequence[str]) -> list[CallResult]:
        session = self._session
        if session is None:  # created on the loop thread so the semaphore binds to this loop
            conc = self._options.max_concurrency
            client = httpx.AsyncClient(
                timeout=httpx.Timeout(self._options.timeout_s),
                limits=httpx.Limits(max_connections=conc, max_keepalive_connections=conc),
            )
            session = self._session = _Session(client=client, sem=asyncio.Semaphore(conc))
        calls = (self._call(session, m, q) for m, q in zip(models, queries, strict=True))
        return list(await asyncio.gather(*calls))

    def _backoff(self, retry: int, retry_after: float) -> float:
        cap = self._options.backoff_s * 2 ** (retry - 1)
        delay = cap / 2 + self._rng.uniform(0.0, cap / 2)
        return min(max(delay, retry_after), cap)

    async def _call(self, session: _Session, model: PoolModel, query: str) -> CallResult:
        prompt = render_candidate_prompt(query)
        body = json.dumps(chat_request_body(model, query)).encode("utf-8")
        url = model.base_url.rstrip("/") + "/chat/completions"
        self._bump("calls")
        error, retry_after, attempts = "", 0.0, 0
        for attempt in range(self._options.max_retries + 1):
            if attempt:
                self._bump("retries")
                await asyncio.sleep(self._backoff(attempt, retry_after))
            headers = self._headers(model)
            if headers is None:
                error = "missing_api_key"
                break
            attempts += 1
            self._bump("attempts")
            outcome = await self._attempt(session, url, body, headers, (prompt, model.max_tokens))
            if outcome.result is not None:
                return self._succeeded(model, outcome.result, attempts, outcome.usage_missing)
            error, retry_after = outcome.error, outcome.retry_after
            self._bump(f"errors/{error}")
            logger.debug("openai backend: %s attempt %d failed: %s", model.name, attempts, error)
            if error not in RETRYABLE_ERRORS:
                break
        self._bump("calls_failed")
        self._bump(f"failed/{error}")
        logger.warning("openai backend: call to %s failed after %d attempt(s): %s", model.name, attempts, error)
        return CallResult(ok=False, error=error, attempts=attempts)

    def _succeeded(self, model: PoolModel, result: CallResult, attempts: int, usage_missing: bool) -> CallResult:
        self._bump("calls_ok")
        self._bump("prompt_tokens", result.prompt_tokens)
        self._bump("completion_tokens", result.completion_tokens)
        self._bump("cost_micro_usd", result.completion_tokens * model.price_per_1m_output)
        if usage_missing:
            self._bump("usage_missing")
        return CallResult(
            ok=True,
            text=result.text,
            completion_tokens=result.completion_tokens,
            prompt_tokens=result.prompt_tokens,
            attempts=attempts,
            latency_s=result.latency_s,
        )

    @staticmethod
    def _headers(model: PoolModel) -> dict[str, str] | None:
        headers = {"Content-Type": "application/json"}
        if model.api_key_env:
            key = os.environ.get(model.api_key_env)
            if not key:
                return None
            headers["Authorization"] = f"Bearer {key}"
        return headers

    async def _post(
        self, session: _Session, url: str, body: bytes, headers: dict[str, str]
    ) -> tuple[int, httpx.Headers, bytes | None]:
        """POST and read a 200 body up to ``max_response_bytes``; ``None`` as body when it is longer."""
        cap = self._options.max_response_bytes
        async with session.client.stream("POST", url, content=body, headers=headers) as response:
            if response.status_code != 200:  # the status and headers say everything; skip the body
                return response.status_code, response.headers, b""
            declared = response.headers.get("content-length", "")
            if declared.isdigit() and (len(declared) > 12 or int(declared) > cap):
                return 200, response.headers, None
            chunks: list[bytes] = []
            size = 0
            stream = cast("AsyncGenerator[bytes, None]", response.aiter_bytes())  # decoded: a gzip bomb stops too
            try:
                async for chunk in stream:
                    size += len(chunk)
                    if size > cap:
                        return 200, response.headers, None
                    chunks.append(chunk)
            finally:
                await stream.aclose()  # leaving early must not leave a pending generator on the loop
            return 200, response.headers, b"".join(chunks)

    async def _attempt(
        self, session: _Session, url: str, body: bytes, headers: dict[str, str], prompt: tuple[str, int]
    ) -> _Attempt:
        start = time.perf_counter()
        try:
            async with session.sem:
                start = time.perf_counter()
                status, response_headers, content = await asyncio.wait_for(
                    self._post(session, url, body, headers), timeout=self._options.timeout_s
                )
        except (asyncio.TimeoutError, httpx.TimeoutException):
            return _Attempt(error="timeout")
        except (httpx.HTTPError, OSError):
            # includes DecodingError: a body the transport could not decode (e.g. a broken gzip stream)
            return _Attempt(error="connection")
        finally:
            seconds = time.perf_counter() - start
            self._note_latency(seconds)
        if status == 429:
            return _Attempt(error="http_429", retry_after=_retry_after(response_headers))
        if status >= 500:
            return _Attempt(error="http_5xx")
        if status != 200:
            return _Attempt(error="http_4xx")
        if content is None:
            return _Attempt(error="too_large")
        try:
            payload = json.loads(content)
        except (ValueError, RecursionError):  # JSONDecodeError, UnicodeDecodeError, too-deep nesting
            return _Attempt(error="malformed")
        outcome = _parse_completion(payload, *prompt)
        if outcome.result is not None:  # the measured wall time of the successful attempt (the latency component)
            outcome = dataclasses.replace(outcome, result=dataclasses.replace(outcome.result, latency_s=seconds))
        return outcome
