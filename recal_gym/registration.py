"""Registration of the recal-gym environments with Gymnasium (string entry points only)."""

from __future__ import annotations

import gymnasium as gym

__all__ = ["ENV_IDS", "VECTOR_ENTRY_POINTS", "register_envs"]

ENV_IDS: dict[str, str] = {
    "RouterQA-v0": "envs.router_qa:RouterQAEnv",
    "RouterQADiscrete-v0": "envs.discrete:RouterQADiscreteEnv",
}
"""Environment id -> entry point of every environment this package registers."""

VECTOR_ENTRY_POINTS: dict[str, str] = {
    "RouterQA-v0": "envs.vector:RouterQAVectorEnv",
}
"""Environment id -> native vector env (``gym.make_vec(..., vectorization_mode="vector_entry_point")``)."""


def register_envs() -> None:
    """Register every id of :data:`ENV_IDS` that Gymnasium does not hold yet (idempotent)."""
    for env_id, entry_point in ENV_IDS.items():
        if env_id not in gym.registry:
            gym.register(
                id=env_id,
                entry_point=entry_point,
                vector_entry_point=VECTOR_ENTRY_POINTS.get(env_id),
                disable_env_checker=False,
            )
