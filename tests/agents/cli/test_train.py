"""``recal-gym train`` end to end on the tiny preset (steps shrunk by flags)."""

from __future__ import annotations

import json
import math
import subprocess
import sys

import pytest

from agents.cli import build_parser, main
from agents.grpo.metrics_log import read_jsonl


def test_train_parser_knows_the_flags() -> None:
    args = build_parser().parse_args(["train", "--preset", "tiny", "--steps", "3", "--set", "lr=0.01"])
    assert (args.preset, args.steps, args.set) == ("tiny", 3, ["lr=0.01"])


def test_train_cli_module_is_import_light() -> None:
    code = "import sys, agents.cli.train, agents.grpo.config; print('torch' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"


@pytest.mark.slow
def test_train_tiny_end_to_end_then_resume(tmp_path, capsys) -> None:
    out = tmp_path / "run"
    common = ["--preset", "tiny", "--out", str(out), "--no-progress", "--warmstart-steps", "1"]
    assert main(["train", *common, "--steps", "2", "--questions-per-step", "2", "--group-size", "2"]) == 0
    records = read_jsonl(out / "metrics.jsonl")
    assert [r["step"] for r in records] == [0, 1]
    assert all(math.isfinite(r["loss/total"]) for r in records)
    assert "reward/total/mean" in records[0] and "time/update_s" in records[0]
    assert (out / "curves.png").stat().st_size > 0
    assert list((out / "tb").glob("events.out.tfevents.*"))
    assert (out / "checkpoint" / "checkpoint.pt").exists()
    assert (out / "warmstart" / "checkpoint.pt").exists()
    assert len(read_jsonl(out / "warmstart.jsonl")) == 1
    assert json.loads((out / "config.json").read_text())["name"] == "tiny"
    assert "episode/return=" in capsys.readouterr().out
    # resume the finished run for one more step: metrics continue at step 2
    more = ["--steps", "3", "--questions-per-step", "2", "--group-size", "2", "--resume", str(out / "checkpoint")]
    assert main(["train", *common, *more, "--no-tensorboard", "--no-plot"]) == 0
    assert [r["step"] for r in read_jsonl(out / "metrics.jsonl")] == [0, 1, 2]
