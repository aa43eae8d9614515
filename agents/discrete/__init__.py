"""Group-sampled policy gradient for ``RouterQADiscrete-v0`` with the token learner's estimators.

Modules: ``config`` (:class:`~agents.discrete.config.DiscreteConfig`), ``policy`` (the masked MLP
categorical policy), ``rollout`` (lock-step episodes, the rollout batch and the one
``info`` → ``RewardBatch`` helper) and ``learner`` (:class:`~agents.discrete.learner.DiscreteLearner`).
The estimators, calibration state and clipped loss are ``agents.grpo``'s (``docs/learner.md``). Importing
this package imports no torch; the modules do.
"""

from __future__ import annotations

__all__: list[str] = []
