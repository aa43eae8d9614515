"""One SmolLM2-135M RL step on CPU: the code path before the speed work vs the new one, in the same run.

Workload (issue 10, item 4): the ``smollm2-cpu`` preset at 4 questions × G = 4 × 48 new tokens per
turn (one routed turn + the final turn), seed 0, so every arm starts from the same weights and the
same questions. Each *arm* runs in its own subprocess (clean peak RSS): load, ``--burn-in`` steps,
then ``--steps`` measured :meth:`Learner.step` calls; arms are interleaved over ``--rounds`` rounds
so machine load hits them alike. Reported per step: wall time split into rollout and update (the
learner's ``time/rollout_s``, ``time/update_s``), process CPU time (on a shared machine CPU time at
one thread is steadier than wall time), and the process's peak RSS. Medians over rounds × steps.

Arms:

- ``today``: the repository at ``--baseline-ref`` (default: the last commit before the speed work),
  exported with ``git archive`` into a temporary directory: today's code path, exactly.
- ``legacy``: the new code with every switch at its old value (fp32, Router-R1 prompt, dynamic KV
  cache, full-vocabulary logits; this also turns off the shared-prefix micro-batches). Not
  switchable, and so in ``legacy`` too: the inverse-CDF sampler and the fused log-softmax cast.
- ``new``: the new code with the preset's defaults (bf16 autocast where the CPU has native bf16,
  compact prompt, preallocated KV cache, logits only where needed, shared-prefix micro-batches).
- ``new-fp32``, ``new-router-r1-prompt``, ``new-dynamic-cache``, ``new-all-logits``: ``new`` with one
  lever switched back (ablations; pass them in ``--arms``); ``new-micro-2`` and ``new-micro-batch``
  change the micro-batch size to 2 rows and to the whole batch (16 rows); ``new-same-work`` is ``new``
  without the preset's dynamic sampling, KL reference and entropy bonus (the work ``today`` does).

Run (about 25-40 minutes on an idle 2-core machine with the default two rounds)::

    python benchmarks/bench_learner_step.py --out benchmarks/results/learner_step.json

``--threads 2 --omp-passive`` measures two torch threads with ``OMP_WAIT_POLICY=PASSIVE`` (set in
the child before torch loads OpenMP). An arm may carry its own thread setting, ``ARM@T`` or
``ARM@Tp`` (T threads, ``p`` = passive wait policy), e.g. ``--arms new@1,new@2,new@2p`` compares the
thread policies on one workload, interleaved. SmolLM2 must be prepared once: ``recal-gym assets prepare
smollm2``. Speed is never asserted in tests; this script is where it is measured.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import shlex
import statistics
import subprocess
import sys
import tarfile
import tempfile
import time
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parent.parent
BASELINE_REF = "207dc06"
"""The last commit before the CPU speed work (issue 10, item 4)."""
WORKLOAD: dict[str, Any] = {"questions_per_step": 4, "group_size": 4, "max_new_tokens": 48, "seed": 0}
"""TrainConfig overrides shared by every arm (fields that exist at the baseline ref too)."""
LEGACY = {"precision": "fp32", "prompt_variant": "qwen", "kv_cache": "dynamic", "logits": "all"}
SAME_WORK = {"dynamic_sampling": False, "loss.kl_coef": 0.0, "loss.entropy_coef": 0.0}
"""The preset's learning extras that ``today`` does not have: the refill rollouts of dynamic sampling
(before a warm start every group is zero-variance, so the refill doubles the rollout), the KL
reference's forward passes and the entropy bonus. ``new-same-work`` turns them off: the same work as
``today``, so its ratio is the code path's alone."""

ARMS: dict[str, tuple[str, dict[str, Any]]] = {
    "today": ("baseline", {}),
    "legacy": ("current", LEGACY),
    "new": ("current", {}),
    "new-fp32": ("current", {"precision": "fp32"}),
    "new-router-r1-prompt": ("current", {"prompt_variant": "qwen"}),
    "new-dynamic-cache": ("current", {"kv_cache": "dynamic"}),
    "new-all-logits": ("current", {"logits": "all"}),
    "new-micro-2": ("current", {"micro_batch_size": 2}),
    "new-micro-batch": ("current", {"micro_batch_size": 16}),
    "new-same-work": ("current", SAME_WORK),
}
"""Arm → (code: ``baseline`` = the exported ref, ``current`` = this checkout; extra overrides)."""
_PACKAGES = ("torch", "transformers", "numpy")


