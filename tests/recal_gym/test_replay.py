"""Replay tables: record -> replay round trips, resume after interruption, lookup rules, validation."""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import replace
from pathlib import Path

import pytest

from recal_gym.errors import InvalidConfig, InvalidData, UnknownModel
from recal_gym.pools import Pool, PoolSpec, build_pool, default_pool_spec
from recal_gym.pools.replay import ReplayBackend, ReplayRow, load_replay_table, record_table, write_replay_table
from recal_gym.pools.spec import PoolModel
from recal_gym.types import CallRequest, CallResult, QARow

ROWS = [
    QARow(
        question_id=f"{src}/{i}",
        question=f"Who wrote book number {i}?",
        golden_answers=(f"Author {i}",),
        data_source=src,
    )
    for i in range(4)
    for src in ("nq", "hotpotqa")
]


def _sim_pool() -> Pool:
    pool = build_pool(None)
    pool.attach_questions(ROWS)
    return pool


def _requests(spec: PoolSpec) -> list[CallRequest]:
    return [CallRequest(model=n, query=q.question, question=q) for q in ROWS for n in spec.names]


def _replay_pool(path: Path) -> Pool:
    spec = default_pool_spec().with_backend("replay", replay_path=str(path))
    return build_pool(spec)


class _Flaky:
    """A live-like backend: ``fail_first`` calls fail, the rest answer; can raise mid-run."""

    def __init__(self, fail_first: int = 0, interrupt_after_batches: int | None = None) -> None:
        self.calls = 0
        self.batches = 0
        self.fail_first = fail_first
        self.interrupt_after = interrupt_after_batches

    def call_batch(self, requests: Sequence[CallRequest]) -> list[CallResult]:
        if self.interrupt_after is not None and self.batches >= self.interrupt_after:
            raise KeyboardInterrupt
        self.batches += 1
        out = []
        for r in requests:
            self.calls += 1
            if self.calls <= self.fail_first:
                out.append(CallResult(ok=False, error="timeout", attempts=4))
            else:
                out.append(
                    CallResult(
                        ok=True,
                        text=f"{r.model} says Author {r.question.question_id[-1]}",
                        completion_tokens=5,
                        prompt_tokens=20,
                        attempts=1,
                    )
                )
        return out

    def metrics(self) -> dict[str, float]:
        return {}

    def attach_questions(self, rows: Sequence[QARow]) -> None:
        pass

    def close(self) -> None:
        pass


LIVE_SPEC = PoolSpec(
    name="live",
    models=tuple(
        PoolModel(name=n, descriptor="d", backend="openai", model_id=f"id-{n}", price_per_1m_output=p)
        for n, p in (("alpha", 0.2), ("beta", 0.9))
    ),
)


def _table_key(rows: list[ReplayRow]) -> list[tuple]:
    return sorted((r.question_id, r.model, r.ok, r.text, r.completion_tokens, r.cost, r.correct) for r in rows)


# ---------------------------------------------------------------------------- round trips


@pytest.mark.parametrize("suffix", [".jsonl", ".parquet"])
def test_record_then_replay_reproduces_every_result(tmp_path: Path, suffix: str) -> None:
    path = tmp_path / f"table{suffix}"
    pool = _sim_pool()
    seen: list[tuple[int, int]] = []
    summary = record_table(pool, ROWS, path, progress=lambda d, t: seen.append((d, t)), batch_size=3)
    expected = pool.call_batch(_requests(pool.spec))
    assert (summary.total, summary.written, summary.skipped, summary.failed) == (48, 48, 0, 0)
    assert seen[0] == (0, 48) and seen[-1] == (48, 48) and [d for d, _ in seen] == sorted(d for d, _ in seen)
    replay = _replay_pool(path)
    got = replay.call_batch(_requests(replay.spec))
    assert got == [replace(r, cached=False) for r in expected]
    table = load_replay_table(path)
    assert len(table) == 48 and not (tmp_path / "table.parquet.partial.jsonl").exists()
    for row in table:
        model = pool.spec.model(row.model)
        assert row.cost == row.completion_tokens * model.price_per_1m_output
        assert row.query == next(q.question for q in ROWS if q.question_id == row.question_id)
    m = replay.metrics()
    assert m["pool/replay/calls"] == 48.0 and m["pool/replay/missing"] == 0.0


