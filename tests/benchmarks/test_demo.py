"""The SmolLM2 demonstration script: its summary logic (hand cases) and, slow, its quick pipeline."""

from __future__ import annotations

import importlib.util
import json
import subprocess
import sys
from pathlib import Path
from types import ModuleType

import pytest

ROOT = Path(__file__).resolve().parents[2]


def _demo() -> ModuleType:
    spec = importlib.util.spec_from_file_location("demo_smollm2", ROOT / "benchmarks" / "demo_smollm2.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _report(em: float, cost: float) -> dict:
    return {"overall": {"em": em, "reward": em, "cost": cost, "n": 10, "format_error_rate": 0.0, "calls_per_model": {}}}


def _seed(warm: float, final: float, rl_s: float, cost: float = 20.0) -> dict:
    return {"warm": _report(warm, cost), "final": _report(final, cost), "rl_time_s": rl_s,
            "rl_time_idle_estimate_s": rl_s / 2}  # fmt: skip


BASE = [{"router": "single:A", **_report(0.30, 18.0)}, {"router": "single:B", **_report(0.32, 80.0)},
        {"router": "random", **_report(0.2, 30.0)}]  # fmt: skip


def test_targets_need_the_mean_gain_and_every_seed_improving() -> None:
    seeds = [{**_seed(0.2, f, t), "seed": i} for i, (f, t) in enumerate([(0.3, 600), (0.31, 700), (0.29, 900)])]
    summary = _demo()._summary(seeds, BASE, 0.08)
    assert summary["target_met"] and summary["every_seed_improved"] and summary["rl_time_target_met"]
    assert summary["gain_mean"] == pytest.approx(0.1)
    assert summary["best_single"] == {"router": "single:B", "em": 0.32, "cost": 80.0}
    assert summary["stretch_met"]  # 0.30 >= 0.32 - 0.03 at cost 20 <= 80
    lagging = _demo()._summary([{**_seed(0.2, 0.4, 600), "seed": 0}, {**_seed(0.2, 0.19, 1300), "seed": 1}], BASE, 0.08)
    assert not lagging["target_met"] and not lagging["every_seed_improved"] and not lagging["rl_time_target_met"]


def test_summary_markdown_names_every_run() -> None:
    demo = _demo()
    seeds = [{**_seed(0.2, 0.3, 600), "seed": 0}]
    text = demo._summary_md({"seeds": seeds, "baselines": BASE, "summary": demo._summary(seeds, BASE, 0.08)})
    assert "| seed 0 warm start | 0.200 |" in text and "| single:B | 0.320 | 80.0 |" in text
    assert "target +0.08: met" in text


def test_reward_optimal_model_per_dataset_and_the_share_moving_to_it() -> None:
    demo = _demo()

    def rep(reward: float, calls: dict[str, float], ds: str = "d1") -> dict:
        row = {"em": reward, "reward": reward, "cost": 1.0, "calls_per_model": calls}
        return {"datasets": [{**row, "data_source": ds}], "overall": {**row, "n": 4, "format_error_rate": 0.0}}

    baselines = [{"router": "single:A", **rep(0.2, {"A": 1.0})}, {"router": "single:B", **rep(0.5, {"B": 1.0})},
                 {"router": "oracle", **rep(0.9, {"A": 1.0})}]  # fmt: skip
    optimal = demo._reward_optimal(baselines)
    assert optimal["d1"]["model"] == optimal["all"]["model"] == "B"  # the oracle is not a single model
    seeds = [{"seed": 0, "warm": rep(0.2, {"A": 3.0, "B": 1.0}), "final": rep(0.4, {"B": 2.0})},
             {"seed": 1, "warm": rep(0.2, {"B": 1.0}), "final": rep(0.2, {"A": 1.0})}]  # fmt: skip
    shift = demo._choice_shift(seeds, optimal)
    assert shift["0"]["d1"] == {"warm": 0.25, "final": 1.0} and shift["1"]["all"] == {"warm": 1.0, "final": 0.0}
    for s in seeds:
        s["rl_time_s"], s["rl_time_idle_estimate_s"] = 100.0, None
    summary = demo._summary(seeds, baselines, 0.08)
    assert summary["moved_toward_optimal"] == [True, False]
    assert "- d1: B (reward 0.500" in demo._summary_md({"seeds": seeds, "baselines": baselines, "summary": summary})


@pytest.mark.slow
def test_quick_pipeline_writes_results(tmp_path: Path) -> None:
    out = tmp_path / "demo"
    cmd = [sys.executable, str(ROOT / "benchmarks" / "demo_smollm2.py"), "--quick", "--seeds", "0", "--threads", "1",
           "--out", str(out), "--work", str(tmp_path / "work")]  # fmt: skip
    subprocess.run(cmd, check=True, capture_output=True, text=True)
    result = json.loads((out / "results.json").read_text())
    assert result["seeds"][0]["final"]["overall"]["n"] == result["baselines"][0]["overall"]["n"] >= 128
    assert {b["router"] for b in result["baselines"]} >= {"random", "oracle", "single:Mixtral-8x22B-Instruct"}
    for name in ("curves.png", "heldout.png", "summary.md", "runs/seed_0/metrics.jsonl"):
        assert (out / name).stat().st_size > 0, name
    assert result["machine"]["threads"] == 1 and len(result["machine"]["load_1_5_15"]) == 3
    assert result["seeds"][0]["train_mode"] == "trained"
    # --reuse on the same --work: the finished run is kept (not retrained), a killed one is resumed
    reuse = [*cmd, "--reuse"]
    subprocess.run(reuse, check=True, capture_output=True, text=True)
    again = json.loads((out / "results.json").read_text())
    assert again["seeds"][0]["train_mode"].startswith("reused")
    assert again["seeds"][0]["final"]["overall"] == result["seeds"][0]["final"]["overall"]
    (tmp_path / "work" / "seed_0" / "checkpoint" / "manifest.json").unlink()  # as if killed after the warm start
    subprocess.run(reuse, check=True, capture_output=True, text=True)
    resumed = json.loads((out / "results.json").read_text())
    assert resumed["seeds"][0]["train_mode"].startswith("resumed")
    assert resumed["seeds"][0]["final"]["overall"] == result["seeds"][0]["final"]["overall"]  # bit-identical resume
