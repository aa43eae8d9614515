"""Validation of :class:`PoolOptions` (issue #12 item 5: every field is checked at construction)."""

from __future__ import annotations

import math

import pytest

from recal_gym.errors import InvalidConfig
from recal_gym.pools.openai import failure_bound_s
from recal_gym.pools.options import MAX_RETRIES_LIMIT, PoolOptions


@pytest.mark.parametrize(
    ("field", "value", "match"),
    [
        ("max_retries", 2000, r"max_retries must be an int in \[0, 20\], got 2000"),
        ("max_retries", -1, r"max_retries must be an int in \[0, 20\], got -1"),
        ("max_retries", True, r"max_retries must be an int in \[0, 20\], got True"),
        ("max_retries", 2.0, r"max_retries must be an int in \[0, 20\], got 2.0"),
        ("max_concurrency", 0, r"max_concurrency must be an int in \[1, 4096\], got 0"),
        ("max_concurrency", 10**6, r"max_concurrency must be an int in \[1, 4096\]"),
        ("max_response_bytes", 10, r"max_response_bytes must be an int in \[1024, 1073741824\], got 10"),
        ("replay_unrecorded", "closest", r"replay_unrecorded must be one of \['fail', 'nearest'\], got 'closest'"),
        ("cache_path", 3, r"cache_path must be a path string"),
        ("timeout_s", math.inf, r"timeout_s must be a finite number, got inf"),
        ("timeout_s", 10**401, r"timeout_s must be in \[0.001, 3600.0\], got 1000"),
        ("seed", "0", r"seed must be an int, got '0'"),
        ("simulated", {}, r"simulated must be a SimulatedConfig"),
    ],
)
def test_bad_values_are_rejected_at_construction(field: str, value: object, match: str) -> None:
    with pytest.raises(InvalidConfig, match=match):
        PoolOptions(**{field: value})  # type: ignore[arg-type]


def test_largest_retry_count_has_a_finite_failure_bound() -> None:
    opts = PoolOptions(max_retries=MAX_RETRIES_LIMIT, backoff_s=60.0, timeout_s=3600.0)
    assert math.isfinite(failure_bound_s(opts))
