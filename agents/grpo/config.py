"""Training configuration of the ReCal/GRPO learner and its named presets (``docs/learner.md`` §10.2).

:class:`TrainConfig` is one frozen dataclass; :data:`PRESETS` holds the three documented presets
(``tiny``, ``smollm2-cpu``, ``qwen2.5-3b-gpu``). The estimator's and the loss's hyperparameters are
nested frozen dataclasses, ``TrainConfig.recal`` (:class:`~agents.grpo.estimator_config.RecalConfig`)
and ``TrainConfig.loss`` (:class:`~agents.grpo.loss_config.LossConfig`), so every one of their fields
is settable.

:func:`load_config` starts from a preset, applies a YAML/JSON file and then overrides, and validates
once. Override keys are field names, or ``section.field`` for a nested field (``recal.w_min``,
``loss.dual_clip``); in a file a section may also be a mapping (``recal: {w_min: 0.2}``), merged into
the preset's section. Derived values (the batch size, L_norm) are properties. This module imports
neither torch nor transformers.
"""

from __future__ import annotations

import dataclasses
import json
import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal, get_args

from agents.grpo.estimator_config import EstimatorName, RecalConfig
from agents.grpo.loss_config import LossConfig
from recal_gym.errors import InvalidConfig, UnknownName, close_matches_hint
from recal_gym.prompt import PromptVariant

__all__ = [
    "PRESETS",
    "SECTIONS",
    "EngineName",
    "KVCacheMode",
    "LogitsMode",
    "PrecisionName",
    "TrainConfig",
    "apply_overrides",
    "load_config",
    "preset",
]

EngineName = Literal["hf", "vllm"]
"""Rollout engines: HF transformers forward with a KV cache, or vLLM."""
PrecisionName = Literal["fp32", "bf16", "auto"]
"""``fp32``; ``bf16`` autocast over fp32 master weights; ``auto`` = bf16 iff the CPU has native bf16."""
KVCacheMode = Literal["preallocated", "dynamic"]
"""KV cache of the HF sampling loop: buffers sized for the new tokens, or transformers' growing cache."""
LogitsMode = Literal["needed", "all"]
"""Where the output head runs: only where a log-prob is used (exact), or at every position."""

