"""``recal-gym train`` end to end on the tiny preset: files, determinism, kill -9 + resume, refusals."""

from __future__ import annotations

import json
import math
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from agents.cli import build_parser, main
from agents.grpo.checkpoint import read_checkpoint, read_manifest
from agents.grpo.metrics_log import read_jsonl
from recal_gym.errors import CorruptCheckpoint, InvalidConfig

ROOT = Path(__file__).resolve().parents[3]
QUIET = ["--no-progress", "--no-tensorboard", "--no-plot"]
SMALL = ["--preset", "tiny", "--questions-per-step", "2", "--group-size", "4"]


def test_train_parser_knows_the_flags() -> None:
    args = build_parser().parse_args(["train", "--preset", "tiny", "--steps", "3", "--set", "lr=0.01"])
    assert (args.preset, args.steps, args.set) == ("tiny", 3, ["lr=0.01"])


def test_train_cli_module_is_import_light() -> None:
    code = "import sys, agents.cli.train, agents.grpo.config; print('torch' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"


def _cli(args: list[str], threads: int) -> subprocess.Popen:
    """``recal-gym train ...`` in a fresh process running this worktree's code."""
    env = {**os.environ, "PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": str(threads), "OMP_WAIT_POLICY": "PASSIVE"}
    code = "import sys; from agents.cli import main; sys.exit(main(sys.argv[1:]))"
    return subprocess.Popen(
        [sys.executable, "-c", code, "train", *args, "--threads", str(threads), *QUIET],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )


def _run(args: list[str], threads: int = 1) -> None:
    proc = _cli(args, threads)
    _, err = proc.communicate(timeout=600)
    assert proc.returncode == 0, err


def _without_time(records: list[dict]) -> list[dict]:
    return [{k: v for k, v in r.items() if not k.startswith("time/")} for r in records]


def _assert_same_run(a: Path, b: Path) -> None:
    """Metrics (all but wall-clock times), episode logs and every checkpointed tensor equal, exactly."""
    assert _without_time(read_jsonl(a / "metrics.jsonl")) == _without_time(read_jsonl(b / "metrics.jsonl"))
    assert read_jsonl(a / "episodes.jsonl") == read_jsonl(b / "episodes.jsonl")  # transcripts and exact rewards
    sa, _ = read_checkpoint(a / "checkpoint")
    sb, _ = read_checkpoint(b / "checkpoint")
    for name, tensor in sa["model"].items():
        assert torch.equal(tensor, sb["model"][name]), name
    oa, ob = sa["optimizer"]["state"], sb["optimizer"]["state"]
    assert all(torch.equal(oa[i][k], ob[i][k]) for i in oa for k in oa[i] if torch.is_tensor(oa[i][k]))
    for key in ("calibration", "reward_state", "step", "warmstart_done"):
        assert sa[key] == sb[key], key
    for key in ("question_generator", "sample_generator"):
        assert torch.equal(sa[key], sb[key]), key


@pytest.mark.slow
def test_two_runs_are_identical_from_the_warm_start_on(tmp_path: Path) -> None:
    """Same config + seed in two processes: identical warm-start and RL metrics and parameters."""
    common = [*SMALL, "--steps", "2", "--warmstart-steps", "3", "--warmstart-batch", "8"]
    _run([*common, "--out", str(tmp_path / "a")])
    _run([*common, "--out", str(tmp_path / "b")])
    assert read_jsonl(tmp_path / "a" / "warmstart.jsonl") == read_jsonl(tmp_path / "b" / "warmstart.jsonl")
    _assert_same_run(tmp_path / "a", tmp_path / "b")


