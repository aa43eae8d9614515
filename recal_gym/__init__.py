"""recal-gym: Gymnasium environments for training LLM routers with decomposed, calibrated rewards.

Importing this package registers the environments with Gymnasium (string entry points, so no
environment code is imported until ``gym.make``)::

    >>> import gymnasium as gym
    >>> import recal_gym
    >>> env = gym.make("RouterQA-v0")

``recal_gym`` never imports ``torch`` or ``agents``.
"""

from __future__ import annotations

from recal_gym.registration import register_envs

__all__ = ["__version__", "register_envs"]
__version__ = "0.1.0"

register_envs()
