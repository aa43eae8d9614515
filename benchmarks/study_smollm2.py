"""Study B (issue 14 §2): ``grpo`` vs ``gdpo`` vs ``recal`` on SmolLM2-135M from one warm start per seed.

One command::

    python benchmarks/study_smollm2.py --out benchmarks/results/token_study --jobs 2 --threads 1

Per seed ``s`` the arms share everything but the estimator: the warm-start checkpoint (the preset's warm
start at ``seed=s``; ``--warmstarts DIR`` takes ``DIR/seed_<s>/warmstart`` instead, e.g. the SmolLM2
demonstration's work directory, whose warm starts are the same command at the same seed), the seed, so
the same question sequence and pool, and the steps. Dynamic sampling is off by default
(``dynamic_sampling=false``: its refills depend on each arm's own rewards, so with it on the arms would
not train on the same questions). Each arm is ``recal-gym train --preset smollm2-cpu --set estimator=<arm>
--set init_checkpoint=<warm start> --set steps=<N>``; the warm start and every arm's final checkpoint are
evaluated greedily with ``recal-gym eval --router checkpoint:... --split heldout`` on the preset's fixed
held-out questions (never trained on). Training runs and evaluations are independent processes run
``--jobs`` at a time (``--threads`` torch threads each); ``--reuse`` keeps finished runs and evaluations in
``--work`` and resumes killed runs (bit-identical, ``recal-gym train --resume``).

Written under ``--out``: ``results.json`` (commands, versions, commit, machine, wall time, per seed × arm
held-out reports and training summaries, paired comparisons against ``grpo`` with t and bootstrap CIs,
Holm-adjusted p-values and the minimum detectable effect), ``curves.png`` (training curves, mean ± std
over seeds per arm), ``heldout.png`` and ``summary.md``. ``--quick`` runs the pipeline on the tiny policy
(a smoke test, checked in CI).
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

from demo_smollm2 import (
    _band,
    _cli,
    _machine,
    _newer,
    _read_jsonl,
    _rl_seconds,
    _split_flags,
    _train_or_reuse,
    _write_outputs,
)
from study_discrete_stats import holm, mean_std, paired_comparison

ARMS = ("grpo", "gdpo", "recal")
BASELINE = "grpo"
QUICK = ("steps=2", "warmstart_steps=2", "questions_per_step=2", "group_size=2", "heldout_fraction=0.15")
CURVES = (("episode/em", "training EM (sampled)"), ("reward/total/mean", "training reward"),
          ("route/choice_entropy", "entropy of the routed-model choice"),
          ("policy/route_entropy", "route-token entropy"),
          ("adv/frac_zero_std", "zero-variance groups"))  # fmt: skip


def _warm_start(args: argparse.Namespace, seed: int, base: list[str], work: Path) -> tuple[Path, str]:
    """This seed's shared warm-start checkpoint (made here unless ``--warmstarts`` has it)."""
    if args.warmstarts is not None:
        given = args.warmstarts / f"seed_{seed}" / "warmstart"
        if (given / "manifest.json").exists():
            return given, f"reused from {given}"
    run = work / f"ws-s{seed}"
    if not (args.reuse and (run / "warmstart" / "manifest.json").exists()):
        if run.exists():
            shutil.rmtree(run)
        # steps must be >= 1: the one RL step after the warm start is not used
        cmd = ["train", *base, "--set", f"seed={seed}", "--set", f"pool_seed={seed}", "--set", "steps=1",
               "--out", str(run), "--threads", str(args.threads), "--no-progress", "--no-tensorboard"]  # fmt: skip
        _cli(cmd, args.threads)
    return run / "warmstart", "trained here"


def _eval(args: argparse.Namespace, router: str, seed: int, cfg: dict[str, Any], js: Path, after: Path) -> dict:
    """Held-out report of one router (kept from an earlier run when newer than ``after``)."""
    cmd = ["eval", "--router", f"checkpoint:{router}", *_split_flags(cfg, args.eval_n), "--eval-batch", "32", "--seed",
           str(seed), "--pool-seed", str(seed), "--json", str(js), "--no-files", "--no-progress"]  # fmt: skip
    if not (args.reuse and _newer(js, after)):
        _cli(cmd, args.threads)
    return {"command": ["recal-gym", *cmd], **json.loads(js.read_text())[0]}


