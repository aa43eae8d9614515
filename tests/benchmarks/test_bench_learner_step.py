"""The learner-step speed benchmark runs end to end and writes its report (speed itself is never asserted)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def test_bench_learner_step_smoke_on_the_tiny_preset(tmp_path: Path) -> None:
    out = tmp_path / "learner_step.json"
    cmd = [
        sys.executable, str(ROOT / "benchmarks" / "bench_learner_step.py"), "--preset", "tiny",
        "--arms", "legacy,new,new-all-logits@1p", "--rounds", "1", "--burn-in", "0", "--steps", "1", "--out", str(out),
    ]  # fmt: skip
    subprocess.run(cmd, check=True, cwd=ROOT, capture_output=True, text=True, timeout=600)
    report = json.loads(out.read_text())
    assert set(report["summary_median"]) == {"legacy", "new", "new-all-logits@1p"}
    for arm, summary in report["summary_median"].items():
        assert summary["measured_steps"] == 1.0 and summary["total_s"] > 0 and summary["peak_rss_gib"] > 0, arm
        run = report["runs"][arm][0]
        assert run["config"]["questions_per_step"] == 4 and run["config"]["max_new_tokens"] == 48
        assert run["torch_threads"] == 1
    assert report["runs"]["legacy"][0]["config"]["logits"] == "all"
    assert report["runs"]["new"][0]["config"]["kv_cache"] == "preallocated"
    assert report["runs"]["new-all-logits@1p"][0]["omp_wait_policy"] == "PASSIVE"
    assert report["runs"]["new-all-logits@1p"][0]["config"]["logits"] == "all"
    assert report["reference_arm"] == "legacy" and set(report["ratio_to_reference"]) == {"new", "new-all-logits@1p"}
