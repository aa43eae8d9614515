"""Settings, arms and budgets of the estimator study on ``RouterQADiscrete-v0`` (``study_discrete.py``).

Four settings, each built to favour one ReCal stage (``docs/learner.md`` §4), all on the simulated pool:

- ``embedded``: the default six-model Router-R1 pool and the embedded FanOutQA-derived questions;
- ``heterogeneous``: the single-hop questions split into ``easy_qa`` (per-model EM 0.60-0.90) and
  ``hard_qa`` (0.03-0.20), same model ranking: per-dataset normalisation (Stage N) should matter;
- ``conflicting``: the most accurate model (LLaMA-3.1-70B, EM 0.42) is also by far the most expensive
  (price 2.0 $/1M, ~170 µ$ a call) while Mixtral (EM 0.354, ~18 µ$) is nearly as good, and the cost
  component is weighted 0.5: component-wise advantages (Stage C) should matter;
- ``noisy``: the default pool with per-call reply noise η = 0.5 (``SimulatedConfig.reply_noise``):
  variance-aware weighting (Stage V) should matter.

Every setting uses the ``recal`` reward preset in ``"batch"`` reward-state mode (the token learner's
choice) and one fixed seeded 75/25 train/held-out split of its questions (stratified by data source).
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any

from agents.discrete.config import DiscreteConfig
from agents.grpo.estimator_config import RecalConfig
from envs.discrete import RouterQADiscreteEnv
from envs.router_qa import RouterQAEnv
from recal_gym.data import QuestionSet, load_questions, train_test_split
from recal_gym.pools import Pool, build_pool
from recal_gym.pools.options import PoolOptions, SimulatedConfig
from recal_gym.pools.spec import default_pool_spec
from recal_gym.rewards import RewardSpec, make_spec
from recal_gym.rewards.state import RewardState
from recal_gym.types import QARow

__all__ = [
    "ARMS",
    "BUDGETS",
    "SETTINGS",
    "STAGE_OF_SETTING",
    "Budget",
    "Setting",
    "arm_config",
    "build_setting",
    "heldout_ids",
    "make_envs",
    "make_pool",
]

ARMS: dict[str, dict[str, Any]] = {
    "grpo": {"estimator": "grpo"},
    "dr_grpo": {"estimator": "dr_grpo"},
    "rloo": {"estimator": "rloo"},
    "gdpo": {"estimator": "gdpo"},
    "recal": {"estimator": "recal"},
    "no_hierarchy": {"estimator": "recal", "hierarchy": False},
    "no_componentwise": {"estimator": "recal", "componentwise": False},
    "no_variance_weighting": {"estimator": "recal", "variance_weighting": False},
    "batch_norm": {"estimator": "recal", "final_norm": "batch"},
    "running_stats": {"estimator": "recal", "dataset_stats": "running"},
}
"""Arm name → estimator and ``RecalConfig`` overrides. ``batch_norm``: Stage N over the whole batch instead of
per dataset; ``running_stats``: Stage N with running per-dataset moments instead of the batch's."""

SETTINGS: tuple[str, ...] = ("embedded", "heterogeneous", "conflicting", "noisy")
"""Setting names, in report order."""

STAGE_OF_SETTING: dict[str, str] = {
    "embedded": "none in particular (the reference setting)",
    "heterogeneous": "N (per-dataset normalisation)",
    "conflicting": "C (component-wise advantages)",
    "noisy": "V (variance-aware weighting)",
}
"""The ReCal stage each setting is built to favour."""

_EASY_HARD: dict[str, tuple[float, float]] = {
    "Qwen2.5-7B-Instruct": (0.60, 0.03),
    "LLaMA-3.1-8B-Instruct": (0.70, 0.06),
    "LLaMA-3.1-70B-Instruct": (0.90, 0.20),
    "Mistral-7B-Instruct": (0.65, 0.05),
    "Mixtral-8x22B-Instruct": (0.88, 0.18),
    "Gemma-2-27B-Instruct": (0.80, 0.12),
}
"""(EM on ``easy``, EM on ``hard``) per model; the ranking follows Router-R1's PopQA row (the previous study's)."""

