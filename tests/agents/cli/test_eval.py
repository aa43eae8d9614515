"""Tests for ``recal-gym eval`` (agents.cli): printed tables, written files and the router hooks."""

from __future__ import annotations

import csv
import json
import re
import sys
import types

from agents.cli import main
from agents.eval.baselines import SingleModelRouter

SMALL = ["eval", "--n", "3", "--no-progress"]
MIXTRAL = "single:Mixtral-8x22B-Instruct"


def run(capsys, *args: str) -> str:
    assert main([*SMALL, *args]) == 0
    return capsys.readouterr().out


def test_eval_prints_tables_and_writes_every_file(tmp_path, capsys):
    out = tmp_path / "eval"
    text = run(capsys, "--out", str(out), "--router", "random", "--router", "prompt", "--router", "oracle",
               "--router", MIXTRAL)  # fmt: skip
    assert "| router | dataset | n | EM | F1 | cost (µ$) | calls/q | format err | reward |" in text
    assert "| oracle | all | 6 |" in text
    assert "AIQ of EM over mean cost per question" in text
    assert "| hull of all runs |" in text and "Zero router" in text
    for name in ("table.md", "table.csv", "reports.json", "pareto.png", "per_dataset_em.png"):
        assert (out / name).is_file(), name
    assert (out / "pareto.png").read_bytes()[:4] == b"\x89PNG"
    assert (out / "per_dataset_em.png").read_bytes()[:4] == b"\x89PNG"
    payload = json.loads((out / "reports.json").read_text())
    assert [r["router"] for r in payload["reports"]] == ["random", "prompt", "oracle", MIXTRAL]
    assert [p["router"] for p in payload["summary"]["routers"]] == ["random", "prompt", "oracle", MIXTRAL]
    oracle = payload["reports"][2]["overall"]
    assert oracle["em"] >= payload["reports"][3]["overall"]["em"]
    rows = list(csv.DictReader((out / "table.csv").open()))
    assert len(rows) == 4 * 3  # two datasets + all, per router
    md = (out / "table.md").read_text()
    assert md.startswith("| router | dataset |") and "| Pareto | AIQ |" in md


def test_no_files_writes_nothing_and_json_flag_still_works(tmp_path, capsys):
    out = tmp_path / "eval"
    js = tmp_path / "r.json"
    text = run(capsys, "--out", str(out), "--no-files", "--json", str(js), "--router", "direct")
    assert "| direct | all | 6 |" in text
    assert not out.exists()
    assert json.loads(js.read_text())[0]["router"] == "direct"


def test_rewards_do_not_depend_on_router_order(tmp_path, capsys):
    run(capsys, "--no-files", "--json", str(tmp_path / "a.json"), "--router", MIXTRAL)
    run(capsys, "--no-files", "--json", str(tmp_path / "b.json"), "--router", "random", "--router", MIXTRAL)
    alone = json.loads((tmp_path / "a.json").read_text())[0]
    after = json.loads((tmp_path / "b.json").read_text())[1]
    assert alone == after


def test_unknown_router_exits_with_the_choices(capsys):
    assert main([*SMALL, "--no-files", "--router", "best"]) == 2
    assert re.fullmatch(
        r"recal-gym eval: unknown router 'best' — use .*oracle.*sb3:<path\.zip>.*\n", capsys.readouterr().err
    )


def test_sb3_hook_loads_a_router_from_the_plugin_module(monkeypatch, tmp_path, capsys):
    seen = []

    def load_router(path: str) -> SingleModelRouter:
        seen.append(path)
        return SingleModelRouter(model="Mistral-7B-Instruct", name="sb3:fake")

    fake = types.ModuleType("agents.adapters.sb3")
    fake.load_router = load_router  # type: ignore[attr-defined]
    monkeypatch.setitem(sys.modules, "agents.adapters.sb3", fake)
    (tmp_path / "model.zip").write_bytes(b"")
    text = run(capsys, "--no-files", "--router", f"sb3:{tmp_path / 'model.zip'}")
    assert seen == [str(tmp_path / "model.zip")]
    assert "| sb3:fake | all | 6 |" in text


def test_checkpoint_hook_names_the_missing_module(monkeypatch, tmp_path, capsys):
    monkeypatch.setitem(sys.modules, "agents.grpo.learner", None)  # import fails with ModuleNotFoundError
    assert main([*SMALL, "--no-files", "--router", f"checkpoint:{tmp_path}"]) == 2
    assert "needs the module agents.grpo.learner, which is not installed" in capsys.readouterr().err


def test_checkpoint_hook_names_the_missing_function(monkeypatch, tmp_path, capsys):
    monkeypatch.setitem(sys.modules, "agents.grpo.learner", types.ModuleType("agents.grpo.learner"))
    assert main([*SMALL, "--no-files", "--router", f"checkpoint:{tmp_path}"]) == 2
    assert "agents.grpo.learner.load_router(path)" in capsys.readouterr().err
