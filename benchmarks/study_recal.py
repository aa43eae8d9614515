"""Learning study: does ReCal (reference design) beat scalar GRPO on RouterQA? (issue 6, part 3).

One command reruns everything (about 45-55 minutes on a 2-core machine)::

    python benchmarks/study_recal.py --out benchmarks/results/recal_study

and ``--quick`` runs a smoke version in seconds. Per seed, one supervised warm start (format and
copying, routes to uniformly random models, ``docs/learner.md`` §10.3) is saved and every arm of both settings
starts RL from those same weights; every arm of a seed also sees the same question sequence, so the
comparison is paired. Runs go to two worker processes with one torch thread each.

Writes into ``--out``: ``results.json`` (every run, the aggregates, the exact command, package versions,
git commit and machine), ``curves_<setting>.png`` (mean ± std over seeds per arm: train reward, fixed-question
EM, format-error rate) and ``summary.md`` (the tables). Settings, arms and budgets live in
``benchmarks/study_setup.py``; the statistics and figures in ``benchmarks/study_report.py``.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import multiprocessing as mp
import os
import platform
import shlex
import subprocess
import sys
import time
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

from study_report import aggregate, plot_setting, summary_markdown
from study_setup import (
    ARMS,
    BUDGETS,
    SETTINGS,
    Budget,
    Setting,
    eval_question_ids,
    pool_rows,
    write_setting_files,
)

COLLAPSE_FORMAT_ERROR = 0.9
"""A run collapsed if its final fixed-question format-error rate is at least this, ..."""
COLLAPSE_RETURN_DROP = 0.25
"""... or its final fixed-question mean return is this far below the warm-start (step 0) return."""
_PACKAGES = ("torch", "transformers", "numpy", "gymnasium", "matplotlib", "recal-gym")


def _init_worker() -> None:
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("HF_DATASETS_OFFLINE", "1")
    import torch

    torch.set_num_threads(1)
    import transformers

    transformers.logging.set_verbosity_error()
    transformers.logging.disable_progress_bar()


def _config(budget: Budget, setting: Setting, seed: int, policy: str, **changes: Any) -> Any:
    from agents.grpo.config import apply_overrides, preset

    base = dataclasses.replace(
        preset("tiny"),
        name="recal-study",
        policy=policy,
        dataset=setting.dataset,
        pool=setting.pool,
        pool_seed=seed,
        seed=seed,
        steps=budget.steps,
        lr=budget.lr,
        questions_per_step=budget.questions_per_step,
        group_size=budget.group_size,
        max_new_tokens=budget.max_new_tokens,
        micro_batch_size=16,
        warmstart_steps=budget.warmstart_steps,
        warmstart_lr=budget.warmstart_lr,
        warmstart_direct_share=0.0,
        warmstart_batch=16,
    )
    return apply_overrides(base, changes)


def warm_start_task(task: dict[str, Any]) -> dict[str, Any]:
    """Build the seed's policy, warm-start it (stage A short clones, stage B env demos) and save it."""
    from study_pretrain import clone_short_demos
    from study_setup import COMPACT_NAMES
    from transformers import AutoModelForCausalLM

    from agents.grpo.build import build_learner
    from agents.models.tiny_model import build_tiny_model, load_tiny_tokenizer

    budget: Budget = task["budget"]
    setting: Setting = task["setting"]
    seed, work = task["seed"], Path(task["work"])
    t0 = time.perf_counter()
    policy = build_tiny_model(
        work / f"policy_seed{seed}",
        hidden_size=budget.hidden_size,
        num_heads=4,
        num_kv_heads=2,
        num_layers=budget.num_layers,
        intermediate_size=2 * budget.hidden_size,
        max_position_embeddings=4096,
        seed=seed,
    )
    tokenizer = load_tiny_tokenizer(policy)
    model = AutoModelForCausalLM.from_pretrained(policy, local_files_only=True)
    single, multi = pool_rows()
    names = [short for short, _ in COMPACT_NAMES.values()]
    clone_loss = clone_short_demos(
        model, tokenizer, single + multi, names, steps=budget.pretrain_steps, batch=32, lr=3e-3, seed=seed
    )
    model.save_pretrained(policy)
    cfg = _config(budget, setting, seed, str(policy))
    learner = build_learner(cfg, work / f"build_ws{seed}")
    history = learner.warm_start()
    ckpt = work / f"warmstart_seed{seed}"
    learner.save_checkpoint(ckpt)
    return {
        "seed": seed,
        "policy": str(policy),
        "checkpoint": str(ckpt),
        "clone_loss": clone_loss,
        "env_demo_loss": [h["warmstart/loss"] for h in history],
        "wall_s": time.perf_counter() - t0,
    }


