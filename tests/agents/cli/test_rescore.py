"""``recal-gym rescore``: exact re-scoring of eval and training logs, spec comparisons, bad inputs."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from agents.cli import main
from recal_gym.rewards import make_spec
from recal_gym.rewards.logs import LoggedEpisode, read_episode_log, rescore_log
from recal_gym.types import EpisodeRecord, NameTable

ROOT = Path(__file__).resolve().parents[3]
USER = "tests.recal_gym.rewards.user_components"
SPEC = f"""
preset: recal
name: shaped
weights: {{cost: 0.3}}
predicates:
  - {{name: answered_in_words, function: "{USER}:answered_in_words", reads: [answer, short]}}
components:
  - {{name: short, function: "{USER}:short_answer", range: [0, 1], weight: 0.2, gate: "format == 0"}}
  - {{name: calls, weight: 0.1, gate: "format == 0 and answered_in_words"}}
"""


def _cli(*args: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "PYTHONPATH": str(ROOT), "HF_HUB_OFFLINE": "1", "OMP_NUM_THREADS": "1"}
    return subprocess.run(
        [sys.executable, "-m", "agents.cli", *args], capture_output=True, text=True, env=env, cwd=ROOT
    )


def _report(out: Path) -> dict:
    return json.loads((out / "rescore.json").read_text())


def test_eval_log_rescored_exactly_and_compared(tmp_path: Path) -> None:
    spec = tmp_path / "shaped.yaml"
    spec.write_text(SPEC)
    run = tmp_path / "eval"
    proc = _cli("eval", "--n", "4", "--router", "random", "--router", "single:Mixtral-8x22B-Instruct",
                "--reward", str(spec), "--out", str(run), "--no-progress", "--no-plots")  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    lines = (run / "episodes.jsonl").read_text().splitlines()
    assert len(lines) == 2 * 8 and json.loads(lines[0])["run"] == "random"  # 4 per dataset, two datasets
    proc = _cli("rescore", str(run), "--reward", str(spec), "--reward", "recal", "--out", str(tmp_path / "r"))
    assert proc.returncode == 0, proc.stderr
    report = _report(tmp_path / "r")
    shaped, recal = report["specs"]
    assert shaped["online_mismatches"] == 0 and recal["online_mismatches"] is None  # exact under its own spec
    assert shaped["components"][-1] == "short" and "short" not in recal["components"]
    assert report["n"] == 16 and set(shaped["table"]) == {"fanoutqa_multi", "fanoutqa_single", "all"}
    change = report["changes"][0]
    assert change["a"] == "shaped" and change["b"] == "recal" and 0 <= change["sign_changed"] <= 16
    assert "online vs offline: 0 differ" in proc.stdout and "changed sign" in proc.stdout


@pytest.mark.slow
def test_training_run_on_a_user_spec_is_rescored_bit_for_bit(tmp_path: Path) -> None:
    spec = tmp_path / "shaped.yaml"
    spec.write_text(SPEC)
    run = tmp_path / "run"
    proc = _cli("train", "--preset", "tiny", "--out", str(run), "--set", f"reward={spec}", "--set", "steps=2",
                "--set", "warmstart_steps=2", "--estimator", "recal", "--no-progress", "--no-plot",
                "--no-tensorboard", "--threads", "1")  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    episodes = read_episode_log(run)
    assert len(episodes) == 2 * 32 and {e.step for e in episodes} == {0, 1}
    assert all(list(e.components or {})[-1] == "short" for e in episodes)
    proc = _cli("rescore", str(run), "--reward", str(spec), "--out", str(tmp_path / "r"))
    assert proc.returncode == 0, proc.stderr
    assert _report(tmp_path / "r")["specs"][0]["online_mismatches"] == 0  # batch-mode state replayed exactly


def _episode(qid: str, answer: str, run: str = "r") -> LoggedEpisode:
    table = NameTable(names=("A",), listed=("A",))
    transcript = f"<think>t</think><answer>{answer}</answer>"
    record = EpisodeRecord(question_id=qid, data_source="d", question="q?", golden_answers=("yes",),
                           transcript=transcript, information_spans=(), calls=(), raw_cost=0.0,
                           termination="answer", pool=table)  # fmt: skip
    return LoggedEpisode(record=record, run=run, step=0)


def test_sign_and_rank_changes_between_specs() -> None:
    # One group of three: answers yes (EM 1), no (EM 0), no. Under recal: rewards 1.x, 0, 0.
    episodes = [_episode("q1", "yes"), _episode("q1", "no"), _episode("q1", "no")]
    base = make_spec("recal")
    flipped = make_spec("recal", weights={"answer": -1.0})  # a right answer now scores below a wrong one
    report = rescore_log(episodes, [base, flipped])
    change = report.changes[0]
    assert change["sign_changed"] == 1 and change["rank_changed"] == 3 and change["groups"] == 1
    assert report.specs[0].table["all"]["n"] == 3.0
    assert report.specs[0].table["d"]["answer"] == pytest.approx(1 / 3)


@pytest.mark.parametrize(
    ("setup", "args", "match"),
    [
        (None, ("rescore", "{tmp}/nowhere"), "does not exist"),
        ("dir", ("rescore", "{tmp}"), "holds no episodes.jsonl"),
        ("bad", ("rescore", "{tmp}/log.jsonl"), r"log.jsonl' line 2: not valid UTF-8 JSON"),
        ("good", ("rescore", "{tmp}/log.jsonl", "--reward", "recall"), "Did you mean 'recal'"),
    ],
)
def test_bad_rescore_invocations_are_one_line(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], setup: str | None, args: tuple, match: str
) -> None:
    good = json.dumps({"record": _episode("q1", "yes").record.to_dict()})
    if setup == "bad":
        (tmp_path / "log.jsonl").write_text(good + "\n{broken\n")
    elif setup == "good":
        (tmp_path / "log.jsonl").write_text(good + "\n")
    argv = [a.format(tmp=tmp_path) for a in args]
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert len(err.strip().splitlines()) == 1 and err.startswith("recal-gym rescore: ") and "Traceback" not in err
    assert re.search(match, err), err


def test_rescore_in_process_prints_the_tables(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    log = tmp_path / "log.jsonl"
    episodes = (_episode("q", "yes"), _episode("q", "no"))
    log.write_text("".join(json.dumps(e.record.to_dict()) + "\n" for e in episodes))
    assert main(["rescore", str(log), "--reward", "router-r1"]) == 0
    out = capsys.readouterr().out
    assert "### router-r1" in out and "| all | 2 | 0.500 |" in out
