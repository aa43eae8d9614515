"""Replay pools: recorded response tables (RouterBench-style), their recorder and their backend.

A **table** has one row per question × model (JSONL, one object per line, or Parquet) with the
columns of :class:`ReplayRow`. :func:`record_table` produces one by running any pool over a question
set; :class:`ReplayBackend` serves it back. Replaying is exact (the recorded text, token counts,
failure label and attempt count come back unchanged, so the environment's cost and rewards are the
recorded ones) and free (no model runs).

**Lookup.** A request ``(question, model, query)`` is answered by the row with the same
``question_id`` and model whose ``query`` equals the request's after normalisation (lower case, no
punctuation, articles or extra spaces: :func:`normalise_query`). :func:`record_table` records each
model's answer to the whole question (as in RouterBench), so routing the question itself, in any
case or punctuation, replays it. A pool model matches rows whose ``model`` column is its display
name, or else its ``model_id`` (the "replay key"). With several rows for the same key, the last one
in the file wins.

**Unrecorded queries.** A query that was not recorded for the question and model never gets another
query's reply by accident (which would tell a router trained on replay nothing about its queries).
``PoolOptions.replay_unrecorded`` decides: ``"fail"`` (default) fails the call with
``error="unrecorded"`` (the env splices ``<information>None</information>``, ``info["call_error"] ==
"unrecorded"``); ``"nearest"`` answers with the recorded query of that question and model with the
highest content-word F1 (:func:`~recal_gym.pools.simulated.similarity`, ties to the earliest row),
and fails as ``unrecorded`` when none shares a content word. A question with no row at all for the
model fails with ``error="replay_missing"``.
"""

from __future__ import annotations

import json
import logging
import math
import os
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import asdict, dataclass, fields
from pathlib import Path
from typing import Any

from recal_gym.errors import InvalidConfig, InvalidData, UnknownModel, close_matches_hint
from recal_gym.pools.base import MAX_CALL_TOKENS, Pool
from recal_gym.pools.options import PoolOptions, ReplayUnrecorded
from recal_gym.pools.simulated import content_words, similarity
from recal_gym.pools.spec import PoolModel, PoolSpec
from recal_gym.rewards.answer_metrics import contains_answer, normalize_answer
from recal_gym.types import CallRequest, CallResult, QARow

__all__ = [
    "TABLE_SUFFIXES",
    "ProgressFn",
    "RecordSummary",
    "ReplayBackend",
    "ReplayRow",
    "check_table_path",
    "load_replay_table",
    "normalise_query",
    "record_table",
    "write_replay_table",
]

logger = logging.getLogger(__name__)

ProgressFn = Callable[[int, int], None]
"""``progress(done, total)``: rows of the table finished so far (skipped rows included) and in all."""
TABLE_SUFFIXES: tuple[str, ...] = (".jsonl", ".parquet", ".pq")
"""Suffixes a recorded table may have (JSONL, or Parquet)."""


def normalise_query(query: str) -> str:
    """The lookup key of a query: SQuAD normalisation (lower case, no punctuation or articles), one space."""
    return " ".join(normalize_answer(query).split())


def check_table_path(path: str | Path) -> Path:
    """Return ``path`` as a :class:`Path` if it can be a table to write.

    Raises:
        InvalidConfig: the suffix is not one of :data:`TABLE_SUFFIXES`, or the path is a directory.
    """
    p = Path(path)
    if p.suffix.lower() not in TABLE_SUFFIXES:
        raise InvalidConfig(
            f"replay table {str(p)!r} must end in one of {list(TABLE_SUFFIXES)} (JSONL or Parquet), "
            f"got suffix {p.suffix!r}"
        )
    if p.is_dir():
        raise InvalidConfig(f"replay table {str(p)!r} is a directory; give a file path")
    return p


def _json_line(record: Mapping[str, Any]) -> str:
    """One JSONL line; non-ASCII stays readable, except in a row holding a lone surrogate (escaped)."""
    line = json.dumps(record, ensure_ascii=False)
    try:
        line.encode("utf-8")
    except UnicodeEncodeError:
        return json.dumps(record) + "\n"
    return line + "\n"


