"""Adapters that plug other RL libraries into RouterQA: TRL (``trl``), verl (``verl``), stable-baselines3 (``sb3``).

Each adapter imports its library lazily or at module import; importing this package imports none of them.
"""

from __future__ import annotations

__all__: list[str] = []
