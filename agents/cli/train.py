"""``recal-gym train``: train a router with the ReCal/GRPO learner (the CLI edge: flags, tqdm, files).

Writes into ``--out``: ``config.json``, ``metrics.jsonl`` (one flat record per RL step), ``episodes.jsonl``
(every RL trajectory's episode record and exact online reward, for ``recal-gym rescore``),
``reward_spec.json`` (the env's effective reward spec and its hash),
``warmstart.jsonl``, TensorBoard events under ``tb/``, ``curves.png``, and checkpoints under
``checkpoint/`` (latest) and ``warmstart/`` (the warm-started weights every estimator of a study
starts from). ``--resume DIR`` continues a run from ``DIR/checkpoint.pt`` exactly.

Module level stays import-light (no torch): the parser is built for every ``recal-gym`` call.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

from agents.cli.validation import check_output_dir, positive_int, require_module
from recal_gym.errors import UsageError

__all__ = ["add_arguments", "run"]

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


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Add the ``train`` flags to ``parser``."""
    parser.add_argument("--preset", default="tiny", help="tiny, smollm2-cpu or qwen2.5-3b-gpu (default tiny)")
    parser.add_argument("--config", type=Path, default=None, help="YAML/JSON file of TrainConfig fields")
    parser.add_argument("--out", type=Path, default=Path("runs/train"), help="run directory")
    parser.add_argument("--resume", type=Path, default=None, help="checkpoint directory to resume from")
    for name, kind in _OVERRIDES.items():
        parser.add_argument("--" + name.replace("_", "-"), type=kind, default=None, help=f"override {name}")
    parser.add_argument("--set", action="append", default=[], metavar="FIELD=JSON", help="override any field")
    parser.add_argument("--threads", type=positive_int, default=2, help="torch CPU threads (default 2)")
    parser.add_argument("--no-tensorboard", action="store_true", help="skip TensorBoard events")
    parser.add_argument("--no-plot", action="store_true", help="skip curves.png")
    parser.add_argument("--no-progress", action="store_true", help="hide the progress bar")


def _overrides(args: argparse.Namespace) -> dict[str, Any]:
    out: dict[str, Any] = {name: getattr(args, name) for name in _OVERRIDES}
    for item in args.set:
        key, sep, value = item.partition("=")
        if not sep:
            raise UsageError(f"--set needs FIELD=VALUE, got {item!r}", "e.g. --set lr=0.001")
        try:
            out[key.replace("-", "_")] = json.loads(value)
        except json.JSONDecodeError:
            out[key.replace("-", "_")] = value
    return out


def _sinks(out: Path, tensorboard: bool, start: int) -> list[Any]:
    from agents.grpo.metrics_log import JSONLSink, TensorBoardSink, read_jsonl

    path = out / "metrics.jsonl"
    if start > 0 and path.exists():  # drop records past the checkpoint (a killed run may have written them)
        kept = [r for r in read_jsonl(path) if r["step"] < start]
        path.write_text("".join(json.dumps(r, sort_keys=True) + "\n" for r in kept))
    sinks: list[Any] = [JSONLSink(path, append=start > 0)]
    if tensorboard:  # its dependency was checked at start (_check_before_work)
        sinks.append(TensorBoardSink(out / "tb"))
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
    check_output_dir(args.out, "--out")
    for flag, path in (("--resume", args.resume), ("--config", args.config)):
        if path is not None and not path.exists():
            raise UsageError(f"{flag} {str(path)!r} does not exist", f"give {flag} an existing path")
    if not args.no_plot:
        require_module("matplotlib", "training curves", "pip install matplotlib, or pass --no-plot")
    if not args.no_tensorboard:
        require_module("tensorboard", "TensorBoard events", "pip install tensorboard, or pass --no-tensorboard")


def _warm_start(learner: Any, out: Path) -> None:
    from agents.grpo.metrics_log import JSONLSink

    if learner.warmstart_done:
        return
    sink = JSONLSink(out / "warmstart.jsonl")
    for i, record in enumerate(learner.warm_start()):
        sink.write(i, record)
    sink.close()
    learner.save_checkpoint(out / "warmstart")


def run(args: argparse.Namespace) -> int:
    """Run ``recal-gym train``; returns the exit code."""
    from recal_gym.optional import require_installed

    require_installed("torch", feature="training a router")  # one line, before agents.grpo needs torch
    from agents.grpo.config import load_config

    _check_before_work(args)
    cfg = load_config(args.preset, file=args.config, overrides=_overrides(args))  # before torch is imported

    import torch
    from tqdm import tqdm

    from agents.grpo.distributed import init_from_env
    from agents.grpo.learner import build_learner
    from agents.grpo.metrics_log import MetricsWriter

    torch.set_num_threads(args.threads)
    out: Path = args.out
    out.mkdir(parents=True, exist_ok=True)
    (out / "config.json").write_text(json.dumps(cfg.to_dict(), indent=2, default=str))
    _write_reward_spec(out, cfg)
    ctx = init_from_env()
    learner = build_learner(cfg, out / "work", ctx=ctx)
    if args.resume is not None:
        learner.load_checkpoint(args.resume)
    main = ctx.rank == 0
    _warm_start(learner, out)
    writer = MetricsWriter(_sinks(out, main and not args.no_tensorboard, learner.step_count) if main else [])
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
    if main and not args.no_plot:
        from agents.eval.curves import plot_curves

        plot_curves(out / "metrics.jsonl", out / "curves.png")
    if main and writer.history:
        last = writer.history[-1]
        print(" ".join(f"{k}={last[k]:.4f}" for k in _SUMMARY if k in last))
    return 0