@dataclass(frozen=True, slots=True, kw_only=True)
class ReplayRow:
    """One recorded call: a question × model."""

    question_id: str
    """Question id (``QARow.question_id``)."""
    model: str
    """Display name of the pool model that answered."""
    model_id: str
    """The model's id in the recording pool."""
    query: str
    """The query sent (the question text for rows recorded by :func:`record_table`)."""
    ok: bool
    """Whether the call succeeded."""
    text: str
    """Reply text (``""`` on failure)."""
    prompt_tokens: int
    """Input tokens reported by the backend."""
    completion_tokens: int
    """Output tokens reported by the backend."""
    cost: float
    """``completion_tokens * price_per_1m_output`` in micro-dollars (0 on failure)."""
    latency_s: float
    """Amortised wall-clock seconds: the serving batch's time divided by its size (analysis only)."""
    correct: bool
    """Whether the reply contains a gold answer at token boundaries (``contains_answer``)."""
    error: str = ""
    """Failure label when ``ok`` is False."""
    attempts: int = 1
    """Attempts the recording call made."""
    data_source: str = ""
    """Dataset of the question."""

    def to_dict(self) -> dict[str, Any]:
        """Return the JSON-ready row."""
        return asdict(self)

    @classmethod
    def from_dict(cls, d: Mapping[str, Any], where: str = "") -> ReplayRow:
        """Build a row from a table record.

        Raises:
            InvalidData: a required column is missing or has the wrong type (``where`` names the line).
        """
        required = ("question_id", "model", "text", "completion_tokens")
        missing = [k for k in required if k not in d or d[k] is None]
        if missing:
            raise InvalidData(f"replay table {where}: missing column(s) {missing}; required: {list(required)}")
        try:
            row = cls(
                question_id=str(d["question_id"]),
                model=str(d["model"]),
                model_id=str(d.get("model_id") or ""),
                query=str(d.get("query") or ""),
                ok=bool(d.get("ok", True)),
                text=str(d["text"]),
                prompt_tokens=int(d.get("prompt_tokens") or 0),
                completion_tokens=int(d["completion_tokens"]),
                cost=float(d.get("cost") or 0.0),
                latency_s=float(d.get("latency_s") or 0.0),
                correct=bool(d.get("correct", False)),
                error=str(d.get("error") or ""),
                attempts=int(d.get("attempts", 1)),
                data_source=str(d.get("data_source") or ""),
            )
        except (TypeError, ValueError, OverflowError) as exc:  # OverflowError: int(1e400)
            raise InvalidData(f"replay table {where}: malformed value ({exc})") from None
        for column in ("prompt_tokens", "completion_tokens", "attempts"):
            value = getattr(row, column)
            if not 0 <= value <= MAX_CALL_TOKENS:
                raise InvalidData(
                    f"replay table {where}: column {column!r} must be in [0, {MAX_CALL_TOKENS}], got {value!r}"
                )
        if not (math.isfinite(row.cost) and math.isfinite(row.latency_s)):
            raise InvalidData(
                f"replay table {where}: cost and latency_s must be finite, got {row.cost!r}, {row.latency_s!r}"
            )
        return row

    def to_result(self) -> CallResult:
        """The recorded call as the backend returns it."""
        return CallResult(
            ok=self.ok,
            text=self.text if self.ok else "",
            completion_tokens=self.completion_tokens if self.ok else 0,
            prompt_tokens=self.prompt_tokens if self.ok else 0,
            error="" if self.ok else (self.error or "replay_failed"),
            attempts=self.attempts,
            latency_s=self.latency_s if self.ok else None,
        )


_COLUMNS = tuple(f.name for f in fields(ReplayRow))


# ---------------------------------------------------------------------------- files


def _is_parquet(path: Path) -> bool:
    return path.suffix.lower() in (".parquet", ".pq")


def _read_jsonl(path: Path) -> list[ReplayRow]:
    rows: list[ReplayRow] = []
    with path.open("rb") as fh:
        for lineno, raw in enumerate(fh, 1):  # binary lines end at b"\n" only
            if not raw.endswith(b"\n"):  # a trailing line cut by an interrupted write: ignore it
                logger.warning("replay table %s: ignoring an incomplete last line %d", path, lineno)
                break
            if not raw.strip():
                continue
            try:
                record = json.loads(raw.decode("utf-8"))
            except UnicodeDecodeError as exc:
                raise InvalidData(
                    f"replay table {path}:{lineno}: not UTF-8 text (byte {exc.start} of the line)"
                ) from None
            except RecursionError:
                raise InvalidData(f"replay table {path}:{lineno}: JSON nested too deeply to decode") from None
            except ValueError as exc:
                raise InvalidData(f"replay table {path}:{lineno}: not valid JSON ({exc})") from None
            if not isinstance(record, Mapping):
                raise InvalidData(f"replay table {path}:{lineno}: expected a JSON object, got {type(record).__name__}")
            rows.append(ReplayRow.from_dict(record, f"{path}:{lineno}"))
    return rows


