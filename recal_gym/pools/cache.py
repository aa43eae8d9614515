"""On-disk response cache (SQLite in WAL mode) and the backend wrapper that uses it.

**Key.** ``cache_key(model, query)`` is the SHA-256 of the canonical JSON (sorted keys, no spaces) of
``{"v": 1, "model_id", "messages", "temperature", "top_p", "seed", "max_tokens"}``, where
``messages`` is the exact chat sent (``docs/protocol.md`` §9, so a change of the candidate instruction
invalidates old entries). The key deliberately **omits** ``base_url``, the backend name and the API key:
the same model id with the same sampling answers the same way whichever server hosts it, and moving a
server must not throw the cache away. A pool that serves *different* weights under one model id on
different servers must give them different cache files.

**Durability.** WAL journal, ``busy_timeout`` (writers from several processes wait for each other
instead of failing), every write batch in one ``BEGIN IMMEDIATE`` transaction, first writer wins
(``INSERT OR IGNORE``). A process killed mid-write loses at most its open transaction; the file
stays intact. Only successful calls are stored; failures are never cached.

**Never a crash.** The cache must not turn a good call into a failure: text is stored as UTF-8 with
``surrogatepass`` (a reply holding a lone surrogate is kept exactly, as a BLOB), results whose token
counts are out of range (:func:`~recal_gym.pools.base.result_problem`) are passed through but not
stored, and a read or write that fails (disk full, a file corrupted after opening, a lock held past
``busy_timeout_s``) is logged, counted in ``cache_read_errors``/``cache_write_errors`` and answered by
the live backend. A path that cannot hold the cache at all (a directory, a file that is not SQLite, a
read-only location) raises :class:`~recal_gym.errors.InvalidConfig` naming it, at construction.

**What is wrapped.** Only live backends (``openai``, ``vllm``, ``transformers``) go through the cache.
Simulated and replay outcomes depend on the episode's question, not only on the query, and are
already exact and free, so their requests pass straight through (counted as ``cache_bypass``).
"""

from __future__ import annotations

import hashlib
import json
import logging
import math
import os
import sqlite3
import threading
import time
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import cast

from recal_gym.errors import InvalidConfig
from recal_gym.pools.base import Backend, result_problem
from recal_gym.pools.spec import PoolModel
from recal_gym.prompt import render_candidate_prompt
from recal_gym.types import CallRequest, CallResult, QARow

__all__ = ["CACHED_BACKENDS", "CachedBackend", "CachedResponse", "ResponseCache", "cache_key"]

logger = logging.getLogger(__name__)

CACHE_SCHEMA_VERSION = 1
CACHED_BACKENDS: frozenset[str] = frozenset({"openai", "vllm", "transformers"})
"""Backends whose calls the cache stores; the others pass through."""

_SCHEMA = (
    "CREATE TABLE IF NOT EXISTS responses ("
    " key TEXT PRIMARY KEY,"
    " model_id TEXT NOT NULL,"
    " text TEXT NOT NULL,"
    " prompt_tokens INTEGER NOT NULL,"
    " completion_tokens INTEGER NOT NULL"
    ") WITHOUT ROWID",
    "CREATE TABLE IF NOT EXISTS meta (name TEXT PRIMARY KEY, value TEXT NOT NULL)",
)


