"""Multi-turn RouterQA rollouts as token sequences with loss masks (``docs/learner.md`` §6).

One trajectory is ``[prompt] [turn 1] [obs 1] ... [final turn] [pad]``. The prompt is the env's
router prompt under the policy tokenizer's chat template; each turn keeps the *sampled* ids (the
shortest prefix whose decoding covers the env's ``kept_chars``); each observation is tokenised alone
with ``add_special_tokens=False``. The next turn's context is the concatenation of those ids, so the
training forward sees exactly what the sampler saw. Masks come from segment bookkeeping, never from
token ids: ``loss_mask`` is 1 on kept sampled ids only.

Scripted demonstrations (the supervised warm start, ``docs/learner.md`` §10.3) go through the same env and
the same bookkeeping: :func:`collect_demos`.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, NamedTuple

import numpy as np
import torch
from torch import Tensor

from agents.eval.baselines import answer_from_reply, question_from_prompt
from agents.grpo.engines import GenerationEngine, SamplingParams
from recal_gym.rewards.batch import RewardArrays, concat_reward_arrays, reward_arrays_from_infos
from recal_gym.rewards.spec import RewardSpec

__all__ = [
    "RolloutBatch",
    "TerseRouter",
    "TextCodec",
    "collect_demos",
    "collect_rollouts",
    "concat_batches",
]


class TextCodec:
    """Token ↔ text for the policy: chat-templated prompts, turn decoding, observation encoding.

    Text sent to the env is ``decode(ids)`` without the tokenizer's special tokens (EOS, PAD, BOS,
    chat markers). Protocol tags stay, even where a tokenizer (``tiny``) stores them as added tokens.
    """

    def __init__(self, tokenizer: Any) -> None:
        """Wrap ``tokenizer``."""
        self.tokenizer = tokenizer
        self.skip_ids = frozenset(int(i) for i in tokenizer.all_special_ids)
        self.pad_id = int(tokenizer.pad_token_id if tokenizer.pad_token_id is not None else tokenizer.eos_token_id)

    def prompt_ids(self, prompt: str) -> list[int]:
        """The prompt as one user message under the chat template, with the generation prompt."""
        text = self.tokenizer.apply_chat_template(
            [{"role": "user", "content": prompt}], add_generation_prompt=True, tokenize=False
        )
        return self.encode(text)

    def encode(self, text: str) -> list[int]:
        """Encode ``text`` alone, ``add_special_tokens=False``."""
        return list(self.tokenizer.encode(text, add_special_tokens=False))

    def decode(self, ids: Sequence[int]) -> str:
        """Decode without special tokens (protocol tags kept)."""
        return self.tokenizer.decode([i for i in ids if i not in self.skip_ids], skip_special_tokens=False)

    def kept_prefix(self, ids: Sequence[int], kept_chars: int) -> list[int]:
        """Shortest prefix of ``ids`` whose decoding has at least ``kept_chars`` characters.

        A trailing EOS after the full kept text is kept too (the sampler produced it as the stop).
        """
        if len(self.decode(ids)) <= kept_chars:
            return list(ids)
        for k in range(1, len(ids) + 1):
            if len(self.decode(ids[:k])) >= kept_chars:
                return list(ids[:k])
        return list(ids)  # pragma: no cover - the full decoding is longer than kept_chars


class RolloutBatch(NamedTuple):
    """A padded batch of trajectories plus their rewards (``docs/learner.md`` §1, §6)."""

    ids: Tensor
    """``(N, T)`` int64 token ids, right-padded."""
    attn_mask: Tensor
    """``(N, T)`` int64, 1 on every real token (prompt, policy and env)."""
    loss_mask: Tensor
    """``(N, T)`` float32, 1 exactly on kept policy-sampled tokens."""
    sampler_logp: Tensor
    """``(N, T)`` float32 sampler log-probs at temperature T (0 off the loss mask and for demos)."""
    raw: Tensor
    """``(N, K)`` float32 pre-gate components (``info["reward_components_raw"]``)."""
    gated: Tensor
    """``(N, K)`` float32 gated components (the env's, or recomputed for a τ override)."""
    scalar: Tensor
    """``(N,)`` float32 episode return."""
    group: Tensor
    """``(N,)`` int64 group ids (one per question of the step)."""
    source: Tensor
    """``(N,)`` int64 indices into ``source_names``."""
    source_names: tuple[str, ...]
    """Dataset names."""
    weights: Tensor
    """``(K,)`` float32 component weights of the env's reward spec."""
    names: tuple[str, ...]
    """The K reward component names (columns of ``raw``/``gated``/``weights``)."""
    question_ids: tuple[str, ...]
    """Question of each trajectory."""
    records: tuple[dict[str, Any], ...]
    """Terminal ``episode_record`` of each trajectory."""
    em: Tensor
    """``(N,)`` float32 ungated exact match."""
    format_ok: Tensor
    """``(N,)`` float32 1 when the format checks passed."""
    turns: Tensor
    """``(N,)`` float32 turns taken."""
    rewards: RewardArrays
    """The float64 rewards as the env gave them (exact scalar and components, for logs and re-scoring)."""


@dataclass(slots=True)
class _Traj:
    ids: list[int]
    mask: list[float]
    logp: list[float]
    prompt: str = ""
    obs: str = ""
    info: dict[str, Any] = field(default_factory=dict)
    done: bool = False

    def add(self, ids: Sequence[int], *, policy: bool, logp: Sequence[float] | None = None) -> None:
        self.ids.extend(ids)
        self.mask.extend([1.0 if policy else 0.0] * len(ids))
        self.logp.extend(list(logp) if logp is not None else [0.0] * len(ids))


def _reset(envs: Sequence[Any], question_ids: Sequence[str], codec: TextCodec) -> list[_Traj]:
    trajs = []
    for env, qid in zip(envs, question_ids, strict=True):
        prompt, info = env.reset(options={"question_id": qid})
        ids = codec.prompt_ids(prompt)
        trajs.append(_Traj(ids=list(ids), mask=[0.0] * len(ids), logp=[0.0] * len(ids), prompt=prompt, info=info))
    return trajs


def _apply_turn(env: Any, traj: _Traj, ids: Sequence[int], logp: Sequence[float], codec: TextCodec) -> None:
    """Send one sampled turn to the env; append the kept ids and the observation ids."""
    obs, _, terminated, truncated, info = env.step(codec.decode(ids))
    kept = codec.kept_prefix(ids, int(info["kept_chars"]))
    traj.add(kept, policy=True, logp=list(logp)[: len(kept)])
    if obs:
        traj.add(codec.encode(obs), policy=False)
    traj.obs, traj.info, traj.done = obs, info, bool(terminated or truncated)


def _pad(rows: Sequence[Sequence[float]], value: float, dtype: torch.dtype) -> Tensor:
    width = max(len(r) for r in rows)
    out = torch.full((len(rows), width), value, dtype=dtype)
    for i, r in enumerate(rows):
        out[i, : len(r)] = torch.tensor(list(r), dtype=dtype)
    return out


def _batch(
    trajs: Sequence[_Traj],
    groups: Sequence[int],
    source_names: Sequence[str],
    codec: TextCodec,
    gate_tau: tuple[RewardSpec, float] | None,
) -> RolloutBatch:
    """Pad the trajectories and read the terminal infos into tensors (one reward reader for every learner)."""
    infos = [t.info for t in trajs]
    spec, tau = (None, None) if gate_tau is None else gate_tau
    rewards = reward_arrays_from_infos(infos, spec=spec, tau=tau)  # learner-side τ: the env's own gate code
    index = {name: i for i, name in enumerate(source_names)}
    return RolloutBatch(
        ids=_pad([t.ids for t in trajs], codec.pad_id, torch.long),
        attn_mask=_pad([[1] * len(t.ids) for t in trajs], 0, torch.long),
        loss_mask=_pad([t.mask for t in trajs], 0.0, torch.float32),
        sampler_logp=_pad([t.logp for t in trajs], 0.0, torch.float32),
        raw=torch.tensor(rewards.raw, dtype=torch.float32),
        gated=torch.tensor(rewards.gated, dtype=torch.float32),
        scalar=torch.tensor(rewards.scalar, dtype=torch.float32),
        group=torch.tensor(list(groups), dtype=torch.long),
        source=torch.tensor([index[s] for s in rewards.data_source], dtype=torch.long),
        source_names=tuple(source_names),
        weights=torch.tensor(rewards.weights, dtype=torch.float32),
        names=rewards.names,
        question_ids=rewards.question_id,
        records=tuple(i["episode_record"] for i in infos),
        em=torch.tensor([float(i["em"]) for i in infos]),
        format_ok=torch.tensor([float(i["format_ok"]) for i in infos]),
        turns=torch.tensor([float(i["turn"]) for i in infos]),
        rewards=rewards,
    )


def collect_rollouts(
    envs: Sequence[Any],
    engine: GenerationEngine,
    codec: TextCodec,
    question_ids: Sequence[str],
    groups: Sequence[int],
    params: SamplingParams,
    generator: torch.Generator,
    *,
    source_names: Sequence[str],
    gate_tau: tuple[RewardSpec, float] | None = None,
) -> RolloutBatch:
    """Roll out one episode per env, all turns batched through ``engine``.

    Args:
        envs: One RouterQA env per trajectory (Gymnasium API only).
        engine: The sampler.
        codec: Policy tokenizer wrapper.
        question_ids: Question of each trajectory (a GRPO group repeats a question G times).
        groups: Group id of each trajectory.
        params: Sampling settings.
        generator: The only source of sampling randomness.
        source_names: All dataset names (the ``source`` index space).
        gate_tau: ``(reward spec, τ)`` to recompute the gates for a learner-side τ override.

    Returns:
        The padded :class:`RolloutBatch`.
    """
    trajs = _reset(envs, question_ids, codec)
    while True:
        live = [i for i, t in enumerate(trajs) if not t.done]
        if not live:
            break
        samples = engine.generate([trajs[i].ids for i in live], params, generator)
        for i, sample in zip(live, samples, strict=True):
            _apply_turn(envs[i], trajs[i], sample.ids, sample.logprobs, codec)
    return _batch(trajs, groups, source_names, codec, gate_tau)


@dataclass
class TerseRouter:
    """A scripted demonstrator with short, low-entropy turns (fits small per-turn token budgets).

    Its direct answer ``<think>ok</think><answer>x</answer>`` is 7 tokens under the ``tiny``
    tokenizer, and every token of it is predictable from the previous one, so a small policy clones
    it in a few dozen steps.

    With probability ``direct_share`` it answers at once; otherwise it routes the question to a
    uniformly random model, then answers with the reply's stated answer (``docs/learner.md`` §10.3).
    """

    models: Sequence[str]
    direct_share: float = 0.5
    seed: int = 0
    name: str = "terse"
    _rng: np.random.Generator = field(init=False, repr=False)
    _question: str = field(default="", init=False, repr=False)
    _route: bool = field(default=False, init=False, repr=False)

    def __post_init__(self) -> None:
        """Seed the router's own generator."""
        self._rng = np.random.default_rng(self.seed)

    def reset(self, prompt: str, info: dict[str, Any]) -> None:
        """Decide whether this episode routes."""
        self._question = question_from_prompt(prompt)
        self._route = bool(self._rng.random() >= self.direct_share)

    def act(self, observation: str, info: dict[str, Any]) -> str:
        """Route once (if chosen), then answer."""
        if self._route and info.get("turn", 0.0) == 0.0 and info.get("routed_turns_left", 0.0) > 0:
            model = str(self.models[int(self._rng.integers(len(self.models)))])
            return f"<think>ask</think><search> {model}:{self._question} </search>"
        return f"<think>ok</think><answer>{answer_from_reply(observation) or 'x'}</answer>"


def collect_demos(
    envs: Sequence[Any],
    routers: Sequence[Any],
    codec: TextCodec,
    question_ids: Sequence[str],
    *,
    source_names: Sequence[str],
) -> RolloutBatch:
    """Roll out scripted routers in the envs and tokenise their episodes like policy rollouts.

    The router's kept text is the training target (loss mask 1); env-inserted ``<information>``
    splices are masked, exactly as in RL.

    Args:
        envs: One env per demonstration.
        routers: One scripted router (``agents.eval.baselines.Router`` protocol) per env.
        codec: Policy tokenizer wrapper.
        question_ids: Question of each demonstration.
        source_names: All dataset names.

    Returns:
        A :class:`RolloutBatch` (``sampler_logp`` is 0; group ids are the row index).
    """
    trajs = _reset(envs, question_ids, codec)
    for env, router, traj in zip(envs, routers, trajs, strict=True):
        router.reset(traj.prompt, traj.info)
        while not traj.done:
            action = router.act(traj.obs, traj.info)
            obs, _, terminated, truncated, info = env.step(action)
            kept = action[: int(info["kept_chars"])]
            traj.add(codec.encode(kept), policy=True)
            if obs:
                traj.add(codec.encode(obs), policy=False)
            traj.obs, traj.info, traj.done = obs, info, bool(terminated or truncated)
    return _batch(trajs, list(range(len(trajs))), source_names, codec, None)


def concat_batches(batches: Sequence[RolloutBatch], pad_id: int) -> RolloutBatch:
    """Concatenate rollout batches along N (re-padding the token tensors to the widest)."""
    width = max(b.ids.shape[1] for b in batches)

    def widen(x: Tensor, value: float) -> Tensor:
        return torch.nn.functional.pad(x, (0, width - x.shape[1]), value=value)

    fields: dict[str, Any] = {}
    for name in RolloutBatch._fields:
        values = [getattr(b, name) for b in batches]
        if name in ("source_names", "weights", "names"):
            fields[name] = values[0]
        elif name == "rewards":
            fields[name] = concat_reward_arrays(values)
        elif name in ("question_ids", "records"):
            fields[name] = tuple(v for part in values for v in part)
        elif name in ("ids", "attn_mask", "loss_mask", "sampler_logp"):
            fill = pad_id if name == "ids" else 0
            fields[name] = torch.cat([widen(v, fill) for v in values])
        else:
            fields[name] = torch.cat(values)
    return RolloutBatch(**fields)
