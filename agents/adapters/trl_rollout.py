"""Multi-turn RouterQA episodes inside TRL's ``GRPOTrainer``: a ``rollout_func`` (``docs/learner.md`` §6, §11).

TRL 1.16 lets a ``rollout_func(prompts, trainer)`` replace its generation. :class:`RouterQARollout` plays one
full RouterQA episode per prompt (TRL's sampler already repeats each prompt ``num_generations`` times):
generate a turn with the trainer's own model (stop at ``</search>``/``</answer>``, EOS or the per-turn token
cap), step the env with the decoded turn, splice the observation's ids, and continue until the episode
ends. Turns and splices are the learner's own bookkeeping (``agents.grpo.rollout.collect_rollouts``): the
*sampled* ids are kept (the shortest prefix covering the env's ``kept_chars``), observations are encoded
alone, nothing is re-tokenised. It returns what TRL expects plus the rewards:

- ``prompt_ids``: the env prompt under the tokenizer's chat template;
- ``completion_ids``: every turn and every ``<information>`` splice, in order;
- ``logprobs``: the sampler's log-probs at TRL's temperature on policy tokens, 0.0 on splice tokens (TRL
  reads them only for vLLM importance sampling, masked by ``env_mask``);
- ``env_mask``: 1 on policy tokens, 0 on splice tokens, so splices get no loss in TRL's trainer;
- extra fields, forwarded by TRL to every reward function: ``raw_<component>`` and ``gated_<component>``
  for each component of the env's reward spec, ``data_source``, ``question_id``, ``episode_return``
  (the env's scalar reward), ``em`` and ``turns``.

:func:`rollout_reward_funcs` turns those fields into TRL reward functions (``raw_<component>`` for
:func:`~agents.adapters.trl.recal_grpo_trainer_class`, or ``gated_<component>`` for plain TRL), so the
trainer's rewards are exactly the env's. Example (``examples/trl_grpo_tiny.py`` runs it on CPU)::

    rollout = RouterQARollout(make_env, question_ids=ds["question_id"], seed=0)
    trainer = recal_grpo_trainer_class()(model=model, args=GRPOConfig(...), train_dataset=ds,
                                         processing_class=tokenizer, rollout_func=rollout,
                                         reward_funcs=rollout_reward_funcs(rollout.spec), estimator="recal")

Rewards are scored in ``"batch"`` update mode (build the envs with ``make_spec(..., update_mode="batch")``):
after each training call the batch's episode records, gathered over processes, update the reward state once and
the new state is pushed to every env, as in the ``agents`` learner (``docs/learner.md`` §4.6). Calls in TRL's
evaluation mode (the model not in training mode) leave the reward state unchanged.

Sampling draws from the rollout's own seeded ``torch.Generator`` (``state_dict()``/``load_state_dict()``),
so the same seed replays the same episodes.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import Any, NamedTuple

import gymnasium as gym
import torch

from agents.grpo.engines import GenerationEngine, HFEngine, SamplingParams
from agents.grpo.rollout import RolloutBatch, TextCodec, collect_rollouts
from recal_gym.errors import InvalidConfig, InvalidData
from recal_gym.rewards.spec import RewardSpec
from recal_gym.types import EpisodeRecord

__all__ = [
    "RolloutCall",
    "RouterQARollout",
    "rollout_reward_funcs",
    "routerqa_rows",
]

EnvSource = Callable[[], gym.Env] | Sequence[gym.Env]
"""A factory of RouterQA envs (called as often as a batch needs) or a fixed list of envs."""

EngineFactory = Callable[[torch.nn.Module, Any], GenerationEngine]
"""``(model, tokenizer) -> engine``; default :class:`~agents.grpo.engines.HFEngine`."""


def _prompt_text(prompt: Any) -> str:
    """A TRL prompt as the env's prompt text: a string, or the last user message of a conversation."""
    if isinstance(prompt, str):
        return prompt
    if isinstance(prompt, Sequence) and prompt and isinstance(prompt[-1], Mapping):
        return str(prompt[-1].get("content", ""))
    raise InvalidData(f"cannot read a prompt of type {type(prompt).__name__}; expected str or messages")


