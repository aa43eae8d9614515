"""Write RouterQA train/validation Parquet files for verl (``data.train_files``/``data.val_files``).

    python examples/verl/prepare_data.py --out data/routerqa --val 64

Each row is ``agents.adapters.verl_episode.routerqa_verl_rows``: ``data_source``, ``prompt`` (one user message),
``ability``, ``reward_model.ground_truth``, ``extra_info`` (``question_id``, ``index``, ``split``,
``tools_kwargs``) and ``agent_name`` (``routerqa_agent``).
"""

from __future__ import annotations

import argparse
from pathlib import Path

__all__ = ["write"]


def write(out: str | Path, *, dataset: str = "embedded", val: int = 64, seed: int = 0) -> tuple[Path, Path]:
    """Split the dataset's questions (seeded) and write ``train.parquet`` and ``val.parquet`` under ``out``."""
    import numpy as np
    import pandas as pd

    from agents.adapters.verl_episode import RouterQAEnvConfig, routerqa_verl_rows

    env = RouterQAEnvConfig(dataset=dataset).build_env(None)
    ids = sorted(env.questions.ids())
    order = np.random.default_rng(seed).permutation(len(ids))
    val_ids = [ids[i] for i in sorted(order[:val])]
    train_ids = [ids[i] for i in sorted(order[val:])]
    root = Path(out)
    root.mkdir(parents=True, exist_ok=True)
    paths = root / "train.parquet", root / "val.parquet"
    for path, qids, split in zip(paths, (train_ids, val_ids), ("train", "val"), strict=True):
        pd.DataFrame(routerqa_verl_rows(env, qids, split=split)).to_parquet(path)
    env.close()
    return paths


def main() -> None:
    """Command-line entry."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", default="data/routerqa")
    parser.add_argument("--dataset", default="embedded")
    parser.add_argument("--val", type=int, default=64, help="validation questions")
    parser.add_argument("--seed", type=int, default=0)
    a = parser.parse_args()
    for path in write(a.out, dataset=a.dataset, val=a.val, seed=a.seed):
        print(path)


if __name__ == "__main__":
    main()
