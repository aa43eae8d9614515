"""Seeded samplers over question rows: dataset mixtures, per-dataset test sets, stratified splits.

Every draw uses a :class:`numpy.random.Generator` keyed by SHA-256 of ``"{seed}|{purpose}|{data
source}"``, so each data source has its own stream: a dataset's sample depends only on the seed,
its own rows and its own count, never on which other datasets are in the mix or on their order.
Rows keep their input order inside each data source's pool before sampling.

>>> from recal_gym.data import load_embedded, sample_mixture
>>> mix = sample_mixture(load_embedded(), {"fanoutqa_single": 100, "fanoutqa_multi": 20}, seed=0)
>>> len(mix)
120
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping, Sequence

import numpy as np

from recal_gym.errors import InvalidConfig, close_matches_hint
from recal_gym.types import QARow

__all__ = ["group_by_source", "sample_mixture", "sample_per_dataset", "train_test_split"]


def _check_seed(seed: int) -> None:
    if isinstance(seed, bool) or not isinstance(seed, int | np.integer):
        raise InvalidConfig(f"seed must be an int, got {seed!r}")


def _rng(seed: int, purpose: str, data_source: str) -> np.random.Generator:
    """A generator private to (seed, purpose, data source); stable across processes and machines."""
    digest = hashlib.sha256(f"{int(seed)}|{purpose}|{data_source}".encode("utf-8", "surrogatepass")).digest()
    return np.random.Generator(np.random.PCG64(int.from_bytes(digest[:16], "little")))


def group_by_source(rows: Sequence[QARow]) -> dict[str, list[QARow]]:
    """Group rows by ``data_source``, in order of first appearance, keeping input order inside.

    Args:
        rows: The rows to group.

    Returns:
        ``{data_source: [rows...]}``.
    """
    groups: dict[str, list[QARow]] = {}
    for row in rows:
        groups.setdefault(row.data_source, []).append(row)
    return groups


def sample_mixture(rows: Sequence[QARow], counts: Mapping[str, int], seed: int) -> list[QARow]:
    """Draw ``counts[d]`` rows without replacement from each data source d.

    Router-R1 trains on a mixture such as 7K NQ + 7K HotpotQA:
    ``sample_mixture(rows, {"nq": 7000, "hotpotqa": 7000}, seed=42)``.

    Args:
        rows: The pool of rows (several data sources).
        counts: Rows to draw per data source; sources not named are not drawn.
        seed: The sampling seed.

    Returns:
        The sample, grouped by data source in ``counts`` order; random order inside each group.

    Raises:
        InvalidConfig: if a source is absent from ``rows``, a count is negative or not an int, a count
            exceeds the rows available, or ``seed`` is not an int.
    """
    _check_seed(seed)
    groups = group_by_source(rows)
    out: list[QARow] = []
    for source, count in counts.items():
        if source not in groups:
            raise InvalidConfig(
                f"counts names data source {source!r}, which has no rows; available: {sorted(groups)}."
                + close_matches_hint(source, groups)
            )
        if isinstance(count, bool) or not isinstance(count, int | np.integer) or count < 0:
            raise InvalidConfig(f"counts[{source!r}] must be an int >= 0, got {count!r}")
        pool = groups[source]
        if count > len(pool):
            raise InvalidConfig(f"counts[{source!r}] = {count} exceeds the {len(pool)} rows available")
        picks = _rng(seed, "mixture", source).choice(len(pool), size=int(count), replace=False)
        out.extend(pool[int(i)] for i in picks)
    return out


def sample_per_dataset(rows: Sequence[QARow], n: int, seed: int) -> list[QARow]:
    """Draw ``n`` rows per data source without replacement (all of a source's rows when fewer).

    Router-R1 evaluates on 500 test rows per dataset: ``sample_per_dataset(rows, 500, seed=42)``.

    Args:
        rows: The pool of rows.
        n: Rows per data source (>= 1).
        seed: The sampling seed.

    Returns:
        The sample, grouped by data source in order of first appearance; a source with at most ``n``
        rows is returned whole in input order, otherwise in random order.

    Raises:
        InvalidConfig: if ``n`` < 1 or ``seed`` is not an int.
    """
    _check_seed(seed)
    if isinstance(n, bool) or not isinstance(n, int | np.integer) or n < 1:
        raise InvalidConfig(f"n must be an int >= 1, got {n!r}")
    out: list[QARow] = []
    for source, pool in group_by_source(rows).items():
        if len(pool) <= n:
            out.extend(pool)
            continue
        picks = _rng(seed, "per_dataset", source).choice(len(pool), size=int(n), replace=False)
        out.extend(pool[int(i)] for i in picks)
    return out


def train_test_split(rows: Sequence[QARow], test_fraction: float, seed: int) -> tuple[list[QARow], list[QARow]]:
    """Split rows into train and test sets, stratified by data source.

    Each source with m rows puts ``round(test_fraction * m)`` rows in the test set, chosen at random;
    both sets keep the input order.

    Args:
        rows: The rows to split.
        test_fraction: Share of each source's rows in the test set, in (0, 1).
        seed: The sampling seed.

    Returns:
        ``(train, test)``; together they hold every row exactly once.

    Raises:
        InvalidConfig: if ``test_fraction`` is outside (0, 1) or ``seed`` is not an int.
    """
    _check_seed(seed)
    if isinstance(test_fraction, bool) or not isinstance(test_fraction, float | int):
        raise InvalidConfig(f"test_fraction must be a float in (0, 1), got {test_fraction!r}")
    if not 0.0 < float(test_fraction) < 1.0:
        raise InvalidConfig(f"test_fraction must be in (0, 1), got {test_fraction!r}")
    test_ids: set[str] = set()
    for source, pool in group_by_source(rows).items():
        k = round(float(test_fraction) * len(pool))
        picks = _rng(seed, "split", source).choice(len(pool), size=k, replace=False)
        test_ids.update(pool[int(i)].question_id for i in picks)
    train = [r for r in rows if r.question_id not in test_ids]
    test = [r for r in rows if r.question_id in test_ids]
    return train, test