def routerqa_rows(env: gym.Env, question_ids: Sequence[str] | None = None) -> list[dict[str, str]]:
    """Dataset rows ``{"prompt", "question_id", "data_source"}`` for TRL (``datasets.Dataset.from_list(rows)``).

    Args:
        env: A RouterQA env (its prompts are the dataset's prompts).
        question_ids: Questions to include (default: every question of the env, sorted).
    """
    ids = sorted(env.unwrapped.questions.ids()) if question_ids is None else list(question_ids)  # type: ignore[attr-defined]
    rows = []
    for qid in ids:
        prompt, info = env.reset(options={"question_id": str(qid)})
        rows.append({"prompt": prompt, "question_id": str(info["question_id"]), "data_source": info["data_source"]})
    return rows


class RolloutCall(NamedTuple):
    """What one :class:`RouterQARollout` call played (for tests and logs)."""

    question_ids: tuple[str, ...]
    """Question of each episode, in prompt order."""
    prompt_lengths: tuple[int, ...]
    """Prompt tokens of each episode (the split between ``prompt_ids`` and ``completion_ids``)."""
    batch: RolloutBatch
    """The learner's rollout batch (ids, masks, sampler log-probs, rewards and episode records)."""
    reward_state_before: dict[str, Any]
    """The envs' reward ``state_dict()`` before the call (the state every episode was scored from)."""
    fields: dict[str, list[Any]]
    """What the call returned to TRL."""


