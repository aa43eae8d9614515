"""The token-level GRPO/ReCal learner (``docs/learner.md``).

Modules: ``config`` (:class:`TrainConfig` and presets), ``estimator_config`` (:class:`RecalConfig`),
``advantages`` (the estimator registry), ``calibration`` (Stage V/N state), ``losses`` (token loss),
``engines`` (samplers), ``rollout`` (trajectories as tokens), ``distributed`` (gloo data parallel),
``metrics_log`` (metric sinks) and ``learner`` (the orchestration). Importing this package imports no
torch; the math modules do.
"""

from __future__ import annotations

from recal_gym.optional import require_installed

# Every learner module imports torch at module level: say in one line which extra brings it.
require_installed("torch", feature="the learner (agents.grpo)", extra="train")

__all__: list[str] = []
