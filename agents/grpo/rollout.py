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

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, NamedTuple

import numpy as np
import torch
from torch import Tensor

from agents.eval.baselines import answer_from_reply, question_from_prompt
from agents.grpo.engines import GenerationEngine, SamplingParams
from recal_gym.protocol import parse_action
from recal_gym.rewards.batch import RewardArrays, concat_reward_arrays, reward_arrays_from_infos
from recal_gym.rewards.spec import RewardSpec

__all__ = [
    "EnvList",
    "RolloutBatch",
    "TerseRouter",
    "TextCodec",
    "Turn",
    "collect_demos",
    "collect_rollouts",
    "concat_batches",
    "play",
    "select_rows",
    "unbatch_info",
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

    def route_name_mask(self, ids: Sequence[int]) -> list[float]:
        """1.0 for each id whose decoded characters overlap a route's model name, else 0.0.

        The name is the text between ``<search>`` and the next colon (``docs/protocol.md`` §4); a
        turn without a route gives all zeros.
        """
        text = self.decode(ids)
        start = text.find("<search>")
        if start < 0:
            return [0.0] * len(ids)
        start += len("<search>")
        stop = text.find(":", start)
        stop = len(text) if stop < 0 else stop
        out, prev = [], 0
        for k in range(1, len(ids) + 1):
            end = len(self.decode(ids[:k]))
            out.append(1.0 if prev < stop and end > start and end > prev else 0.0)
            prev = end
        return out

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
    route_mask: Tensor
    """``(N, T)`` float32, 1 on policy tokens that spell a route's model name (between ``<search>``
    and the first colon): the model-choice tokens."""
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
    """The K reward component names (columns of ``raw``/``gated``/``weights``), in the spec's order."""
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
    routes: tuple[tuple[tuple[str, str], ...], ...]
    """Per trajectory, its executed routes as ``(model, query)`` in turn order."""
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
    routes: list[tuple[str, str]] = field(default_factory=list)
    route: list[float] = field(default_factory=list)
    reward: float = 0.0

    def __post_init__(self) -> None:
        self.route = [0.0] * len(self.ids)

    def add(
        self,
        ids: Sequence[int],
        *,
        policy: bool,
        logp: Sequence[float] | None = None,
        route: Sequence[float] | None = None,
    ) -> None:
        self.ids.extend(ids)
        self.mask.extend([1.0 if policy else 0.0] * len(ids))
        self.logp.extend(list(logp) if logp is not None else [0.0] * len(ids))
        self.route.extend(list(route) if route is not None else [0.0] * len(ids))


class Turn(NamedTuple):
    """One sub-env's action for a turn: the text sent to the env, and how to keep it as tokens."""

    text: str
    """The decoded turn passed to ``env.step``."""
    ids: list[int] | None
    """The sampled ids (kept as the shortest prefix covering ``kept_chars``); ``None`` = encode the
    kept text (scripted demonstrators)."""
    logprobs: list[float] | None
    """Sampler log-probs of ``ids`` (``None`` for scripted turns: 0)."""


class EnvList:
    """A list of single RouterQA envs seen through the vector-env interface :func:`play` uses.

    For callers that own one env per episode (the TRL rollout builds them from a factory): ``reset``
    takes the same ``reset_mask``/``question_ids`` options as :class:`~envs.vector.RouterQAVectorEnv`,
    ``step`` takes ``None`` for sub-envs that sit out, and the infos come back as a list of per-env
    dicts (:func:`unbatch_info` reads both forms). Envs are stepped one after another.
    """

    def __init__(self, envs: Sequence[Any]) -> None:
        """Wrap ``envs`` (one per trajectory slot)."""
        self.envs = list(envs)
        self.num_envs = len(self.envs)

    def reset(self, *, options: Mapping[str, Any]) -> tuple[list[str], list[dict[str, Any]]]:
        """Reset the envs where ``options["reset_mask"]`` is set to ``options["question_ids"][i]``."""
        mask, qids, seeds = options["reset_mask"], options["question_ids"], options.get("call_seeds")
        prompts: list[str] = [""] * self.num_envs
        infos: list[dict[str, Any]] = [{} for _ in range(self.num_envs)]
        for i, env in enumerate(self.envs):
            if mask[i]:
                opts: dict[str, Any] = {"question_id": qids[i]}
                if seeds is not None:
                    opts["call_seed"] = seeds[i]
                prompts[i], infos[i] = env.reset(options=opts)
        return prompts, infos

    def step(self, actions: Sequence[str | None]) -> tuple[list[str], np.ndarray, np.ndarray, np.ndarray, list[dict]]:
        """Step env ``i`` with ``actions[i]`` unless it is ``None``; returns list/array forms per env."""
        obs: list[str] = [""] * self.num_envs
        rewards = np.zeros(self.num_envs)
        terminated = np.zeros(self.num_envs, dtype=bool)
        truncated = np.zeros(self.num_envs, dtype=bool)
        infos: list[dict[str, Any]] = [{} for _ in range(self.num_envs)]
        for i, (env, action) in enumerate(zip(self.envs, actions, strict=True)):
            if action is not None:
                obs[i], rewards[i], terminated[i], truncated[i], infos[i] = env.step(action)
        return obs, rewards, terminated, truncated, infos


def unbatch_info(infos: Mapping[str, Any] | Sequence[dict[str, Any]], i: int) -> dict[str, Any]:
    """Sub-env ``i``'s info from a Gymnasium vector info dict (arrays plus ``_key`` masks).

    Nested dicts are unbatched recursively; NumPy scalars become Python scalars. A list of per-env
    dicts (:class:`EnvList`) is indexed directly.
    """
    if not isinstance(infos, Mapping):
        return dict(infos[i])
    out: dict[str, Any] = {}
    for key, value in infos.items():
        mask = infos.get(f"_{key}")
        if key.startswith("_") or mask is None or not mask[i]:
            continue
        if isinstance(value, Mapping):
            out[key] = unbatch_info(value, i)
        else:
            item = value[i]
            out[key] = item.item() if isinstance(item, np.generic) else item
    return out


def _reset(
    env: Any, question_ids: Sequence[str], codec: TextCodec, call_seeds: Sequence[int] | None = None
) -> list[_Traj]:
    n, num_envs = len(question_ids), int(env.num_envs)
    if n > num_envs:
        raise ValueError(f"{n} trajectories need at least {n} sub-envs; the vector env has {num_envs}")
    mask = np.arange(num_envs) < n
    options: dict[str, Any] = {"reset_mask": mask, "question_ids": [*question_ids, *[None] * (num_envs - n)]}
    if call_seeds is not None:
        options["call_seeds"] = [*call_seeds, *[0] * (num_envs - n)]
    prompts, infos = env.reset(options=options)
    trajs = []
    for i in range(n):
        ids = codec.prompt_ids(prompts[i])
        info = unbatch_info(infos, i)
        trajs.append(_Traj(ids=list(ids), mask=[0.0] * len(ids), logp=[0.0] * len(ids), prompt=prompts[i], info=info))
    return trajs


def play(
    env: Any,
    question_ids: Sequence[str],
    codec: TextCodec,
    act: Callable[[list[int], list[_Traj]], list[Turn]],
    *,
    call_seeds: Sequence[int] | None = None,
) -> list[_Traj]:
    """Play one episode per question in a vector env, all live sub-envs stepped together.

    Each turn, ``act(live, trajs)`` returns one :class:`Turn` per live row; finished and unused
    sub-envs get ``None``, so a turn's candidate calls reach the pool as one ``call_batch``. Each
    returned trajectory holds its ids and masks, its terminal ``info`` and its last step's ``reward``
    (the episode's return). ``call_seeds`` (one per question) become the episodes' ``call_seed``
    reset option (the simulated pool's reply-noise key); ``None`` keeps the env's default.
    """
    trajs = _reset(env, question_ids, codec, call_seeds)
    num_envs = int(env.num_envs)
    while live := [i for i, t in enumerate(trajs) if not t.done]:
        turns = act(live, trajs)
        actions: list[str | None] = [None] * num_envs
        for i, turn in zip(live, turns, strict=True):
            actions[i] = turn.text
        obs, rewards, terminated, truncated, infos = env.step(actions)
        for i, turn in zip(live, turns, strict=True):
            _record_turn(trajs[i], turn, obs[i], unbatch_info(infos, i), bool(terminated[i] or truncated[i]), codec)
            trajs[i].reward = float(rewards[i])
    return trajs


def _record_turn(traj: _Traj, turn: Turn, obs: str, info: dict[str, Any], done: bool, codec: TextCodec) -> None:
    """Append the kept ids of one turn and its observation's ids; note an executed route."""
    kept_text = turn.text[: int(info["kept_chars"])]
    if turn.ids is None:
        kept = codec.encode(kept_text)
        logp = None
    else:
        kept = codec.kept_prefix(turn.ids, len(kept_text))
        logp = (turn.logprobs or [0.0] * len(kept))[: len(kept)]
    traj.add(kept, policy=True, logp=logp, route=codec.route_name_mask(kept))
    if info.get("route_outcome") == "executed":
        traj.routes.append((str(info["model"]), parse_action(kept_text).query))
    if obs:
        traj.add(codec.encode(obs), policy=False)
    traj.obs, traj.info, traj.done = obs, info, done


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
        route_mask=_pad([t.route for t in trajs], 0.0, torch.float32),
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
        routes=tuple(tuple(t.routes) for t in trajs),
        rewards=rewards,
    )