def _read_parquet(path: Path) -> list[ReplayRow]:
    from recal_gym.optional import require  # lazy: only Parquet tables need pyarrow

    pq = require("pyarrow.parquet", feature="reading a Parquet replay table")
    try:
        records = pq.read_table(path).to_pylist()
    except (OSError, ValueError) as exc:  # pyarrow's ArrowInvalid is a ValueError, ArrowIOError an OSError
        raise InvalidData(f"replay table {path}: not a readable Parquet file ({exc})") from None
    return [ReplayRow.from_dict(r, f"{path} row {i}") for i, r in enumerate(records, 1)]


def load_replay_table(path: str | Path) -> list[ReplayRow]:
    """Read a JSONL or Parquet table (``.parquet``/``.pq``; anything else is read as JSONL).

    Raises:
        FileNotFoundError: the file does not exist.
        InvalidData: a line is not JSON or a row lacks a required column.
    """
    p = Path(path)
    if not p.exists():
        raise FileNotFoundError(f"replay table {str(p)!r} does not exist")
    return _read_parquet(p) if _is_parquet(p) else _read_jsonl(p)


def write_replay_table(rows: Sequence[ReplayRow], path: str | Path) -> Path:
    """Write ``rows`` to ``path`` atomically (JSONL, or Parquet for ``.parquet``/``.pq``)."""
    p = Path(path)
    p.parent.mkdir(parents=True, exist_ok=True)
    tmp = p.with_name(p.name + ".tmp")
    if _is_parquet(p):
        from recal_gym.optional import require

        pa = require("pyarrow", feature="writing a Parquet replay table")
        import pyarrow.parquet as pq
        table = pa.Table.from_pylist([r.to_dict() for r in rows]) if rows else pa.table({c: [] for c in _COLUMNS})
        pq.write_table(table, tmp)
    else:
        with tmp.open("w", encoding="utf-8") as fh:
            fh.writelines(_json_line(r.to_dict()) for r in rows)
    os.replace(tmp, p)
    return p


# ---------------------------------------------------------------------------- backend


