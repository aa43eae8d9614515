"""Registration of the recal-gym environments with Gymnasium (string entry points only)."""

from __future__ import annotations

import gymnasium as gym

__all__ = ["ENV_IDS", "register_envs"]

ENV_IDS: dict[str, str] = {
    "RouterQA-v0": "envs.router_qa:RouterQAEnv",
}
"""Environment id -> entry point of every environment this package registers."""


def register_envs() -> None:
    """Register every id of :data:`ENV_IDS` that Gymnasium does not hold yet (idempotent)."""
    for env_id, entry_point in ENV_IDS.items():
        if env_id not in gym.registry:
            gym.register(id=env_id, entry_point=entry_point, disable_env_checker=False)