def test_jsonl_and_parquet_tables_agree(tmp_path: Path) -> None:
    record_table(_sim_pool(), ROWS, tmp_path / "a.jsonl")
    rows = load_replay_table(tmp_path / "a.jsonl")
    write_replay_table(rows, tmp_path / "b.parquet")
    assert load_replay_table(tmp_path / "b.parquet") == rows
    write_replay_table([], tmp_path / "empty.parquet")
    assert load_replay_table(tmp_path / "empty.parquet") == []


def test_replay_is_exact_for_failed_recorded_calls(tmp_path: Path) -> None:
    pool = Pool(LIVE_SPEC, {"openai": _Flaky(fail_first=3)})
    summary = record_table(pool, ROWS[:2], tmp_path / "t.jsonl")
    assert summary.failed == 3
    replay = build_pool(LIVE_SPEC.with_backend("replay", replay_path=str(tmp_path / "t.jsonl")))
    got = replay.call_batch(
        [CallRequest(model=n, query=q.question, question=q) for q in ROWS[:2] for n in ("alpha", "beta")]
    )
    assert [r.ok for r in got] == [False, False, False, True]
    assert got[0] == CallResult(ok=False, error="timeout", attempts=4)
    assert got[3].text == "beta says Author 0" and got[3].completion_tokens == 5


# ---------------------------------------------------------------------------- resume


@pytest.mark.parametrize("suffix", [".jsonl", ".parquet"])
def test_interrupted_recording_resumes_to_the_same_table(tmp_path: Path, suffix: str) -> None:
    full = tmp_path / f"full{suffix}"
    record_table(Pool(LIVE_SPEC, {"openai": _Flaky()}), ROWS, full, batch_size=2)
    path = tmp_path / f"resumed{suffix}"
    with pytest.raises(KeyboardInterrupt):
        record_table(Pool(LIVE_SPEC, {"openai": _Flaky(interrupt_after_batches=2)}), ROWS, path, batch_size=2)
    partial = path if suffix == ".jsonl" else tmp_path / f"resumed{suffix}.partial.jsonl"
    with partial.open("a", encoding="utf-8") as fh:  # a line cut by the interruption
        fh.write('{"question_id": "nq/3", "mod')
    second = _Flaky()
    summary = record_table(Pool(LIVE_SPEC, {"openai": second}), ROWS, path, batch_size=2)
    assert (summary.skipped, summary.written) == (8, 8) and second.calls == 8
    assert _table_key(load_replay_table(path)) == _table_key(load_replay_table(full))
    again = record_table(Pool(LIVE_SPEC, {"openai": _Flaky()}), ROWS, path)
    assert (again.skipped, again.written) == (16, 0)


def test_resume_retries_failed_rows_and_the_newer_row_wins(tmp_path: Path) -> None:
    path = tmp_path / "t.jsonl"
    record_table(Pool(LIVE_SPEC, {"openai": _Flaky(fail_first=2)}), ROWS[:2], path)
    summary = record_table(Pool(LIVE_SPEC, {"openai": _Flaky()}), ROWS[:2], path)
    assert (summary.skipped, summary.written, summary.failed) == (2, 2, 0)
    assert len(load_replay_table(path)) == 6  # failed rows kept in the file, superseded on load
    replay = build_pool(LIVE_SPEC.with_backend("replay", replay_path=str(path)))
    results = replay.call_batch([CallRequest(model="alpha", query=ROWS[0].question, question=ROWS[0])])
    assert results[0].ok


def test_resume_false_starts_fresh(tmp_path: Path) -> None:
    path = tmp_path / "t.jsonl"
    record_table(Pool(LIVE_SPEC, {"openai": _Flaky()}), ROWS[:2], path)
    summary = record_table(Pool(LIVE_SPEC, {"openai": _Flaky()}), ROWS[:1], path, resume=False, models=["beta"])
    assert summary.total == 1 and [r.model for r in load_replay_table(path)] == ["beta"]


# ---------------------------------------------------------------------------- lookup


def _row(**kw: object) -> ReplayRow:
    base: dict = {
        "question_id": "nq/0",
        "model": "alpha",
        "model_id": "id-alpha",
        "query": ROWS[0].question,
        "ok": True,
        "text": "question-level",
        "prompt_tokens": 1,
        "completion_tokens": 2,
        "cost": 0.4,
        "latency_s": 0.0,
        "correct": False,
    }
    return ReplayRow(**(base | kw))


