"""The ReCal learning study's smoke path (``benchmarks/study_recal.py --quick``) and its statistics."""

from __future__ import annotations

import importlib.util
import json
import math
import subprocess
import sys
from pathlib import Path
from types import ModuleType

import pytest

ROOT = Path(__file__).resolve().parents[2]
BENCH = ROOT / "benchmarks"


def _module(name: str) -> ModuleType:
    if name in sys.modules:
        return sys.modules[name]
    spec = importlib.util.spec_from_file_location(name, BENCH / f"{name}.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module  # dataclasses look their module up here
    sys.path.insert(0, str(BENCH))
    try:
        spec.loader.exec_module(module)
    finally:
        sys.path.remove(str(BENCH))
    return module


@pytest.fixture(scope="module")
def quick_results(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict]:
    out = tmp_path_factory.mktemp("study")
    cmd = [
        sys.executable,
        str(BENCH / "study_recal.py"),
        "--quick",
        "--out",
        str(out),
        "--settings",
        "heterogeneous",
        "--arms",
        "grpo",
        "recal",
        "--workers",
        "1",
    ]
    proc = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-2000:]
    return out, json.loads((out / "results.json").read_text())


def test_quick_study_writes_results_png_and_summary(quick_results: tuple[Path, dict]) -> None:
    out, res = quick_results
    png = out / "curves_heterogeneous.png"
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert "## Setting `heterogeneous`" in (out / "summary.md").read_text()
    assert {"runs", "aggregates", "warm_start", "budget", "settings", "arms", "collapse_rule", "provenance"} <= set(res)
    prov = res["provenance"]
    assert prov["command"].startswith("python ") and "--quick" in prov["command"]
    assert {"torch", "transformers", "numpy"} <= set(prov["packages"])
    assert prov["machine"]["cpu_count"] >= 1
    assert res["quick"] is True


def test_quick_study_run_schema(quick_results: tuple[Path, dict]) -> None:
    _, res = quick_results
    budget = res["budget"]
    runs = res["runs"]
    assert sorted((r["arm"], r["seed"]) for r in runs) == [("grpo", 0), ("recal", 0)]
    for run in runs:
        assert run["setting"] == "heterogeneous"
        assert set(run["final_em_per_dataset"]) == {"easy_qa", "hard_qa"}
        assert len(run["train"]["reward"]) == budget["steps"]
        assert [e["step"] for e in run["eval"]] == list(range(budget["steps"] + 1))
        assert 0.0 <= run["final_em"] <= 1.0 and 0.0 <= run["final_format_error"] <= 1.0
        assert math.isclose(run["auc_reward"], sum(run["train"]["reward"]) / budget["steps"])
        assert isinstance(run["collapsed"], bool)
    # Both arms of a seed start from the same warm-started weights: identical step-0 evaluations.
    assert runs[0]["eval"][0] == runs[1]["eval"][0]
    agg = res["aggregates"]["heterogeneous"]["arms"]
    assert set(agg) == {"grpo", "recal"} and "vs_grpo" in agg["recal"] and "vs_grpo" not in agg["grpo"]
    assert agg["recal"]["vs_grpo"]["final_em"]["diffs"] == [runs[1]["final_em"] - runs[0]["final_em"]]


def test_paired_statistics_oracles() -> None:
    report = _module("study_report")
    t = report.paired_t([1.0, 2.0, 3.0])  # mean 2, sd 1, t = 2·√3, df 2
    assert t["mean"] == pytest.approx(2.0) and t["t"] == pytest.approx(2 * math.sqrt(3))
    assert t["p"] == pytest.approx(1 - 2 * math.sqrt(3) / math.sqrt(12 + 2), abs=1e-6)  # df 2: p = 1 - t/sqrt(t^2 + 2)
    assert report.paired_t([0.5, 0.5])["p"] == 0.0
    assert math.isnan(report.paired_t([1.0])["p"])
    s = report.sign_test([0.1, 0.2, 0.3, 0.4, 0.5])
    assert (s["wins"], s["losses"]) == (5, 0) and s["p"] == pytest.approx(2 / 32)
    assert report.sign_test([0.0, 0.0])["p"] == 1.0


def test_setting_files_are_consistent(tmp_path: Path) -> None:
    setup = _module("study_setup")
    settings = setup.write_setting_files(tmp_path)
    het, emb = settings["heterogeneous"], settings["embedded"]
    assert het.sources == ("easy_qa", "hard_qa")
    assert emb.sources == ("fanoutqa_multi", "fanoutqa_single")
    ids = setup.eval_question_ids(het)
    assert len(ids) == 64 and len(set(ids)) == 64 and sum(i.startswith("easy_qa/") for i in ids) == 32
    assert len(setup.eval_question_ids(emb)) == 64
    single, multi = setup.pool_rows()
    assert len(single) == 64 and len(multi) == 16 and all(len(r.question.encode()) <= 30 for r in single)
    pool = json.loads(Path(het.pool).read_text())
    assert pool["dataset_profile_map"]["easy_qa"] == "easy"
    assert all(0.6 <= m["profile_em"]["easy"] <= 0.9 and m["profile_em"]["hard"] <= 0.2 for m in pool["models"])


def test_train_config_passes_recal_switches_and_new_fields() -> None:
    from agents.grpo.config import TrainConfig, apply_overrides
    from recal_gym.errors import InvalidConfig

    setup = _module("study_setup")
    cfg = apply_overrides(TrainConfig(), {k: v for arm in setup.ARMS.values() for k, v in arm.items()})
    rc = cfg.recal
    assert (rc.hierarchy, rc.componentwise, rc.variance_weighting, rc.final_norm) == (False, False, False, "batch")
    assert TrainConfig().recal.final_norm == "per_dataset"
    assert TrainConfig(pool="pool.json", init_checkpoint="ws").to_dict()["init_checkpoint"] == "ws"
    with pytest.raises(InvalidConfig, match="final_norm"):
        apply_overrides(TrainConfig(), {"recal.final_norm": "dataset"})
    with pytest.raises(InvalidConfig, match="hierarchy"):
        apply_overrides(TrainConfig(), {"recal.hierarchy": "yes"})
