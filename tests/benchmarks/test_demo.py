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
    return {"overall": {"em": em, "cost": cost, "n": 10, "format_error_rate": 0.0, "calls_per_model": {}}}


def _seed(warm: float, final: float, rl_s: float, cost: float = 20.0) -> dict:
    return {"warm": _report(warm, cost), "final": _report(final, cost), "rl_time_s": rl_s,
            "rl_time_idle_estimate_s": rl_s / 2}  # fmt: skip


BASE = [{"router": "single:A", **_report(0.30, 18.0)}, {"router": "single:B", **_report(0.32, 80.0)},
        {"router": "random", **_report(0.2, 30.0)}]  # fmt: skip


def test_targets_need_the_mean_gain_and_every_seed_improving() -> None:
    summary = _demo()._summary([_seed(0.2, 0.3, 600), _seed(0.2, 0.31, 700), _seed(0.2, 0.29, 900)], BASE, 0.08)
    assert summary["target_met"] and summary["every_seed_improved"] and summary["rl_time_target_met"]
    assert summary["gain_mean"] == pytest.approx(0.1)
    assert summary["best_single"] == {"router": "single:B", "em": 0.32, "cost": 80.0}
    assert summary["stretch_met"]  # 0.30 >= 0.32 - 0.03 at cost 20 <= 80
    lagging = _demo()._summary([_seed(0.2, 0.4, 600), _seed(0.2, 0.4, 600), _seed(0.2, 0.19, 1300)], BASE, 0.08)
    assert not lagging["target_met"] and not lagging["every_seed_improved"] and not lagging["rl_time_target_met"]


def test_summary_markdown_names_every_run() -> None:
    demo = _demo()
    seeds = [{**_seed(0.2, 0.3, 600), "seed": 0}]
    text = demo._summary_md({"seeds": seeds, "baselines": BASE, "summary": demo._summary(seeds, BASE, 0.08)})
    assert "| seed 0 warm start | 0.200 |" in text and "| single:B | 0.320 | 80.0 |" in text
    assert "target +0.08: met" in text


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
