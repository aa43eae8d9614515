"""The scoring-cost benchmark runs end to end and writes its report (speed itself is never asserted)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def test_bench_scoring_ratio_smoke(tmp_path: Path) -> None:
    out = tmp_path / "scoring_ratio.json"
    cmd = [
        sys.executable, str(ROOT / "benchmarks" / "bench_scoring_ratio.py"),
        "--episodes", "12", "--rounds", "1", "--budget-ms", "0.2", "--out", str(out),
    ]  # fmt: skip
    subprocess.run(cmd, check=True, cwd=ROOT, capture_output=True, text=True, timeout=300)
    report = json.loads(out.read_text())
    assert report["episodes"] == 12 and report["python_threads"] == 1
    assert set(report["median_us"]) == {"scan", "scan_pairs", "lean_format_em", "router-r1", "recal"}
    assert set(report["ratio_to_scan"]) == {"scan_pairs", "lean_format_em", "router-r1", "recal"}
    for name, ratio in report["ratio_to_scan"].items():
        assert 0 < ratio["p25"] <= ratio["median"] <= ratio["p75"], name
    assert set(report["meets_targets"]) == {"router-r1", "recal"}
