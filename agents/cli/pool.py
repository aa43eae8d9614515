"""``recal-gym pool record``: record a replay table from any pool over a dataset (resumable).

Import-light: the pool machinery is imported inside :func:`run`.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
from pathlib import Path

from agents.cli.validation import positive_int

__all__ = ["add_arguments", "run"]


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Add the ``pool`` subcommands to ``parser``."""
    sub = parser.add_subparsers(dest="pool_cmd", required=True)
    rec = sub.add_parser("record", help="record a replay table (question x model) from a pool")
    rec.add_argument("--pool", default=None, help="pool profile name or pool file (default: simulated Router-R1)")
    rec.add_argument("--dataset", default="embedded", help="'embedded', 'embedded:<name>' or a .jsonl/.parquet path")
    rec.add_argument("--out", type=Path, required=True, help="table file (.jsonl or .parquet)")
    rec.add_argument("--model", action="append", default=None, help="record only these models (repeatable)")
    rec.add_argument("--n", type=positive_int, default=None, help="questions per dataset (default: all)")
    rec.add_argument("--seed", type=int, default=0, help="seed of the question sample")
    rec.add_argument("--pool-seed", type=int, default=0, help="seed of a simulated pool")
    rec.add_argument("--batch-size", type=positive_int, default=8, help="questions per batched pool call")
    rec.add_argument("--fresh", action="store_true", help="start a new table instead of resuming")
    rec.add_argument("--no-progress", action="store_true", help="hide the progress bar")


def run(args: argparse.Namespace) -> int:
    """Record the table and print a JSON summary."""
    from tqdm import tqdm

    from recal_gym.data import load_questions
    from recal_gym.data.sampling import sample_per_dataset
    from recal_gym.pools import build_pool, default_pool_spec, load_pool_spec
    from recal_gym.pools.options import PoolOptions
    from recal_gym.pools.replay import check_table_path, record_table

    check_table_path(args.out)  # everything is checked before the pool is built or a call is made
    spec = default_pool_spec() if args.pool is None else load_pool_spec(args.pool)
    for name in args.model or ():
        spec.model(name)  # UnknownModel with close matches
    questions = load_questions(args.dataset)
    rows = list(questions.rows) if args.n is None else sample_per_dataset(questions.rows, args.n, seed=args.seed)
    pool = build_pool(spec, PoolOptions(seed=args.pool_seed))
    pool.attach_questions(questions.rows)
    with tqdm(total=0, desc="record", disable=args.no_progress) as bar:

        def progress(done: int, total: int) -> None:
            bar.total = total
            bar.n = done
            bar.refresh()

        summary = record_table(
            pool,
            rows,
            args.out,
            resume=not args.fresh,
            progress=progress,
            models=args.model,
            batch_size=args.batch_size,
        )
    pool.close()
    print(json.dumps(dataclasses.asdict(summary), indent=2))
    return 0
