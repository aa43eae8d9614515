"""verl custom reward function for RouterQA (``custom_reward_function.path=examples/verl/routerqa_reward.py``).

verl loads this file and calls ``compute_score(data_source, solution_str, ground_truth, extra_info)`` per response;
it returns ``{"score": ..., "raw_<component>": ..., ...}`` (``agents.adapters.verl_reward``). The env settings
must match the route tool's (``examples/verl/route_tool.yaml``).
"""

from __future__ import annotations

from agents.adapters.verl_episode import RouterQAEnvConfig
from agents.adapters.verl_reward import RouterQAReward

__all__ = ["compute_score"]

compute_score = RouterQAReward(RouterQAEnvConfig(dataset="embedded", reward="recal", max_routed_turns=4))