# ---------------------------------------------------------------------- child: one arm in one process
def _child(spec: dict[str, Any]) -> dict[str, Any]:
    import torch

    torch.set_num_threads(int(spec["threads"]))
    from agents.grpo.config import load_config
    try:
        from agents.grpo.build import build_learner
    except ImportError:  # the baseline ref (207dc06) built the learner in agents.grpo.learner
        from agents.grpo.learner import build_learner  # type: ignore[no-redef]

    cfg = load_config(spec["preset"], overrides={**WORKLOAD, **spec["overrides"]})
    with tempfile.TemporaryDirectory(prefix="bench-learner-") as work:
        started = time.perf_counter()
        learner = build_learner(cfg, work)
        build_s = time.perf_counter() - started
        rss_built = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20
        steps = []
        for i in range(int(spec["burn_in"]) + int(spec["steps"])):
            cpu0 = time.process_time()
            metrics = learner.step()
            record = {
                "rollout_s": metrics["time/rollout_s"],
                "update_s": metrics["time/update_s"],
                "cpu_s": time.process_time() - cpu0,
                "policy_tokens": metrics["episode/policy_tokens"],
                "format_ok": metrics["episode/format_ok"],
            }
            record["total_s"] = record["rollout_s"] + record["update_s"]
            if i >= int(spec["burn_in"]):
                steps.append(record)
    return {
        "config": cfg.to_dict(),
        "build_s": build_s,
        "rss_after_build_gib": rss_built,
        "peak_rss_gib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20,
        "torch_threads": torch.get_num_threads(),
        "precision_resolved": getattr(learner, "precision", "fp32"),
        "steps": steps,
    }


# ---------------------------------------------------------------------- parent
def _export(ref: str, into: Path) -> Path:
    """``git archive`` of ``ref`` unpacked under ``into``; returns its root."""
    archive = into / "baseline.tar"
    with archive.open("wb") as fh:
        subprocess.run(["git", "-C", str(REPO), "archive", ref], check=True, stdout=fh)
    root = into / "baseline"
    with tarfile.open(archive) as tar:
        tar.extractall(root, filter="data")
    return root


def _parse_arm(text: str, args: argparse.Namespace) -> tuple[str, int, bool]:
    """``ARM``, ``ARM@T`` or ``ARM@Tp`` → (arm, threads, passive wait policy)."""
    name, sep, threads = text.partition("@")
    if not sep:
        return name, args.threads, args.omp_passive
    passive = threads.endswith("p")
    return name, int(threads.rstrip("p")), passive


def _run_arm(label: str, code_root: Path, args: argparse.Namespace) -> dict[str, Any]:
    name, threads, passive = _parse_arm(label, args)
    _, overrides = ARMS[name]
    spec = {
        "preset": args.preset,
        "overrides": {**overrides, **({"warmstart_steps": 0} if args.preset == "tiny" else {})},
        "threads": threads,
        "burn_in": args.burn_in,
        "steps": args.steps,
    }
    env = {**os.environ, "PYTHONPATH": str(code_root), "HF_HUB_OFFLINE": "1", "HF_DATASETS_OFFLINE": "1"}
    env["TOKENIZERS_PARALLELISM"] = "false"
    env["OMP_NUM_THREADS"] = str(threads)
    if passive:
        env["OMP_WAIT_POLICY"] = "PASSIVE"
    else:
        env.pop("OMP_WAIT_POLICY", None)
    cmd = [sys.executable, str(Path(__file__).resolve()), "--child", json.dumps(spec)]
    out = subprocess.run(cmd, env=env, cwd=str(code_root), check=True, capture_output=True, text=True)
    result = json.loads(out.stdout.strip().splitlines()[-1])
    result["omp_wait_policy"] = "PASSIVE" if passive else "default"
    return result


def _median(values: list[float]) -> float:
    return float(statistics.median(values)) if values else float("nan")


def _summary(runs: list[dict[str, Any]]) -> dict[str, float]:
    steps = [s for r in runs for s in r["steps"]]
    out = {key: _median([s[key] for s in steps]) for key in ("total_s", "rollout_s", "update_s", "cpu_s")}
    out["peak_rss_gib"] = max(r["peak_rss_gib"] for r in runs)
    out["policy_tokens"] = _median([s["policy_tokens"] for s in steps])
    out["measured_steps"] = float(len(steps))
    return out


def _loadavg() -> list[float]:
    try:
        return [round(x, 2) for x in os.getloadavg()]
    except OSError:  # pragma: no cover - not on every platform
        return []


def _versions() -> dict[str, str]:
    out = {}
    for name in _PACKAGES:
        try:
            out[name] = version(name)
        except PackageNotFoundError:
            out[name] = "absent"
    return out