_CONFLICT_MODEL = "LLaMA-3.1-70B-Instruct"
_CONFLICT_EM = {"popqa": 0.42, "hotpotqa": 0.34}
_CONFLICT_PRICE = 2.0
_CONFLICT_COST_WEIGHT = 0.5
_NOISE = 0.5
_TEST_FRACTION = 0.25
_SPLIT_SEED = 0


@dataclass(frozen=True, slots=True, kw_only=True)
class Budget:
    """Compute of one study (identical for every estimator arm)."""

    seeds: int
    """Seeds per (setting, arm); seed s sets the policy init, the question order, the call seeds, the action
    sampling and the pool seed."""
    steps: int
    """Update steps per run."""
    questions_per_step: int
    """Questions (groups) per step."""
    group_size: int
    """Trajectories per question G."""
    envs: int
    """Envs stepped in lock step."""
    reference_episodes: int
    """Masked-random episodes on training questions that fill the frozen reference reward state."""
    heldout_cap: int
    """At most this many held-out questions are evaluated (0 = all)."""
    sb3_seeds: int
    """Seeds of each SB3 reference algorithm per setting."""
    sb3_timesteps: int
    """Env steps of each SB3 run."""

    @property
    def episodes(self) -> int:
        """Training episodes of one estimator run."""
        return self.steps * self.questions_per_step * self.group_size


BUDGETS: dict[str, Budget] = {
    "full": Budget(
        seeds=10,
        steps=30,
        questions_per_step=12,
        group_size=8,
        envs=8,
        reference_episodes=500,
        heldout_cap=0,
        sb3_seeds=5,
        sb3_timesteps=8_192,
    ),
    "quick": Budget(
        seeds=2,
        steps=3,
        questions_per_step=4,
        group_size=4,
        envs=4,
        reference_episodes=16,
        heldout_cap=16,
        sb3_seeds=1,
        sb3_timesteps=256,
    ),
}
"""``full`` is the committed study; ``quick`` is the smoke path (``--quick``, used by the test)."""


@dataclass(frozen=True, slots=True, kw_only=True)
class Setting:
    """One study setting: questions, split, pool, reward and pool noise."""

    name: str
    """One of :data:`SETTINGS`."""
    rows: tuple[QARow, ...]
    """Every question of the setting (train and held-out)."""
    train_ids: tuple[str, ...]
    """Training question ids (the learner draws only from these)."""
    test_ids: tuple[str, ...]
    """Held-out question ids, sorted."""
    pool: dict[str, Any]
    """The pool file contents (``recal_gym.pools.load_pool_spec`` mapping)."""
    reward_weights: dict[str, float]
    """Overrides of the ``recal`` preset's component weights."""
    reply_noise: float
    """``SimulatedConfig.reply_noise`` of the pool."""

    def reward_spec(self, update_mode: str = "batch") -> RewardSpec:
        """The ``recal`` preset with the setting's weights; ``"batch"`` for the learner, ``"episode"`` for SB3."""
        return make_spec("recal", update_mode=update_mode, weights=self.reward_weights)

    @property
    def reward(self) -> RewardSpec:
        """The learner's reward spec (``"batch"`` reward-state mode)."""
        return self.reward_spec("batch")

    @property
    def source_names(self) -> tuple[str, ...]:
        """The setting's data sources, sorted."""
        return tuple(sorted({r.data_source for r in self.rows}))

    def describe(self) -> dict[str, Any]:
        """JSON-ready description (for the results file)."""
        return {
            "name": self.name,
            "favours": STAGE_OF_SETTING[self.name],
            "sources": {s: sum(r.data_source == s for r in self.rows) for s in self.source_names},
            "train": len(self.train_ids),
            "heldout": len(self.test_ids),
            "reward_weights": self.reward.weights_dict(),
            "reply_noise": self.reply_noise,
            "pool": self.pool,
        }


def _renamed(row: QARow, source: str) -> QARow:
    return dataclasses.replace(row, question_id=source + "/" + row.question_id.split("/", 1)[1], data_source=source)


