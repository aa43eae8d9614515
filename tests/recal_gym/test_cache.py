"""Response cache: keys, hits and misses, concurrent writers in several processes, kill -9 mid-write."""

from __future__ import annotations

import os
import signal
import sqlite3
import subprocess
import sys
import textwrap
import time
from collections.abc import Sequence
from dataclasses import replace
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from recal_gym.errors import InvalidConfig
from recal_gym.pools import build_pool
from recal_gym.pools.cache import CachedBackend, CachedResponse, ResponseCache, cache_key
from recal_gym.pools.options import PoolOptions
from recal_gym.pools.spec import PoolModel
from recal_gym.types import CallRequest, CallResult, QARow

ROW = QARow(question_id="t/0", question="Who wrote Hamlet?", golden_answers=("Shakespeare",), data_source="t")
LIVE = PoolModel(name="live", descriptor="d", backend="openai", model_id="m-1", price_per_1m_output=1.0)
SIM = PoolModel(name="sim", descriptor="d", backend="simulated", model_id="m-2", price_per_1m_output=1.0)


class _Counting:
    """A fake backend: answers ``"<model>|<query>|<n>"`` and counts the requests it sees."""

    def __init__(self, fail: Sequence[str] = ()) -> None:
        self.seen: list[CallRequest] = []
        self.fail = set(fail)
        self.closed = 0

    def call_batch(self, requests: Sequence[CallRequest]) -> list[CallResult]:
        self.seen.extend(requests)
        return [
            CallResult(ok=False, error="http_5xx", attempts=4)
            if r.query in self.fail
            else CallResult(ok=True, text=f"{r.model}|{r.query}|{len(self.seen)}", completion_tokens=3, prompt_tokens=9)
            for r in requests
        ]

    def metrics(self) -> dict[str, float]:
        return {"calls": float(len(self.seen))}

    def attach_questions(self, rows: Sequence[QARow]) -> None:
        pass

    def close(self) -> None:
        self.closed += 1


def _req(model: str, query: str) -> CallRequest:
    return CallRequest(model=model, query=query, question=ROW)


# ---------------------------------------------------------------------------- keys


def test_key_depends_on_model_id_query_and_sampling_only() -> None:
    k = cache_key(LIVE, "q")
    assert len(k) == 64 and k == cache_key(LIVE, "q")
    for changed in (
        replace(LIVE, model_id="m-9"),
        replace(LIVE, temperature=0.1),
        replace(LIVE, top_p=0.9),
        replace(LIVE, seed=1),
        replace(LIVE, max_tokens=100),
    ):
        assert cache_key(changed, "q") != k
    assert cache_key(LIVE, "q2") != k
    # Serving location, display name, price and key variable are not part of the key.
    same = replace(
        LIVE, name="other", base_url="http://127.0.0.1:9/v1", api_key_env="SOME_KEY", price_per_1m_output=9.0
    )
    assert cache_key(same, "q") == k


@settings(max_examples=50, deadline=None)
@given(st.text(max_size=40), st.text(max_size=40))
def test_distinct_queries_give_distinct_keys(a: str, b: str) -> None:
    assert (cache_key(LIVE, a) == cache_key(LIVE, b)) == (a == b)


# ---------------------------------------------------------------------------- store


def test_store_round_trip_first_writer_wins(tmp_path: Path) -> None:
    cache = ResponseCache(tmp_path / "sub" / "c.sqlite")
    entry = CachedResponse(model_id="m", text="héllo ✓", prompt_tokens=2, completion_tokens=3)
    assert cache.get("k") is None and len(cache) == 0
    assert cache.put("k", entry) is True
    assert cache.put("k", replace(entry, text="second")) is False
    assert cache.get("k") == entry and len(cache) == 1
    assert cache.get_many([f"x{i}" for i in range(1200)] + ["k"]) == {"k": entry}  # > bound-param limit
    cache.close()
    cache.close()
    reopened = ResponseCache(tmp_path / "sub" / "c.sqlite")
    assert reopened.get("k") == entry
    mode = sqlite3.connect(tmp_path / "sub" / "c.sqlite").execute("PRAGMA journal_mode").fetchone()[0]
    assert mode == "wal"
    reopened.close()
    with pytest.raises(InvalidConfig, match="closed"):
        reopened.get("k")


