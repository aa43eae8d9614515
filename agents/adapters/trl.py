"""TRL adapter: RouterQA reward components as TRL reward functions, and ReCal advantages in ``GRPOTrainer``.

Three ways to train a RouterQA router with TRL (``docs/learner.md`` §11):

1. **Multi-turn episodes (recommended).** ``GRPOTrainer(rollout_func=RouterQARollout(...))``
   (:mod:`agents.adapters.trl_rollout`) plays whole episodes — turns, candidate calls, ``<information>``
   splices (masked out of the loss with TRL's ``env_mask``) — and hands the env's decomposed rewards to
   the reward functions of :func:`~agents.adapters.trl_rollout.rollout_reward_funcs`.
2. **Single-turn, plain TRL.** :func:`component_reward_funcs` returns one reward function per component (TRL's
   plain-callable convention). Each plays TRL's own completion in a RouterQA env through the Gymnasium API
   (``reset(options={"question_id": ...})``, ``step(completion)``; later turns come from ``continuation``,
   by default empty turns, so a completion must answer in its own turn) and returns that component. Use
   ``kind="gated"`` with ``GRPOConfig(reward_weights=spec weights, multi_objective_aggregation=
   "normalize_then_sum")`` for TRL's GDPO form.
3. **ReCal advantages** (with 1 or 2). Use ``kind="raw"`` functions with the trainer class from
   :func:`recal_grpo_trainer_class`. It runs TRL's generation (or the rollout) and reward calls, then replaces
   TRL's advantages by those of any ``agents.grpo.advantages`` estimator (default ``"recal"``) on the
   gathered batch: raw components → the reward spec's gates (``RewardSpec.compute_gates``) →
   :class:`~agents.grpo.advantages.RewardBatch` → estimator, with an explicit
   :class:`~agents.grpo.calibration.CalibrationState`. The dataset needs the columns ``prompt``,
   ``question_id`` and ``data_source``.

Example (see ``examples/trl_grpo_tiny.py`` for a runnable CPU version)::

    rollout = RouterQARollout(make_env, question_ids=ds["question_id"])
    Trainer = recal_grpo_trainer_class()
    trainer = Trainer(model=..., args=GRPOConfig(...), train_dataset=ds, rollout_func=rollout,
                      reward_funcs=rollout_reward_funcs(rollout.spec, kind="raw"), estimator="recal")
    trainer.train()

TRL is optional: it is imported only inside :func:`recal_grpo_trainer_class`.
"""

from __future__ import annotations

from collections.abc import Callable, Hashable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Literal, NamedTuple

import gymnasium as gym
import numpy as np
import torch
from torch import Tensor

from agents.grpo.advantages import AdvantageFn, AdvantageOut, RewardBatch, make_estimator
from agents.grpo.calibration import CalibrationState
from agents.grpo.estimator_config import RecalConfig
from recal_gym.errors import InvalidConfig, InvalidData
from recal_gym.rewards.batch import reward_arrays_from_raw
from recal_gym.rewards.presets import make_spec
from recal_gym.rewards.spec import RewardSpec

__all__ = [
    "ComponentKind",
    "EpisodeComponents",
    "RecalStep",
    "RouterQAScorer",
    "build_reward_batch",
    "component_reward_funcs",
    "recal_advantages",
    "recal_grpo_trainer_class",
]

ComponentKind = Literal["raw", "gated"]
"""Which components the reward functions return: pre-gate (for ReCal) or gated (for plain TRL)."""

Continuation = Callable[[str, Mapping[str, Any]], str]
"""``(observation, info) -> next turn``: how an episode goes on after the completion's turn."""

_EPISODE_FIELDS = {"episode_return": "episode/return", "em": "episode/em", "turns": "episode/turns"}
"""Rollout fields (:class:`~agents.adapters.trl_rollout.RouterQARollout`) logged as batch means."""


def _empty_turn(observation: str, info: Mapping[str, Any]) -> str:
    return ""


