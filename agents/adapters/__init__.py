"""Adapters that plug other RL libraries into RouterQA: TRL (``trl``), verl (``verl``), stable-baselines3 (``sb3``).

``sb3_router`` saves SB3 models trained on ``RouterQADiscrete-v0`` with what they need to run as text
routers (``recal-gym eval --router sb3:<zip>``).

Each adapter imports its library lazily or at module import; importing this package imports none of them.
"""

from __future__ import annotations

__all__: list[str] = []