def _arm(args: argparse.Namespace, seed: int, arm: str, base: list[str], ws: Path, work: Path) -> dict[str, Any]:
    run = work / f"{arm}-s{seed}"
    train = ["train", *base, "--set", f"estimator={arm}", "--set", f"seed={seed}", "--set", f"pool_seed={seed}",
             "--set", f"init_checkpoint={ws}", "--set", f"steps={args.steps}", "--out", str(run),
             "--threads", str(args.threads), "--no-progress", "--no-tensorboard"]  # fmt: skip
    state, _, wall, cpu, _ = _train_or_reuse(args, run, train)
    mode = {"finished": "reused", "resumable": "resumed"}.get(state, state)
    cfg = json.loads((run / "config.json").read_text())
    report = _eval(args, str(run), seed, cfg, work / f"eval-{arm}-s{seed}.json", run / "checkpoint" / "manifest.json")
    metrics = _read_jsonl(run / "metrics.jsonl")
    kept = args.out / "runs" / f"{arm}-s{seed}"
    kept.mkdir(parents=True, exist_ok=True)
    for name in ("config.json", "metrics.jsonl"):
        shutil.copy(run / name, kept / name)
    rl_s = _rl_seconds(metrics)
    return {"seed": seed, "arm": arm, "train_mode": mode, "train_wall_s": wall, "train_cpu_s": cpu,
            "rl_time_s": rl_s, "rl_steps": len(metrics), "command": ["recal-gym", *train], "final": report}  # fmt: skip


def _compare(runs: list[dict[str, Any]], warm: dict[int, dict], arms: list[str], seeds: list[int]) -> dict:
    """Per arm: mean ± std of held-out EM, reward, gain; paired differences against ``grpo`` (Holm)."""
    by = {(r["arm"], r["seed"]): r["final"]["overall"] for r in runs}
    table: dict[str, Any] = {}
    for arm in arms:
        table[arm] = {
            key: mean_std([by[(arm, s)][key] for s in seeds]) for key in ("em", "reward", "cost", "format_error_rate")
        }
        table[arm]["gain_em"] = mean_std([by[(arm, s)]["em"] - warm[s]["overall"]["em"] for s in seeds])
    table["warm_start"] = {key: mean_std([warm[s]["overall"][key] for s in seeds]) for key in ("em", "reward", "cost")}
    others = [a for a in arms if a != BASELINE]
    comps: dict[str, Any] = {}
    if BASELINE in arms:
        for metric in ("em", "reward"):
            res = {a: paired_comparison([by[(a, s)][metric] - by[(BASELINE, s)][metric] for s in seeds],
                                        family_size=len(others)) for a in others}  # fmt: skip
            adjusted = holm([res[a]["p"] for a in others])
            for a, p in zip(others, adjusted, strict=True):
                res[a]["p_holm"] = p
            comps[metric] = res
    return {"per_arm": table, "vs_grpo": comps}


def _plot(args: argparse.Namespace, arms: list[str], seeds: list[int], runs: list[dict], warm: dict) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(len(CURVES), 1, figsize=(7, 2.5 * len(CURVES)), squeeze=False)
    for ax, (key, title) in zip(axes[:, 0], CURVES, strict=True):
        for arm in arms:
            _band(ax, [_read_jsonl(args.out / "runs" / f"{arm}-s{s}" / "metrics.jsonl") for s in seeds], key, arm)
        ax.set_title(title, fontsize=9)
        ax.grid(alpha=0.3)
        if ax.get_legend_handles_labels()[0]:
            ax.legend(fontsize=7)
    axes[-1, 0].set_xlabel(f"RL step (mean ± std over {len(seeds)} seeds)")
    fig.tight_layout()
    fig.savefig(args.out / "curves.png", dpi=90)
    plt.close(fig)
    fig, ax = plt.subplots(figsize=(6, 4))
    xs = ["warm start", *arms]
    for s in seeds:
        ys = [warm[s]["overall"]["em"], *[next(r for r in runs if r["arm"] == a and r["seed"] == s)["final"]
                                          ["overall"]["em"] for a in arms]]  # fmt: skip
        ax.plot(xs, ys, marker="o", alpha=0.7, label=f"seed {s}")
    ax.set_ylabel("held-out EM (greedy)")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(args.out / "heldout.png", dpi=90)
    plt.close(fig)