def _completion_text(completion: Any) -> str:
    """A TRL completion as text: a string, or the last message's content for conversational data."""
    if isinstance(completion, str):
        return completion
    if isinstance(completion, Sequence) and completion and isinstance(completion[-1], Mapping):
        return str(completion[-1].get("content", ""))
    raise InvalidData(f"cannot read a completion of type {type(completion).__name__}; expected str or messages")


@dataclass(frozen=True, slots=True, kw_only=True)
class EpisodeComponents:
    """Components of one scored completion."""

    raw: dict[str, float]
    """Pre-gate components, keyed by the reward spec's component names."""
    gated: dict[str, float]
    """Gated components, keyed by the reward spec's component names."""
    data_source: str
    """The question's dataset."""


class RouterQAScorer:
    """Plays completions in a RouterQA env and caches the components of the last batch.

    TRL calls every reward function on the same batch in turn; the component functions share
    one scorer, so each batch is played once.

    Args:
        env: A RouterQA env (default ``gym.make("RouterQA-v0")``). Its reward state evolves with each
            scored episode, as in the learner's episode mode.
        continuation: Later turns after the completion's turn (default: empty turns, which end the
            episode without an answer if the completion did not answer).
    """

    def __init__(self, env: gym.Env | None = None, *, continuation: Continuation | None = None) -> None:
        """Create the scorer."""
        if env is None:
            import recal_gym  # noqa: F401 - registers RouterQA-v0

            env = gym.make("RouterQA-v0")
        self.env = env
        self.continuation = _empty_turn if continuation is None else continuation
        self.spec: RewardSpec = env.unwrapped.reward_spec  # type: ignore[attr-defined]
        self._key: tuple[tuple[str, ...], tuple[str, ...]] | None = None
        self._cache: list[EpisodeComponents] = []

    def play(self, completion: str, question_id: str) -> EpisodeComponents:
        """Play one completion as the first turn of the question's episode; return its components."""
        obs, info = self.env.reset(options={"question_id": str(question_id)})
        turn = completion
        while True:
            obs, _, terminated, truncated, info = self.env.step(turn)
            if terminated or truncated:
                break
            turn = self.continuation(obs, info)
        return EpisodeComponents(
            raw={k: float(v) for k, v in info["reward_components_raw"].items()},
            gated={k: float(v) for k, v in info["reward_components"].items()},
            data_source=str(info["data_source"]),
        )

    def score(self, completions: Sequence[Any], question_ids: Sequence[str]) -> list[EpisodeComponents]:
        """Components of every (completion, question) pair; a repeated batch is served from the cache."""
        if len(completions) != len(question_ids):
            raise InvalidData(f"{len(completions)} completions but {len(question_ids)} question ids")
        texts = tuple(_completion_text(c) for c in completions)
        key = (texts, tuple(str(q) for q in question_ids))
        if key != self._key:
            self._cache = [self.play(t, q) for t, q in zip(*key, strict=True)]
            self._key = key
        return list(self._cache)


def component_reward_funcs(
    scorer: RouterQAScorer, *, kind: ComponentKind = "raw", components: Sequence[str] | None = None
) -> list[Callable[..., list[float]]]:
    """One TRL reward function per component, named ``"<kind>_<component>"``.

    ``components`` defaults to every component of the scorer's reward spec.

    Each has TRL's signature ``f(prompts, completions, question_id, **kwargs) -> list[float]``; the
    dataset must have a ``question_id`` column.

    Raises:
        InvalidConfig: an unknown ``kind`` or component name.
    """
    if kind not in ("raw", "gated"):
        raise InvalidConfig(f"kind={kind!r}: must be 'raw' or 'gated'")
    known = scorer.spec.names
    components = known if components is None else tuple(components)
    unknown = [c for c in components if c not in known]
    if unknown:
        raise InvalidConfig(f"unknown components {unknown}; the reward spec has {list(known)}")

    def make(component: str) -> Callable[..., list[float]]:
        def reward(prompts: Sequence[Any], completions: Sequence[Any], question_id: Sequence[str], **_: Any) -> list:
            scored = scorer.score(completions, question_id)
            return [getattr(s, kind)[component] for s in scored]

        reward.__name__ = f"{kind}_{component}"
        reward.__qualname__ = reward.__name__
        return reward

    return [make(c) for c in components]


