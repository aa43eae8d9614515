"""Adapters that plug other RL libraries and user code into RouterQA.

- ``trl``: TRL reward functions and the ReCal ``GRPOTrainer`` subclass; ``trl_rollout``: a ``rollout_func``
  that plays whole multi-turn episodes.
- ``verl``: the ``recal`` advantage estimator for verl's registry; ``verl_reward``: a ``compute_score`` reward
  function; ``verl_tools``: the route tool and the ``routerqa_agent`` agent loop; ``verl_episode``: their
  verl-free episode core.
- ``sb3``: stable-baselines3 metrics callback and vector-env factory.
- ``routers``: user routers for ``recal-gym eval --router <module>:<factory>``.

Each adapter imports its library lazily or at module import; importing this package imports none of them.
"""

from __future__ import annotations

__all__: list[str] = []