@pytest.fixture(scope="module")
def warm(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A warm-started tiny policy (so RL groups have reward variance and the weights move)."""
    out = tmp_path_factory.mktemp("warm")
    _run([*SMALL, "--steps", "1", "--warmstart-steps", "40", "--warmstart-batch", "8", "--out", str(out)])
    return out / "warmstart"


def _wait_for_step(proc: subprocess.Popen, metrics: Path, step: int) -> None:
    deadline = time.monotonic() + 300
    while time.monotonic() < deadline and proc.poll() is None:
        if metrics.exists() and any(r["step"] >= step for r in read_jsonl(metrics)):
            return
        time.sleep(0.02)
    raise AssertionError(f"the run ended or stalled before step {step}")


@pytest.mark.slow
@pytest.mark.parametrize("threads", [1, 2])
def test_kill_9_then_resume_is_bit_identical(tmp_path: Path, warm: Path, threads: int) -> None:
    steps = 8
    common = [*SMALL, "--steps", str(steps), "--init-checkpoint", str(warm), "--checkpoint-every", "1"]
    _run([*common, "--out", str(tmp_path / "straight")], threads)
    killed = tmp_path / "killed"
    proc = _cli([*common, "--out", str(killed)], threads)
    _wait_for_step(proc, killed / "metrics.jsonl", 3)
    os.kill(proc.pid, signal.SIGKILL)
    proc.communicate()
    assert proc.returncode == -signal.SIGKILL
    assert read_manifest(killed / "checkpoint")["step"] < steps  # really interrupted
    _run(["--resume", str(killed)], threads)  # config, run directory and threads come from the checkpoint
    _assert_same_run(tmp_path / "straight", killed)
    assert [r["step"] for r in read_jsonl(killed / "metrics.jsonl")] == list(range(steps))
    start, _ = read_checkpoint(warm)
    end, _ = read_checkpoint(killed / "checkpoint")
    assert any(not torch.equal(start["model"][k], end["model"][k]) for k in start["model"])  # RL moved the weights


@pytest.mark.slow
def test_train_tiny_end_to_end_then_resume(tmp_path: Path, capsys) -> None:
    out = tmp_path / "run"
    common = [*SMALL, "--out", str(out), "--no-progress", "--warmstart-steps", "1", "--group-size", "2"]
    assert main(["train", *common, "--steps", "2"]) == 0
    records = read_jsonl(out / "metrics.jsonl")
    assert [r["step"] for r in records] == [0, 1]
    assert all(math.isfinite(r["loss/total"]) for r in records)
    assert "reward/total/mean" in records[0] and "time/update_s" in records[0]
    assert (out / "curves.png").stat().st_size > 0
    assert list((out / "tb").glob("events.out.tfevents.*"))
    assert read_manifest(out / "checkpoint")["step"] == 2
    assert read_manifest(out / "warmstart")["step"] == 0
    assert len(read_jsonl(out / "warmstart.jsonl")) == 1
    assert json.loads((out / "config.json").read_text())["name"] == "tiny"
    assert (out / "curves_warmstart.png").stat().st_size > 0 and list((out / "tb" / "warmstart").glob("events.*"))
    printed = capsys.readouterr().out
    assert "plan: warm start up to 1 steps (warmstart_steps; no early stop); then RL steps 0..1" in printed
    assert "warm start: 1 steps (budget used)" in printed and "episode/return=" in printed
    # resume the finished run for one more step (steps may grow): metrics continue at step 2
    assert main(["train", "--resume", str(out), "--steps", "3", "--no-progress", "--no-tensorboard", "--no-plot"]) == 0
    assert [r["step"] for r in read_jsonl(out / "metrics.jsonl")] == [0, 1, 2]


@pytest.fixture(scope="module")
def finished(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("finished")
    args = ["train", *SMALL, "--steps", "1", "--warmstart-steps", "0", "--out", str(out), *QUIET]
    assert main(args) == 0
    return out


@pytest.mark.parametrize(
    ("flags", "match"),
    [
        (["--lr", "0.5"], r"conflicting: lr=0.5 \(the checkpoint has 0.001\)"),
        (["--set", "recal.w_min=0.2"], r"recal.w_min=0.2 \(the checkpoint has 0.4\)"),
        (["--preset", "smollm2-cpu"], r"--preset 'smollm2-cpu' \(the run's is 'tiny'\)"),
        (["--out", "elsewhere"], r"--out 'elsewhere' \(the run directory is"),
        (["--steps", "0"], r"steps"),
    ],
)
def test_resume_refuses_conflicting_overrides(finished: Path, flags: list[str], match: str, capsys) -> None:
    with pytest.raises(InvalidConfig, match=match):  # --debug: the error itself, not the one-line message
        main(["--debug", "train", "--resume", str(finished), *flags, *QUIET])
    assert main(["train", "--resume", str(finished), *flags, *QUIET]) == 2
    err = capsys.readouterr().err
    assert err.startswith("recal-gym train: ") and err.count("\n") == 1 and "Traceback" not in err


def test_resume_accepts_flags_equal_to_the_checkpoint(finished: Path) -> None:
    assert main(["train", "--resume", str(finished / "checkpoint"), "--lr", "0.001", "--preset", "tiny", *QUIET]) == 0


def test_a_torn_checkpoint_is_detected(finished: Path, tmp_path: Path) -> None:
    import shutil

    run = tmp_path / "run"
    shutil.copytree(finished, run)
    state = run / "checkpoint" / read_manifest(run / "checkpoint")["file"]
    data = state.read_bytes()
    state.write_bytes(data[: len(data) // 2])
    with pytest.raises(CorruptCheckpoint, match="torn write"):
        main(["--debug", "train", "--resume", str(run), *QUIET])
    state.write_bytes(data[:-1] + bytes([data[-1] ^ 1]))
    with pytest.raises(CorruptCheckpoint, match="SHA-256"):
        main(["--debug", "train", "--resume", str(run), *QUIET])
    with pytest.raises(CorruptCheckpoint, match="no checkpoint/ or warmstart/"):
        main(["--debug", "train", "--resume", str(tmp_path), *QUIET])


def test_metrics_and_checkpoints_carry_the_reward_spec_hash(finished: Path) -> None:
    """Runs are comparable by hash: every metrics line, the manifest and the state name the spec."""
    spec_hash = json.loads((finished / "reward_spec.json").read_text())["hash"]
    assert spec_hash.startswith("rs-")
    assert {r["reward_spec_hash"] for r in read_jsonl(finished / "metrics.jsonl")} == {spec_hash}
    assert read_manifest(finished / "checkpoint")["meta"]["reward_spec_hash"] == spec_hash
    state, _ = read_checkpoint(finished / "checkpoint")
    assert state["reward_spec_hash"] == spec_hash
