"""Demonstration: SmolLM2-135M learns to route, trained and evaluated from the CLI (``benchmarks/DEMO.md``).

One command::

    python benchmarks/demo_smollm2.py --out benchmarks/results/demo_smollm2

``--reuse`` (with the same ``--work``) keeps finished runs and continues killed ones with ``recal-gym
train --resume`` (bit-identical to an uninterrupted run), and keeps evaluations written after a run's
final checkpoint (the same command's output); everything missing is computed. ``--jobs 3 --threads 1``
trains the three seeds side by side, one thread each (what the committed run
did on 2 cores); the results record jobs, threads, CPU time and the machine load.

For each seed it runs ``recal-gym train --preset smollm2-cpu --set seed=<s>`` (warm start with stop
criteria, then GRPO/ReCal on the training split of the embedded questions), then
``recal-gym eval --split heldout`` on the fixed held-out questions (``heldout_fraction`` and
``split_seed`` of the preset, never trained on) with ``--router checkpoint:<run>/warmstart`` and
``--router checkpoint:<run>``. The baselines (every single model, random, oracle) are evaluated once on
the same questions. It writes, under ``--out``:

* ``results.json``: the exact commands, machine (load, cores, threads), versions and git commit, the
  preset, per-seed held-out reports (EM, cost, per-dataset rows, calls per model) and timings, the
  baselines, and the summary against the targets;
* ``curves.png``: learning curves over RL steps (mean ± std over seeds) of EM, every reward
  component, format error, related routes, zero-variance share and each model's share of routes;
* ``heldout.png``: held-out EM and cost of warm start, final and baselines;
* ``summary.md``: the tables; and ``runs/seed_<s>/``: each run's config and metric files.

Checkpoints stay in ``--work`` (default a temporary directory), outside the repository.
``--quick`` runs a smoke version (tiny policy, a few steps) to check the pipeline.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
BASELINES = ["single:all", "random", "oracle"]
TRAIN_MODES = {
    "finished": "reused (finished earlier; wall from file times, CPU unknown)",
    "resumable": "resumed from its newest checkpoint (recal-gym train --resume)",
    "trained": "trained",
}
"""``results.json``'s ``train_mode`` per :func:`_train_or_reuse` state."""


def _cli(args: list[str], threads: int) -> tuple[float, float, str]:
    """Run ``recal-gym <args>`` in a fresh process (this checkout's code).

    Returns:
        (wall seconds, CPU seconds of the child (user + system), stdout).
    """
    env = {
        **os.environ,
        "PYTHONPATH": str(ROOT),
        "OMP_NUM_THREADS": str(threads),
        "OMP_WAIT_POLICY": "PASSIVE",  # busy-waiting threads collapse on a shared machine
        "TOKENIZERS_PARALLELISM": "false",
        "HF_HUB_OFFLINE": "1",
        "HF_DATASETS_OFFLINE": "1",
    }
    start, before = time.perf_counter(), resource.getrusage(resource.RUSAGE_CHILDREN)
    proc = subprocess.run(
        [sys.executable, "-m", "agents.cli", *args], env=env, capture_output=True, text=True, check=False
    )
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    if proc.returncode != 0:
        raise SystemExit(f"recal-gym {' '.join(args)} failed ({proc.returncode}):\n{proc.stderr[-4000:]}")
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    return time.perf_counter() - start, cpu, proc.stdout


def _machine(threads: int) -> dict[str, Any]:
    import torch

    return {
        "load_1_5_15": list(os.getloadavg()),
        "cpu_count": os.cpu_count(),
        "threads": threads,
        "python": platform.python_version(),
        "torch": torch.__version__,
        "platform": platform.platform(),
        "git_commit": subprocess.run(
            ["git", "-C", str(ROOT), "rev-parse", "HEAD"], capture_output=True, text=True, check=False
        ).stdout.strip(),
    }


def _read_jsonl(path: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()] if path.exists() else []


def _split_flags(cfg: dict[str, Any], n: int = 100000) -> list[str]:
    """``recal-gym eval`` flags of the run's held-out split (``n`` questions per dataset at most: all)."""
    return ["--split", "heldout", "--heldout-fraction", str(cfg["heldout_fraction"]), "--split-seed",
            str(cfg["split_seed"]), "--n", str(n)]  # fmt: skip


