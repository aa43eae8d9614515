"""``recal-gym train``: train a router with the ReCal/GRPO learner (the CLI edge: flags, tqdm, files).

Writes into ``--out`` (the run directory): ``config.json``, ``reward_spec.json`` (the env's effective
reward spec and its hash), ``metrics.jsonl`` (one flat record per RL step), ``episodes.jsonl`` (every RL
trajectory's episode record and exact online reward, for ``recal-gym rescore``), ``warmstart.jsonl``
(one per warm-start step, with ``probe/*`` when probed), TensorBoard events under ``tb/`` (RL) and
``tb/warmstart/``, ``curves.png`` and ``curves_warmstart.png``, and verified checkpoints
(:mod:`agents.grpo.checkpoint`) under ``checkpoint/`` (latest) and ``warmstart/`` (the warm-started
weights every estimator of a study starts from), and at the end the exported policy ``policy/``
(transformers format + ``policy.json``). ``recal-gym eval --router checkpoint:<dir>`` takes any of the
three (``agents.eval.policy_router``).

``--resume RUN`` continues the run in directory ``RUN`` (or the checkpoint directory ``RUN/checkpoint``)
from its latest checkpoint, bit for bit: the config and the run directory come from the checkpoint.
Flags that would change the run are refused (only ``steps``, raised to train longer, and
``checkpoint_every`` may differ); ``--threads`` defaults to the checkpoint's thread count.

The first line printed is the plan: the warm start's step budget (``warmstart_steps``) and stop rule,
then the RL steps, so ``--steps N`` (RL steps only) never hides the warm start.

Module level stays import-light (no torch): the parser is built for every ``recal-gym`` call.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

from agents.cli.validation import check_output_dir, positive_int, require_module
from recal_gym.errors import UsageError

__all__ = ["RESUMABLE_FIELDS", "add_arguments", "resume_config", "run"]

_OVERRIDES = {
    "steps": int,
    "seed": int,
    "questions_per_step": int,
    "group_size": int,
    "warmstart_steps": int,
    "warmstart_batch": int,
    "micro_batch_size": int,
    "checkpoint_every": int,
    "estimator": str,
    "lr": float,
    "pool": str,
    "init_checkpoint": str,
}
_SUMMARY = ("episode/return", "episode/format_ok", "episode/em", "loss/policy")
_DEFAULT_THREADS = 2
RESUMABLE_FIELDS = ("steps", "checkpoint_every")
"""TrainConfig fields a ``--resume`` may change (neither alters the trajectory up to the old end)."""


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Add the ``train`` flags to ``parser``."""
    parser.add_argument("--preset", default=None, help="tiny, smollm2-cpu or qwen2.5-3b-gpu (default tiny)")
    parser.add_argument("--config", type=Path, default=None, help="YAML/JSON file of TrainConfig fields")
    parser.add_argument("--out", type=Path, default=None, help="run directory (default runs/train)")
    parser.add_argument(
        "--resume",
        type=Path,
        default=None,
        metavar="RUN",
        help="continue the run in RUN (a run directory or its checkpoint/ directory) with its own config",
    )
    for name, kind in _OVERRIDES.items():
        parser.add_argument("--" + name.replace("_", "-"), type=kind, default=None, help=f"override {name}")
    parser.add_argument("--set", action="append", default=[], metavar="FIELD=JSON", help="override any field")
    parser.add_argument(
        "--threads",
        type=positive_int,
        default=None,
        help=f"torch CPU threads (default {_DEFAULT_THREADS}; on --resume the checkpoint's)",
    )
    parser.add_argument("--no-tensorboard", action="store_true", help="skip TensorBoard events")
    parser.add_argument("--no-plot", action="store_true", help="skip curves.png")
    parser.add_argument("--no-progress", action="store_true", help="hide the progress bar")


def _overrides(args: argparse.Namespace) -> dict[str, Any]:
    out: dict[str, Any] = {name: getattr(args, name) for name in _OVERRIDES if getattr(args, name) is not None}
    for item in args.set:
        key, sep, value = item.partition("=")
        if not sep:
            raise UsageError(f"--set needs FIELD=VALUE, got {item!r}", "e.g. --set lr=0.001 or --set recal.w_min=0.2")
        try:
            out[key.replace("-", "_")] = json.loads(value)
        except json.JSONDecodeError:
            out[key.replace("-", "_")] = value
    return out


