"""Evaluation: baseline routers, the evaluation harness, Pareto frontier and AIQ, plots."""

from __future__ import annotations

__all__: list[str] = []
