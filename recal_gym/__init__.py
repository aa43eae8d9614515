"""recal-gym: Gymnasium environments for training LLM routers with decomposed, calibrated rewards.

Importing this package registers the environments with Gymnasium (string entry points, so no
environment code is imported until ``gym.make``)::

    >>> import gymnasium as gym
    >>> import recal_gym
    >>> env = gym.make("RouterQA-v0")

``recal_gym`` is the one import the common paths need. Its public names are loaded lazily (module
``__getattr__``), so ``import recal_gym`` stays cheap and imports no environment code:

- environments: :class:`RouterQAEnv`, :class:`RouterQADiscreteEnv`, :class:`RouterQAVectorEnv`, and
  :class:`RandomAgent` (a scripted random router whose turns are well formed);
- pools: :class:`PoolOptions`;
- rewards: :class:`RewardSpec`, :func:`make_spec`, :class:`RewardState`, :func:`score_episode`,
  :func:`rescore` (``docs/rewards.md``).

``recal_gym`` never imports ``torch`` or ``agents``.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

from recal_gym.registration import register_envs

if TYPE_CHECKING:
    from envs.discrete import RouterQADiscreteEnv
    from envs.random_agent import RandomAgent
    from envs.router_qa import RouterQAEnv
    from envs.vector import RouterQAVectorEnv
    from recal_gym.pools.options import PoolOptions
    from recal_gym.rewards.presets import make_spec
    from recal_gym.rewards.scoring import rescore, score_episode
    from recal_gym.rewards.spec import RewardSpec
    from recal_gym.rewards.state import RewardState

__all__ = [
    "PoolOptions",
    "RandomAgent",
    "RewardSpec",
    "RewardState",
    "RouterQADiscreteEnv",
    "RouterQAEnv",
    "RouterQAVectorEnv",
    "__version__",
    "make_spec",
    "register_envs",
    "rescore",
    "score_episode",
]
__version__ = "0.1.0"

_LAZY: dict[str, str] = {
    "RouterQAEnv": "envs.router_qa",
    "RouterQADiscreteEnv": "envs.discrete",
    "RouterQAVectorEnv": "envs.vector",
    "RandomAgent": "envs.random_agent",
    "PoolOptions": "recal_gym.pools.options",
    "RewardSpec": "recal_gym.rewards.spec",
    "make_spec": "recal_gym.rewards.presets",
    "RewardState": "recal_gym.rewards.state",
    "score_episode": "recal_gym.rewards.scoring",
    "rescore": "recal_gym.rewards.scoring",
}
"""Public name -> the module that defines it (imported on first attribute access)."""


def __getattr__(name: str) -> Any:
    """Load a public name of :data:`__all__` from its module on first access (PEP 562)."""
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'recal_gym' has no attribute {name!r}")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value  # later accesses skip __getattr__
    return value


def __dir__() -> list[str]:
    """Module attributes plus the lazily loaded public names."""
    return sorted(set(globals()) | set(_LAZY))


register_envs()