def _summary_md(result: dict[str, Any]) -> str:
    rows = ["| arm | held-out EM | gain over warm start | reward | cost (µ$) | format err |",
            "|---|---:|---:|---:|---:|---:|"]  # fmt: skip
    table = result["comparison"]["per_arm"]

    def ms(d: dict[str, float], digits: int = 3) -> str:
        return f"{d['mean']:.{digits}f} ± {d['std']:.{digits}f}"

    w = table["warm_start"]
    rows.append(f"| warm start | {ms(w['em'])} | | {ms(w['reward'])} | {ms(w['cost'], 1)} | |")
    for arm in result["arms"]:
        t = table[arm]
        rows.append(f"| {arm} | {ms(t['em'])} | {ms(t['gain_em'])} | {ms(t['reward'])} | {ms(t['cost'], 1)} | "
                    f"{ms(t['format_error_rate'])} |")  # fmt: skip
    for metric, res in result["comparison"]["vs_grpo"].items():
        rows += ["", f"Paired differences against grpo, held-out {metric} (n = {len(result['seeds'])} seeds):", "",
                 "| arm | mean | 95 % CI (t) | 95 % CI (bootstrap) | p | p (Holm) | MDE |",
                 "|---|---:|---:|---:|---:|---:|---:|"]  # fmt: skip
        for arm, c in res.items():
            rows.append(f"| {arm} | {c['mean']:+.3f} | [{c['ci_t_low']:+.3f}, {c['ci_t_high']:+.3f}] | "
                        f"[{c['ci_boot_low']:+.3f}, {c['ci_boot_high']:+.3f}] | {c['p']:.3f} | {c['p_holm']:.3f} | "
                        f"{c['mde']:.3f} |")  # fmt: skip
    return "\n".join(rows) + "\n"


def main(argv: list[str] | None = None) -> int:
    """Run study B; see the module docstring."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=Path(__file__).resolve().parent / "results" / "token_study")
    parser.add_argument("--work", type=Path, default=None, help="run directories and checkpoints (default: a temp dir)")
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--arms", nargs="+", default=list(ARMS), help=f"estimators (default {' '.join(ARMS)})")
    parser.add_argument("--steps", type=int, default=10, help="RL steps per arm (default 10)")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--jobs", type=int, default=2, help="processes at once (a SmolLM2 run holds 6-8 GB)")
    parser.add_argument("--warmstarts", type=Path, default=None, help="DIR with seed_<s>/warmstart checkpoints")
    parser.add_argument("--reuse", action="store_true", help="keep finished runs/evals in --work, resume killed runs")
    parser.add_argument("--eval-n", type=int, default=100000, help="held-out questions evaluated (default all)")
    parser.add_argument("--quick", action="store_true", help="tiny policy, 2 steps: a smoke run of the pipeline")
    parser.add_argument("--set", action="append", default=[], metavar="FIELD=JSON", help="extra train overrides")
    args = parser.parse_args(argv)
    if len(args.seeds) < 2:
        parser.error("--seeds needs at least 2 seeds for the paired comparisons")
    work = args.work or Path(tempfile.mkdtemp(prefix="recal-gym-study-b-"))
    work.mkdir(parents=True, exist_ok=True)
    args.out.mkdir(parents=True, exist_ok=True)
    base = ["--preset", "tiny" if args.quick else "smollm2-cpu", "--set", "dynamic_sampling=false"]
    extra = [*(QUICK if args.quick else ()), *args.set]
    base += [a for item in extra for a in ("--set", item)]
    if args.quick:
        args.steps, args.eval_n = 2, 16
    started = time.time()
    machine = {**_machine(args.threads), "jobs": args.jobs}
    with ThreadPoolExecutor(max_workers=args.jobs) as pool:
        ws = dict(zip(args.seeds, pool.map(lambda s: _warm_start(args, s, base, work), args.seeds), strict=True))
        jobs = [(s, a) for a in args.arms for s in args.seeds]
        arm_runs = pool.map(lambda sa: _arm(args, sa[0], sa[1], base, ws[sa[0]][0], work), jobs)
        cfg = json.loads((ws[args.seeds[0]][0] / "manifest.json").read_text())["config"]  # its held-out split
        warm = dict(zip(args.seeds, pool.map(
            lambda s: _eval(args, str(ws[s][0]), s, cfg, work / f"eval-warm-s{s}.json", ws[s][0] / "manifest.json"),
            args.seeds), strict=True))  # fmt: skip
        runs = list(arm_runs)
    _plot(args, args.arms, args.seeds, runs, warm)
    result = {
        "command": ["python", "benchmarks/study_smollm2.py", *(argv if argv is not None else sys.argv[1:])],
        "machine": machine,
        "machine_load_at_end": list(os.getloadavg()),
        "wall_s": time.time() - started,
        "train_overrides": base,
        "seeds": args.seeds,
        "arms": args.arms,
        "steps": args.steps,
        "warm_starts": {str(s): {"checkpoint": str(ws[s][0]), "origin": ws[s][1]} for s in args.seeds},
        "warm": {str(s): warm[s] for s in args.seeds},
        "runs": runs,
        "comparison": _compare(runs, warm, args.arms, args.seeds),
    }
    _write_outputs(args.out, result, _summary_md(result))
    return 0


if __name__ == "__main__":
    sys.exit(main())
