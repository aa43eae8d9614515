"""Training configuration of the ReCal/GRPO learner and its named presets (``docs/learner.md`` §10.2).

:class:`TrainConfig` is one frozen dataclass; :data:`PRESETS` holds the three documented presets
(``tiny``, ``smollm2-cpu``, ``qwen2.5-3b-gpu``). :func:`load_config` starts from a preset, applies a
YAML/JSON file and then CLI overrides, and validates once. Derived values (the estimator and loss
configs, the batch size) are properties. This module imports neither torch nor transformers.
"""

from __future__ import annotations

import dataclasses
import json
import math
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal, get_args

from agents.grpo.estimator_config import DatasetStats, EstimatorName, FinalNorm, RecalConfig
from recal_gym.errors import InvalidConfig, UnknownName, close_matches_hint

__all__ = ["PRESETS", "EngineName", "TrainConfig", "load_config", "preset"]

EngineName = Literal["hf", "vllm"]
"""Rollout engines: HF transformers forward with a KV cache, or vLLM."""

_LossAgg = Literal["token-mean", "seq-mean-token-mean", "seq-mean-token-sum-norm"]
_KL = Literal["k1", "k2", "k3"]

_POSITIVE_INTS = (
    "questions_per_step",
    "group_size",
    "steps",
    "max_new_tokens",
    "max_obs_tokens",
    "max_start_length",
    "minibatches",
    "epochs",
    "micro_batch_size",
    "warmstart_batch",
)
_NON_NEGATIVE_INTS = ("max_routed_turns", "warmstart_steps", "checkpoint_every", "lora_rank", "seed", "pool_seed")


