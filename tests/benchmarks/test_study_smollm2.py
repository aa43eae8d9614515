"""Study B (token-level, SmolLM2): its ``--quick`` pipeline on the tiny policy (JSON schema, PNGs, reuse)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


@pytest.mark.slow
def test_quick_study_writes_results_and_reuses_finished_runs(tmp_path: Path) -> None:
    out, work = tmp_path / "study", tmp_path / "work"
    cmd = [sys.executable, str(ROOT / "benchmarks" / "study_smollm2.py"), "--quick", "--seeds", "0", "1",
           "--arms", "grpo", "recal", "--out", str(out), "--work", str(work)]  # fmt: skip
    subprocess.run(cmd, check=True, capture_output=True, text=True)
    res = json.loads((out / "results.json").read_text())
    assert res["command"][2:] == cmd[2:] and res["arms"] == ["grpo", "recal"] and res["seeds"] == [0, 1]
    assert {(r["arm"], r["seed"]) for r in res["runs"]} == {(a, s) for a in ("grpo", "recal") for s in (0, 1)}
    for r in res["runs"]:
        assert r["train_mode"] == "trained" and r["rl_steps"] == 2
        assert r["final"]["overall"]["n"] == res["warm"][str(r["seed"])]["overall"]["n"] < 194  # --eval-n 16
        assert f"estimator={r['arm']}" in r["command"] and "dynamic_sampling=false" in r["command"]
        ws = res["warm_starts"][str(r["seed"])]["checkpoint"]
        assert f"init_checkpoint={ws}" in r["command"]  # every arm of a seed starts from its one warm start
    cmp = res["comparison"]["vs_grpo"]["em"]["recal"]
    assert {"mean", "ci_t_low", "ci_boot_high", "p", "p_holm", "mde", "n"} <= set(cmp) and cmp["n"] == 2
    assert set(res["comparison"]["per_arm"]) == {"grpo", "recal", "warm_start"}
    assert res["machine"]["threads"] == 1 and res["wall_s"] > 0 and res["machine"]["git_commit"]
    for name in ("curves.png", "heldout.png", "summary.md", "runs/recal-s1/metrics.jsonl"):
        assert (out / name).stat().st_size > 0, name
    assert "| recal |" in (out / "summary.md").read_text()
    subprocess.run([*cmd, "--reuse"], check=True, capture_output=True, text=True)
    again = json.loads((out / "results.json").read_text())
    assert {r["train_mode"] for r in again["runs"]} == {"reused"}
    assert again["comparison"] == res["comparison"]
    # --warmstarts DIR takes DIR/seed_<s>/warmstart (e.g. the demonstration's work dir) instead of training one
    given = tmp_path / "demo_work"
    for s in (0, 1):
        (given / f"seed_{s}").mkdir(parents=True)
        (given / f"seed_{s}" / "warmstart").symlink_to(work / f"ws-s{s}" / "warmstart")
    other = [sys.executable, str(ROOT / "benchmarks" / "study_smollm2.py"), "--quick", "--seeds", "0", "1",
             "--arms", "grpo", "--warmstarts", str(given), "--set", "lr=0.002",
             "--out", str(tmp_path / "study2"), "--work", str(tmp_path / "work2")]  # fmt: skip
    subprocess.run(other, check=True, capture_output=True, text=True)
    res2 = json.loads((tmp_path / "study2" / "results.json").read_text())
    for s in ("0", "1"):
        ws = res2["warm_starts"][s]
        assert ws["checkpoint"] == str(given / f"seed_{s}" / "warmstart") and ws["origin"].startswith("reused from")
        assert res2["warm"][s]["overall"] == again["warm"][s]["overall"]  # the same weights, the same report
    assert not (tmp_path / "work2" / "ws-s0").exists()  # no warm start was trained
    assert all("lr=0.002" in r["command"] for r in res2["runs"])
