"""Tests of ``recal-gym pool record``: writes a table, resumes, and replays exactly."""

from __future__ import annotations

import json
from pathlib import Path

import gymnasium as gym

import recal_gym  # noqa: F401
from agents.cli import main
from recal_gym.pools import default_pool_spec
from recal_gym.pools.replay import load_replay_table


def test_record_then_resume_then_replay(tmp_path: Path, capsys) -> None:
    out = tmp_path / "table.jsonl"
    argv = ["pool", "record", "--dataset", "embedded:fanoutqa_multi", "--n", "5", "--out", str(out), "--no-progress"]
    assert main(argv) == 0
    first = json.loads(capsys.readouterr().out)
    assert first["total"] == 5 * 6 and first["written"] == 30 and first["skipped"] == 0
    assert main(argv) == 0
    second = json.loads(capsys.readouterr().out)
    assert second["skipped"] == 30 and second["written"] == 0
    rows = load_replay_table(out)
    assert len(rows) == 30
    # the replayed pool answers a full-question route exactly like the simulated pool that was recorded
    spec = default_pool_spec().to_dict()
    for m in spec["models"]:
        m["backend"], m["replay_path"] = "replay", str(out)
    live = gym.make("RouterQA-v0", dataset="embedded:fanoutqa_multi").unwrapped
    replay = gym.make("RouterQA-v0", dataset="embedded:fanoutqa_multi", pool=spec).unwrapped
    qid = rows[0].question_id
    outs = []
    for env in (live, replay):
        env.reset(options={"question_id": qid})
        q = env._ep.row.question
        outs.append(env.step(f"<think>a</think><search> Gemma-2-27B-Instruct: {q} </search>"))
        outs.append(env.step("<think>b</think><answer> x </answer>"))
    assert outs[0][0] == outs[2][0] and outs[1][1] == outs[3][1]
    assert outs[1][4]["raw_cost"] == outs[3][4]["raw_cost"]