def _evaluate(learner: Any, eval_ids: tuple[str, ...], sources: tuple[str, ...], seed: int) -> dict[str, Any]:
    batch = learner.evaluate(eval_ids, 1, seed=10_000 + seed)
    names = batch.source_names
    per = {}
    for source in sources:
        rows = batch.source == names.index(source)
        per[source] = float(batch.em[rows].mean()) if bool(rows.any()) else float("nan")
    return {
        "em": float(batch.em.mean()),
        "em_per_dataset": per,
        "format_error": 1.0 - float(batch.format_ok.mean()),
        "return": float(batch.scalar.mean()),
        "routed": float((batch.turns > 1).float().mean()),
    }


def run_task(task: dict[str, Any]) -> dict[str, Any]:
    """One RL run: (setting, arm, seed) from the seed's warm start; returns its curves and finals."""
    from agents.grpo.build import build_learner

    budget: Budget = task["budget"]
    setting: Setting = task["setting"]
    seed, arm, eval_ids = task["seed"], task["arm"], task["eval_ids"]
    t0 = time.perf_counter()
    cfg = _config(budget, setting, seed, task["policy"], init_checkpoint=task["checkpoint"], **ARMS[arm])
    learner = build_learner(cfg, Path(task["work"]) / f"build_{setting.name}_{arm}_{seed}")
    sources = setting.sources
    evals = [{"step": 0, **_evaluate(learner, eval_ids, sources, seed)}]
    train: dict[str, list[float]] = {"reward": [], "format_error": [], "em": [], "frac_zero_std": []}
    for step in range(1, budget.steps + 1):
        m = learner.step()
        train["reward"].append(m["episode/return"])
        train["format_error"].append(1.0 - m["episode/format_ok"])
        train["em"].append(m["episode/em"])
        train["frac_zero_std"].append(m["reward/frac_zero_std"])
        if step % budget.eval_every == 0 or step == budget.steps:
            evals.append({"step": step, **_evaluate(learner, eval_ids, sources, seed)})
    first, last = evals[0], evals[-1]
    collapsed = last["format_error"] >= COLLAPSE_FORMAT_ERROR or last["return"] < first["return"] - COLLAPSE_RETURN_DROP
    return {
        "setting": setting.name,
        "arm": arm,
        "seed": seed,
        "train": train,
        "eval": evals,
        "final_em": last["em"],
        "final_em_per_dataset": last["em_per_dataset"],
        "final_format_error": last["format_error"],
        "warmstart_em": first["em"],
        "auc_reward": sum(train["reward"]) / len(train["reward"]),
        "collapsed": bool(collapsed),
        "wall_s": time.perf_counter() - t0,
    }


def _provenance(argv: list[str], started: float, workers: int) -> dict[str, Any]:
    versions = {}
    for pkg in _PACKAGES:
        try:
            versions[pkg] = version(pkg)
        except PackageNotFoundError:
            versions[pkg] = None
    root = Path(__file__).resolve().parents[1]
    try:
        commit = subprocess.run(
            ["git", "rev-parse", "HEAD"], cwd=root, capture_output=True, text=True, check=True
        ).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        commit = None
    return {
        "command": "python " + shlex.join(argv),
        "git_commit": commit,
        "python": sys.version.split()[0],
        "packages": versions,
        "machine": {"platform": platform.platform(), "cpu_count": os.cpu_count(), "processor": platform.machine()},
        "workers": workers,
        "torch_threads_per_worker": 1,
        "wall_s": time.perf_counter() - started,
    }


def _map(pool: Any, fn: Any, tasks: list[dict[str, Any]], label: str) -> list[dict[str, Any]]:
    out = []
    for i, res in enumerate(pool.imap_unordered(fn, tasks), 1):
        out.append(res)
        tag = f"{res.get('setting', '')} {res.get('arm', '')} seed={res['seed']}"
        print(f"[{label} {i}/{len(tasks)}] {tag.strip()} {res['wall_s']:.1f}s", flush=True)
    return out