def _resume_dirs(path: Path) -> tuple[Path, Path]:
    """(run directory, checkpoint directory) of ``--resume path``: the newest of checkpoint/ and warmstart/."""
    from agents.grpo.checkpoint import is_checkpoint, read_manifest
    from recal_gym.errors import CorruptCheckpoint

    if is_checkpoint(path):
        return path.parent, path
    found = [path / d for d in ("checkpoint", "warmstart") if is_checkpoint(path / d)]
    if not found:
        raise CorruptCheckpoint(
            f"--resume {str(path)!r}: no checkpoint/ or warmstart/ checkpoint there; a run killed before its "
            "first checkpoint cannot be resumed (start it again)"
        )
    return path, max(found, key=lambda d: int(read_manifest(d)["step"]) * 2 + (d.name == "checkpoint"))


def resume_config(args: argparse.Namespace) -> tuple[Any, Path, Path, dict[str, Any]]:
    """The resumed run's (config, run directory, checkpoint directory, manifest).

    The config is the checkpoint's. Flags equal to it are accepted; ``steps`` may be raised and
    ``checkpoint_every`` changed; anything else that differs (including ``--out``, ``--preset`` and
    ``--config``) raises.

    Raises:
        InvalidConfig: a flag conflicts with the checkpoint (the message names field and both values).
        CorruptCheckpoint: no valid checkpoint under ``--resume``.
    """
    from agents.grpo.checkpoint import read_manifest
    from agents.grpo.config import TrainConfig, apply_overrides
    from recal_gym.errors import InvalidConfig

    run_dir, ckpt = _resume_dirs(args.resume)
    manifest = read_manifest(ckpt)
    saved = TrainConfig.from_dict(manifest["config"])
    conflicts = []
    if args.out is not None and args.out.resolve() != run_dir.resolve():
        conflicts.append(f"--out {str(args.out)!r} (the run directory is {str(run_dir)!r})")
    if args.preset is not None and args.preset != saved.name:
        conflicts.append(f"--preset {args.preset!r} (the run's is {saved.name!r})")
    if args.config is not None:
        conflicts.append(f"--config {str(args.config)!r} (a resumed run keeps the checkpoint's config)")
    requested = apply_overrides(saved, _overrides(args))
    before, after = _flat(saved), _flat(requested)
    for key in sorted(k for k in after if after[k] != before[k] and k not in RESUMABLE_FIELDS):
        conflicts.append(f"{key}={after[key]!r} (the checkpoint has {before[key]!r})")
    if requested.steps < int(manifest["step"]):
        conflicts.append(f"steps={requested.steps} is below the checkpoint's step {manifest['step']}")
    if conflicts:
        raise InvalidConfig(
            f"--resume {str(args.resume)!r} continues the run with its own config; conflicting: "
            + "; ".join(conflicts)
            + f". Only {list(RESUMABLE_FIELDS)} may change (steps may only grow)."
        )
    return requested, run_dir, ckpt, manifest


def _flat(config: Any) -> dict[str, Any]:
    """``section.field`` -> value for every field of a TrainConfig."""
    out: dict[str, Any] = {}
    for key, value in config.to_dict().items():
        if isinstance(value, dict):
            out.update({f"{key}.{k}": v for k, v in value.items()})
        else:
            out[key] = value
    return out


def _sinks(out: Path, tensorboard: bool, start: int, *, name: str = "metrics", spec_hash: str = "") -> list[Any]:
    """JSONL (``<name>.jsonl``, every line tagged with ``reward_spec_hash``) and TensorBoard sinks.

    TensorBoard writes to ``tb/`` for RL steps and ``tb/<name>`` otherwise.
    """
    from agents.grpo.metrics_log import JSONLSink, TensorBoardSink, read_jsonl

    path = out / f"{name}.jsonl"
    if start > 0 and path.exists():  # drop records past the checkpoint (a killed run may have written them)
        kept = [r for r in read_jsonl(path) if r["step"] < start]
        path.write_text("".join(json.dumps(r, sort_keys=True) + "\n" for r in kept))
    sinks: list[Any] = [JSONLSink(path, append=start > 0, tags={"reward_spec_hash": spec_hash})]
    if tensorboard:  # its dependency was checked at start (_check_before_work)
        sinks.append(TensorBoardSink(out / "tb" if name == "metrics" else out / "tb" / name, purge_step=start))
    return sinks