def build_reward_batch(
    raw: np.ndarray | Tensor,
    data_sources: Sequence[str],
    groups: int | Sequence[Hashable],
    spec: RewardSpec,
) -> RewardBatch:
    """Build the estimators' :class:`RewardBatch` from per-trajectory raw components.

    Gates, the gated values and the scalar come from ``recal_gym.rewards.batch.reward_arrays_from_raw`` (the
    env's own gate code and fold); source ids are in first-seen order.

    Args:
        raw: ``(N, K)`` float raw components in the spec's order (NaN = unscorable).
        data_sources: ``(N,)`` dataset names.
        groups: G (TRL: a prompt's G completions are consecutive, group ``i // G``), or ``(N,)`` group
            keys (verl's ``uid``), numbered in first-seen order.
        spec: Components, gates, τ and weights.

    Raises:
        InvalidData: inconsistent shapes, or N not a multiple of G.
    """
    r = np.asarray(raw.detach().cpu().numpy() if isinstance(raw, Tensor) else raw, dtype=np.float64)
    arrays = reward_arrays_from_raw(r, spec, data_sources)  # validates (N, K) and N sources
    n = len(arrays)
    if isinstance(groups, int):
        if groups < 1 or n % groups:
            raise InvalidData(f"N={n} is not a multiple of num_generations={groups}")
        group = torch.arange(n, dtype=torch.int64) // groups
    else:
        if len(groups) != n:
            raise InvalidData(f"{len(groups)} group keys for N={n} trajectories")
        ids = {key: i for i, key in enumerate(dict.fromkeys(groups))}
        group = torch.tensor([ids[key] for key in groups], dtype=torch.int64)
    return RewardBatch.from_arrays(arrays, group, source_names=tuple(dict.fromkeys(arrays.data_source)))


def recal_advantages(
    raw: np.ndarray | Tensor,
    data_sources: Sequence[str],
    groups: int | Sequence[Hashable],
    *,
    spec: RewardSpec,
    estimator: AdvantageFn,
    state: CalibrationState | None,
) -> AdvantageOut:
    """Advantages of ``estimator`` on a batch (:func:`build_reward_batch`, then the estimator)."""
    return estimator(build_reward_batch(raw, data_sources, groups, spec), state)


class RecalStep(NamedTuple):
    """What :func:`recal_grpo_trainer_class`'s trainer computed on its last batch (for tests and logs)."""

    raw: Tensor
    """``(N, K)`` gathered raw components, in the reward spec's order."""
    data_sources: tuple[str, ...]
    """``(N,)`` gathered dataset names."""
    num_generations: int
    """Group size G."""
    state_before: dict[str, Any]
    """``CalibrationState.state_dict()`` before the batch."""
    advantages: Tensor
    """``(N,)`` advantages of the whole (gathered) batch."""


