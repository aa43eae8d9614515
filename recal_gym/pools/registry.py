"""The registry of backend names -> entry points (``"module:Class"``)."""

from __future__ import annotations

from recal_gym.errors import InvalidConfig

__all__ = ["BACKEND_ENTRY_POINTS", "register_backend"]

BACKEND_ENTRY_POINTS: dict[str, str] = {
    "simulated": "recal_gym.pools.simulated:SimulatedBackend",
    "openai": "recal_gym.pools.openai:OpenAIBackend",
    "vllm": "recal_gym.pools.vllm:VLLMBackend",
    "transformers": "recal_gym.pools.hf:TransformersBackend",
    "replay": "recal_gym.pools.replay:ReplayBackend",
}
"""Backend name -> ``"module:Class"`` whose ``from_spec(spec, models, options)`` builds it.

Entry points are strings so that heavy optional dependencies (httpx, torch, vLLM) are imported only
when a pool uses that backend.
"""


def register_backend(name: str, entry_point: str) -> None:
    """Register a third-party backend under ``name``.

    Raises:
        InvalidConfig: if ``name`` is already registered or the entry point is not ``module:attr``.
    """
    if name in BACKEND_ENTRY_POINTS:
        raise InvalidConfig(f"backend {name!r} is already registered ({BACKEND_ENTRY_POINTS[name]!r})")
    if entry_point.count(":") != 1:
        raise InvalidConfig(f"backend entry point must be 'module:attr', got {entry_point!r}")
    BACKEND_ENTRY_POINTS[name] = entry_point