def _train_or_reuse(
    args: argparse.Namespace, run: Path, train: list[str]
) -> tuple[str, list[str], float | None, float | None, str]:
    """Run ``train`` into ``run``, unless ``--reuse`` finds the run finished (kept) or killed (resumed).

    Returns:
        (state: ``finished``, ``resumable`` or ``trained``; the command run: ``train`` or its
        ``train --resume``; wall s; CPU s; stdout). Wall and CPU are ``None`` when nothing ran.
    """
    state = _run_state(run) if args.reuse else "absent"
    if state == "finished":  # kept as is
        return state, train, None, None, ""
    if state == "resumable":  # killed earlier: continue from its newest checkpoint, bit-identical
        train = ["train", "--resume", str(run), "--no-progress", "--no-tensorboard"]
        return (state, train, *_cli(train, args.threads))
    if run.exists():
        shutil.rmtree(run)
    return ("trained", train, *_cli(train, args.threads))


def _newer(path: Path, than: Path) -> bool:
    """Both exist and ``path`` was written after ``than`` (an output of the same command, reusable)."""
    return path.exists() and than.exists() and path.stat().st_mtime > than.stat().st_mtime


def _rl_seconds(metrics: list[dict[str, Any]]) -> float:
    """RL time of a run: the sum of its steps' ``time/rollout_s + time/update_s``."""
    return sum(float(m.get("time/rollout_s") or 0.0) + float(m.get("time/update_s") or 0.0) for m in metrics)


def _write_outputs(out: Path, result: dict[str, Any], summary_md: str) -> None:
    """Write ``results.json`` and ``summary.md`` under ``out`` and print the summary."""
    (out / "results.json").write_text(json.dumps(result, indent=2))
    (out / "summary.md").write_text(summary_md)
    print(summary_md)


def _train_and_eval(args: argparse.Namespace, seed: int, preset_args: list[str], work: Path) -> dict[str, Any]:
    run = work / f"seed_{seed}"
    train = ["train", *preset_args, "--set", f"seed={seed}", "--set", f"pool_seed={seed}", "--out", str(run),
             "--threads", str(args.threads), "--no-progress", "--no-tensorboard"]  # fmt: skip
    load_before = list(os.getloadavg())
    state, train, train_s, train_cpu, train_out = _train_or_reuse(args, run, train)
    if state == "finished":  # its time is read from its files
        train_s = _file_wall(run)
    timing: dict[str, Any] = {"train_mode": TRAIN_MODES[state]}
    cfg = json.loads((run / "config.json").read_text())
    metrics = _read_jsonl(run / "metrics.jsonl")
    warm = _read_jsonl(run / "warmstart.jsonl")
    js = work / f"eval_seed_{seed}.json"
    routers = ["--router", f"checkpoint:{run}/warmstart", "--router", f"checkpoint:{run}"]
    evaluate = ["eval", *routers, *_split_flags(cfg), "--eval-batch", "32", "--seed", str(seed), "--pool-seed",
                str(seed), "--json", str(js), "--no-files", "--no-progress"]  # fmt: skip
    if args.reuse and _newer(js, run / "checkpoint" / "manifest.json"):
        eval_s, eval_cpu = None, None  # this run's evaluation is already there (the same command's output)
        timing["eval_mode"] = "reused"
    else:
        eval_s, eval_cpu, _ = _cli(evaluate, args.threads)
    reports = json.loads(js.read_text())
    kept = args.out / "runs" / f"seed_{seed}"
    kept.mkdir(parents=True, exist_ok=True)
    for name in ("config.json", "metrics.jsonl", "warmstart.jsonl", "curves.png", "curves_warmstart.png"):
        if (run / name).exists():
            shutil.copy(run / name, kept / name)
    rl_s = _rl_seconds(metrics)
    return {
        "seed": seed,
        "commands": {"train": ["recal-gym", *train], "eval": ["recal-gym", *evaluate]},
        "train_wall_s": train_s,
        "train_cpu_s": train_cpu,
        "rl_time_s": rl_s,
        "rl_time_idle_estimate_s": None if train_cpu is None else rl_s * min(1.0, train_cpu / (args.threads * train_s)),
        **timing,
        "eval_wall_s": eval_s,
        "eval_cpu_s": eval_cpu,
        "load_before": load_before,
        "warmstart_steps": len(warm),
        "warmstart_last": warm[-1] if warm else {},
        "rl_steps": len(metrics),
        "warm": reports[0],
        "final": reports[1],
        "train_summary": train_out.strip().splitlines()[-1] if train_out.strip() else "",
        "load_after": list(os.getloadavg()),
    }