def recal_grpo_trainer_class() -> type:
    """Return a ``trl.GRPOTrainer`` subclass whose advantages come from an ``agents`` estimator.

    Extra constructor keywords: ``estimator`` (registry name, default ``"recal"``), ``recal_config``
    (:class:`~agents.grpo.estimator_config.RecalConfig`), ``reward_spec`` (gates, τ and weights; default
    ``"recal"``), ``calibration_state`` (shared :class:`~agents.grpo.calibration.CalibrationState`). The reward
    functions must include ``raw_<component>`` for every component of ``reward_spec`` (:func:`component_reward_funcs`
    or :func:`~agents.adapters.trl_rollout.rollout_reward_funcs`). The estimator's metrics join TRL's logs under their
    own names (``adv/std``, ``recal/weight/mean``, ``calib/<data_source>/mean``, ``reward/<component>/mean``); with
    :class:`~agents.adapters.trl_rollout.RouterQARollout` also ``episode/return``, ``episode/em`` and
    ``episode/turns`` (batch means).

    Raises:
        MissingDependency: TRL or accelerate is not installed (an ``ImportError`` naming the ``trl`` extra).
    """
    from recal_gym.optional import require

    gather_object = require("accelerate.utils", feature="recal_grpo_trainer_class", extra="trl").gather_object
    GRPOTrainer = require("trl", feature="recal_grpo_trainer_class").GRPOTrainer

    class RecalGRPOTrainer(GRPOTrainer):  # type: ignore[misc, valid-type]
        """``GRPOTrainer`` with ReCal (or any registered) advantages; see :func:`recal_grpo_trainer_class`."""

        def __init__(
            self,
            *args: Any,
            estimator: str = "recal",
            recal_config: RecalConfig | None = None,
            reward_spec: RewardSpec | str = "recal",
            calibration_state: CalibrationState | None = None,
            **kwargs: Any,
        ) -> None:
            super().__init__(*args, **kwargs)
            names = list(self.reward_func_names)
            self.recal_spec = make_spec(reward_spec)
            missing = [f"raw_{k}" for k in self.recal_spec.names if f"raw_{k}" not in names]
            if missing:
                raise InvalidConfig(f"reward_funcs lack {missing}; use component_reward_funcs(scorer, kind='raw')")
            self.recal_columns = [names.index(f"raw_{k}") for k in self.recal_spec.names]
            self.recal_estimator = make_estimator(estimator, recal_config)
            self.calibration_state = CalibrationState() if calibration_state is None else calibration_state
            self.last_recal: RecalStep | None = None
            self._recal_pending: tuple[Tensor, list[str], dict[str, float]] | None = None

        def _calculate_rewards(self, inputs: Any, prompts: Any, completions: Any, completion_ids_list: Any) -> Tensor:
            rewards = super()._calculate_rewards(inputs, prompts, completions, completion_ids_list)
            sources = gather_object([str(x["data_source"]) for x in inputs])
            episode: dict[str, float] = {}
            for field, key in _EPISODE_FIELDS.items():
                if all(field in x for x in inputs):
                    values = gather_object([float(x[field]) for x in inputs])
                    episode[key] = sum(values) / len(values)
            self._recal_pending = (rewards, list(sources), episode)
            return rewards

        def _generate_and_score_completions(self, inputs: Any) -> dict[str, Any]:
            out = super()._generate_and_score_completions(inputs)
            if self._recal_pending is None:  # pragma: no cover - TRL always scores before returning
                raise InvalidData("ReCal trainer: TRL returned a batch without scoring it")
            rewards, sources, episode = self._recal_pending
            self._recal_pending = None
            mode = "train" if getattr(self.model, "training", True) else "eval"
            g = int(self.num_generations if mode == "train" else self.num_generations_eval)  # type: ignore[arg-type]
            raw = rewards[:, self.recal_columns].detach().cpu()  # (N, K)
            before = self.calibration_state.state_dict()
            result = recal_advantages(
                raw, sources, g, spec=self.recal_spec, estimator=self.recal_estimator, state=self.calibration_state
            )
            local = len(out["advantages"])
            start = self.accelerator.process_index * local
            out["advantages"] = result.advantages[start : start + local].to(out["advantages"].device)
            metrics = {k: float(v) for k, v in result.metrics.items()} | episode
            for key, value in metrics.items():  # the estimator's own names: adv/std, calib/<ds>/mean
                self._metrics[mode][key].append(value)
            self.last_recal = RecalStep(raw, tuple(sources), g, before, result.advantages)
            return out

    return RecalGRPOTrainer