class RouterQARollout:
    """A TRL ``rollout_func`` that plays full multi-turn RouterQA episodes (see the module docstring).

    Args:
        envs: A factory of RouterQA envs (called lazily until there is one env per prompt of a call), or a
            fixed list of envs (at least as many as TRL's per-process generation batch).
        question_ids: Questions the dataset's prompts come from (default: every question of the env); each
            prompt is mapped back to its question by its text.
        seed: Seed of the sampling generator.
        max_turn_tokens: Tokens sampled per turn at most (default: the env's ``max_turn_tokens``).
        engine_factory: Builds the sampler from the trainer's (unwrapped) model and tokenizer.

    Attributes:
        spec: The envs' reward spec (component names for :func:`rollout_reward_funcs`).
        last: The :class:`RolloutCall` of the latest call, or ``None``.

    Raises:
        InvalidData: two questions share a prompt text.
    """

    def __init__(
        self,
        envs: EnvSource,
        *,
        question_ids: Sequence[str] | None = None,
        seed: int = 0,
        max_turn_tokens: int | None = None,
        engine_factory: EngineFactory | None = None,
    ) -> None:
        """Build the first env and the prompt → question index."""
        self._factory = envs if callable(envs) else None
        self.envs: list[gym.Env] = [] if callable(envs) else list(envs)
        if not self.envs:
            if self._factory is None:
                raise InvalidConfig("RouterQARollout(envs=[]) needs at least one env or an env factory")
            self.envs.append(self._factory())
        env0 = self.envs[0].unwrapped
        self.spec: RewardSpec = env0.reward_spec  # type: ignore[attr-defined]
        self.source_names: tuple[str, ...] = tuple(sorted(env0.questions.datasets()))  # type: ignore[attr-defined]
        self.max_turn_tokens = int(env0.max_turn_tokens if max_turn_tokens is None else max_turn_tokens)  # type: ignore[attr-defined]
        self.engine_factory: EngineFactory = engine_factory or HFEngine
        self.generator = torch.Generator().manual_seed(seed)
        self._state = env0.reward_state.copy()  # type: ignore[attr-defined]
        self._index = self._prompt_index(question_ids)
        self.last: RolloutCall | None = None

    def _prompt_index(self, question_ids: Sequence[str] | None) -> dict[str, str]:
        index: dict[str, str] = {}
        for row in routerqa_rows(self.envs[0], question_ids):
            other = index.setdefault(row["prompt"], row["question_id"])
            if other != row["question_id"]:
                raise InvalidData(
                    f"questions {other!r} and {row['question_id']!r} have the same prompt; a rollout_func only sees "
                    "the prompt, so keep one of them"
                )
        return index

    # ------------------------------------------------------------------ state
    def state_dict(self) -> dict[str, Any]:
        """The sampling generator's state and the envs' reward state (save with TRL checkpoints)."""
        return {"generator": self.generator.get_state(), "reward_state": self.envs[0].unwrapped.reward_state_dict()}  # type: ignore[attr-defined]

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        """Restore :meth:`state_dict` (the reward state is pushed to every env)."""
        self.generator.set_state(state["generator"])
        for env in self.envs:
            env.unwrapped.load_reward_state(state["reward_state"])  # type: ignore[attr-defined]

    # ------------------------------------------------------------------ the rollout
    def _envs_for(self, n: int) -> list[gym.Env]:
        while len(self.envs) < n and self._factory is not None:
            env = self._factory()
            env.unwrapped.load_reward_state(self.envs[0].unwrapped.reward_state_dict())  # type: ignore[attr-defined]
            self.envs.append(env)
        if len(self.envs) < n:
            raise InvalidConfig(
                f"RouterQARollout has {len(self.envs)} envs but TRL asked for {n} episodes; pass an env factory or "
                f"at least {n} envs (per_device_train_batch_size x steps_per_generation)"
            )
        return self.envs[:n]

    def _question_id(self, prompt: Any) -> str:
        text = _prompt_text(prompt)
        qid = self._index.get(text)
        if qid is None:
            raise InvalidData(
                f"prompt {text[-80:]!r} (its last 80 characters) is not a RouterQA prompt of this rollout's "
                "questions; build the dataset with routerqa_rows(env, question_ids) and pass the same question_ids"
            )
        return qid

    @staticmethod
    def _params(trainer: Any, max_new_tokens: int) -> SamplingParams:
        args = trainer.args
        if getattr(args, "use_vllm", False):
            raise InvalidConfig(
                "GRPOConfig.use_vllm=True: RouterQARollout samples with the trainer's own model "
                "(agents.grpo.engines.HFEngine), not with TRL's vLLM modes; set use_vllm=False"
            )
        if getattr(args, "mask_truncated_completions", False):
            raise InvalidConfig(
                "GRPOConfig.mask_truncated_completions=True would mask every RouterQA episode (a completion ends "
                "with </answer>, not EOS); set it to False"
            )
        if getattr(args, "min_p", None) is not None or getattr(args, "repetition_penalty", 1.0) != 1.0:
            raise InvalidConfig(
                f"GRPOConfig.min_p={args.min_p!r}, repetition_penalty={args.repetition_penalty!r}: the RouterQA "
                "rollout samples with temperature, top_p and top_k only; leave min_p=None, repetition_penalty=1.0"
            )
        return SamplingParams(
            max_new_tokens=max_new_tokens,
            temperature=float(trainer.temperature),
            top_p=float(trainer.top_p),
            top_k=int(trainer.top_k or 0),
        )

    def _sync_reward_state(self, records: Sequence[dict[str, Any]], trainer: Any) -> None:
        """Batch-mode reward-state update on the gathered batch, pushed to every env (as the learner does)."""
        gathered = list(records)
        accelerator = getattr(trainer, "accelerator", None)
        if accelerator is not None and accelerator.num_processes > 1:
            from accelerate.utils import gather_object

            gathered = list(gather_object(list(records)))
        self._state.load_state_dict(self.envs[0].unwrapped.reward_state_dict())  # type: ignore[attr-defined]
        self._state.update_batch([EpisodeRecord.from_dict(r) for r in gathered], self.spec)
        snapshot = self._state.state_dict()
        for env in self.envs:
            env.unwrapped.load_reward_state(snapshot)  # type: ignore[attr-defined]

    def _fields(self, batch: RolloutBatch, prompt_lengths: Sequence[int]) -> dict[str, list[Any]]:
        """Split the padded batch into TRL's per-episode lists, plus the reward fields."""
        out: dict[str, list[Any]] = {"prompt_ids": [], "completion_ids": [], "logprobs": [], "env_mask": []}
        for i, p in enumerate(prompt_lengths):
            n = int(batch.attn_mask[i].sum())
            out["prompt_ids"].append(batch.ids[i, :p].tolist())
            out["completion_ids"].append(batch.ids[i, p:n].tolist())
            out["logprobs"].append(batch.sampler_logp[i, p:n].tolist())
            out["env_mask"].append([int(m) for m in batch.loss_mask[i, p:n].tolist()])
        r = batch.rewards
        for j, name in enumerate(r.names):
            out[f"raw_{name}"] = [float(v) for v in r.raw[:, j]]
            out[f"gated_{name}"] = [float(v) for v in r.gated[:, j]]
        out["data_source"] = list(r.data_source)
        out["question_id"] = list(r.question_id)
        out["episode_return"] = [float(v) for v in r.scalar]
        out["em"] = batch.em.tolist()
        out["turns"] = batch.turns.tolist()
        return out

    @torch.no_grad()
    def __call__(self, prompts: Sequence[Any], trainer: Any) -> dict[str, list[Any]]:
        """Play one episode per prompt with ``trainer``'s model; return TRL's rollout fields (module docstring).

        Args:
            prompts: TRL's per-process prompt slice (each prompt repeated ``num_generations`` times).
            trainer: The ``GRPOTrainer`` (its model, tokenizer, sampling settings and accelerator are used).

        Raises:
            InvalidData: a prompt that is not one of the rollout's RouterQA prompts.
            InvalidConfig: too few envs, or sampling settings the rollout cannot honour.
        """
        qids = [self._question_id(p) for p in prompts]
        envs = self._envs_for(len(qids))
        params = self._params(trainer, self.max_turn_tokens)
        tokenizer = trainer.processing_class
        codec = TextCodec(getattr(tokenizer, "tokenizer", tokenizer))  # a processor wraps its tokenizer
        model = trainer.accelerator.unwrap_model(trainer.model) if hasattr(trainer, "accelerator") else trainer.model
        was_training = bool(model.training)  # TRL's train/eval mode
        model.eval()
        before = envs[0].unwrapped.reward_state_dict()  # type: ignore[attr-defined]
        try:
            batch = collect_rollouts(
                envs,
                self.engine_factory(model, codec.tokenizer),
                codec,
                qids,
                list(range(len(qids))),
                params,
                self.generator,
                source_names=self.source_names,
            )
        finally:
            model.train(was_training)
        lengths = [len(codec.prompt_ids(_prompt_text(p))) for p in prompts]
        if any(int(batch.loss_mask[i, :p].sum()) != 0 for i, p in enumerate(lengths)):  # pragma: no cover - a bug
            raise InvalidData("RouterQARollout: policy tokens inside the prompt; the chat template is not stable")
        if was_training:  # evaluation is scored from the current reward state and leaves it as it was
            self._sync_reward_state(batch.records, trainer)
        fields = self._fields(batch, lengths)
        self.last = RolloutCall(tuple(qids), tuple(lengths), batch, before, fields)
        return dict(fields)  # TRL pops keys from what it gets; ``last.fields`` stays whole


def rollout_reward_funcs(spec: RewardSpec, *, kind: str = "raw") -> list[Callable[..., list[float]]]:
    """TRL reward functions returning the rollout's ``<kind>_<component>`` fields, one per component.

    Args:
        spec: The reward spec of the rollout's envs (:attr:`RouterQARollout.spec`).
        kind: ``"raw"`` (pre-gate, for the ReCal trainer) or ``"gated"`` (plain TRL: pass
            ``GRPOConfig(reward_weights=list(spec.weights))`` so TRL's sum is the env's reward).

    Raises:
        InvalidConfig: an unknown ``kind``.
    """
    if kind not in ("raw", "gated"):
        raise InvalidConfig(f"kind={kind!r}: must be 'raw' or 'gated'")

    def make(component: str) -> Callable[..., list[float]]:
        key = f"{kind}_{component}"

        def reward(prompts: Sequence[Any], completions: Sequence[Any], **kwargs: Any) -> list[float]:
            if key not in kwargs:
                raise InvalidData(f"reward function {key!r} found no {key!r} field; use rollout_func=RouterQARollout")
            return [float(v) for v in kwargs[key]]

        reward.__name__ = key
        reward.__qualname__ = key
        return reward

    return [make(c) for c in spec.names]