def test_bad_busy_timeout_raises(tmp_path: Path) -> None:
    with pytest.raises(InvalidConfig, match="busy_timeout_s must be > 0, got 0"):
        ResponseCache(tmp_path / "c.sqlite", busy_timeout_s=0)


# ---------------------------------------------------------------------------- wrapper


def test_hits_misses_dedup_and_failures_not_cached(tmp_path: Path) -> None:
    inner = _Counting(fail=["bad"])
    backend = CachedBackend(inner, ResponseCache(tmp_path / "c.sqlite"), [LIVE, SIM])
    first = backend.call_batch([_req("live", "a"), _req("live", "a"), _req("live", "bad"), _req("sim", "a")])
    assert [r.ok for r in first] == [True, True, False, True]
    assert first[0].text == first[1].text and not first[0].cached and first[1].cached
    assert len(inner.seen) == 3  # duplicate "a" sent once; simulated passes through
    second = backend.call_batch([_req("live", "a"), _req("live", "bad"), _req("sim", "a")])
    assert second[0] == replace(first[0], cached=True, attempts=0)
    assert not second[1].ok and second[1].error == "http_5xx"  # failures were not stored
    assert [r.query for r in inner.seen[3:]] == ["bad", "a"]
    m = backend.metrics()
    assert (m["cache_hits"], m["cache_misses"], m["cache_writes"], m["cache_bypass"]) == (2.0, 3.0, 1.0, 2.0)
    assert m["calls"] == 5.0
    backend.close()
    backend.close()
    assert inner.closed == 1


def test_cache_survives_a_new_backend_and_process_restart(tmp_path: Path) -> None:
    path = tmp_path / "c.sqlite"
    a = CachedBackend(_Counting(), ResponseCache(path), [LIVE])
    [r1] = a.call_batch([_req("live", "q")])
    a.close()
    inner = _Counting()
    b = CachedBackend(inner, ResponseCache(path), [LIVE])
    [r2] = b.call_batch([_req("live", "q")])
    b.close()
    assert inner.seen == [] and r2.text == r1.text and r2.cached


def test_build_pool_wraps_backends_when_cache_path_is_set(tmp_path: Path) -> None:
    pool = build_pool(None, PoolOptions(cache_path=str(tmp_path / "c.sqlite")))
    row = QARow(question_id="nq/0", question="Who wrote Hamlet?", golden_answers=("Shakespeare",), data_source="nq")
    try:
        assert isinstance(pool.backends["simulated"], CachedBackend)
        pool.attach_questions([row])
        req = CallRequest(model=pool.spec.names[0], query="Who wrote Hamlet?", question=row)
        assert pool.call(req).cached is False
        assert pool.call(req).cached is False  # simulated outcomes are never served from the cache
        assert pool.metrics()["pool/simulated/cache_bypass"] == 2.0
    finally:
        pool.close()


# ---------------------------------------------------------------------------- processes

_WRITER = textwrap.dedent(
    """
    import sys
    from recal_gym.pools.cache import CachedResponse, ResponseCache
    path, tag, n, batch = sys.argv[1], sys.argv[2], int(sys.argv[3]), int(sys.argv[4])
    cache = ResponseCache(path, busy_timeout_s=60)
    for start in range(0, n, batch):
        cache.put_many({
            f"{k}": CachedResponse(model_id=tag, text=f"text-{k}-" + "x" * 2000, prompt_tokens=k,
                                   completion_tokens=2 * k)
            for k in range(start, start + batch)
        })
        cache.put_many({f"{tag}-{k}": CachedResponse(model_id=tag, text=f"own-{k}", prompt_tokens=0,
                                                      completion_tokens=0)
                        for k in range(start, start + batch)})
    cache.close()
    """
)


