"""Models: the config-built tiny policy, offline asset preparation (SmolLM2) and query featurisers."""

from __future__ import annotations

from recal_gym.optional import require_installed

# Every learner module imports torch at module level: say in one line which extra brings it.
require_installed("torch", "transformers", feature="local models (agents.models)", extra="train")

__all__: list[str] = []