SECTIONS: dict[str, Any] = {"recal": RecalConfig, "loss": LossConfig}
"""Nested sections of :class:`TrainConfig` and their dataclasses."""

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
    "warmstart_probe_questions",
)
_NON_NEGATIVE_INTS = (
    "max_routed_turns",
    "warmstart_steps",
    "warmstart_min_steps",
    "warmstart_probe_every",
    "checkpoint_every",
    "lora_rank",
    "seed",
    "pool_seed",
    "split_seed",
    "dynamic_sampling_rounds",
)


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
    reply_noise: float = 0.0
    """η of the simulated pool (``SimulatedConfig.reply_noise``): with probability η a routed call's
    correctness is a fresh draw keyed on the episode's ``call_seed`` and turn instead of the fixed
    (question, model) outcome, so G rollouts picking one model can still differ (marginals unchanged).
    Every training trajectory gets its own ``call_seed`` (a counter saved in checkpoints). 0 = off."""
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
    estimator: str = "recal"
    """Advantage estimator: a built-in (``grpo``, ``dr_grpo``, ``rloo``, ``gdpo``, ``recal``) or any name
    added with ``agents.grpo.advantages.register_estimator`` (checked against the registry)."""
    recal: RecalConfig = field(default_factory=lambda: RecalConfig(dataset_stats="running"))
    """Estimator hyperparameters (every field settable as ``recal.<field>``; the scalar estimators read
    only ``eps``, ``component_weights`` and ``drop_zero_variance_groups``)."""
    loss: LossConfig = field(default_factory=LossConfig)
    """Policy-loss hyperparameters (``loss.<field>``). ``loss.kl_coef`` > 0 loads a frozen reference
    model. ``loss.l_norm`` None means :attr:`l_norm`'s trajectory bound for ``seq-mean-token-sum-norm``."""
    warmstart_steps: int = 0
    """Supervised warm-start steps before RL (0 disables it, ``docs/learner.md`` §10.3)."""
    warmstart_lr: float = 3e-3
    """Learning rate of the warm start."""
    warmstart_batch: int = 16
    """Demonstrations per warm-start step."""
    warmstart_direct_share: float = 0.5
    """Share of demonstrations that answer without routing (the routed ones spread evenly over the
    listed models, so the cloned model choice starts near uniform)."""
    warmstart_min_steps: int = 0
    """Warm-start steps always taken before the stop criteria are checked."""
    warmstart_probe_every: int = 0
    """Probe the policy every this many warm-start steps and stop once every set criterion holds;
    0 = no probes (exactly ``warmstart_steps`` steps). ``warmstart_steps`` is the budget either way."""
    warmstart_probe_questions: int = 16
    """Training questions the probe samples one rollout each for (fixed, seeded by ``seed``)."""
    warmstart_max_format_error: float | None = None
    """Stop criterion: probe format-error rate at most this; ``None`` = not checked."""
    warmstart_min_related: float | None = None
    """Stop criterion: share of probe routes whose query asks the question at least this (and some
    probe must route); ``None`` = not checked."""
    warmstart_min_choice_entropy: float | None = None
    """Stop criterion: normalised entropy of the probe's model choices at least this (1 = uniform
    over the listed models); ``None`` = not checked."""
    heldout_fraction: float = 0.0
    """Share of each dataset's questions held out from training (``recal_gym.data.sampling
    .train_test_split`` with ``split_seed``); 0 = train on every question."""
    split_seed: int = 0
    """Seed of the train/held-out split."""
    dynamic_sampling: bool = False
    """DAPO-style dynamic sampling (arXiv 2503.14476): replace groups whose rewards do not vary (no
    gradient) by groups of fresh questions, up to ``dynamic_sampling_rounds`` extra rollout rounds;
    short batches are topped up with zero-variance groups so the batch size stays fixed."""
    dynamic_sampling_rounds: int = 2
    """Extra rollout rounds per step at most (each rolls out only the missing groups)."""
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
    precision: PrecisionName = "fp32"
    """Matmul precision of every forward (sampling, update, warm start): ``bf16`` autocast keeps fp32
    master weights, gradients and AdamW state (``agents.grpo.precision``); ``auto`` picks bf16 only on
    CPUs with native bf16 instructions (the CPU presets' choice)."""
    kv_cache: KVCacheMode = "preallocated"
    """KV cache of the ``hf`` sampling loop (``agents.grpo.kv_cache``); ``dynamic`` is the slower
    transformers cache, same samples."""
    logits: LogitsMode = "needed"
    """``needed`` runs the output head only at loss-mask positions (and each prefill row's last one);
    ``all`` builds full-vocabulary logits everywhere (same values, slower; for benchmarks)."""
    prompt_variant: PromptVariant = "qwen"
    """Router prompt wording of the env (``recal_gym.prompt``); ``compact`` (the CPU presets) is a
    documented deviation from Router-R1's prompt with ~25 % fewer tokens."""

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
        for name in ("warmstart_max_format_error", "warmstart_min_related", "warmstart_min_choice_entropy"):
            value = getattr(self, name)
            bad = isinstance(value, bool) or not isinstance(value, int | float) or not 0 <= value <= 1
            if value is not None and bad:
                raise InvalidConfig(f"TrainConfig.{name}={value!r} must be None or a number in [0, 1].")
        if not (isinstance(self.heldout_fraction, int | float) and 0.0 <= self.heldout_fraction < 1.0):
            raise InvalidConfig(f"TrainConfig.heldout_fraction={self.heldout_fraction!r} must lie in [0, 1).")
        if isinstance(self.reply_noise, bool) or not isinstance(self.reply_noise, int | float):
            raise InvalidConfig(f"TrainConfig.reply_noise={self.reply_noise!r} must be a number in [0, 1].")
        if not 0.0 <= self.reply_noise <= 1.0:
            raise InvalidConfig(f"TrainConfig.reply_noise={self.reply_noise!r} must be a number in [0, 1].")
        if not isinstance(self.dynamic_sampling, bool):
            raise InvalidConfig(f"TrainConfig.dynamic_sampling={self.dynamic_sampling!r} must be a bool.")
        if not (math.isfinite(self.weight_decay) and self.weight_decay >= 0.0):
            raise InvalidConfig(f"TrainConfig.weight_decay={self.weight_decay!r} must be a finite number >= 0.")
        if not self.policy or not isinstance(self.policy, str):
            raise InvalidConfig(f"TrainConfig.policy={self.policy!r} must be 'tiny' or a model directory.")
        for name, kind in SECTIONS.items():
            if not isinstance(getattr(self, name), kind):
                raise InvalidConfig(
                    f"TrainConfig.{name}={getattr(self, name)!r} must be a {kind.__name__} "
                    f"(set single fields as {name}.<field>)."
                )
        self.reward_spec  # noqa: B018 - validates the reward (a preset, a spec file or a mapping) before any model loads

    def _check_literals(self) -> None:
        for name, alias in (
            ("engine", EngineName),
            ("precision", PrecisionName),
            ("kv_cache", KVCacheMode),
            ("logits", LogitsMode),
            ("prompt_variant", PromptVariant),
        ):
            if getattr(self, name) not in get_args(alias):
                raise InvalidConfig(
                    f"TrainConfig.{name}={getattr(self, name)!r} is not one of {list(get_args(alias))}."
                )
        _check_estimator(self.estimator)

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
        """L_norm of ``seq-mean-token-sum-norm``.

        ``loss.l_norm``, else the most policy tokens one trajectory can hold,
        ``(max_routed_turns + 1) · max_new_tokens``.
        """
        if self.loss.l_norm is not None:
            return float(self.loss.l_norm)
        return float((self.max_routed_turns + 1) * self.max_new_tokens)

    @property
    def loss_config(self) -> LossConfig:
        """``loss`` with L_norm resolved (what the learner passes to the loss)."""
        l_norm = self.l_norm if self.loss.loss_agg == "seq-mean-token-sum-norm" else None
        return dataclasses.replace(self.loss, l_norm=l_norm)

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready dict with the sections as nested dicts (:meth:`from_dict` rebuilds an equal config)."""
        out = {f.name: getattr(self, f.name) for f in dataclasses.fields(self)}
        for name in SECTIONS:
            section = out[name]
            out[name] = {f.name: getattr(section, f.name) for f in dataclasses.fields(section)}
            if out[name].get("component_weights") is not None:
                out[name]["component_weights"] = dict(out[name]["component_weights"])
        return out

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> TrainConfig:
        """Rebuild a config from :meth:`to_dict` output (sections as mappings).

        Raises:
            InvalidConfig: unknown fields or invalid values.
        """
        return apply_overrides(TrainConfig(), data)


def _check_estimator(name: object) -> None:
    """Built-ins are always registered; other names are checked against the live registry (torch import)."""
    if name in get_args(EstimatorName):
        return
    if not isinstance(name, str) or not name:
        raise InvalidConfig(f"TrainConfig.estimator={name!r} must be a registered estimator name.")
    from agents.grpo.advantages import ESTIMATORS

    if name not in ESTIMATORS:
        raise InvalidConfig(
            f"TrainConfig.estimator={name!r} is not registered; registered: {sorted(ESTIMATORS)} "
            f"(add one with agents.grpo.advantages.register_estimator).{close_matches_hint(name, ESTIMATORS)}"
        )


def _field_names() -> list[str]:
    names = [f.name for f in dataclasses.fields(TrainConfig)]
    for section, kind in SECTIONS.items():
        names += [f"{section}.{f.name}" for f in dataclasses.fields(kind)]
    return names


def _unknown(key: str) -> InvalidConfig:
    return InvalidConfig(f"unknown TrainConfig field {key!r}.{close_matches_hint(key, _field_names())}")


def apply_overrides(config: TrainConfig, overrides: Mapping[str, Any]) -> TrainConfig:
    """Return ``config`` with ``overrides`` applied and the result validated.

    Args:
        config: The starting config.
        overrides: ``field -> value``; ``"section.field" -> value`` for a nested field; or
            ``section -> mapping`` (merged into that section).

    Raises:
        InvalidConfig: an unknown field (with close matches) or an invalid value.
    """
    top: dict[str, Any] = {}
    nested: dict[str, dict[str, Any]] = {name: {} for name in SECTIONS}
    known = {f.name for f in dataclasses.fields(TrainConfig)}
    for key, value in overrides.items():
        head, dot, tail = str(key).partition(".")
        if dot:
            if head not in SECTIONS:
                raise _unknown(str(key))
            nested[head][tail] = value
        elif key in SECTIONS and isinstance(value, Mapping):
            nested[str(key)].update(value)
        elif key in known:
            top[str(key)] = value
        else:
            raise _unknown(str(key))
    for name, changes in nested.items():
        if not changes:
            continue
        kind = SECTIONS[name]
        fields = {f.name for f in dataclasses.fields(kind)}
        bad = sorted(set(changes) - fields)
        if bad:
            raise _unknown(f"{name}.{bad[0]}")
        base: Any = top.get(name, getattr(config, name))
        if not isinstance(base, kind):
            raise InvalidConfig(f"TrainConfig.{name} must be a {kind.__name__}, got {base!r}")
        top[name] = dataclasses.replace(base, **changes)
    return dataclasses.replace(config, **top)


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
        micro_batch_size=32,
        warmstart_steps=50,
        warmstart_lr=1e-2,
        prompt_variant="compact",  # 1.6x faster step; bf16 is slower at this size (measured), so fp32
    ),
    "smollm2-cpu": TrainConfig(
        name="smollm2-cpu",
        policy="smollm2",
        questions_per_step=4,
        group_size=4,
        steps=30,
        lr=3e-5,
        max_routed_turns=1,
        max_new_tokens=48,
        max_obs_tokens=96,
        max_start_length=2048,
        micro_batch_size=8,
        warmstart_steps=24,
        warmstart_lr=1e-4,
        warmstart_batch=16,
        warmstart_direct_share=0.0,
        warmstart_min_steps=6,
        warmstart_probe_every=3,
        warmstart_probe_questions=16,
        warmstart_max_format_error=0.15,
        warmstart_min_related=0.9,
        warmstart_min_choice_entropy=0.85,
        heldout_fraction=0.15,
        dynamic_sampling=True,
        dynamic_sampling_rounds=1,
        loss=LossConfig(kl_coef=0.02, entropy_coef=0.01, entropy_scope="route"),
        precision="auto",  # bf16 autocast where the CPU has native bf16 (benchmarks/results/learner_step.json)
        prompt_variant="compact",
    ),
    "qwen2.5-3b-gpu": TrainConfig(
        name="qwen2.5-3b-gpu",
        policy="Qwen/Qwen2.5-3B-Instruct",
        engine="vllm",
        questions_per_step=64,
        group_size=8,
        steps=225,
        lr=1e-6,
        loss=LossConfig(kl_coef=0.001),
        max_routed_turns=4,
        max_new_tokens=1024,
        max_obs_tokens=600,
        max_start_length=2048,
        minibatches=2,
        micro_batch_size=8,
        recal=RecalConfig(dataset_stats="batch"),
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
        file: A ``.yaml``/``.yml`` or ``.json`` file of TrainConfig fields (may hold ``preset``; a
            section may be a nested mapping or dotted keys).
        overrides: Field → value (e.g. from CLI flags); ``section.field`` keys set nested fields.

    Raises:
        InvalidConfig: unknown field names or invalid values.
        UnknownName: unknown preset.
    """
    changes: dict[str, Any] = {}
    if file is not None:
        changes = _read_file(Path(file))
        preset_name = str(changes.pop("preset", preset_name))
    base = preset(preset_name)
    if changes:
        base = apply_overrides(base, changes)
    return apply_overrides(base, {k: v for k, v in (overrides or {}).items() if v is not None})
