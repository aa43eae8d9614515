"""The reward pipeline: components, gates, specs, state, scoring and reward batches.

Modules: ``answer_metrics`` (SQuAD normalisation, EM, F1, containment), ``format_rules`` (F1-F9),
``components`` (the component registry), ``view`` (the shared :class:`EpisodeView`), ``gates`` (gates
as data), ``spec`` (:class:`RewardSpec`, :class:`ComponentSpec`, the fold), ``presets`` (presets,
overrides, spec files), ``state`` (:class:`RewardState`), ``scoring`` (:class:`EpisodeScorer`,
:func:`score_episode`, :func:`rescore`) and ``batch`` (:func:`reward_arrays_from_infos`). See
``docs/rewards.md``.
"""

from __future__ import annotations

from recal_gym.rewards.batch import RewardArrays, reward_arrays_from_infos, reward_arrays_from_raw
from recal_gym.rewards.components import (
    BUILTIN_COMPONENTS,
    COMPONENT_REGISTRY,
    ComponentDef,
    ComponentState,
    EpisodeView,
    get_component,
    register_component,
    unregister_component,
)
from recal_gym.rewards.gates import GATE_PRESETS, Gate, parse_gate, register_gate, unregister_gate
from recal_gym.rewards.presets import PRESETS, load_spec, make_spec, recal_spec, router_r1_spec
from recal_gym.rewards.scoring import EpisodeScore, EpisodeScorer, rescore, score_episode
from recal_gym.rewards.spec import (
    BalanceConfig,
    ComponentSpec,
    CostConfig,
    RewardSpec,
    compute_gates,
    fold_reward,
    fold_rewards,
    gate_components,
)
from recal_gym.rewards.state import BalanceState, CostNormalizer, RewardState

__all__ = [
    "BUILTIN_COMPONENTS",
    "COMPONENT_REGISTRY",
    "GATE_PRESETS",
    "PRESETS",
    "BalanceConfig",
    "BalanceState",
    "ComponentDef",
    "ComponentSpec",
    "ComponentState",
    "CostConfig",
    "CostNormalizer",
    "EpisodeScore",
    "EpisodeScorer",
    "EpisodeView",
    "Gate",
    "RewardArrays",
    "RewardSpec",
    "RewardState",
    "compute_gates",
    "fold_reward",
    "fold_rewards",
    "gate_components",
    "get_component",
    "load_spec",
    "make_spec",
    "parse_gate",
    "recal_spec",
    "register_component",
    "register_gate",
    "rescore",
    "reward_arrays_from_infos",
    "reward_arrays_from_raw",
    "router_r1_spec",
    "score_episode",
    "unregister_component",
    "unregister_gate",
]