def collect_rollouts(
    env: Any,
    engine: GenerationEngine,
    codec: TextCodec,
    question_ids: Sequence[str],
    groups: Sequence[int],
    params: SamplingParams,
    generator: torch.Generator,
    *,
    source_names: Sequence[str],
    gate_tau: tuple[RewardSpec, float] | None = None,
    call_seeds: Sequence[int] | None = None,
) -> RolloutBatch:
    """Roll out one episode per question in a vector env, each turn's rows batched through ``engine``.

    Args:
        env: A Gymnasium vector env with RouterQA semantics (:class:`~envs.vector.RouterQAVectorEnv`),
            ``num_envs >= len(question_ids)``; used only through ``reset``/``step``.
        engine: The sampler.
        codec: Policy tokenizer wrapper.
        question_ids: Question of each trajectory (a GRPO group repeats a question G times).
        groups: Group id of each trajectory.
        params: Sampling settings.
        generator: The only source of sampling randomness.
        source_names: All dataset names (the ``source`` index space).
        gate_tau: ``(reward spec, τ)`` to recompute the gates for a learner-side τ override.
        call_seeds: Each trajectory's ``call_seed`` (keys the simulated pool's per-call reply noise).

    Returns:
        The padded :class:`RolloutBatch`.
    """

    def act(live: list[int], trajs: list[_Traj]) -> list[Turn]:
        samples = engine.generate([trajs[i].ids for i in live], params, generator)
        return [Turn(codec.decode(s.ids), list(s.ids), list(s.logprobs)) for s in samples]

    trajs = play(env, question_ids, codec, act, call_seeds=call_seeds)
    return _batch(trajs, groups, source_names, codec, gate_tau)


