"""Benchmark of the live-pool plumbing: async OpenAI-compatible calls vs sequential ones, and cache hits.

A local OpenAI-compatible stub (``http.server`` on 127.0.0.1, a fixed service delay per request to
stand in for model time) answers every call. Measured, each after one burn-in round:

- ``throughput``: routed calls per second for ``n_calls`` calls sent (a) one after another with a
  plain ``httpx.Client`` (b) by :class:`OpenAIBackend` with ``max_concurrency=1`` and (c) by
  :class:`OpenAIBackend` in one batch with ``max_concurrency`` in flight; the ratio is (c)/(a).
- ``cache``: per-call latency of a :class:`CachedBackend` hit (a batch of one, median and p90 over
  ``n_hits`` calls), the amortised per-call time of a batch of ``n_calls`` hits, and a miss for scale.

Run: ``python benchmarks/bench_pools.py`` (writes ``benchmarks/results/pools.json``; ~30 s).
"""

from __future__ import annotations

import argparse
import json
import multiprocessing
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import httpx

from recal_gym.pools.cache import CachedBackend, ResponseCache
from recal_gym.pools.openai import OpenAIBackend, chat_request_body
from recal_gym.pools.options import PoolOptions
from recal_gym.pools.spec import PoolModel
from recal_gym.types import CallRequest, QARow

ROW = QARow(question_id="b/0", question="What is the capital of France?", golden_answers=("Paris",), data_source="b")
BODY = json.dumps(
    {
        "choices": [{"index": 0, "message": {"role": "assistant", "content": "Paris is the capital of France."}}],
        "usage": {"prompt_tokens": 80, "completion_tokens": 8, "total_tokens": 88},
    }
).encode()


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    delay_s = 0.0
    wbufsize = -1  # one buffered write per response: headers and body leave in one segment
    disable_nagle_algorithm = True  # no 40 ms Nagle / delayed-ACK stall between requests

    def log_message(self, format: str, *args: object) -> None:
        pass

    def do_POST(self) -> None:
        self.rfile.read(int(self.headers["Content-Length"]))
        time.sleep(self.delay_s)
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(BODY)))
        self.end_headers()
        self.wfile.write(BODY)


def _run_server(delay_s: float, port_queue: Any) -> None:
    handler = type("H", (_Handler,), {"delay_s": delay_s})
    server_cls = type("S", (ThreadingHTTPServer,), {"request_queue_size": 256, "daemon_threads": True})
    # The default listen backlog (5) drops SYNs when 16 connections open at once (1 s retransmit).
    server = server_cls(("127.0.0.1", 0), handler)
    port_queue.put(server.server_address[1])
    server.serve_forever()


class _StubServer:
    """The stub in its own process, so that client and server do not share one GIL (as with vLLM)."""

    def __init__(self, delay_s: float) -> None:
        ctx = multiprocessing.get_context("spawn")
        queue = ctx.Queue()
        self._proc = ctx.Process(target=_run_server, args=(delay_s, queue), daemon=True)
        self._proc.start()
        self.url = f"http://127.0.0.1:{queue.get(timeout=60)}/v1"

    def __enter__(self) -> str:
        return self.url

    def __exit__(self, *exc: object) -> None:
        self._proc.terminate()
        self._proc.join(timeout=10)


def _model(url: str) -> PoolModel:
    return PoolModel(
        name="stub", descriptor="stub", backend="openai", model_id="stub", base_url=url, price_per_1m_output=0.2
    )


def _requests(n: int, tag: str) -> list[CallRequest]:
    return [CallRequest(model="stub", query=f"{tag} question {i}?", question=ROW) for i in range(n)]


def _timed(fn: Any) -> float:
    start = time.perf_counter()
    fn()
    return time.perf_counter() - start


