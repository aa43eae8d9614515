"""Estimator study on RouterQADiscrete-v0: does ReCal's calibration beat scalar GRPO when correctness is observed?

One command reruns everything (about 25-30 minutes on an idle 2-core machine)::

    python benchmarks/study_discrete.py --out benchmarks/results/discrete_study

and ``--quick`` runs a smoke version in seconds. For every setting (``study_discrete_setup.py``) and seed, a
baseline job builds the frozen reference reward state and evaluates fixed routers (each single model, masked
random, the untrained policy); then every estimator arm (``grpo``, ``dr_grpo``, ``rloo``, ``gdpo``, ``recal`` and
five ``recal`` ablations) trains the same :class:`~agents.discrete.learner.DiscreteLearner` with the same seed,
questions, call seeds and budget, and is evaluated greedily on the held-out questions. SB3 PPO and MaskablePPO
train on the same settings as an outside reference. Jobs run in worker processes with one torch thread each.

Writes into ``--out``: ``results.json`` (every job, the aggregates and paired tests, the definitions, the exact
command, package versions, git commit, machine, load and wall time), ``curves_<setting>.png`` and ``summary.md``.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import math
import multiprocessing as mp
import os
import platform
import shlex
import subprocess
import sys
import time
from collections.abc import Callable
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # this checkout's packages, even if another is installed
sys.path.insert(0, str(Path(__file__).resolve().parent))

from study_discrete_setup import ARMS, BUDGETS, SETTINGS, STAGE_OF_SETTING, Budget, build_setting

SB3_ALGOS = ("ppo", "maskable_ppo")
_PACKAGES = ("numpy", "torch", "gymnasium", "stable_baselines3", "sb3_contrib", "matplotlib", "recal-gym")


def _init_worker() -> None:
    os.environ.setdefault("OMP_NUM_THREADS", "1")
    import torch

    torch.set_num_threads(1)
    import recal_gym  # noqa: F401  (registers RouterQADiscrete-v0)


def _job(task: tuple[str, tuple[Any, ...]]) -> dict[str, Any]:
    import study_discrete_runs as runs

    kind, args = task
    fn: Callable[..., dict[str, Any]] = {"baselines": runs.run_baselines, "arm": runs.run_arm, "sb3": runs.run_sb3}[
        kind
    ]
    cpu = time.process_time()
    result = fn(*args)
    result["cpu_s"] = time.process_time() - cpu  # this process's CPU time: independent of other load on the machine
    return result


def _uptime() -> str:
    try:
        return subprocess.run(["uptime"], capture_output=True, text=True, check=True).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return " ".join(f"{x:.2f}" for x in os.getloadavg())


def _git_state() -> dict[str, Any]:
    """Commit and dirty flag of this checkout, read when the study starts."""
    root = Path(__file__).resolve().parents[1]

    def git(*args: str) -> str | None:
        try:
            return subprocess.run(["git", *args], cwd=root, capture_output=True, text=True, check=True).stdout.strip()
        except (OSError, subprocess.CalledProcessError):
            return None

    return {
        "git_commit": git("rev-parse", "HEAD"),
        "git_dirty": bool(git("status", "--porcelain", "--untracked-files=no")),
    }


def _provenance(argv: list[str], started: float, workers: int, start_state: dict[str, Any]) -> dict[str, Any]:
    versions = {}
    for pkg in _PACKAGES:
        try:
            versions[pkg] = version(pkg)
        except PackageNotFoundError:
            versions[pkg] = None
    return {
        "command": "python " + shlex.join(argv),
        **start_state["git"],
        "python": sys.version.split()[0],
        "packages": versions,
        "machine": {"platform": platform.platform(), "cpu_count": os.cpu_count(), "processor": platform.machine()},
        "workers": workers,
        "torch_threads_per_worker": 1,
        "cpu_s_jobs": start_state.get("cpu_s_jobs"),
        "idle_wall_estimate_s": start_state.get("cpu_s_jobs", 0.0) / workers,
        "uptime_before": start_state["uptime"],
        "uptime_after": _uptime(),
        "wall_s": time.perf_counter() - started,
    }


def _run(pool: Any, tasks: list[tuple[str, tuple[Any, ...]]], label: str) -> list[dict[str, Any]]:
    out = []
    it = pool.imap_unordered(_job, tasks) if pool is not None else map(_job, tasks)
    for i, res in enumerate(it, 1):
        out.append(res)
        tag = f"{res['setting']} {res.get('arm', '')} seed={res['seed']}"
        sys.stdout.write(f"[{label} {i}/{len(tasks)}] {tag} {res['wall_s']:.1f}s\n")
        sys.stdout.flush()
    return out


def _sb3_available(algo: str) -> bool:
    if algo != "maskable_ppo":
        return True
    try:
        import sb3_contrib  # noqa: F401
    except ImportError:
        return False
    return True


def _tasks(args: argparse.Namespace, budget: Budget, baselines: list[dict[str, Any]]) -> list[tuple[str, tuple]]:
    refs = {(b["setting"], b["seed"]): b["reference_state"] for b in baselines}
    tasks: list[tuple[str, tuple]] = []
    for setting in args.settings:
        for seed in range(budget.seeds):
            ref = refs[(setting, seed)]
            tasks += [("arm", (setting, arm, seed, budget, ref)) for arm in args.arms]
            if seed < budget.sb3_seeds:
                tasks += [("sb3", (setting, algo, seed, budget, ref)) for algo in args.sb3 if _sb3_available(algo)]
    return tasks


def _round(x: Any) -> Any:
    """Round floats to 6 significant digits and map NaN/inf to None (small, diffable, strict JSON)."""
    if isinstance(x, float):
        return float(f"{x:.6g}") if math.isfinite(x) else None  # strict JSON: NaN/inf -> null
    if isinstance(x, dict):
        return {k: _round(v) for k, v in x.items()}
    if isinstance(x, list | tuple):
        return [_round(v) for v in x]
    return x


def main(argv: list[str] | None = None) -> dict[str, Any]:
    """Run the study and write its outputs; returns the results dict."""
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--out", default="benchmarks/results/discrete_study", help="output directory")
    parser.add_argument("--quick", action="store_true", help="smoke budget (seconds; used by the CI test)")
    parser.add_argument("--settings", nargs="+", default=list(SETTINGS), choices=SETTINGS)
    parser.add_argument("--arms", nargs="+", default=list(ARMS), choices=list(ARMS))
    parser.add_argument("--sb3", nargs="*", default=list(SB3_ALGOS), choices=SB3_ALGOS, help="SB3 references")
    parser.add_argument("--workers", type=int, default=2, help="worker processes (one torch thread each)")
    parser.add_argument(
        "--report-from",
        metavar="RESULTS_JSON",
        help="recompute aggregates, tables and figures from a results.json without running anything",
    )
    args = parser.parse_args(argv)
    if args.report_from:
        return _report_from(args, argv)
    if "grpo" not in args.arms:
        parser.error("--arms must include grpo (the paired baseline)")
    if args.workers < 1:
        parser.error(f"--workers must be >= 1, got {args.workers}")
    budget = BUDGETS["quick" if args.quick else "full"]
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    started, start_state = time.perf_counter(), {"uptime": _uptime(), "git": _git_state()}
    _init_worker()
    pool = mp.get_context("spawn").Pool(args.workers, initializer=_init_worker) if args.workers > 1 else None
    try:
        base_tasks = [("baselines", (s, seed, budget)) for s in args.settings for seed in range(budget.seeds)]
        baselines = _run(pool, base_tasks, "baselines")
        jobs = _run(pool, _tasks(args, budget, baselines), "runs")
    finally:
        if pool is not None:
            pool.close()
            pool.join()
    runs = sorted((j for j in jobs if j["kind"] == "arm"), key=lambda r: (r["setting"], r["arm"], r["seed"]))
    sb3 = sorted((j for j in jobs if j["kind"] == "sb3"), key=lambda r: (r["setting"], r["arm"], r["seed"]))
    baselines.sort(key=lambda b: (b["setting"], b["seed"]))
    command = ["benchmarks/study_discrete.py", *(sys.argv[1:] if argv is None else argv)]
    start_state["cpu_s_jobs"] = sum(j["cpu_s"] for j in [*baselines, *jobs])
    return _write(args, budget, out, (runs, sb3, baselines), command, started, start_state)


def _report_from(args: argparse.Namespace, argv: list[str] | None) -> dict[str, Any]:
    """Rebuild the outputs of a finished study from its results.json (its jobs and provenance are kept)."""
    try:
        old = json.loads(Path(args.report_from).read_text())
    except (OSError, json.JSONDecodeError) as exc:
        raise SystemExit(f"study_discrete.py: cannot read --report-from {args.report_from!r}: {exc}") from exc
    args.settings = list(old["settings"])
    args.arms = list(old["arms"])
    args.quick = old["quick"]
    budget = Budget(**{k: v for k, v in old["budget"].items() if k != "episodes_per_run"})
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    result = _write(args, budget, out, (old["runs"], old["sb3"], old["baselines"]), [], 0.0, {}, old["provenance"])
    result["provenance"]["report_regenerated_by"] = "python " + shlex.join(
        ["benchmarks/study_discrete.py", *(sys.argv[1:] if argv is None else argv)]
    )
    (out / "results.json").write_text(json.dumps(result, indent=1, allow_nan=False) + "\n")
    return result


def _write(
    args: argparse.Namespace,
    budget: Budget,
    out: Path,
    jobs: tuple[list[dict[str, Any]], list[dict[str, Any]], list[dict[str, Any]]],
    command: list[str],
    started: float,
    start_state: dict[str, Any],
    provenance: dict[str, Any] | None = None,
) -> dict[str, Any]:
    from study_discrete_report import DEFINITIONS, aggregate, plot_setting, summary_markdown

    runs, sb3, baselines = jobs
    settings = {name: build_setting(name).describe() for name in args.settings}
    aggregates = {}
    for name in args.settings:
        pick = [r for r in runs if r["setting"] == name]
        aggregates[name] = aggregate(
            pick, [r for r in sb3 if r["setting"] == name], [b for b in baselines if b["setting"] == name], args.arms
        )
        plot_setting(name, pick, aggregates[name], args.arms, out / f"curves_{name}.png")
    result = {
        "study": "discrete_estimators",
        "env": "RouterQADiscrete-v0",
        "quick": bool(args.quick),
        "budget": {**dataclasses.asdict(budget), "episodes_per_run": budget.episodes},
        "settings": settings,
        "stage_of_setting": {s: STAGE_OF_SETTING[s] for s in args.settings},
        "arms": {a: ARMS[a] for a in args.arms},
        "sb3_algos": sorted({r["arm"] for r in sb3}),
        "definitions": DEFINITIONS,
        "aggregates": aggregates,
        "baselines": baselines,
        "runs": runs,
        "sb3": sb3,
        "provenance": provenance or _provenance(command, started, args.workers, start_state),
    }
    result = _round(result)
    (out / "results.json").write_text(json.dumps(result, indent=1, allow_nan=False) + "\n")
    (out / "summary.md").write_text(summary_markdown(aggregates, settings))
    return result


if __name__ == "__main__":
    res = main()
    sys.stdout.write(f"wrote {len(res['runs'])} runs in {res['provenance']['wall_s']:.0f}s\n")