class ReplayBackend:
    """Serves pool models from recorded tables (see the module docstring).

    Args:
        models: The pool entries served.
        tables: Model display name -> the rows of its table (rows of other models are ignored).
        unrecorded: What to do with a query not recorded for its question and model (module docstring).

    Metrics: ``calls``, ``calls_ok``, ``calls_failed``, ``missing`` (requests whose question has no
    row), ``unrecorded`` (failed as unrecorded), ``nearest`` (answered by the nearest recorded query),
    ``completion_tokens`` and ``recorded_cost_micro_usd`` (what the recording paid).
    """

    def __init__(
        self,
        models: Sequence[PoolModel],
        tables: Mapping[str, Sequence[ReplayRow]],
        unrecorded: ReplayUnrecorded = "fail",
    ) -> None:
        """Index every model's rows by question id, then normalised query."""
        if unrecorded not in ("fail", "nearest"):
            raise InvalidConfig(f"replay backend: unrecorded must be 'fail' or 'nearest', got {unrecorded!r}")
        self._unrecorded = unrecorded
        self._models = {m.name: m for m in models}
        self._index: dict[str, dict[str, dict[str, ReplayRow]]] = {}
        for m in models:
            keys = {m.name} | ({m.model_id} if m.model_id else set())
            rows = [r for r in tables.get(m.name, ()) if r.model == m.name]
            if not rows:  # the table names models by id rather than by this pool's display names
                rows = [r for r in tables.get(m.name, ()) if r.model in keys]
            by_question: dict[str, dict[str, ReplayRow]] = {}
            for r in rows:
                by_question.setdefault(r.question_id, {})[normalise_query(r.query)] = r
            self._index[m.name] = by_question
        self._counts = dict.fromkeys(
            (
                "calls",
                "calls_ok",
                "calls_failed",
                "missing",
                "unrecorded",
                "nearest",
                "completion_tokens",
                "recorded_cost_micro_usd",
            ),
            0.0,
        )

    @classmethod
    def from_spec(cls, spec: PoolSpec, models: Sequence[PoolModel], options: PoolOptions) -> ReplayBackend:
        """Load each model's ``replay_path`` (a file shared by several models is read once).

        Raises:
            InvalidConfig: a model has no ``replay_path``.
            FileNotFoundError: a table does not exist.
        """
        loaded: dict[str, list[ReplayRow]] = {}
        tables: dict[str, list[ReplayRow]] = {}
        for m in models:
            if not m.replay_path:
                raise InvalidConfig(f"replay backend: model {m.name!r} needs a replay_path (a JSONL/Parquet table)")
            path = os.path.expandvars(os.path.expanduser(m.replay_path))
            if path not in loaded:
                loaded[path] = load_replay_table(path)
            tables[m.name] = loaded[path]
        return cls(models, tables, options.replay_unrecorded)

    def __repr__(self) -> str:
        """Name the models and their row counts."""
        counts = ", ".join(f"{k}: {sum(len(q) for q in v.values())} rows" for k, v in self._index.items())
        return f"ReplayBackend({counts}, unrecorded={self._unrecorded!r})"

    def call_batch(self, requests: Sequence[CallRequest]) -> list[CallResult]:
        """Answer every request from the table.

        Raises:
            UnknownModel: a request names a model this backend does not serve.
        """
        out: list[CallResult] = []
        for req in requests:
            if req.model not in self._index:
                raise UnknownModel(
                    f"replay backend does not serve model {req.model!r}; it serves {sorted(self._index)}"
                    + close_matches_hint(req.model, self._index)
                )
            self._counts["calls"] += 1
            recorded = self._index[req.model].get(req.question.question_id)
            if not recorded:
                self._counts["missing"] += 1
                self._counts["calls_failed"] += 1
                out.append(CallResult(ok=False, error="replay_missing", attempts=0))
                continue
            row = self._lookup(recorded, req.query)
            if row is None:
                self._counts["unrecorded"] += 1
                self._counts["calls_failed"] += 1
                out.append(CallResult(ok=False, error="unrecorded", attempts=0))
                continue
            result = row.to_result()
            self._counts["calls_ok" if result.ok else "calls_failed"] += 1
            self._counts["completion_tokens"] += result.completion_tokens
            self._counts["recorded_cost_micro_usd"] += row.cost if row.ok else 0.0
            out.append(result)
        return out

    def _lookup(self, recorded: Mapping[str, ReplayRow], query: str) -> ReplayRow | None:
        key = normalise_query(query)
        row = recorded.get(key)
        if row is not None or self._unrecorded == "fail":
            return row
        words = content_words(query)
        best, best_sim = None, 0.0
        for candidate in recorded.values():  # insertion order: ties go to the earliest recorded query
            sim = similarity(words, content_words(candidate.query))
            if sim > best_sim:
                best, best_sim = candidate, sim
        if best is not None:
            self._counts["nearest"] += 1
        return best

    def metrics(self) -> dict[str, float]:
        """Running counters."""
        return dict(self._counts)

    def attach_questions(self, rows: Sequence[QARow]) -> None:
        """Replay tables carry their own questions; nothing to do."""

    def close(self) -> None:
        """Nothing to release."""


# ---------------------------------------------------------------------------- recorder


@dataclass(frozen=True, slots=True, kw_only=True)
class RecordSummary:
    """What :func:`record_table` did."""

    path: str
    """The table written."""
    total: int
    """Rows the table should hold (questions × models)."""
    skipped: int
    """Rows already recorded (successfully) by an earlier run."""
    written: int
    """Rows recorded by this run."""
    failed: int
    """Rows of this run whose call failed (recorded with ``ok=False``; retried by the next resume)."""


def _row_for(model: PoolModel, q: QARow, res: CallResult, latency: float) -> ReplayRow:
    return ReplayRow(
        question_id=q.question_id,
        data_source=q.data_source,
        model=model.name,
        model_id=model.model_id,
        query=q.question,
        ok=res.ok,
        text=res.text if res.ok else "",
        prompt_tokens=res.prompt_tokens,
        completion_tokens=res.completion_tokens if res.ok else 0,
        cost=res.completion_tokens * model.price_per_1m_output if res.ok else 0.0,
        latency_s=latency if res.latency_s is None else float(res.latency_s),  # the backend's own figure first
        correct=bool(res.ok and contains_answer(res.text, q.golden_answers, "token")),
        error=res.error,
        attempts=res.attempts,
    )