def _throughput(url: str, n: int, concurrency: int, rounds: int) -> dict[str, float]:
    model = _model(url)
    endpoint = url + "/chat/completions"

    def plain_sequential(tag: str) -> None:
        with httpx.Client(timeout=30.0) as client:
            for r in _requests(n, tag):
                client.post(endpoint, json=chat_request_body(model, r.query)).raise_for_status()

    serial = OpenAIBackend([model], PoolOptions(max_concurrency=1, timeout_s=30.0))
    batched = OpenAIBackend([model], PoolOptions(max_concurrency=concurrency, timeout_s=30.0))
    runs: dict[str, list[float]] = {"sequential_httpx": [], "backend_concurrency_1": [], "backend_async": []}
    for k in range(rounds + 1):  # round 0 is the burn-in
        times = {
            "sequential_httpx": _timed(lambda k=k: plain_sequential(f"s{k}")),
            "backend_concurrency_1": _timed(lambda k=k: serial.call_batch(_requests(n, f"c{k}"))),
            "backend_async": _timed(lambda k=k: batched.call_batch(_requests(n, f"a{k}"))),
        }
        if k:
            for key, t in times.items():
                runs[key].append(n / t)
    serial.close()
    batched.close()
    out = {f"{k}_calls_per_s": statistics.median(v) for k, v in runs.items()}
    out["ratio_async_vs_sequential"] = out["backend_async_calls_per_s"] / out["sequential_httpx_calls_per_s"]
    return out


def _cache(url: str, n: int, n_hits: int, cache_dir: Path) -> dict[str, float]:
    model = _model(url)
    backend = CachedBackend(
        OpenAIBackend([model], PoolOptions(timeout_s=30.0)), ResponseCache(cache_dir / "c.sqlite"), [model]
    )
    reqs = _requests(n, "cache")
    backend.call_batch(reqs)  # fill (misses)
    backend.call_batch(reqs)  # burn-in of the hit path
    singles = []
    for i in range(n_hits):
        req = reqs[i % n]
        singles.append(_timed(lambda req=req: backend.call_batch([req])))
    batch = [_timed(lambda: backend.call_batch(reqs)) / n for _ in range(5)]
    misses = [_timed(lambda i=i: backend.call_batch(_requests(1, f"miss{i}"))) for i in range(10)]
    metrics = backend.metrics()
    backend.close()
    singles.sort()
    return {
        "hit_latency_median_s": statistics.median(singles),
        "hit_latency_p90_s": singles[int(0.9 * (len(singles) - 1))],
        "hit_batch_per_call_s": statistics.median(batch),
        "miss_latency_median_s": statistics.median(misses),
        "cache_hits": metrics["cache_hits"],
        "cache_misses": metrics["cache_misses"],
    }


def _commit() -> str:
    try:
        return subprocess.run(
            ["git", "rev-parse", "HEAD"], capture_output=True, text=True, check=True, cwd=Path(__file__).parent
        ).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return "unknown"


def main(argv: list[str] | None = None) -> int:
    """Run the benchmark and write the JSON report."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n-calls", type=int, default=64)
    parser.add_argument("--concurrency", type=int, default=16)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--delays", type=float, nargs="+", default=[0.05, 0.02, 0.0], help="stub service delays (s)")
    parser.add_argument("--n-hits", type=int, default=300)
    parser.add_argument("--out", default=str(Path(__file__).parent / "results" / "pools.json"))
    args = parser.parse_args(argv)
    report: dict[str, Any] = {
        "command": " ".join([Path(sys.executable).name, *sys.argv]),
        "git_commit": _commit(),
        "machine": {"python": platform.python_version(), "platform": platform.platform(), "cpus": _cpus()},
        "packages": {"httpx": httpx.__version__},
        "settings": {"n_calls": args.n_calls, "concurrency": args.concurrency, "rounds": args.rounds},
        "throughput": {},
    }
    for delay in args.delays:
        with _StubServer(delay) as url:
            report["throughput"][f"service_delay_{delay:g}s"] = _throughput(
                url, args.n_calls, args.concurrency, args.rounds
            )
    with _StubServer(0.0) as url, tempfile.TemporaryDirectory() as tmp:
        report["cache"] = _cache(url, args.n_calls, args.n_hits, Path(tmp))
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(report, indent=2) + "\n", "utf-8")
    print(json.dumps({"throughput": report["throughput"], "cache": report["cache"]}, indent=2))
    return 0


def _cpus() -> int:
    import os

    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 0)


if __name__ == "__main__":
    raise SystemExit(main())