class _EpisodeLog:
    """``episodes.jsonl``: every RL trajectory's record and exact online reward (for ``recal-gym rescore``)."""

    def __init__(self, path: Path, start: int) -> None:
        if start > 0 and path.exists():  # drop steps past the checkpoint, as for metrics.jsonl
            lines = path.read_text(encoding="utf-8").splitlines(keepends=True)
            keep = [ln for ln in lines if json.loads(ln)["step"] < start]
            path.write_text("".join(keep), encoding="utf-8")
        elif path.exists():
            path.unlink()
        self.path = path

    def write(self, step: int, learner: Any) -> None:
        from agents.grpo.distributed import all_gather_objects

        batch = learner.last_rollout
        rewards = batch.rewards
        lines = [
            {
                "step": step,
                "reward": float(rewards.scalar[i]),
                "components": {k: float(v) for k, v in zip(rewards.names, rewards.gated[i].tolist(), strict=True)},
                "reward_spec_hash": rewards.spec_hash,
                "record": record,
            }
            for i, record in enumerate(batch.records)
        ]
        gathered = [ln for part in all_gather_objects(lines, learner.ctx) for ln in part]  # rank order
        if learner.ctx.rank == 0:
            with self.path.open("a", encoding="utf-8") as fh:
                fh.writelines(json.dumps(ln, ensure_ascii=False) + "\n" for ln in gathered)


def _write_reward_spec(out: Path, cfg: Any) -> None:
    """``reward_spec.json``: the env's effective spec (batch update mode) and its hash, for provenance."""
    from recal_gym.rewards import make_spec

    spec = make_spec(cfg.reward_spec, update_mode="batch")
    body = {"hash": spec.hash, "spec": spec.to_dict()}
    (out / "reward_spec.json").write_text(json.dumps(body, indent=2))


def _check_before_work(args: argparse.Namespace) -> None:
    """Check paths and optional dependencies before the (long) run starts."""
    if args.out is not None:
        check_output_dir(args.out, "--out")
    for flag, path in (("--resume", args.resume), ("--config", args.config)):
        if path is not None and not path.exists():
            raise UsageError(f"{flag} {str(path)!r} does not exist", f"give {flag} an existing path")
    if not args.no_plot:
        require_module("matplotlib", "training curves", "pip install matplotlib, or pass --no-plot")
    if not args.no_tensorboard:
        require_module("tensorboard", "TensorBoard events", "pip install tensorboard, or pass --no-tensorboard")


def _plan(cfg: Any, learner: Any) -> str:
    """One line naming the warm start's budget and stop rule and the RL steps (nothing is implicit)."""
    rl = f"RL steps {learner.step_count}..{cfg.steps - 1}" if learner.step_count < cfg.steps else "no RL steps left"
    if learner.warmstart_done or cfg.warmstart_steps == 0:
        return f"plan: no warm start; {rl}"
    rules = [
        f"{name} {op} {value}"
        for name, op, value in (
            ("format_error", "<=", cfg.warmstart_max_format_error),
            ("related", ">=", cfg.warmstart_min_related),
            ("choice_entropy", ">=", cfg.warmstart_min_choice_entropy),
        )
        if value is not None
    ]
    stop = (
        f"stops early once {', '.join(rules)} (probe every {cfg.warmstart_probe_every} steps, "
        f"after {cfg.warmstart_min_steps})"
        if cfg.warmstart_probe_every and rules
        else "no early stop"
    )
    return f"plan: warm start up to {cfg.warmstart_steps} steps (warmstart_steps; {stop}); then {rl}"