def test_recorded_queries_match_after_normalisation_and_others_fail_as_unrecorded() -> None:
    rows = [_row(), _row(query="sub-query", text="query-level"), _row(text="newer question-level")]
    backend = ReplayBackend(LIVE_SPEC.models, {"alpha": rows, "beta": rows})
    got = backend.call_batch(
        [
            CallRequest(model="alpha", query="sub-query", question=ROWS[0]),
            CallRequest(model="alpha", query="  WHO wrote   book number 0  ", question=ROWS[0]),
            CallRequest(model="alpha", query="anything else", question=ROWS[0]),
            CallRequest(model="alpha", query="sub-query", question=ROWS[2]),
            CallRequest(model="beta", query="sub-query", question=ROWS[0]),
        ]
    )
    assert [r.text for r in got[:2]] == ["query-level", "newer question-level"]
    assert got[2] == CallResult(ok=False, error="unrecorded", attempts=0)
    assert got[3] == CallResult(ok=False, error="replay_missing", attempts=0) == got[4]
    m = backend.metrics()
    assert (m["missing"], m["unrecorded"], m["calls_failed"], m["calls_ok"]) == (2.0, 1.0, 3.0, 2.0)
    with pytest.raises(UnknownModel, match="does not serve model 'alpah'"):
        backend.call_batch([CallRequest(model="alpah", query="q", question=ROWS[0])])


def test_rows_may_name_models_by_model_id() -> None:
    backend = ReplayBackend(LIVE_SPEC.models, {"alpha": [_row(model="id-alpha")]})
    [res] = backend.call_batch([CallRequest(model="alpha", query=ROWS[0].question, question=ROWS[0])])
    assert res.ok and res.text == "question-level"


# ---------------------------------------------------------------------------- validation


def test_bad_tables_and_configs_raise(tmp_path: Path) -> None:
    bad = tmp_path / "bad.jsonl"
    bad.write_text(json.dumps({"question_id": "q", "model": "m"}) + "\n")
    with pytest.raises(InvalidData, match=r"missing column\(s\) \['text', 'completion_tokens'\]"):
        load_replay_table(bad)
    bad.write_text("not json\n")
    with pytest.raises(InvalidData, match=r"bad\.jsonl:1: not valid JSON"):
        load_replay_table(bad)
    bad.write_text(json.dumps({"question_id": "q", "model": "m", "text": "t", "completion_tokens": "many"}) + "\n")
    with pytest.raises(InvalidData, match="malformed value"):
        load_replay_table(bad)
    with pytest.raises(FileNotFoundError, match="does not exist"):
        load_replay_table(tmp_path / "absent.jsonl")
    with pytest.raises(InvalidConfig, match="needs a replay_path"):
        build_pool(LIVE_SPEC.with_backend("replay"))
    with pytest.raises(InvalidConfig, match="batch_size must be an int >= 1, got 0"):
        record_table(Pool(LIVE_SPEC, {"openai": _Flaky()}), ROWS, tmp_path / "t.jsonl", batch_size=0)


def test_env_episodes_on_the_replay_table_match_the_recording_pool(tmp_path: Path) -> None:
    import gymnasium as gym

    import recal_gym  # noqa: F401 - registers RouterQA-v0

    path = tmp_path / "t.jsonl"
    record_table(_sim_pool(), ROWS, path)
    names = default_pool_spec().names

    def run(pool_spec: object) -> list:
        env = gym.make("RouterQA-v0", dataset=ROWS, pool=pool_spec)
        steps = []
        try:
            for q in ROWS:
                env.reset(seed=0, options={"question_id": q.question_id})
                for name in (names[0], names[3]):
                    steps.append(env.step(f"<think>ask</think>\n<search> {name}: {q.question} </search>"))
                steps.append(env.step("<think>done</think>\n<answer> Author 1 </answer>"))
        finally:
            env.close()
        return steps

    live = run(None)
    replayed = run(default_pool_spec().with_backend("replay", replay_path=str(path)))
    assert replayed == live
    assert any(s[4]["route_outcome"] == "executed" and s[4]["call_cost"] > 0 for s in live)


# ---------------------------------------------------------------------------- unrecorded queries (issue #12 item 13)