def cache_key(model: PoolModel, query: str) -> str:
    """Return the hex SHA-256 cache key of a call of ``model`` with ``query`` (module docstring)."""
    payload = {
        "v": CACHE_SCHEMA_VERSION,
        "model_id": model.model_id or model.name,
        "messages": [{"role": "user", "content": render_candidate_prompt(query)}],
        "temperature": model.temperature,
        "top_p": model.top_p,
        "seed": model.seed,
        "max_tokens": model.max_tokens,
    }
    canonical = json.dumps(payload, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    return hashlib.sha256(canonical.encode("utf-8", "surrogatepass")).hexdigest()


def _stored_text(text: str) -> str | bytes:
    """``text`` as stored: itself, or its ``surrogatepass`` UTF-8 bytes when it holds a lone surrogate."""
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return text.encode("utf-8", "surrogatepass")
    return text


def _loaded_text(value: str | bytes) -> str:
    return value.decode("utf-8", "surrogatepass") if isinstance(value, bytes) else value


@dataclass(frozen=True, slots=True, kw_only=True)
class CachedResponse:
    """One stored reply."""

    model_id: str
    """The model id the reply came from (for inspection; not part of the lookup)."""
    text: str
    """Reply text."""
    prompt_tokens: int
    """Input tokens reported by the backend."""
    completion_tokens: int
    """Output tokens reported by the backend."""
    latency_s: float | None = None
    """Seconds the original call took (``None``: not recorded, e.g. rows written before this column)."""


class ResponseCache:
    """A key -> :class:`CachedResponse` store in one SQLite file, safe across threads and processes.

    Args:
        path: The database file (parent directories are created).
        busy_timeout_s: How long a writer waits for another process's lock before giving up.

    Raises:
        InvalidConfig: ``busy_timeout_s`` is not positive, or ``path`` cannot hold the cache (a
            directory, a file that is not an SQLite database, a read-only location).
    """

    def __init__(self, path: str | os.PathLike[str], *, busy_timeout_s: float = 30.0) -> None:
        """Open (or create) the database and its tables."""
        if not busy_timeout_s > 0:
            raise InvalidConfig(f"ResponseCache.busy_timeout_s must be > 0, got {busy_timeout_s!r}")
        self.path = Path(path)
        self._lock = threading.Lock()
        self._conn: sqlite3.Connection | None = None
        try:
            self._open(busy_timeout_s)
        except (sqlite3.Error, OSError) as exc:
            self.close()
            kind = "a directory" if self.path.is_dir() else type(exc).__name__
            raise InvalidConfig(
                f"response cache path {str(self.path)!r} cannot hold the cache ({kind}: {exc}); cache_path must "
                "name an SQLite file written by recal-gym, or a new file in a writable directory"
            ) from None

    def _open(self, busy_timeout_s: float) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        # isolation_level=None: we issue BEGIN/COMMIT ourselves.
        self._conn = sqlite3.connect(self.path, timeout=busy_timeout_s, isolation_level=None, check_same_thread=False)
        self._conn.execute(f"PRAGMA busy_timeout = {int(busy_timeout_s * 1000)}")
        # Switching to WAL needs a moment of exclusive access and SQLite does not run the busy handler
        # for it: when several processes open a new file at once, retry within the same timeout.
        deadline = time.monotonic() + busy_timeout_s
        while True:
            try:
                self._conn.execute("PRAGMA journal_mode = WAL")
                break
            except sqlite3.OperationalError as exc:
                if "locked" not in str(exc) or time.monotonic() > deadline:
                    raise
                time.sleep(0.02)
        self._conn.execute("PRAGMA synchronous = NORMAL")  # in WAL mode: safe against process kills
        with self._transaction() as conn:
            for statement in _SCHEMA:
                conn.execute(statement)
            columns = {row[1] for row in conn.execute("PRAGMA table_info(responses)")}
            if "latency_s" not in columns:  # files written before latencies were kept gain the column
                conn.execute("ALTER TABLE responses ADD COLUMN latency_s REAL")
            conn.execute(
                "INSERT OR IGNORE INTO meta (name, value) VALUES ('schema_version', ?)", (str(CACHE_SCHEMA_VERSION),)
            )

    def __repr__(self) -> str:
        """Name the file."""
        return f"ResponseCache({str(self.path)!r})"

    def _transaction(self) -> _Transaction:
        if self._conn is None:
            raise InvalidConfig(f"response cache {str(self.path)!r} is closed")
        return _Transaction(self._conn, self._lock)

    def get_many(self, keys: Iterable[str]) -> dict[str, CachedResponse]:
        """Return the stored replies among ``keys`` (missing keys are absent from the result)."""
        wanted = list(dict.fromkeys(keys))
        found: dict[str, CachedResponse] = {}
        with self._transaction() as conn:
            for start in range(0, len(wanted), 500):  # stay below SQLite's bound-parameter limit
                chunk = wanted[start : start + 500]
                marks = ",".join("?" * len(chunk))
                rows = conn.execute(
                    "SELECT key, model_id, text, prompt_tokens, completion_tokens, latency_s FROM responses "
                    f"WHERE key IN ({marks})",
                    chunk,
                ).fetchall()
                for key, model_id, text, p, c, lat in rows:
                    found[key] = CachedResponse(
                        model_id=model_id, text=_loaded_text(text), prompt_tokens=p, completion_tokens=c, latency_s=lat
                    )
        return found

    def get(self, key: str) -> CachedResponse | None:
        """Return the reply stored under ``key``, or ``None``."""
        return self.get_many([key]).get(key)

    def put_many(self, entries: Mapping[str, CachedResponse]) -> int:
        """Store every entry in one transaction; an existing key keeps its first value.

        Returns:
            The number of new rows written.
        """
        if not entries:
            return 0
        with self._transaction() as conn:
            before = conn.total_changes
            conn.executemany(
                "INSERT OR IGNORE INTO responses (key, model_id, text, prompt_tokens, completion_tokens, latency_s) "
                "VALUES (?, ?, ?, ?, ?, ?)",
                [
                    (
                        k,
                        v.model_id,
                        _stored_text(v.text),
                        v.prompt_tokens,
                        v.completion_tokens,
                        _finite_or_none(v.latency_s),
                    )
                    for k, v in entries.items()
                ],
            )
            return conn.total_changes - before

    def put(self, key: str, response: CachedResponse) -> bool:
        """Store one entry; return whether it was new."""
        return self.put_many({key: response}) == 1

    def __len__(self) -> int:
        """Number of stored replies."""
        with self._transaction() as conn:
            return int(conn.execute("SELECT COUNT(*) FROM responses").fetchone()[0])

    def close(self) -> None:
        """Close the connection (idempotent)."""
        with self._lock:
            if self._conn is not None:
                self._conn.close()
                self._conn = None


class _Transaction:
    """``with`` block holding the cache's thread lock and one ``BEGIN IMMEDIATE`` transaction."""

    def __init__(self, conn: sqlite3.Connection, lock: threading.Lock) -> None:
        self._conn = conn
        self._lock = lock

    def __enter__(self) -> sqlite3.Connection:
        self._lock.acquire()
        try:
            self._conn.execute("BEGIN IMMEDIATE")
        except sqlite3.Error:
            self._lock.release()
            raise
        return self._conn

    def __exit__(self, exc_type: object, exc: object, tb: object) -> None:
        try:
            self._conn.execute("COMMIT" if exc_type is None else "ROLLBACK")
        finally:
            self._lock.release()


class CachedBackend:
    """Wraps a backend with a :class:`ResponseCache` (see the module docstring).

    Identical live requests inside one batch are sent once and share the reply (the duplicates count
    as hits). Cache hits come back with ``cached=True`` and ``attempts=0``.

    Args:
        inner: The backend that answers misses.
        cache: The store.
        models: The pool entries ``inner`` serves.

    Metrics: the inner backend's counters plus ``cache_hits``, ``cache_misses``, ``cache_writes``,
    ``cache_bypass``, ``cache_not_stored`` (results with out-of-range counts, passed through),
    ``cache_read_errors`` and ``cache_write_errors`` (see "Never a crash" in the module docstring).
    """

    def __init__(self, inner: Backend, cache: ResponseCache, models: Sequence[PoolModel]) -> None:
        """Bind the backend, the store and the models."""
        self.inner = inner
        self.cache = cache
        self._cached_models = {m.name: m for m in models if m.backend in CACHED_BACKENDS}
        self._counts = dict.fromkeys(
            (
                "cache_hits",
                "cache_misses",
                "cache_writes",
                "cache_bypass",
                "cache_not_stored",
                "cache_read_errors",
                "cache_write_errors",
            ),
            0.0,
        )
        self._closed = False

    def __repr__(self) -> str:
        """Name the inner backend and the file."""
        return f"CachedBackend({self.inner!r}, {self.cache!r})"

    def call_batch(self, requests: Sequence[CallRequest]) -> list[CallResult]:
        """Answer hits from the cache and send the rest (deduplicated) to the inner backend."""
        keys: list[str | None] = [
            cache_key(self._cached_models[r.model], r.query) if r.model in self._cached_models else None
            for r in requests
        ]
        stored = self._read(k for k in keys if k is not None)
        results: list[CallResult | None] = [None] * len(requests)
        to_send: list[int] = []  # request indices sent to the inner backend
        first_of: dict[str, int] = {}  # key -> index of the request that carries it
        for i, key in enumerate(keys):
            if key is None:
                self._counts["cache_bypass"] += 1
                to_send.append(i)
            elif key in stored:
                self._counts["cache_hits"] += 1
                results[i] = _from_cache(stored[key])
            elif key in first_of:
                self._counts["cache_hits"] += 1  # filled from the first request's reply below
            else:
                self._counts["cache_misses"] += 1
                first_of[key] = i
                to_send.append(i)
        answers = self.inner.call_batch([requests[i] for i in to_send]) if to_send else []
        fresh: dict[str, CachedResponse] = {}
        for i, res in zip(to_send, answers, strict=True):
            results[i] = res
            key = keys[i]
            if key is not None and getattr(res, "ok", False) is True:  # a broken inner result is not stored
                if result_problem(res):
                    self._counts["cache_not_stored"] += 1
                    continue
                model = self._cached_models[requests[i].model]
                fresh[key] = CachedResponse(
                    model_id=model.model_id or model.name,
                    text=res.text,
                    prompt_tokens=res.prompt_tokens,
                    completion_tokens=res.completion_tokens,
                    latency_s=res.latency_s,
                )
        self._write(fresh)
        for i, key in enumerate(keys):
            first = results[first_of[key]] if key is not None and key in first_of else None
            if results[i] is None and first is not None:
                results[i] = _shared(first)
        return cast("list[CallResult]", results)  # every slot was filled

    def _read(self, keys: Iterable[str]) -> dict[str, CachedResponse]:
        """Stored replies among ``keys``; a failed read counts as misses, an unusable row is dropped."""
        try:
            found = self.cache.get_many(keys)
        except (sqlite3.Error, ValueError) as exc:
            self._counts["cache_read_errors"] += 1
            logger.warning("response cache %s: read failed (%s); calling the backend", self.cache.path, exc)
            return {}
        bad = [k for k, v in found.items() if result_problem(_from_cache(v))]
        self._counts["cache_read_errors"] += len(bad)
        return {k: v for k, v in found.items() if k not in bad}

    def _write(self, fresh: Mapping[str, CachedResponse]) -> None:
        try:
            self._counts["cache_writes"] += self.cache.put_many(fresh)
        except (sqlite3.Error, ValueError, OverflowError) as exc:  # the live results are returned regardless
            self._counts["cache_write_errors"] += 1
            logger.warning("response cache %s: write of %d rows failed (%s)", self.cache.path, len(fresh), exc)

    def metrics(self) -> dict[str, float]:
        """The inner backend's counters plus the cache counters."""
        return {**self.inner.metrics(), **self._counts}

    def attach_questions(self, rows: Sequence[QARow]) -> None:
        """Forward the question set to the inner backend."""
        self.inner.attach_questions(rows)

    def close(self) -> None:
        """Close the inner backend and the store (idempotent)."""
        if self._closed:
            return
        self._closed = True
        self.inner.close()
        self.cache.close()


def _from_cache(entry: CachedResponse) -> CallResult:
    return CallResult(
        ok=True,
        text=entry.text,
        completion_tokens=entry.completion_tokens,
        prompt_tokens=entry.prompt_tokens,
        attempts=0,
        cached=True,
        latency_s=entry.latency_s,  # a hit replays the original call's latency: cached episodes stay exact
    )


def _finite_or_none(x: float | None) -> float | None:
    return x if x is not None and math.isfinite(x) and x >= 0 else None


def _shared(first: CallResult) -> CallResult:
    """A duplicate request in the same batch shares the first request's reply."""
    if not isinstance(first, CallResult) or not first.ok:
        return first
    return CallResult(
        ok=True,
        text=first.text,
        completion_tokens=first.completion_tokens,
        prompt_tokens=first.prompt_tokens,
        attempts=0,
        cached=True,
        latency_s=first.latency_s,
    )