def _clean_work(work: Path) -> None:
    """Delete the policies, checkpoints and build folders; keep the pool and question files."""
    import shutil

    for child in work.iterdir():
        if child.is_dir() and child.name.startswith(("policy_seed", "warmstart_seed", "build_")):
            shutil.rmtree(child)


def run_study(
    out: Path, *, quick: bool, workers: int, settings: tuple[str, ...], arms: tuple[str, ...], keep_work: bool = False
) -> Path:
    """Run the study and write ``results.json``, ``curves_<setting>.png`` and ``summary.md`` into ``out``.

    ``out/work`` keeps the study's pool and question files; the policies and checkpoints are deleted
    unless ``keep_work``.
    """
    started = time.perf_counter()
    budget = BUDGETS["quick" if quick else "full"]
    work = out / "work"
    all_settings = write_setting_files(work)
    chosen = [all_settings[s] for s in settings]
    held = {s.name: eval_question_ids(s) for s in chosen}
    ws_setting = all_settings["embedded"]
    ws_tasks = [{"budget": budget, "setting": ws_setting, "seed": s, "work": str(work)} for s in range(budget.seeds)]
    ctx = mp.get_context("spawn")
    with ctx.Pool(workers, initializer=_init_worker) as pool:
        warm = sorted(_map(pool, warm_start_task, ws_tasks, "warm start"), key=lambda r: r["seed"])
        tasks = [
            {
                "budget": budget,
                "setting": s,
                "seed": w["seed"],
                "arm": arm,
                "policy": w["policy"],
                "checkpoint": w["checkpoint"],
                "work": str(work),
                "eval_ids": held[s.name],
            }
            for w in warm
            for s in chosen
            for arm in arms
        ]
        runs = _map(pool, run_task, tasks, "run")
    runs.sort(key=lambda r: (SETTINGS.index(r["setting"]), list(ARMS).index(r["arm"]), r["seed"]))
    results = {
        "study": "recal-vs-grpo",
        "estimator_note": "ReCal = the project's reference design (docs/learner.md §4), not the paper's code.",
        "budget": dataclasses.asdict(budget),
        "quick": quick,
        "settings": {
            s.name: {"dataset": s.dataset, "pool": s.pool, "eval_questions": list(held[s.name])} for s in chosen
        },
        "arms": {a: ARMS[a] for a in arms},
        "collapse_rule": {
            "final_format_error_at_least": COLLAPSE_FORMAT_ERROR,
            "final_return_below_warmstart_by": COLLAPSE_RETURN_DROP,
        },
        "warm_start": warm,
        "runs": runs,
        "aggregates": {s.name: aggregate([r for r in runs if r["setting"] == s.name], arms) for s in chosen},
    }
    results["provenance"] = _provenance(sys.argv, started, workers)
    out.mkdir(parents=True, exist_ok=True)
    path = out / "results.json"
    path.write_text(json.dumps(results, indent=1, sort_keys=True))
    for s in chosen:
        plot_setting([r for r in runs if r["setting"] == s.name], arms, out / f"curves_{s.name}.png", s.name)
    (out / "summary.md").write_text(summary_markdown(results))
    if not keep_work:
        _clean_work(work)
    return path


def main(argv: list[str] | None = None) -> int:
    """Parse the flags and run the study."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=Path("benchmarks/results/recal_study"))
    parser.add_argument("--quick", action="store_true", help="smoke budget (1 seed, 2 steps)")
    parser.add_argument("--workers", type=int, default=2, help="parallel worker processes (default 2)")
    parser.add_argument("--settings", nargs="+", default=list(SETTINGS), choices=SETTINGS)
    parser.add_argument("--arms", nargs="+", default=list(ARMS), choices=list(ARMS))
    parser.add_argument("--keep-work", action="store_true", help="keep policies and checkpoints under OUT/work")
    args = parser.parse_args(argv)
    path = run_study(
        args.out,
        quick=args.quick,
        workers=args.workers,
        settings=tuple(args.settings),
        arms=tuple(args.arms),
        keep_work=args.keep_work,
    )
    print(f"wrote {path}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
