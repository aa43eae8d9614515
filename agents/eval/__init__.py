"""Evaluation: baseline and trained routers, the evaluation harness, Pareto frontier and AIQ, plots.

Trained token policies load as routers with ``policy_router.load_router``.
"""

from __future__ import annotations

__all__: list[str] = []