def _spawn(path: Path, tag: str, n: int, batch: int) -> subprocess.Popen[bytes]:
    return subprocess.Popen(
        [sys.executable, "-c", _WRITER, str(path), tag, str(n), str(batch)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )


def _check_rows(path: Path) -> list[tuple[str, str, str, int, int]]:
    conn = sqlite3.connect(path)
    assert conn.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
    rows = conn.execute("SELECT key, model_id, text, prompt_tokens, completion_tokens FROM responses").fetchall()
    conn.close()
    for key, _tag, text, p, c in rows:
        if key.isdigit():  # shared keys: every field consistent with the key, whoever wrote it
            k = int(key)
            assert (text, p, c) == (f"text-{k}-" + "x" * 2000, k, 2 * k)
    return rows


@pytest.mark.timeout(120)
def test_concurrent_writers_in_several_processes(tmp_path: Path) -> None:
    path = tmp_path / "c.sqlite"
    procs = [_spawn(path, f"w{i}", 200, 10) for i in range(4)]
    for p in procs:
        _, err = p.communicate(timeout=100)
        assert p.returncode == 0, err.decode()
    rows = _check_rows(path)
    shared = [r for r in rows if r[0].isdigit()]
    own = [r for r in rows if not r[0].isdigit()]
    assert len(shared) == 200  # overlapping keys stored once (first writer wins)
    assert len(own) == 4 * 200  # nobody's write was lost to a lock error
    assert len(ResponseCache(path)) == 1000


@pytest.mark.timeout(120)
def test_kill_9_mid_write_leaves_an_intact_database(tmp_path: Path) -> None:
    path = tmp_path / "c.sqlite"
    proc = _spawn(path, "victim", 100_000, 50)
    try:
        for _ in range(2000):  # wait (bounded) until some transactions have committed
            if path.exists() and _count(path) >= 500:
                break
            time.sleep(0.01)
    finally:
        os.kill(proc.pid, signal.SIGKILL)
        proc.communicate(timeout=30)
    assert proc.returncode == -signal.SIGKILL
    rows = _check_rows(path)
    shared = sum(1 for r in rows if r[0].isdigit())
    own = len(rows) - shared
    assert shared >= 500 and shared % 50 == 0  # only whole transactions survive
    assert own % 50 == 0 and shared - 50 <= own <= shared
    cache = ResponseCache(path)  # reopen and keep writing
    assert cache.put("after", CachedResponse(model_id="m", text="t", prompt_tokens=1, completion_tokens=1))
    assert len(cache) == len(rows) + 1
    cache.close()


def _count(path: Path) -> int:
    try:
        conn = sqlite3.connect(path, timeout=5)
        n = conn.execute("SELECT COUNT(*) FROM responses WHERE key GLOB '[0-9]*'").fetchone()[0]
        conn.close()
        return int(n)
    except sqlite3.OperationalError:  # the table does not exist yet
        return 0


# ---------------------------------------------------------------------------- never a crash (issue #12 items 4, 7)


class _Fixed(_Counting):
    """Answers every request with one given result."""

    def __init__(self, result: CallResult) -> None:
        super().__init__()
        self.result = result

    def call_batch(self, requests: Sequence[CallRequest]) -> list[CallResult]:
        self.seen.extend(requests)
        return [self.result for _ in requests]


def test_a_reply_with_a_lone_surrogate_is_cached_exactly(tmp_path: Path) -> None:
    good = CallResult(ok=True, text="Paris \ud800 is \udfff it", completion_tokens=3)
    inner = _Fixed(good)
    backend = CachedBackend(inner, ResponseCache(tmp_path / "c.sqlite"), [LIVE])
    [live] = backend.call_batch([_req("live", "query \udc00")])
    [hit] = backend.call_batch([_req("live", "query \udc00")])
    assert live == good and hit.cached and hit.text == good.text and len(inner.seen) == 1
    assert backend.metrics()["cache_write_errors"] == 0.0
    backend.close()
    reopened = ResponseCache(tmp_path / "c.sqlite")
    assert reopened.get(cache_key(LIVE, "query \udc00")).text == good.text  # type: ignore[union-attr]
    reopened.close()


@pytest.mark.parametrize("tokens", [10**30, 2**63, -5])
def test_out_of_range_token_counts_pass_through_but_are_not_stored(tmp_path: Path, tokens: int) -> None:
    res = CallResult(ok=True, text="Paris", completion_tokens=tokens)
    backend = CachedBackend(_Fixed(res), ResponseCache(tmp_path / "c.sqlite"), [LIVE])
    assert backend.call_batch([_req("live", "q")]) == [res]
    m = backend.metrics()
    assert m["cache_not_stored"] == 1.0 and m["cache_writes"] == 0.0 and len(backend.cache) == 0
    backend.close()


def test_a_failing_write_or_read_is_counted_and_the_live_result_returned(tmp_path: Path) -> None:
    backend = CachedBackend(_Counting(), ResponseCache(tmp_path / "c.sqlite"), [LIVE])
    assert backend.call_batch([_req("live", "a")])[0].ok
    conn = backend.cache._conn
    assert conn is not None
    conn.execute("DROP TABLE responses")  # the file breaks under a running backend
    [res] = backend.call_batch([_req("live", "b")])
    assert res.ok and res.text.startswith("live|b|")
    m = backend.metrics()
    assert m["cache_read_errors"] == 1.0 and m["cache_write_errors"] == 1.0
    backend.close()


def test_unusable_cache_paths_are_clear_config_errors(tmp_path: Path) -> None:
    garbage = tmp_path / "garbage.sqlite"
    garbage.write_bytes(b"this is not a database, just text " * 100)
    with pytest.raises(InvalidConfig, match=r"garbage\.sqlite' cannot hold the cache .*file is not a database"):
        ResponseCache(garbage)
    with pytest.raises(InvalidConfig, match=r"cannot hold the cache \(a directory"):
        ResponseCache(tmp_path)
    with pytest.raises(InvalidConfig, match=r"'/proc/recal-gym-cache\.sqlite' cannot hold the cache"):
        ResponseCache("/proc/recal-gym-cache.sqlite")  # a read-only file system
    (tmp_path / "file").write_text("x")
    with pytest.raises(InvalidConfig, match=r"file/c\.sqlite' cannot hold the cache"):
        ResponseCache(tmp_path / "file" / "c.sqlite")  # the parent is a file
    with pytest.raises(InvalidConfig, match=r"cannot hold the cache"):
        build_pool(None, PoolOptions(cache_path=str(garbage)))


@pytest.mark.skipif(os.geteuid() == 0, reason="root ignores file permissions")
def test_a_read_only_cache_file_is_a_clear_config_error(tmp_path: Path) -> None:
    path = tmp_path / "ro.sqlite"
    ResponseCache(path).close()
    for p in tmp_path.iterdir():
        p.chmod(0o444)
    tmp_path.chmod(0o555)
    try:
        with pytest.raises(InvalidConfig, match=r"ro\.sqlite' cannot hold the cache"):
            ResponseCache(path)
    finally:
        tmp_path.chmod(0o755)


def test_latency_is_stored_and_replayed_by_hits(tmp_path: Path) -> None:
    timed = CallResult(ok=True, text="Paris", completion_tokens=3, latency_s=0.25)
    inner = _Fixed(timed)
    backend = CachedBackend(inner, ResponseCache(tmp_path / "c.sqlite"), [LIVE])
    [live] = backend.call_batch([_req("live", "q")])
    [hit, dup] = backend.call_batch([_req("live", "q"), _req("live", "q")])
    assert live.latency_s == hit.latency_s == dup.latency_s == 0.25 and hit.cached and len(inner.seen) == 1
    backend.close()


def test_a_cache_file_from_before_latencies_gains_the_column(tmp_path: Path) -> None:
    path = tmp_path / "old.sqlite"
    conn = sqlite3.connect(path)
    conn.execute(
        "CREATE TABLE responses (key TEXT PRIMARY KEY, model_id TEXT NOT NULL, text TEXT NOT NULL, "
        "prompt_tokens INTEGER NOT NULL, completion_tokens INTEGER NOT NULL) WITHOUT ROWID"
    )
    conn.execute("INSERT INTO responses VALUES (?, 'm-1', 'old reply', 1, 2)", (cache_key(LIVE, "q"),))
    conn.commit()
    conn.close()
    cache = ResponseCache(path)
    old = cache.get(cache_key(LIVE, "q"))
    assert old is not None and old.text == "old reply" and old.latency_s is None
    cache.put("k2", CachedResponse(model_id="m-1", text="new", prompt_tokens=1, completion_tokens=1, latency_s=1.5))
    assert cache.get("k2").latency_s == 1.5  # type: ignore[union-attr]
    cache.close()
    ResponseCache(path).close()  # reopening an upgraded file is a no-op