def _warm_start(learner: Any, out: Path, args: argparse.Namespace, main: bool) -> None:
    """Run the warm start with a progress bar and the RL steps' sinks; save ``warmstart/``."""
    from tqdm import tqdm

    from agents.grpo.metrics_log import MetricsWriter

    if learner.warmstart_done:
        return
    cfg = learner.config
    writer = MetricsWriter(
        _sinks(out, main and not args.no_tensorboard, 0, name="warmstart", spec_hash=learner.reward_spec.hash)
        if main
        else []
    )
    bar = tqdm(total=cfg.warmstart_steps, disable=args.no_progress or not main, desc="warm start")
    last: dict[str, float] = {}
    for i, record in enumerate(learner.warm_start_iter()):
        writer.write(i, record)
        bar.update(1)
        bar.set_postfix({"loss": f"{record['warmstart/loss']:.3f}"})
        last = record
    bar.close()
    writer.close()
    learner.save_checkpoint(out / "warmstart")
    if main:
        how = (
            "stopped early: criteria met"
            if last.get("warmstart/stopped_early")
            else "budget used; criteria met"
            if last.get("warmstart/criteria_met_at_end")
            else "budget used"
        )
        print(f"warm start: {int(last.get('warmstart/steps_total', 0))} steps ({how})")
        if not args.no_plot and last:
            from agents.eval.curves import WARMSTART_CURVES, plot_curves

            plot_curves(out / "warmstart.jsonl", out / "curves_warmstart.png", WARMSTART_CURVES)


def _setup(args: argparse.Namespace) -> tuple[Any, Path, Path | None, int]:
    """(config, run directory, checkpoint to resume or None, threads)."""
    from agents.grpo.config import load_config

    if args.resume is None:
        cfg = load_config(args.preset or "tiny", file=args.config, overrides=_overrides(args))
        return cfg, args.out or Path("runs/train"), None, args.threads or _DEFAULT_THREADS
    cfg, run_dir, ckpt, manifest = resume_config(args)
    saved_threads = int(manifest["meta"].get("threads", _DEFAULT_THREADS))
    threads = args.threads or saved_threads
    if threads != saved_threads:
        print(
            f"recal-gym train: warning: resuming with {threads} threads, the run used {saved_threads}; "
            "the result will not be bit-identical to an uninterrupted run",
            file=sys.stderr,
        )
    return cfg, run_dir, ckpt, threads


def run(args: argparse.Namespace) -> int:
    """Run ``recal-gym train``; returns the exit code."""
    from recal_gym.optional import require_installed

    require_installed("torch", feature="training a router")  # one line, before agents.grpo needs torch
    _check_before_work(args)
    cfg, out, ckpt, threads = _setup(args)  # before torch is imported: config errors fail fast

    import torch
    from tqdm import tqdm

    from agents.grpo.build import build_learner
    from agents.grpo.distributed import init_from_env
    from agents.grpo.metrics_log import MetricsWriter

    torch.set_num_threads(threads)
    out.mkdir(parents=True, exist_ok=True)
    (out / "config.json").write_text(json.dumps(cfg.to_dict(), indent=2, default=str))
    _write_reward_spec(out, cfg)
    ctx = init_from_env()
    learner = build_learner(cfg, out / "work", ctx=ctx)
    if ckpt is not None:
        learner.load_checkpoint(ckpt)
    main = ctx.rank == 0
    if main:
        print(_plan(cfg, learner))
    _warm_start(learner, out, args, main)
    writer = MetricsWriter(
        _sinks(out, main and not args.no_tensorboard, learner.step_count, spec_hash=learner.reward_spec.hash)
        if main
        else []
    )
    episodes = _EpisodeLog(out / "episodes.jsonl", learner.step_count)
    bar = tqdm(total=cfg.steps, initial=learner.step_count, disable=args.no_progress or not main, desc=cfg.name)
    while learner.step_count < cfg.steps:
        step = learner.step_count
        metrics = learner.step()
        writer.write(step, metrics)
        episodes.write(step, learner)
        bar.update(1)
        bar.set_postfix({k.split("/")[-1]: f"{metrics[k]:.3f}" for k in _SUMMARY if k in metrics})
        every = cfg.checkpoint_every
        if every and learner.step_count % every == 0:
            learner.save_checkpoint(out / "checkpoint")
    bar.close()
    learner.save_checkpoint(out / "checkpoint")
    writer.close()
    if main:
        from agents.eval.policy_router import export_policy

        export_policy(learner.model, learner.codec.tokenizer, cfg, out / "policy")
    if main and not args.no_plot:
        from agents.eval.curves import plot_curves

        plot_curves(out / "metrics.jsonl", out / "curves.png")
    if main and writer.history:
        last = writer.history[-1]
        print(" ".join(f"{k}={last[k]:.4f}" for k in _SUMMARY if k in last))
    return 0