def _partial_path(out: Path) -> Path:
    return out if not _is_parquet(out) else out.with_name(out.name + ".partial.jsonl")


def _existing_rows(out: Path, partial: Path, resume: bool) -> list[ReplayRow]:
    if not resume:
        for p in {out, partial}:
            p.unlink(missing_ok=True)
        return []
    rows: list[ReplayRow] = []
    if _is_parquet(out) and out.exists():
        rows.extend(_read_parquet(out))
    if partial.exists():
        rows.extend(_read_jsonl(partial))
        _drop_incomplete_tail(partial)
    return rows


def _drop_incomplete_tail(path: Path) -> None:
    """Cut a trailing line left without its newline by an interrupted run."""
    data = path.read_bytes()
    if data and not data.endswith(b"\n"):
        with path.open("r+b") as fh:
            fh.truncate(data.rfind(b"\n") + 1)


def record_table(
    pool: Pool,
    rows: Sequence[QARow],
    out_path: str | Path,
    *,
    resume: bool = True,
    progress: ProgressFn | None = None,
    models: Sequence[str] | None = None,
    batch_size: int = 8,
) -> RecordSummary:
    """Run ``pool`` over ``rows`` (each question sent as the query to every model) and save the table.

    Rows are appended to a JSONL file and flushed after every batch, so an interrupted run loses at
    most the batch in flight; with ``resume=True`` a second call skips every (question, model) already
    recorded successfully and retries the failed ones (their new row supersedes the old). A
    ``.parquet`` output is recorded through ``<out>.partial.jsonl`` and converted at the end.

    Args:
        pool: The pool to record (any backends).
        rows: The questions.
        out_path: Table file (``.jsonl`` or ``.parquet``).
        resume: Keep and skip what an earlier run recorded; ``False`` starts a fresh table.
        progress: Called as ``progress(done, total)`` after every batch (and once at the start).
        models: Display names to record (default: every model of the pool).
        batch_size: Questions per ``call_batch`` (each batch holds ``batch_size × len(models)`` calls).

    Returns:
        A :class:`RecordSummary`.

    Raises:
        InvalidConfig: ``batch_size < 1`` or an output path that is not ``.jsonl``/``.parquet``/``.pq``.
        UnknownModel: an unknown model name.
    """
    if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1:
        raise InvalidConfig(f"record_table: batch_size must be an int >= 1, got {batch_size!r}")
    out = check_table_path(out_path)
    chosen: list[PoolModel] = [pool.spec.model(n) for n in models] if models is not None else list(pool.spec.models)
    out.parent.mkdir(parents=True, exist_ok=True)
    partial = _partial_path(out)
    done = {(r.question_id, r.model) for r in _existing_rows(out, partial, resume) if r.ok}
    todo = [(q, m) for q in rows for m in chosen if (q.question_id, m.name) not in done]
    total = len(rows) * len(chosen)
    skipped = total - len(todo)
    written = failed = 0
    if progress is not None:
        progress(skipped, total)
    step = batch_size * len(chosen)
    with partial.open("a", encoding="utf-8") as fh:
        for start in range(0, len(todo), step):
            batch = todo[start : start + step]
            t0 = time.perf_counter()
            results = pool.call_batch([CallRequest(model=m.name, query=q.question, question=q) for q, m in batch])
            latency = (time.perf_counter() - t0) / len(batch)
            for (q, m), res in zip(batch, results, strict=True):
                fh.write(_json_line(_row_for(m, q, res, latency).to_dict()))
                failed += not res.ok
            fh.flush()
            os.fsync(fh.fileno())
            written += len(batch)
            if progress is not None:
                progress(skipped + written, total)
    if _is_parquet(out):
        merged = _existing_rows(out, partial, resume=True)
        latest = {(r.question_id, r.model, r.query): r for r in merged}  # last row of a key wins
        write_replay_table(list(latest.values()), out)
        partial.unlink(missing_ok=True)
    return RecordSummary(path=str(out), total=total, skipped=skipped, written=written, failed=failed)