@dataclass
class TerseRouter:
    """A scripted demonstrator with short, low-entropy turns (fits small per-turn token budgets).

    Its direct answer ``<think>ok</think><answer>x</answer>`` is 7 tokens under the ``tiny``
    tokenizer, and every token of it is predictable from the previous one, so a small policy clones
    it in a few dozen steps.

    With ``plan`` unset: with probability ``direct_share`` it answers at once, otherwise it routes the
    question to a uniformly random model. ``plan=""`` always answers at once; ``plan=<model>`` always
    routes to that model (the learner plans a balanced batch). After a route it answers with the
    reply's stated answer (``docs/learner.md`` §10.3).
    """

    models: Sequence[str]
    direct_share: float = 0.5
    seed: int = 0
    name: str = "terse"
    plan: str | None = None
    _rng: np.random.Generator = field(init=False, repr=False)
    _question: str = field(default="", init=False, repr=False)
    _route: bool = field(default=False, init=False, repr=False)

    def __post_init__(self) -> None:
        """Seed the router's own generator."""
        self._rng = np.random.default_rng(self.seed)

    def reset(self, prompt: str, info: dict[str, Any]) -> None:
        """Decide whether this episode routes."""
        self._question = question_from_prompt(prompt)
        self._route = bool(self._rng.random() >= self.direct_share) if self.plan is None else bool(self.plan)

    def act(self, observation: str, info: dict[str, Any]) -> str:
        """Route once (if chosen), then answer."""
        if self._route and info.get("turn", 0.0) == 0.0 and info.get("routed_turns_left", 0.0) > 0:
            model = self.plan or str(self.models[int(self._rng.integers(len(self.models)))])
            return f"<think>ask</think><search> {model}:{self._question} </search>"
        return f"<think>ok</think><answer>{answer_from_reply(observation) or 'x'}</answer>"