def _pool_dict(name: str) -> dict[str, Any]:
    spec = default_pool_spec().to_dict()
    spec["name"] = f"study-discrete-{name}"
    if name == "heterogeneous":
        for model in spec["models"]:
            easy, hard = _EASY_HARD[model["name"]]
            tokens = model["mean_tokens"]["popqa"]
            model["profile_em"] = {**model["profile_em"], "easy": easy, "hard": hard}
            model["mean_tokens"] = {**model["mean_tokens"], "easy": tokens, "hard": tokens}
        spec["dataset_profile_map"] = {**spec["dataset_profile_map"], "easy_qa": "easy", "hard_qa": "hard"}
    if name == "conflicting":
        for model in spec["models"]:
            if model["name"] == _CONFLICT_MODEL:
                model["profile_em"] = {**model["profile_em"], **_CONFLICT_EM}
                model["price_per_1m_output"] = _CONFLICT_PRICE
    return spec


def build_setting(name: str) -> Setting:
    """Build a setting (deterministic: the split seed is fixed).

    Raises:
        KeyError: ``name`` is not one of :data:`SETTINGS`.
    """
    if name not in SETTINGS:
        raise KeyError(f"unknown setting {name!r}; settings: {list(SETTINGS)}")
    rows = list(load_questions("embedded").rows)
    if name == "heterogeneous":
        single = sorted((r for r in rows if r.data_source == "fanoutqa_single"), key=lambda r: r.question_id)
        rows = [_renamed(r, "easy_qa" if i % 2 == 0 else "hard_qa") for i, r in enumerate(single)]
    weights = {"cost": _CONFLICT_COST_WEIGHT} if name == "conflicting" else {}
    train, test = train_test_split(rows, _TEST_FRACTION, seed=_SPLIT_SEED)
    return Setting(
        name=name,
        rows=tuple(rows),
        train_ids=tuple(r.question_id for r in train),
        test_ids=tuple(sorted(r.question_id for r in test)),
        pool=_pool_dict(name),
        reward_weights=weights,
        reply_noise=_NOISE if name == "noisy" else 0.0,
    )


def make_pool(setting: Setting, seed: int) -> Pool:
    """The setting's simulated pool with pool seed ``seed``."""
    return build_pool(setting.pool, PoolOptions(seed=seed, simulated=SimulatedConfig(reply_noise=setting.reply_noise)))


def make_envs(
    setting: Setting, pool: Pool, questions: QuestionSet, count: int, reward_state: RewardState
) -> list[RouterQADiscreteEnv]:
    """``count`` discrete envs sharing one pool, one question set and one reward state."""
    return [
        RouterQADiscreteEnv(
            text_env=RouterQAEnv(questions, pool=pool, reward=setting.reward, reward_state=reward_state)
        )
        for _ in range(count)
    ]


def arm_config(arm: str, seed: int, budget: Budget) -> DiscreteConfig:
    """The learner config of ``arm`` (every arm gets the same budget and learner hyperparameters)."""
    overrides = dict(ARMS[arm])
    estimator = overrides.pop("estimator")
    return DiscreteConfig(
        estimator=estimator,
        recal=RecalConfig(**overrides),
        steps=budget.steps,
        questions_per_step=budget.questions_per_step,
        group_size=budget.group_size,
        seed=seed,
    )


def heldout_ids(setting: Setting, budget: Budget) -> tuple[str, ...]:
    """The evaluated held-out questions: all of them, or the first ``heldout_cap`` of each source in turn."""
    if budget.heldout_cap <= 0 or budget.heldout_cap >= len(setting.test_ids):
        return setting.test_ids
    by_source = {s: [q for q in setting.test_ids if q.startswith(s + "/")] for s in setting.source_names}
    picked: list[str] = []
    while len(picked) < budget.heldout_cap:
        for ids in by_source.values():
            if ids and len(picked) < budget.heldout_cap:
                picked.append(ids.pop(0))
    return tuple(sorted(picked))