def _run_state(run: Path) -> str:
    """``finished`` (a final checkpoint at the config's steps), ``resumable`` (a checkpoint) or ``absent``."""
    for name, finished in (("checkpoint", True), ("warmstart", False)):
        manifest = run / name / "manifest.json"
        if manifest.exists():
            steps = json.loads((run / "config.json").read_text())["steps"]
            done = finished and json.loads(manifest.read_text())["step"] >= steps
            return "finished" if done else "resumable"
    return "absent"


def _file_wall(run: Path) -> float:
    """Wall time of a finished run from its files: config written at start, final manifest at the end."""
    return (run / "checkpoint" / "manifest.json").stat().st_mtime - (run / "config.json").stat().st_mtime


def _baselines(args: argparse.Namespace, cfg: dict[str, Any], work: Path) -> list[dict[str, Any]]:
    js = work / "baselines.json"
    routers = [a for r in BASELINES for a in ("--router", r)]
    cmd = ["eval", *routers, *_split_flags(cfg), "--json", str(js), "--no-files", "--no-progress"]
    if not (args.reuse and js.exists()):
        _cli(cmd, 1)
    return [{"command": ["recal-gym", *cmd], **r} for r in json.loads(js.read_text())]


def _mean_std(values: list[float]) -> tuple[float, float]:
    n = len(values)
    mean = sum(values) / n
    var = sum((v - mean) ** 2 for v in values) / (n - 1) if n > 1 else 0.0
    return mean, var**0.5


def _summary(seeds: list[dict[str, Any]], baselines: list[dict[str, Any]], target: float) -> dict[str, Any]:
    gains = [s["final"]["overall"]["em"] - s["warm"]["overall"]["em"] for s in seeds]
    warm_m, warm_s = _mean_std([s["warm"]["overall"]["em"] for s in seeds])
    final_m, final_s = _mean_std([s["final"]["overall"]["em"] for s in seeds])
    singles = [b for b in baselines if b["router"].startswith("single:")]
    best = max(singles, key=lambda b: b["overall"]["em"])
    final_cost = _mean_std([s["final"]["overall"]["cost"] for s in seeds])[0]
    optimal = _reward_optimal(baselines)
    shift = _choice_shift(seeds, optimal)
    overall = [shift[str(s["seed"])].get("all", {}) for s in seeds] if "all" in optimal else []
    moved = [o.get("final", 0.0) > o.get("warm", 0.0) for o in overall]
    return {
        "warm_em": [warm_m, warm_s],
        "final_em": [final_m, final_s],
        "gain_per_seed": gains,
        "gain_mean": sum(gains) / len(gains),
        "target_gain": target,
        "target_met": sum(gains) / len(gains) >= target and all(g > 0 for g in gains),
        "every_seed_improved": all(g > 0 for g in gains),
        "rl_time_s_per_seed": [s["rl_time_s"] for s in seeds],
        "rl_time_idle_estimate_s_per_seed": [s["rl_time_idle_estimate_s"] for s in seeds],
        "rl_time_target_met": all(s["rl_time_s"] <= 20 * 60 for s in seeds),
        "rl_time_target_met_idle_estimate": None
        if any(s["rl_time_idle_estimate_s"] is None for s in seeds)
        else all(s["rl_time_idle_estimate_s"] <= 20 * 60 for s in seeds),
        "best_single": {"router": best["router"], "em": best["overall"]["em"], "cost": best["overall"]["cost"]},
        "stretch_met": final_m >= best["overall"]["em"] - 0.03 and final_cost <= best["overall"]["cost"],
        "final_cost_mean": final_cost,
        "reward_optimal": optimal,
        "optimal_share": shift,
        "moved_toward_optimal": moved,
    }