def test_nearest_mode_answers_with_the_most_similar_recorded_query() -> None:
    rows = [_row(), _row(query="Which publisher printed book number 0?", text="publisher-level")]
    backend = ReplayBackend(LIVE_SPEC.models, {"alpha": rows}, unrecorded="nearest")
    got = backend.call_batch(
        [
            CallRequest(model="alpha", query="author of book number 0", question=ROWS[0]),
            CallRequest(model="alpha", query="publisher printed it", question=ROWS[0]),
            CallRequest(model="alpha", query="zebra", question=ROWS[0]),  # shares no content word
        ]
    )
    assert [r.text for r in got[:2]] == ["question-level", "publisher-level"]
    assert got[2] == CallResult(ok=False, error="unrecorded", attempts=0)
    assert (backend.metrics()["nearest"], backend.metrics()["unrecorded"]) == (2.0, 1.0)
    with pytest.raises(InvalidConfig, match="unrecorded must be 'fail' or 'nearest', got 'closest'"):
        ReplayBackend(LIVE_SPEC.models, {}, unrecorded="closest")  # type: ignore[arg-type]


def test_env_flags_an_unrecorded_query_and_nearest_is_opt_in(tmp_path: Path) -> None:
    import gymnasium as gym

    import recal_gym  # noqa: F401 - registers RouterQA-v0
    from recal_gym.pools.options import PoolOptions

    path = tmp_path / "t.jsonl"
    record_table(_sim_pool(), ROWS[:2], path)
    spec = default_pool_spec().with_backend("replay", replay_path=str(path))
    name = spec.names[0]
    infos = {}
    for mode in ("fail", "nearest"):
        env = gym.make("RouterQA-v0", dataset=ROWS, pool=spec, pool_options=PoolOptions(replay_unrecorded=mode))
        env.reset(options={"question_id": ROWS[0].question_id})
        infos[mode] = [
            env.step(f"<search> {name}: {q} </search>")[:5]
            for q in ("who wrote book number 0", "the writer of book number 0", "weather in Paris")
        ]
        env.close()
    exact, paraphrase, unrelated = (i[4] for i in infos["fail"])
    assert exact["route_outcome"] == "executed" and exact["call_error"] == ""
    for info, obs in ((paraphrase, infos["fail"][1][0]), (unrelated, infos["fail"][2][0])):
        assert info["route_outcome"] == "call_failed" and info["call_error"] == "unrecorded"
        assert obs == "\n\n<information>None</information>\n\n" and info["call_cost"] == 0.0
    near = infos["nearest"]
    assert near[1][4]["route_outcome"] == "executed" and near[1][0] == infos["fail"][0][0]
    assert near[2][4]["call_error"] == "unrecorded"


def test_replies_with_lone_surrogates_record_and_replay_exactly(tmp_path: Path) -> None:
    class _Odd(_Flaky):
        def call_batch(self, requests: Sequence[CallRequest]) -> list[CallResult]:
            return [CallResult(ok=True, text=f"{r.model} \ud800 é", completion_tokens=2) for r in requests]

    path = tmp_path / "odd.jsonl"
    record_table(Pool(LIVE_SPEC, {"openai": _Odd()}), ROWS[:1], path)
    assert [r.text for r in load_replay_table(path)] == ["alpha \ud800 é", "beta \ud800 é"]
    path.read_bytes().decode("utf-8")  # the file itself is valid UTF-8


@pytest.mark.parametrize("out", ["t.csv", "t.json", "t"])
def test_record_refuses_an_output_that_is_not_a_table(tmp_path: Path, out: str) -> None:
    with pytest.raises(InvalidConfig, match=r"must end in one of \['.jsonl', '.parquet', '.pq'\]"):
        record_table(Pool(LIVE_SPEC, {"openai": _Flaky()}), ROWS, tmp_path / out)
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize(
    ("line", "match"),
    [
        (b"[" * 100_000 + b"\n", r"odd\.jsonl:1: JSON nested too deeply"),
        (b'{"question_id": "q\xff"}\n', r"odd\.jsonl:1: not UTF-8 text"),
        (b"[1, 2]\n", r"odd\.jsonl:1: expected a JSON object, got list"),
        (
            json.dumps(_row(completion_tokens=10**30).to_dict()).encode() + b"\n",
            r"column 'completion_tokens' must be in",
        ),
        (json.dumps(_row(cost=1e400).to_dict()).encode() + b"\n", r"cost and latency_s must be finite"),
        (b'{"question_id": "q", "model": "m", "text": "t", "completion_tokens": 1e400}\n', r"malformed value"),
    ],
)
def test_hostile_table_lines_name_file_and_line(tmp_path: Path, line: bytes, match: str) -> None:
    path = tmp_path / "odd.jsonl"
    path.write_bytes(line)
    with pytest.raises(InvalidData, match=match):
        load_replay_table(path)
