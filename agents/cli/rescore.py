"""``recal-gym rescore``: re-score a logged run's episodes under one or more reward specs.

``recal-gym rescore RUN_OR_LOG --reward spec.yaml [--reward other.yaml]`` reads the episode log of a
``recal-gym train`` run directory or a ``recal-gym eval`` output directory (``episodes.jsonl``), or any
JSONL file of episode records, re-scores every episode under each spec (``recal_gym.rewards.logs``),
and prints per spec a per-dataset table of the reward and every component's mean; between consecutive
specs it prints how many episodes changed sign or rank within their group. Under the spec the log was
recorded with (same hash) it also reports how many episodes' offline rewards differ from the logged
ones: 0 means the re-scoring is exact. ``--out DIR`` writes ``rescore.json`` and ``rescore.md``.

Import-light: no torch; works in a core-only install.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

__all__ = ["add_arguments", "run"]


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Add the ``rescore`` flags to ``parser``."""
    parser.add_argument("log", type=Path, help="run/eval directory holding episodes.jsonl, or a .jsonl file of records")
    parser.add_argument(
        "--reward",
        action="append",
        default=None,
        metavar="SPEC",
        help="reward spec: 'recal', 'router-r1' or a .yaml/.yml/.json spec file (repeatable; default: recal)",
    )
    parser.add_argument("--out", type=Path, default=None, help="directory for rescore.json and rescore.md")


def run(args: argparse.Namespace) -> int:
    """Re-score the log, print the tables, write them with ``--out``; returns the exit code."""
    from recal_gym.rewards import make_spec
    from recal_gym.rewards.logs import format_rescore, read_episode_log, rescore_log

    specs = [make_spec(s) for s in (args.reward or ["recal"])]  # validated before the log is read
    episodes = read_episode_log(args.log)
    report = rescore_log(episodes, specs)
    text = format_rescore(report)
    print(text, end="")
    if args.out is not None:
        args.out.mkdir(parents=True, exist_ok=True)
        (args.out / "rescore.json").write_text(json.dumps(report.to_dict(), indent=2))
        (args.out / "rescore.md").write_text(text)
        print(f"wrote rescore.json and rescore.md to {args.out}")
    return 0