def _reward_optimal(baselines: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    """Per dataset (and ``all``), the single model with the highest mean reward under the preset's reward.

    The single-model baselines are each model answering every question of the held-out set, so their
    per-dataset mean reward is the pool's figures seen through the preset's reward spec.
    """
    best: dict[str, dict[str, Any]] = {}
    for b in baselines:
        if not b["router"].startswith("single:"):
            continue
        for row in [*b.get("datasets", []), b["overall"]]:
            name = row.get("data_source", "all")
            if name not in best or row["reward"] > best[name]["reward"]:
                best[name] = {"model": b["router"].removeprefix("single:"), "reward": row["reward"], "em": row["em"]}
    return best


def _choice_shift(seeds: list[dict[str, Any]], optimal: dict[str, dict[str, Any]]) -> dict[str, Any]:
    """Per seed and dataset: the share of routed calls that went to the reward-optimal model, warm vs final."""
    out: dict[str, Any] = {}
    for s in seeds:
        rows: dict[str, Any] = {}
        for key in ("warm", "final"):
            for row in [*s[key].get("datasets", []), s[key]["overall"]]:
                name = row.get("data_source", "all")
                if name in optimal:
                    calls = row.get("calls_per_model", {})
                    total = sum(float(c) for c in calls.values())
                    share = float(calls.get(optimal[name]["model"], 0.0)) / total if total > 0 else 0.0
                    rows.setdefault(name, {})[key] = share
        out[str(s["seed"])] = rows
    return out


def _band(ax: Any, runs: list[list[dict[str, Any]]], key: str, label: str | None = None) -> None:
    import numpy as np

    steps = min(len(r) for r in runs)
    if steps == 0 or not all(r[0].get(key) is not None for r in runs):
        return
    y = np.array([[float(r[i].get(key) or 0.0) for i in range(steps)] for r in runs])
    m, s = y.mean(0), y.std(0)
    ax.plot(range(steps), m, label=label or key)
    ax.fill_between(range(steps), m - s, m + s, alpha=0.2)


def _plot_curves(runs: list[list[dict[str, Any]]], models: list[str], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    comps = sorted({k.split("/")[1] for r in runs for k in r[0] if k.startswith("reward/") and k.endswith("/mean")})
    panels = [
        ("held-in EM (sampled)", ["episode/em"]),
        ("reward components (mean)", [f"reward/{c}/mean" for c in comps]),
        ("format error", ["episode/format_error"]),
        ("related routes", ["route/related"]),
        ("zero-variance groups before refill", ["sampling/zero_var_first"]),
        ("share of routes per model", [f"route/share/{m}" for m in models]),
    ]
    fig, axes = plt.subplots(len(panels), 1, figsize=(7, 2.6 * len(panels)), squeeze=False)
    for ax, (title, keys) in zip(axes[:, 0], panels, strict=True):
        for key in keys:
            _band(ax, runs, key, key.rsplit("/", 1)[-1] if "share" in key else key.split("/")[1])
        ax.set_title(title, fontsize=9)
        ax.grid(alpha=0.3)
        if len(keys) > 1:
            ax.legend(fontsize=6, ncol=3)
    axes[-1, 0].set_xlabel(f"RL step (mean ± std over {len(runs)} seeds)")
    fig.tight_layout()
    fig.savefig(path, dpi=90)
    plt.close(fig)


def _plot_heldout(seeds: list[dict[str, Any]], baselines: list[dict[str, Any]], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7, 4.5))
    for b in baselines:
        ax.scatter(b["overall"]["cost"], b["overall"]["em"], marker="s", color="grey")
        ax.annotate(b["router"].replace("single:", ""), (b["overall"]["cost"], b["overall"]["em"]), fontsize=6)
    for key, color in (("warm", "tab:orange"), ("final", "tab:blue")):
        xs = [s[key]["overall"]["cost"] for s in seeds]
        ys = [s[key]["overall"]["em"] for s in seeds]
        ax.scatter(xs, ys, color=color, label=f"{key} (one point per seed)")
    ax.set_xlabel("mean cost per question (µ$)")
    ax.set_ylabel("held-out EM")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=90)
    plt.close(fig)