def collect_demos(
    env: Any,
    routers: Sequence[Any],
    codec: TextCodec,
    question_ids: Sequence[str],
    *,
    source_names: Sequence[str],
) -> RolloutBatch:
    """Roll out scripted routers in a vector env and tokenise their episodes like policy rollouts.

    The router's kept text is the training target (loss mask 1); env-inserted ``<information>``
    splices are masked, exactly as in RL.

    Args:
        env: A vector env as in :func:`collect_rollouts`.
        routers: One scripted router (``agents.eval.baselines.Router`` protocol) per demonstration.
        codec: Policy tokenizer wrapper.
        question_ids: Question of each demonstration.
        source_names: All dataset names.

    Returns:
        A :class:`RolloutBatch` (``sampler_logp`` is 0; group ids are the row index).
    """
    started: set[int] = set()

    def act(live: list[int], trajs: list[_Traj]) -> list[Turn]:
        turns = []
        for i in live:
            if i not in started:
                routers[i].reset(trajs[i].prompt, trajs[i].info)
                started.add(i)
            turns.append(Turn(routers[i].act(trajs[i].obs, trajs[i].info), None, None))
        return turns

    trajs = play(env, question_ids, codec, act)
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
        elif name in ("question_ids", "records", "routes"):
            fields[name] = tuple(v for part in values for v in part)
        elif name in ("ids", "attn_mask", "loss_mask", "sampler_logp", "route_mask"):
            fill = pad_id if name == "ids" else 0
            fields[name] = torch.cat([widen(v, fill) for v in values])
        else:
            fields[name] = torch.cat(values)
    return RolloutBatch(**fields)


def select_rows(batch: RolloutBatch, rows: Sequence[int]) -> RolloutBatch:
    """The trajectories ``rows`` of ``batch`` (in that order), token tensors trimmed to their width."""
    idx = torch.tensor(list(rows), dtype=torch.long)
    width = int(batch.attn_mask.index_select(0, idx).sum(dim=1).max()) if len(rows) else 0
    fields: dict[str, Any] = {}
    for name in RolloutBatch._fields:
        value = getattr(batch, name)
        if name in ("source_names", "weights", "names"):
            fields[name] = value
        elif name == "rewards":
            fields[name] = value.select(list(rows))
        elif name in ("question_ids", "records", "routes"):
            fields[name] = tuple(value[i] for i in rows)
        elif name in ("ids", "attn_mask", "loss_mask", "sampler_logp", "route_mask"):
            fields[name] = value.index_select(0, idx)[:, :width]
        else:
            fields[name] = value.index_select(0, idx)
    return RolloutBatch(**fields)