def _git_commit() -> str:
    res = subprocess.run(["git", "-C", str(REPO), "rev-parse", "HEAD"], capture_output=True, text=True)
    return res.stdout.strip()


def _ratios(summary: dict[str, dict[str, float]], reference: str) -> dict[str, dict[str, float]]:
    base = summary[reference]
    keys = ("total_s", "rollout_s", "update_s", "cpu_s", "peak_rss_gib")
    return {arm: {k: s[k] / base[k] for k in keys} for arm, s in summary.items() if arm != reference}


def main(argv: list[str] | None = None) -> int:
    """Parse flags, run the arms interleaved, write the JSON report."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument(
        "--arms",
        default="today,new",
        help=f"comma-separated, from {sorted(ARMS)}, each optionally @T or @Tp; ratios are to the first",
    )
    parser.add_argument("--rounds", type=int, default=2, help="interleaved rounds (one process per arm per round)")
    parser.add_argument("--burn-in", type=int, default=1, help="unmeasured steps per process")
    parser.add_argument("--steps", type=int, default=2, help="measured steps per process")
    parser.add_argument("--threads", type=int, default=1, help="torch threads in every arm")
    parser.add_argument("--omp-passive", action="store_true", help="OMP_WAIT_POLICY=PASSIVE in every arm")
    parser.add_argument("--preset", default="smollm2-cpu", help="TrainConfig preset (tiny: a seconds-long smoke run)")
    parser.add_argument("--baseline-ref", default=BASELINE_REF, help="git ref of the 'today' arm")
    parser.add_argument("--out", type=Path, default=REPO / "benchmarks" / "results" / "learner_step.json")
    parser.add_argument("--child", default=None, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.child is not None:
        print(json.dumps(_child(json.loads(args.child))))
        return 0
    arms = [a.strip() for a in args.arms.split(",") if a.strip()]
    unknown = sorted({_parse_arm(a, args)[0] for a in arms} - set(ARMS))
    if unknown:
        parser.error(f"unknown arm(s) {unknown}; arms: {sorted(ARMS)}")
    started = time.time()
    load_before = _loadavg()
    runs: dict[str, list[dict[str, Any]]] = {a: [] for a in arms}
    with tempfile.TemporaryDirectory(prefix="bench-baseline-") as tmp:
        code = {a: ARMS[_parse_arm(a, args)[0]][0] for a in arms}
        baseline = _export(args.baseline_ref, Path(tmp)) if "baseline" in code.values() else REPO
        for rnd in range(args.rounds):
            for arm in arms:
                root = baseline if code[arm] == "baseline" else REPO
                result = _run_arm(arm, root, args)
                result["round"] = rnd
                result["loadavg_after"] = _loadavg()
                runs[arm].append(result)
                s = _summary([result])
                print(
                    f"round {rnd} {arm:>22}: step {s['total_s']:6.1f} s (rollout {s['rollout_s']:5.1f}, "
                    f"update {s['update_s']:5.1f}) cpu {s['cpu_s']:6.1f} s, peak RSS {s['peak_rss_gib']:.2f} GiB, "
                    f"load {result['loadavg_after']}",
                    flush=True,
                )
    summary = {arm: _summary(rs) for arm, rs in runs.items()}
    report = {
        "benchmark": f"one RL step, {args.preset} preset, 4 questions x G4 x 48 new tokens",
        "command": shlex.join([sys.executable, *sys.argv]),
        "git_commit": _git_commit(),
        "baseline_ref": args.baseline_ref,
        "arms": {arm: dict(zip(("code", "overrides"), ARMS[_parse_arm(arm, args)[0]], strict=True)) for arm in arms},
        "threads": args.threads,
        "omp_wait_policy": "PASSIVE" if args.omp_passive else "default",
        "rounds": args.rounds,
        "burn_in": args.burn_in,
        "measured_steps_per_process": args.steps,
        "summary_median": summary,
        "reference_arm": arms[0],
        "ratio_to_reference": _ratios(summary, arms[0]),
        "machine": {
            "platform": platform.platform(),
            "processor": platform.processor(),
            "cpu_count": os.cpu_count(),
            "loadavg_before": load_before,
            "loadavg_after": _loadavg(),
            "wall_minutes": round((time.time() - started) / 60, 1),
        },
        "versions": _versions(),
        "runs": runs,
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(report, indent=2) + "\n")
    for arm, ratio in report["ratio_to_reference"].items():
        print(
            f"{arm} / {arms[0]}: step x{ratio['total_s']:.3f}, cpu x{ratio['cpu_s']:.3f}, "
            f"RSS x{ratio['peak_rss_gib']:.3f}"
        )
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