def _summary_md(result: dict[str, Any]) -> str:
    lines = ["| router | EM | cost (µ$) | format err | calls per model |", "|---|---:|---:|---:|---|"]

    def row(name: str, o: dict[str, Any]) -> str:
        calls = ", ".join(f"{m}: {c:.2f}" for m, c in sorted(o.get("calls_per_model", {}).items()))
        return f"| {name} | {o['em']:.3f} | {o['cost']:.1f} | {o['format_error_rate']:.3f} | {calls} |"

    for s in result["seeds"]:
        lines.append(row(f"seed {s['seed']} warm start", s["warm"]["overall"]))
        lines.append(row(f"seed {s['seed']} final", s["final"]["overall"]))
    for b in result["baselines"]:
        lines.append(row(b["router"], b["overall"]))
    sm = result["summary"]
    lines += [
        "",
        f"Held-out questions: {result['seeds'][0]['final']['overall']['n']}. Mean EM warm start "
        f"{sm['warm_em'][0]:.3f} ± {sm['warm_em'][1]:.3f}, final {sm['final_em'][0]:.3f} ± {sm['final_em'][1]:.3f}; "
        f"gain per seed {[round(g, 3) for g in sm['gain_per_seed']]} (target +{sm['target_gain']}: "
        f"{'met' if sm['target_met'] else 'not met'}). RL time per seed (s, wall on the shared machine): "
        f"{[round(t) for t in sm['rl_time_s_per_seed']]}; idle-machine estimate (wall x CPU share): "
        f"{[None if t is None else round(t) for t in sm['rl_time_idle_estimate_s_per_seed']]}.",
    ]
    if sm.get("reward_optimal"):
        lines += ["", "Reward-optimal single model per dataset under the preset's reward (the single-model baselines), "
                  "and each seed's share of routed calls to it (warm start → final):", ""]  # fmt: skip
        for name, o in sm["reward_optimal"].items():
            shares = "; ".join(f"seed {seed}: {rows[name].get('warm', 0.0):.2f} → {rows[name].get('final', 0.0):.2f}"
                               for seed, rows in sm["optimal_share"].items() if name in rows)  # fmt: skip
            lines.append(f"- {name}: {o['model']} (reward {o['reward']:.3f}, EM {o['em']:.3f}); {shares}")
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    """Run the demonstration; see the module docstring."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "results" / "demo_smollm2")
    parser.add_argument("--work", type=Path, default=None, help="run directories and checkpoints (default: a temp dir)")
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--quick", action="store_true", help="tiny policy, few steps: a smoke run of the pipeline")
    parser.add_argument(
        "--jobs", type=int, default=1, help="seeds trained at once (each in its own process, --threads threads each)"
    )
    parser.add_argument(
        "--reuse",
        action="store_true",
        help="keep finished runs in --work and resume killed ones (train --resume) instead of training afresh",
    )
    parser.add_argument("--set", action="append", default=[], metavar="FIELD=JSON", help="extra train overrides")
    args = parser.parse_args(argv)
    work = args.work or Path(tempfile.mkdtemp(prefix="recal-gym-demo-"))
    work.mkdir(parents=True, exist_ok=True)
    args.out.mkdir(parents=True, exist_ok=True)
    preset_args = ["--preset", "smollm2-cpu"]
    if args.quick:
        quick = ("heldout_fraction=0.15", "steps=2", "warmstart_steps=2", "questions_per_step=2", "group_size=2")
        preset_args = ["--preset", "tiny", *[a for item in quick for a in ("--set", item)]]
    for item in args.set:
        preset_args += ["--set", item]
    started = time.time()
    machine = {**_machine(args.threads), "jobs": args.jobs}
    if args.jobs > 1:  # the seeds' subprocesses run side by side; each seed's work is unchanged
        from concurrent.futures import ThreadPoolExecutor

        with ThreadPoolExecutor(max_workers=args.jobs) as pool:
            seeds = list(pool.map(lambda s: _train_and_eval(args, s, preset_args, work), args.seeds))
    else:
        seeds = [_train_and_eval(args, s, preset_args, work) for s in args.seeds]
    cfg = json.loads((args.out / "runs" / f"seed_{args.seeds[0]}" / "config.json").read_text())
    baselines = _baselines(args, cfg, work)
    models = sorted({m for b in baselines for m in b["overall"].get("calls_per_model", {})})
    runs = [_read_jsonl(args.out / "runs" / f"seed_{s}" / "metrics.jsonl") for s in args.seeds]
    _plot_curves(runs, models, args.out / "curves.png")
    _plot_heldout(seeds, baselines, args.out / "heldout.png")
    result = {
        "command": ["python", "benchmarks/demo_smollm2.py", *(argv if argv is not None else sys.argv[1:])],
        "machine": machine,
        "machine_load_at_end": list(os.getloadavg()),
        "wall_s": time.time() - started,
        "config": cfg,
        "seeds": seeds,
        "baselines": baselines,
        "summary": _summary(seeds, baselines, 0.08),
    }
    _write_outputs(args.out, result, _summary_md(result))
    return 0


if __name__ == "__main__":
    sys.exit(main())