@dataclass(frozen=True, slots=True, kw_only=True)
class TrainConfig:
    """Everything one training run needs (``docs/learner.md`` §10; names follow §11).

    Raises:
        InvalidConfig: a field is outside its range (the message names field, value and rule).
    """

    name: str = "custom"
    """Label of the run (the preset name for presets)."""
    policy: str = "tiny"
    """``"tiny"`` (config-built tiny Llama, ``agents.models.tiny_model``), ``"smollm2"`` (the offline asset) or a
    model directory."""
    engine: EngineName = "hf"
    """Rollout engine."""
    dataset: str = "embedded"
    """Question source passed to ``RouterQAEnv`` (``"embedded"``, ``"embedded:<name>"`` or a path)."""
    pool: str = ""
    """Candidate pool: ``""`` = the offline default (six simulated Router-R1 models), else a profile
    name or a pool file (``recal_gym.pools.spec``)."""
    reward: str | dict[str, Any] = "recal"
    """Reward spec of the env: a preset (``"recal"``, ``"router-r1"``), a ``.yaml``/``.json`` spec file or a
    spec mapping (``--set 'reward={"preset": "recal", "weights": {"cost": 0.5}}'``); run in ``"batch"``
    reward-state update mode. Validated when the config is built, before any model loads."""
    pool_seed: int = 0
    """Seed of the simulated candidate pool."""
    questions_per_step: int = 4
    """Questions per rollout batch (global, over all ranks)."""
    group_size: int = 8
    """Rollouts per question G (≥ 2: every estimator is group-relative)."""
    steps: int = 50
    """RL steps."""
    lr: float = 1e-3
    """AdamW learning rate (constant, no warmup)."""
    weight_decay: float = 0.0
    """AdamW weight decay."""
    max_grad_norm: float = 1.0
    """Gradient-norm clip."""
    kl_coef: float = 0.0
    """β of the KL term; 0 loads no reference model."""
    kl_estimator: _KL = "k3"
    """KL estimator in the loss."""
    entropy_coef: float = 0.0
    """c_H of the entropy bonus."""
    clip_low: float = 0.2
    """ε_low."""
    clip_high: float = 0.28
    """ε_high (clip-higher)."""
    temperature: float = 1.0
    """Sampling temperature T (log-probs use the same T)."""
    top_p: float = 1.0
    """Nucleus sampling mass; 1.0 in training presets."""
    top_k: int = 0
    """Top-k sampling; 0 disables it."""
    max_routed_turns: int = 1
    """Routing turns before the final turn."""
    max_new_tokens: int = 24
    """Sampled tokens per turn (also the env's ``max_turn_tokens``)."""
    max_obs_tokens: int = 64
    """Cap of one information splice (the env's ``max_obs_length``)."""
    max_start_length: int = 4096
    """Prompt cap of the env, in policy tokens."""
    minibatches: int = 1
    """Optimiser steps per rollout batch and epoch."""
    epochs: int = 1
    """Passes over each rollout batch μ."""
    micro_batch_size: int = 8
    """Trajectories per forward/backward (gradient accumulation; the loss denominator is global)."""
    estimator: EstimatorName = "recal"
    """Advantage estimator (``agents.grpo.advantages`` registry)."""
    dataset_stats: DatasetStats = "running"
    """Stage N statistics of ``recal``."""
    hierarchy: bool = True
    """Stage H switch of ``recal`` (``RecalConfig.hierarchy``; ablation: ``False``)."""
    componentwise: bool = True
    """Stage C switch of ``recal`` (``RecalConfig.componentwise``; ablation: ``False``)."""
    variance_weighting: bool = True
    """Stage V switch of ``recal`` (``RecalConfig.variance_weighting``; ablation: ``False``)."""
    final_norm: FinalNorm = "per_dataset"
    """Stage N mode of ``recal`` (``RecalConfig.final_norm``; ablation: ``"batch"``)."""
    answer_threshold: float | None = None
    """Learner-side τ override of the auxiliary gates; ``None`` = the env's."""
    loss_agg: _LossAgg = "token-mean"
    """Loss aggregation mode."""
    warmstart_steps: int = 0
    """Supervised warm-start steps before RL (0 disables it, ``docs/learner.md`` §10.3)."""
    warmstart_lr: float = 3e-3
    """Learning rate of the warm start."""
    warmstart_batch: int = 16
    """Demonstrations per warm-start step."""
    warmstart_direct_share: float = 0.5
    """Share of demonstrations that answer without routing."""
    lora_rank: int = 0
    """LoRA rank (0 = full fine-tuning; > 0 needs ``peft``)."""
    checkpoint_every: int = 0
    """Save a checkpoint every this many steps (0 = only at the end)."""
    init_checkpoint: str = ""
    """Directory of a learner checkpoint whose *model weights* start the run (the warm start is then
    skipped; optimiser, calibration and generators start fresh). ``""`` = none. Lets every estimator
    of a study start from the same warm-started weights (``docs/learner.md`` §10.3)."""
    seed: int = 0
    """Seed of the torch generator (questions, sampling) and the tiny model's weights."""

    def __post_init__(self) -> None:
        """Validate every field; never mutate."""
        for name in _POSITIVE_INTS + _NON_NEGATIVE_INTS:
            value = getattr(self, name)
            low = 1 if name in _POSITIVE_INTS else 0
            if isinstance(value, bool) or not isinstance(value, int) or value < low:
                raise InvalidConfig(f"TrainConfig.{name}={value!r} must be an int >= {low}.")
        if self.group_size < 2:
            raise InvalidConfig(
                f"TrainConfig.group_size={self.group_size!r} must be >= 2: every estimator is group-relative."
            )
        for name in ("lr", "warmstart_lr", "temperature", "max_grad_norm"):
            value = getattr(self, name)
            if (
                isinstance(value, bool)
                or not isinstance(value, int | float)
                or not (math.isfinite(value) and value > 0)
            ):
                raise InvalidConfig(f"TrainConfig.{name}={value!r} must be a finite number > 0.")
        self._check_ranges()
        self._check_literals()

    def _check_ranges(self) -> None:
        if not 0.0 < self.top_p <= 1.0:
            raise InvalidConfig(f"TrainConfig.top_p={self.top_p!r} must lie in (0, 1].")
        if not 0.0 <= self.warmstart_direct_share <= 1.0:
            raise InvalidConfig(
                f"TrainConfig.warmstart_direct_share={self.warmstart_direct_share!r} must lie in [0, 1]."
            )
        for name in ("weight_decay", "kl_coef", "entropy_coef"):
            if not (math.isfinite(getattr(self, name)) and getattr(self, name) >= 0.0):
                raise InvalidConfig(f"TrainConfig.{name}={getattr(self, name)!r} must be a finite number >= 0.")
        if not self.policy or not isinstance(self.policy, str):
            raise InvalidConfig(f"TrainConfig.policy={self.policy!r} must be 'tiny' or a model directory.")
        if not 0.0 <= self.clip_low < 1.0 or not self.clip_high >= 0.0:
            raise InvalidConfig(
                f"TrainConfig clip_low={self.clip_low!r} must lie in [0, 1) and clip_high={self.clip_high!r} be >= 0."
            )
        self.recal_config  # noqa: B018 - builds and validates the estimator config (no torch import)
        self.reward_spec  # noqa: B018 - validates the reward (a preset, a spec file or a mapping) before any model loads

    def _check_literals(self) -> None:
        for name, alias in (
            ("engine", EngineName),
            ("estimator", EstimatorName),
            ("dataset_stats", DatasetStats),
            ("loss_agg", _LossAgg),
            ("kl_estimator", _KL),
        ):
            if getattr(self, name) not in get_args(alias):
                raise InvalidConfig(
                    f"TrainConfig.{name}={getattr(self, name)!r} is not one of {list(get_args(alias))}."
                )

    @property
    def reward_spec(self) -> Any:
        """The env's :class:`~recal_gym.rewards.spec.RewardSpec` (the learner runs it in batch mode).

        Raises:
            InvalidConfig: ``reward`` is not a preset, a readable spec file or a valid spec mapping (the message
                names ``TrainConfig.reward``).
            UnknownComponent: the spec names an unknown component.
        """
        from recal_gym.errors import UnknownName
        from recal_gym.rewards import make_spec

        try:
            return make_spec(self.reward)
        except (InvalidConfig, UnknownName) as exc:
            raise type(exc)(f"TrainConfig.reward={self.reward!r}: {exc}") from None

    @property
    def batch_size(self) -> int:
        """Trajectories per rollout batch N = questions × G."""
        return self.questions_per_step * self.group_size

    @property
    def l_norm(self) -> float:
        """L_norm of ``seq-mean-token-sum-norm``: most policy tokens one trajectory can hold."""
        return float((self.max_routed_turns + 1) * self.max_new_tokens)

    @property
    def recal_config(self) -> RecalConfig:
        """The estimator's :class:`~agents.grpo.estimator_config.RecalConfig`."""
        return RecalConfig(
            dataset_stats=self.dataset_stats,
            answer_threshold=self.answer_threshold,
            hierarchy=self.hierarchy,
            componentwise=self.componentwise,
            variance_weighting=self.variance_weighting,
            final_norm=self.final_norm,
        )

    @property
    def loss_config(self) -> Any:
        """The :class:`~agents.grpo.losses.LossConfig` (imported lazily: it pulls in torch)."""
        from agents.grpo.losses import LossConfig

        return LossConfig(
            clip_low=self.clip_low,
            clip_high=self.clip_high,
            kl_coef=self.kl_coef,
            kl_estimator=self.kl_estimator,
            entropy_coef=self.entropy_coef,
            loss_agg=self.loss_agg,
            l_norm=self.l_norm if self.loss_agg == "seq-mean-token-sum-norm" else None,
        )

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready field dict (``TrainConfig(**d)`` rebuilds an equal config)."""
        return dataclasses.asdict(self)


PRESETS: dict[str, TrainConfig] = {
    "tiny": TrainConfig(
        name="tiny",
        policy="tiny",
        questions_per_step=4,
        group_size=8,
        steps=50,
        lr=1e-3,
        max_routed_turns=1,
        max_new_tokens=24,
        max_obs_tokens=64,
        dataset_stats="running",
        micro_batch_size=32,
        warmstart_steps=50,
        warmstart_lr=1e-2,
    ),
    "smollm2-cpu": TrainConfig(
        name="smollm2-cpu",
        policy="smollm2",
        questions_per_step=2,
        group_size=4,
        steps=20,
        lr=1e-5,
        max_routed_turns=1,
        max_new_tokens=64,
        max_obs_tokens=128,
        max_start_length=2048,
        micro_batch_size=4,
        dataset_stats="running",
        warmstart_steps=10,
        warmstart_lr=1e-5,
        warmstart_batch=8,
    ),
    "qwen2.5-3b-gpu": TrainConfig(
        name="qwen2.5-3b-gpu",
        policy="Qwen/Qwen2.5-3B-Instruct",
        engine="vllm",
        questions_per_step=64,
        group_size=8,
        steps=225,
        lr=1e-6,
        kl_coef=0.001,
        max_routed_turns=4,
        max_new_tokens=1024,
        max_obs_tokens=600,
        max_start_length=2048,
        minibatches=2,
        micro_batch_size=8,
        dataset_stats="batch",
        warmstart_steps=0,
    ),
}
"""The documented presets (``docs/learner.md`` §10.2); names match ``recal-gym train --preset``."""


def preset(name: str) -> TrainConfig:
    """Return the preset ``name``.

    Raises:
        UnknownName: ``name`` is not a preset (the message lists them and close matches).
    """
    if name not in PRESETS:
        raise UnknownName(f"unknown preset {name!r}; presets: {sorted(PRESETS)}.{close_matches_hint(name, PRESETS)}")
    return PRESETS[name]


def _read_file(path: Path) -> dict[str, Any]:
    text = path.read_text()
    if path.suffix in (".yaml", ".yml"):
        import yaml

        try:
            data = yaml.safe_load(text)
        except yaml.YAMLError as exc:
            raise InvalidConfig(f"config file {str(path)!r} is not valid YAML ({' '.join(str(exc).split())})") from None
    else:
        try:
            data = json.loads(text)
        except (ValueError, RecursionError) as exc:  # JSONDecodeError, too-deep nesting
            raise InvalidConfig(f"config file {str(path)!r} is not valid JSON ({exc})") from None
    if not isinstance(data, Mapping):
        raise InvalidConfig(
            f"config file {str(path)!r} must hold a mapping of TrainConfig fields, got {type(data).__name__}"
        )
    return dict(data)


def load_config(
    preset_name: str = "tiny", *, file: str | Path | None = None, overrides: Mapping[str, Any] | None = None
) -> TrainConfig:
    """Build a config: the preset, then the file's fields, then ``overrides`` (``None`` values skipped).

    Args:
        preset_name: Starting preset.
        file: A ``.yaml``/``.yml`` or ``.json`` file of TrainConfig fields (may hold ``preset``).
        overrides: Field → value (e.g. from CLI flags).

    Raises:
        InvalidConfig: unknown field names or invalid values.
        UnknownName: unknown preset.
    """
    changes: dict[str, Any] = {}
    if file is not None:
        changes = _read_file(Path(file))
        preset_name = str(changes.pop("preset", preset_name))
    changes.update({k: v for k, v in (overrides or {}).items() if v is not None})
    known = {f.name for f in dataclasses.fields(TrainConfig)}
    unknown = sorted(set(changes) - known)
    if unknown:
        hint = close_matches_hint(unknown[0], sorted(known))
        raise InvalidConfig(f"unknown TrainConfig field(s) {unknown}.{hint}")
    return dataclasses.replace(preset(preset_name), **changes)
