"""recal-gym agents: the ReCal/GRPO learner, baseline routers, evaluation and plug-in adapters.

Importing ``agents`` is cheap: torch and transformers are imported by the modules that need them
(``agents.grpo.learner``, ``agents.grpo.rollout``, ...), never by this package's ``__init__``.
"""

from __future__ import annotations

__all__: list[str] = []
