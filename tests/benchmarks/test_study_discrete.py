"""The discrete estimator study: its ``--quick`` smoke path (JSON schema, PNGs, tables) and its statistics."""

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
    if str(BENCH) not in sys.path:
        sys.path.insert(0, str(BENCH))  # the study modules import each other by name
    spec = importlib.util.spec_from_file_location(name, BENCH / f"{name}.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module  # dataclasses look their module up here
    spec.loader.exec_module(module)
    return module


ARMS = ("grpo", "gdpo", "recal", "no_variance_weighting")


@pytest.fixture(scope="module")
def quick(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict]:
    out = tmp_path_factory.mktemp("discrete_study")
    cmd = [
        sys.executable,
        str(BENCH / "study_discrete.py"),
        "--quick",
        "--out",
        str(out),
        "--settings",
        "heterogeneous",
        "noisy",
        "--arms",
        *ARMS,
        "--sb3",
        "ppo",
        "--workers",
        "1",
    ]
    proc = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    return out, json.loads((out / "results.json").read_text())


@pytest.mark.slow
def test_quick_study_writes_pngs_summary_and_provenance(quick: tuple[Path, dict]) -> None:
    out, res = quick
    for name in ("heterogeneous", "noisy"):
        assert (out / f"curves_{name}.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    summary = (out / "summary.md").read_text()
    assert "## Setting `heterogeneous`" in summary and "| arm vs grpo |" in summary and "p_Holm" in summary
    prov = res["provenance"]
    assert prov["command"].startswith("python benchmarks/study_discrete.py --quick")
    assert {"torch", "numpy", "gymnasium", "stable_baselines3"} <= set(prov["packages"])
    assert prov["machine"]["cpu_count"] >= 1 and prov["torch_threads_per_worker"] == 1
    assert prov["wall_s"] > 0 and "load average" in prov["uptime_before"] + prov["uptime_after"]
    assert prov["cpu_s_jobs"] > 0 and prov["idle_wall_estimate_s"] == pytest.approx(prov["cpu_s_jobs"], rel=1e-3)
    assert len(prov["git_commit"] or "") in (0, 40)
    assert res["quick"] is True and set(res["definitions"]) >= {"collapsed", "steps_to_90", "auc_reward"}


@pytest.mark.slow
def test_quick_study_runs_are_paired_and_complete(quick: tuple[Path, dict]) -> None:
    _, res = quick
    budget = res["budget"]
    assert budget["episodes_per_run"] == budget["steps"] * budget["questions_per_step"] * budget["group_size"]
    keys = sorted((r["setting"], r["arm"], r["seed"]) for r in res["runs"])
    assert keys == sorted(
        (s, a, seed) for s in ("heterogeneous", "noisy") for a in ARMS for seed in range(budget["seeds"])
    )
    for run in res["runs"]:
        assert all(len(v) == budget["steps"] for v in run["curves"].values())
        final = run["final"]
        assert final["n"] == budget["heldout_cap"] and 0.0 <= final["em"] <= 1.0
        assert math.isclose(sum(final["first_action"]), 1.0, abs_tol=1e-4)
    het = [r for r in res["runs"] if r["setting"] == "heterogeneous"]
    assert set(het[0]["final"]["em_by_source"]) == {"easy_qa", "hard_qa"}
    sb3 = sorted((r["setting"], r["arm"], r["seed"]) for r in res["sb3"])
    assert sb3 == sorted((s, "ppo", seed) for s in ("heterogeneous", "noisy") for seed in range(budget["sb3_seeds"]))
    assert all(r["episodes"] > 0 and r["final"]["n"] == budget["heldout_cap"] for r in res["sb3"])
    for b in res["baselines"]:
        assert {"masked_random", "untrained_policy"} <= set(b["routers"]) and len(b["models"]) == 6
        assert {"balance", "cost"} == set(b["reference_state"])


@pytest.mark.slow
def test_quick_study_aggregates_compare_every_arm_with_grpo(quick: tuple[Path, dict]) -> None:
    _, res = quick
    agg = res["aggregates"]["noisy"]
    assert set(agg["arms"]) == set(ARMS) and set(agg["vs_grpo"]) == set(ARMS) - {"grpo"}
    for arm, cmp in agg["vs_grpo"].items():
        for key in ("final_em", "final_reward", "auc_reward"):
            c = cmp[key]
            assert {"mean", "d_z", "ci_t_low", "ci_boot_high", "p", "p_holm", "mde", "diffs"} <= set(c)
            grpo = agg["per_run"]["grpo"]
            mine = agg["per_run"][arm]
            assert c["diffs"] == pytest.approx([mine[s][key] - grpo[s][key] for s in sorted(mine)], abs=1e-5)
    assert "ppo" in agg["sb3"] and any(k.startswith("single:") for k in agg["routers"])
    effect = agg["stage_effects"]["no_variance_weighting"]["final_em"]  # recal − ablation
    recal, ablation = agg["per_run"]["recal"], agg["per_run"]["no_variance_weighting"]
    assert effect["diffs"] == pytest.approx(
        [recal[s]["final_em"] - ablation[s]["final_em"] for s in sorted(recal)], abs=1e-5
    )


@pytest.mark.slow
def test_report_from_rebuilds_tables_without_running(quick: tuple[Path, dict], tmp_path: Path) -> None:
    out, res = quick
    cmd = [sys.executable, str(BENCH / "study_discrete.py"), "--report-from", str(out / "results.json")]
    proc = subprocess.run([*cmd, "--out", str(tmp_path)], cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-2000:]
    again = json.loads((tmp_path / "results.json").read_text())
    assert again["runs"] == res["runs"] and again["provenance"]["git_commit"] == res["provenance"]["git_commit"]
    assert "--report-from" in again["provenance"]["report_regenerated_by"]
    assert again["aggregates"]["noisy"]["arms"]["recal"]["final_em"] == pytest.approx(
        res["aggregates"]["noisy"]["arms"]["recal"]["final_em"], abs=1e-5
    )
    assert (tmp_path / "curves_noisy.png").exists() and "stage kept" in (tmp_path / "summary.md").read_text()
    bad = subprocess.run([*cmd[:2], "--report-from", str(tmp_path / "missing.json")], capture_output=True, text=True)
    assert bad.returncode != 0 and "cannot read --report-from" in bad.stderr


# ----------------------------------------------------------------------------- statistics oracles
def test_t_distribution_oracles() -> None:
    st = _module("study_discrete_stats")
    assert st.t_ppf(0.975, 9) == pytest.approx(2.262157, abs=1e-6)
    assert st.t_ppf(0.975, 2) == pytest.approx(4.302653, abs=1e-6)
    assert st.t_ppf(0.8, 9) == pytest.approx(0.883404, abs=1e-6)
    assert st.t_cdf(1.0, 1) == pytest.approx(0.75)  # Cauchy: 1/2 + atan(1)/π
    assert st.t_two_sided_p(2.0, 2) == pytest.approx(1 - 2 / math.sqrt(6), abs=1e-9)  # df 2: p = 1 − t/√(t² + 2)
    with pytest.raises(ValueError, match="0 < q < 1"):
        st.t_ppf(1.0, 3)


def test_holm_and_paired_comparison_oracles() -> None:
    st = _module("study_discrete_stats")
    assert st.holm([0.01, 0.04, 0.03, float("nan")])[:3] == pytest.approx([0.03, 0.06, 0.06])
    assert math.isnan(st.holm([0.5, float("nan")])[1]) and st.holm([0.6, 0.9]) == [1.0, 1.0]
    c = st.paired_comparison([1.0, 2.0, 3.0], family_size=3)  # mean 2, sd 1, t = 2√3, df 2
    assert (c["mean"], c["sd"], c["d_z"]) == pytest.approx((2.0, 1.0, 2.0))
    assert c["t"] == pytest.approx(2 * math.sqrt(3)) and c["p"] == pytest.approx(1 - 2 * math.sqrt(3) / math.sqrt(14))
    half = 4.302653 / math.sqrt(3)
    assert (c["ci_t_low"], c["ci_t_high"]) == pytest.approx((2 - half, 2 + half), abs=1e-5)
    assert 1.0 <= c["ci_boot_low"] <= 2.0 <= c["ci_boot_high"] <= 3.0
    assert c["mde"] == pytest.approx((4.302653 + st.t_ppf(0.8, 2)) / math.sqrt(3), abs=1e-5)
    assert c["mde_family"] > c["mde"]
    const = st.paired_comparison([0.1, 0.1])
    assert const["p"] == 0.0 and const["d_z"] == math.inf
    assert math.isnan(st.paired_comparison([0.5])["p"])
    # G*Power: a paired t-test with n = 10 detects d_z ≈ 0.994 at 80 % power (α = 0.05, two-sided).
    assert st.min_detectable_effect(1.0, 10) == pytest.approx(0.994, abs=0.01)


def test_steps_to_90_and_collapse_rule() -> None:
    rep = _module("study_discrete_report")
    assert rep.steps_to_90([0.0] * 5 + [1.0] * 10) == 10.0  # trailing mean of 5 first reaches 0.9 at step 10
    assert math.isnan(rep.steps_to_90([1.0, 0.5, 0.2, 0.1, 0.0, 0.0]))  # no improvement
    run = {
        "kind": "arm",
        "final": {"em": 0.0, "reward": 0.0, "raw_cost": 0.0, "n_calls": 0.0, "em_by_source": {}, "first_action": []},
        "curves": {"episode/reward": [0.5] * 6, "episode/em": [0.3] * 6, "first_action_top_share": [1.0] * 6},
    }
    assert rep.run_metrics(run, best_single_reward=0.4)["collapsed"] is True
    assert rep.run_metrics(run, best_single_reward=0.04)["collapsed"] is False  # within the margin
    run["curves"]["first_action_top_share"] = [0.5] * 6
    assert rep.run_metrics(run, best_single_reward=0.4)["collapsed"] is False  # still exploring


def test_settings_are_as_documented() -> None:
    setup = _module("study_discrete_setup")
    het = setup.build_setting("heterogeneous")
    assert het.source_names == ("easy_qa", "hard_qa") and not set(het.train_ids) & set(het.test_ids)
    models = {m["name"]: m for m in het.pool["models"]}
    assert all(
        0.6 <= m["profile_em"]["easy"] <= 0.9 and 0.03 <= m["profile_em"]["hard"] <= 0.2 for m in models.values()
    )
    easy = sorted(models, key=lambda n: models[n]["profile_em"]["easy"])
    assert easy == sorted(models, key=lambda n: models[n]["profile_em"]["hard"])  # same ranking
    conf = setup.build_setting("conflicting")
    assert conf.reward.weights_dict()["cost"] == 0.5 and conf.reward.balance.update == "batch"
    cm = {m["name"]: m for m in conf.pool["models"]}
    best = max(cm, key=lambda n: cm[n]["profile_em"]["popqa"])
    price = {n: m["price_per_1m_output"] * m["mean_tokens"]["popqa"] for n, m in cm.items()}
    assert best == max(price, key=price.get)  # the most accurate is the most expensive per call
    assert setup.build_setting("noisy").reply_noise > 0.0 and setup.build_setting("embedded").reply_noise == 0.0
    with pytest.raises(KeyError, match="settings"):
        setup.build_setting("nope")
