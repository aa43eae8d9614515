"""The token-level GRPO/ReCal learner: orchestration only (``docs/learner.md`` §4.6, §6-§8, §10).

One :meth:`Learner.step`: sample the step's questions → roll out G episodes each through the
RouterQA envs (:mod:`agents.grpo.rollout`) → batch-mode reward-state update pushed to every env →
advantages on the gathered global batch (:mod:`agents.grpo.advantages` registry, with the learner's
:class:`~agents.grpo.calibration.CalibrationState`) → token loss with a global denominator over
micro-batches (:mod:`agents.grpo.losses`) → gradient average over ranks, clip, AdamW → one flat metrics
dict. :meth:`Learner.warm_start` is the supervised warm start on scripted demonstrations (§10.3).
Checkpoints hold everything a resumed run needs to continue bit for bit.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any, NamedTuple

import torch
from torch import Tensor

from agents.grpo.advantages import AdvantageOut, RewardBatch, make_estimator
from agents.grpo.calibration import CalibrationState
from agents.grpo.config import TrainConfig
from agents.grpo.distributed import (
    DistContext,
    all_gather_cat,
    all_gather_objects,
    all_reduce_sum,
    average_gradients,
    shard,
)
from agents.grpo.engines import GenerationEngine, HFEngine, SamplingParams, token_logprobs
from agents.grpo.losses import kl_penalty, loss_denominator, token_policy_loss
from agents.grpo.rollout import RolloutBatch, TerseRouter, TextCodec, collect_demos, collect_rollouts, concat_batches
from recal_gym.errors import InvalidConfig
from recal_gym.types import EpisodeRecord

__all__ = ["CHECKPOINT_FILE", "Learner", "build_envs", "build_learner", "load_policy", "policy_dir"]

logger = logging.getLogger(__name__)

CHECKPOINT_FILE = "checkpoint.pt"
"""File name of a learner checkpoint inside its directory."""

_TOKEN_MEAN_KEYS = (
    "policy/clipfrac_low",
    "policy/clipfrac_high",
    "policy/approx_kl",
    "policy/entropy",
    "policy/sampler_kl",
)


class _Acc:
    """Sums of loss metrics (additive) and token-weighted sums of per-token means."""

    def __init__(self) -> None:
        self.sums: dict[str, Tensor] = {}
        self.tokens = torch.zeros((), dtype=torch.float64)

    def add(self, metrics: dict[str, Tensor], n_tok: Tensor) -> None:
        for key, value in metrics.items():
            w = n_tok if key in _TOKEN_MEAN_KEYS else torch.ones((), dtype=torch.float64)
            self.sums[key] = self.sums.get(key, torch.zeros((), dtype=torch.float64)) + value.double() * w
        self.tokens = self.tokens + n_tok

    def result(self, ctx: DistContext, n_updates: int) -> dict[str, float]:
        keys = sorted(self.sums)
        packed = all_reduce_sum(torch.stack([self.sums[k] for k in keys] + [self.tokens]), ctx)
        tokens = float(packed[-1]) or 1.0
        return {
            k: float(v) / (tokens if k in _TOKEN_MEAN_KEYS else max(1, n_updates))
            for k, v in zip(keys, packed[:-1].tolist(), strict=True)
        }


class _Minibatch(NamedTuple):
    ids: Tensor
    attn: Tensor
    mask: Tensor
    adv: Tensor
    logp_old: Tensor | None
    sampler_logp: Tensor


class Learner:
    """ReCal/GRPO learner over RouterQA envs (one process of a data-parallel group).

    Args:
        config: The run configuration.
        model: The policy (a transformers causal LM, possibly LoRA-wrapped).
        tokenizer: Its tokenizer (with a chat template).
        envs: ``questions_per_step / world_size × group_size`` RouterQA envs (Gymnasium API), all
            with a ``"batch"``-mode reward spec.
        engine: Sampler; default :class:`~agents.grpo.engines.HFEngine` on ``model``.
        ctx: Data-parallel context.
        ref_model: Frozen reference for the KL term (required iff ``config.kl_coef > 0``).
    """

    def __init__(
        self,
        config: TrainConfig,
        *,
        model: torch.nn.Module,
        tokenizer: Any,
        envs: Sequence[Any],
        engine: GenerationEngine | None = None,
        ctx: DistContext | None = None,
        ref_model: torch.nn.Module | None = None,
    ) -> None:
        """Bind the parts; build the estimator, optimiser, calibration state and generators."""
        self.config = config
        self.ctx = ctx or DistContext()
        self.model = model
        self.codec = TextCodec(tokenizer)
        self.envs = list(envs)
        n_local = config.batch_size // self.ctx.world_size
        if len(self.envs) < n_local:
            raise InvalidConfig(f"Learner needs {n_local} envs on each rank, got {len(self.envs)}.")
        if config.kl_coef > 0.0 and ref_model is None:
            raise InvalidConfig(f"kl_coef={config.kl_coef!r} needs a reference model (ref_model).")
        self.ref_model = ref_model
        self.engine = engine or HFEngine(model, tokenizer)
        self.estimator = make_estimator(config.estimator, config.recal_config)
        self.loss_cfg = config.loss_config
        self.calibration = CalibrationState()
        self.trainable = [p for p in model.parameters() if p.requires_grad]
        self.optimizer = torch.optim.AdamW(self.trainable, lr=config.lr, weight_decay=config.weight_decay)
        self.question_generator = torch.Generator().manual_seed(config.seed)
        self.sample_generator = torch.Generator().manual_seed(config.seed * 7919 + 1 + self.ctx.rank)
        self.step_count = 0
        self.warmstart_done = config.warmstart_steps == 0
        self.last_rollout: RolloutBatch | None = None
        """This rank's rollout batch of the last :meth:`step` (records and exact rewards, for episode logs)."""
        env0 = self.envs[0].unwrapped
        self.question_ids: tuple[str, ...] = tuple(sorted(env0.questions.ids()))
        self.source_names: tuple[str, ...] = tuple(sorted(env0.questions.datasets()))
        self.models: tuple[str, ...] = tuple(m.name for m in env0.pool.spec.listed)
        spec = env0.reward_spec
        tau = config.answer_threshold
        self.gate_tau = None if tau is None or tau == spec.tau else (spec, float(tau))
        self._reward_state = env0.reward_state.copy()
        self.params = SamplingParams(
            max_new_tokens=config.max_new_tokens,
            temperature=config.temperature,
            top_p=config.top_p,
            top_k=config.top_k,
        )

    # ------------------------------------------------------------------ rollouts
    def _step_questions(self, count: int) -> tuple[list[str], list[int]]:
        """This rank's share of ``count`` distinct questions and their global indices (group ids)."""
        order = torch.randperm(len(self.question_ids), generator=self.question_generator)[:count].tolist()
        mine = shard(list(range(count)), self.ctx)
        return [self.question_ids[order[j]] for j in mine], mine

    def rollout(self) -> RolloutBatch:
        """Sample this step's questions and roll out G episodes each (no update)."""
        cfg = self.config
        qids, gids = self._step_questions(cfg.questions_per_step)
        reps = [q for q in qids for _ in range(cfg.group_size)]
        groups = [g for g in gids for _ in range(cfg.group_size)]
        self.model.eval()
        return collect_rollouts(
            self.envs[: len(reps)],
            self.engine,
            self.codec,
            reps,
            groups,
            self.params,
            self.sample_generator,
            source_names=self.source_names,
            gate_tau=self.gate_tau,
        )

    def _update_reward_state(self, records: Sequence[dict[str, Any]]) -> None:
        """Batch-mode reward-state update on the global batch, pushed to every env (``docs/learner.md`` §4.6)."""
        gathered = [r for part in all_gather_objects(list(records), self.ctx) for r in part]
        state = self._reward_state
        state.load_state_dict(self.envs[0].unwrapped.reward_state_dict())
        state.update_batch([EpisodeRecord.from_dict(r) for r in gathered])
        snapshot = state.state_dict()
        for env in self.envs:
            env.unwrapped.load_reward_state(snapshot)

    # ------------------------------------------------------------------ advantages and update
    def advantages(self, batch: RolloutBatch) -> AdvantageOut:
        """Advantages of this rank's rows, computed on the gathered global batch."""
        ctx = self.ctx
        sizes = all_gather_cat(torch.tensor([batch.raw.shape[0]]), ctx)
        rb = RewardBatch(
            raw=all_gather_cat(batch.raw, ctx),
            gated=all_gather_cat(batch.gated, ctx),
            scalar=all_gather_cat(batch.scalar, ctx),
            group=all_gather_cat(batch.group, ctx),
            source=all_gather_cat(batch.source, ctx),
            source_names=batch.source_names,
            weights=batch.weights,
            names=batch.names,
        )
        out = self.estimator(rb, self.calibration)
        start = int(sizes[: ctx.rank].sum())
        rows = slice(start, start + batch.raw.shape[0])
        return AdvantageOut(out.advantages[rows], out.valid[rows], out.metrics)

    def _minibatches(self, batch: RolloutBatch, adv: AdvantageOut) -> list[_Minibatch]:
        cfg = self.config
        n = batch.ids.shape[0]
        if n % cfg.minibatches:
            raise InvalidConfig(f"{n} trajectories per rank cannot form {cfg.minibatches} equal minibatches.")
        mask = batch.loss_mask * adv.valid.to(batch.loss_mask.dtype).unsqueeze(1)
        logp_old = None
        if cfg.epochs > 1 or cfg.minibatches > 1:  # ρ needs the pre-update policy; else ρ ≡ 1 in value
            logp_old = self._logprobs_nograd(batch.ids, batch.attn_mask)
        k = n // cfg.minibatches
        out = []
        for s in range(0, n, k):
            rows = slice(s, s + k)
            out.append(
                _Minibatch(
                    batch.ids[rows],
                    batch.attn_mask[rows],
                    mask[rows],
                    adv.advantages[rows],
                    None if logp_old is None else logp_old[rows],
                    batch.sampler_logp[rows],
                )
            )
        return out

    @torch.no_grad()
    def _logprobs_nograd(self, ids: Tensor, attn: Tensor, model: torch.nn.Module | None = None) -> Tensor:
        m = model or self.model
        parts = []
        for s in range(0, ids.shape[0], self.config.micro_batch_size):
            sl = slice(s, s + self.config.micro_batch_size)
            width = int(attn[sl].sum(1).max())
            lp, _ = token_logprobs(m, ids[sl, :width], attn[sl, :width], temperature=self.config.temperature)
            parts.append(torch.nn.functional.pad(lp, (0, ids.shape[1] - width)))
        return torch.cat(parts)

    def _micro_loss(self, mb: _Minibatch, rows: slice, denom: Tensor, acc: _Acc) -> None:
        cfg, lc = self.config, self.loss_cfg
        width = int(mb.attn[rows].sum(1).max())
        ids, attn, mask = mb.ids[rows, :width], mb.attn[rows, :width], mb.mask[rows, :width]
        logp, maybe_ent = token_logprobs(self.model, ids, attn, temperature=cfg.temperature, with_entropy=True)
        ent = torch.zeros_like(logp) if maybe_ent is None else maybe_ent
        old = logp.detach() if mb.logp_old is None else mb.logp_old[rows, :width]
        ref = None if self.ref_model is None else self._logprobs_nograd(ids, attn, self.ref_model)
        out = token_policy_loss(
            logp, old, mb.adv[rows], mask,
            clip_low=lc.clip_low, clip_high=lc.clip_high, dual_clip=lc.dual_clip,
            kl_coef=lc.kl_coef, kl_estimator=lc.kl_estimator, logp_ref=ref,
            entropy=ent if lc.entropy_coef > 0 else None, entropy_coef=lc.entropy_coef,
            loss_agg=lc.loss_agg, l_norm=lc.l_norm, denominator=denom,
        )  # fmt: skip
        (out.loss * self.ctx.world_size).backward()  # DDP averages over ranks; the denominator is global
        on = mask > 0
        n_tok = on.double().sum()
        metrics = dict(out.metrics)
        metrics["policy/entropy"] = (ent.detach().double() * on).sum() / n_tok.clamp(min=1.0)
        sampler = mb.sampler_logp[rows, :width]
        skl = kl_penalty(logp.detach(), sampler, "k3").double()
        metrics["policy/sampler_kl"] = (skl * on).sum() / n_tok.clamp(min=1.0)
        acc.add(metrics, n_tok)

    def _optimise(self, mb: _Minibatch, acc: _Acc) -> float:
        """One optimiser step on a minibatch; returns the pre-clip gradient norm."""
        lc = self.loss_cfg
        row_tokens = all_gather_cat(mb.mask.sum(dim=1, keepdim=True).double(), self.ctx)  # (N_global, 1)
        denom = loss_denominator(row_tokens, lc.loss_agg, lc.l_norm)
        self.optimizer.zero_grad(set_to_none=True)
        for s in range(0, mb.ids.shape[0], self.config.micro_batch_size):
            self._micro_loss(mb, slice(s, s + self.config.micro_batch_size), denom, acc)
        average_gradients(self.trainable, self.ctx)
        norm = torch.nn.utils.clip_grad_norm_(self.trainable, self.config.max_grad_norm)
        self.optimizer.step()
        return float(norm)

    def update(self, batch: RolloutBatch) -> dict[str, float]:
        """Advantages + ``epochs × minibatches`` optimiser steps on one rollout batch; returns metrics."""
        adv = self.advantages(batch)
        self.model.train()
        acc = _Acc()
        norms = []
        minibatches = self._minibatches(batch, adv)
        for _ in range(self.config.epochs):
            for mb in minibatches:
                norms.append(self._optimise(mb, acc))
        self.model.eval()
        self.engine.sync_weights(self.model)
        metrics = {k: float(v) for k, v in adv.metrics.items()}
        metrics.update(acc.result(self.ctx, len(norms)))
        metrics["policy/grad_norm"] = sum(norms) / len(norms)
        return metrics

    # ------------------------------------------------------------------ public loop
    def step(self) -> dict[str, float]:
        """One RL step: rollout, reward-state update, advantages, update. Returns the flat metrics."""
        t0 = time.perf_counter()
        batch = self.rollout()
        self.last_rollout = batch
        t1 = time.perf_counter()
        self._update_reward_state(batch.records)
        metrics = self.update(batch)
        t2 = time.perf_counter()
        metrics.update(self._episode_metrics(batch))
        tokens = float(all_reduce_sum(batch.attn_mask.sum().double(), self.ctx))
        metrics.update({"time/rollout_s": t1 - t0, "time/update_s": t2 - t1, "time/tokens_per_s": tokens / (t2 - t0)})
        self.step_count += 1
        return metrics

    def _episode_metrics(self, batch: RolloutBatch) -> dict[str, float]:
        packed = torch.stack(
            [batch.em.sum(), batch.format_ok.sum(), batch.turns.sum(), batch.loss_mask.sum(), batch.scalar.sum()]
        ).double()
        total = all_reduce_sum(packed, self.ctx)
        n = float(all_reduce_sum(torch.tensor(float(batch.em.shape[0]), dtype=torch.float64), self.ctx))
        names = ("episode/em", "episode/format_ok", "episode/turns", "episode/policy_tokens", "episode/return")
        return {k: float(v) / n for k, v in zip(names, total.tolist(), strict=True)}

    def demos(self, count: int) -> RolloutBatch:
        """Roll out ``count`` scripted demonstrations (this rank's share) for the warm start."""
        qids, _ = self._step_questions(count)
        seeds = torch.randint(0, 2**31 - 1, (len(qids),), generator=self.question_generator).tolist()
        routers = [
            TerseRouter(models=self.models, direct_share=self.config.warmstart_direct_share, seed=int(s)) for s in seeds
        ]
        return collect_demos(self.envs[: len(qids)], routers, self.codec, qids, source_names=self.source_names)

    def warm_start(self) -> list[dict[str, float]]:
        """Supervised warm start: behaviour cloning on env-rolled scripted demos (``docs/learner.md`` §10.3).

        Only the demonstrator's own text is a target; ``<information>`` splices are masked. Uses its
        own AdamW at ``warmstart_lr``. A no-op once done (e.g. after resuming).
        """
        if self.warmstart_done:
            return []
        cfg = self.config
        opt = torch.optim.AdamW(self.trainable, lr=cfg.warmstart_lr)
        history = []
        for _ in range(cfg.warmstart_steps):
            batch = self.demos(cfg.warmstart_batch)
            self.model.train()
            row_tokens = all_gather_cat(batch.loss_mask.sum(dim=1, keepdim=True).double(), self.ctx)
            denom = loss_denominator(row_tokens, "token-mean")
            opt.zero_grad(set_to_none=True)
            total = torch.zeros((), dtype=torch.float64)
            for s in range(0, batch.ids.shape[0], cfg.micro_batch_size):
                sl = slice(s, s + cfg.micro_batch_size)
                width = int(batch.attn_mask[sl].sum(1).max())
                logp, _ = token_logprobs(self.model, batch.ids[sl, :width], batch.attn_mask[sl, :width])
                loss = -(logp * batch.loss_mask[sl, :width]).sum() / denom.to(logp.dtype)
                (loss * self.ctx.world_size).backward()
                total = total + loss.detach().double()
            average_gradients(self.trainable, self.ctx)
            torch.nn.utils.clip_grad_norm_(self.trainable, cfg.max_grad_norm)
            opt.step()
            ep = self._episode_metrics(batch)
            history.append(
                {
                    "warmstart/loss": float(all_reduce_sum(total, self.ctx)),
                    "warmstart/demo_return": ep["episode/return"],
                    "warmstart/demo_em": ep["episode/em"],
                }
            )
        self.model.eval()
        self.engine.sync_weights(self.model)
        self.warmstart_done = True
        return history

    @torch.no_grad()
    def evaluate(self, question_ids: Sequence[str], group_size: int, *, seed: int) -> RolloutBatch:
        """Roll out the current policy on fixed questions with its own generator (no update, no state change).

        Rows are rolled out in chunks of at most ``len(envs)``; the reward state is restored after.
        """
        reps = [q for q in question_ids for _ in range(group_size)]
        gen = torch.Generator().manual_seed(seed)
        snapshot = self.envs[0].unwrapped.reward_state_dict()
        self.model.eval()
        parts = []
        for s in range(0, len(reps), len(self.envs)):
            chunk = reps[s : s + len(self.envs)]
            parts.append(
                collect_rollouts(
                    self.envs[: len(chunk)],
                    self.engine,
                    self.codec,
                    chunk,
                    list(range(s, s + len(chunk))),
                    self.params,
                    gen,
                    source_names=self.source_names,
                    gate_tau=self.gate_tau,
                )
            )
        for env in self.envs:
            env.unwrapped.load_reward_state(snapshot)
        return parts[0] if len(parts) == 1 else concat_batches(parts, self.codec.pad_id)

    # ------------------------------------------------------------------ checkpoints
    def state_dict(self) -> dict[str, Any]:
        """Everything a resumed run needs (model, optimiser, calibration, reward state, RNGs, counters)."""
        return {
            "model": {k: v.detach().clone() for k, v in self.model.state_dict().items()},
            "optimizer": self.optimizer.state_dict(),
            "calibration": self.calibration.state_dict(),
            "reward_state": self.envs[0].unwrapped.reward_state_dict(),
            "question_generator": self.question_generator.get_state(),
            "sample_generator": self.sample_generator.get_state(),
            "step": self.step_count,
            "warmstart_done": self.warmstart_done,
            "config": self.config.to_dict(),
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Restore :meth:`state_dict` and push the reward state to every env."""
        self.model.load_state_dict(state["model"])
        self.optimizer.load_state_dict(state["optimizer"])
        self.calibration.load_state_dict(state["calibration"])
        for env in self.envs:
            env.unwrapped.load_reward_state(state["reward_state"])
        self.question_generator.set_state(state["question_generator"])
        self.sample_generator.set_state(state["sample_generator"])
        self.step_count = int(state["step"])
        self.warmstart_done = bool(state["warmstart_done"])
        self.engine.sync_weights(self.model)

    def save_checkpoint(self, directory: str | Path) -> Path:
        """Write ``directory/checkpoint.pt`` (rank 0 only under data parallelism); returns its path."""
        path = Path(directory) / CHECKPOINT_FILE
        if self.ctx.rank == 0:
            path.parent.mkdir(parents=True, exist_ok=True)
            torch.save(self.state_dict(), path)
        return path

    def load_init_weights(self, directory: str | Path) -> None:
        """Start from the model weights of ``directory/checkpoint.pt`` (e.g. a shared warm start).

        Only the weights are taken (the reference model too, when there is one); the optimiser,
        calibration state, reward state, generators and step counter stay fresh, and the warm start
        is marked done.
        """
        state = torch.load(Path(directory) / CHECKPOINT_FILE, weights_only=False)
        self.model.load_state_dict(state["model"])
        if self.ref_model is not None:
            self.ref_model.load_state_dict(state["model"])
        self.warmstart_done = True
        self.engine.sync_weights(self.model)

    def load_checkpoint(self, directory: str | Path) -> None:
        """Load ``directory/checkpoint.pt`` (the learner's own file format)."""
        self.load_state_dict(torch.load(Path(directory) / CHECKPOINT_FILE, weights_only=False))


# ---------------------------------------------------------------------- construction
def policy_dir(config: TrainConfig, work_dir: str | Path) -> Path:
    """The local directory holding the policy's weights (built or converted on first use).

    ``tiny`` is config-built under ``work_dir`` (head size 64 when the vLLM engine samples, which
    vLLM's CPU attention needs); ``smollm2`` is the cached conversion of the offline asset; anything
    else is ``config.policy`` itself, a local directory (nothing is fetched from a hub).
    """
    if config.policy == "tiny":
        from agents.models.tiny_model import build_tiny_model

        out = Path(work_dir) / "tiny-policy"
        if config.engine == "vllm":
            return build_tiny_model(
                out,
                hidden_size=128,
                num_heads=2,
                num_kv_heads=2,
                intermediate_size=256,
                max_position_embeddings=8192,
                seed=config.seed,
            )
        return build_tiny_model(out, seed=config.seed, max_position_embeddings=8192)
    if config.policy == "smollm2":
        from agents.models.assets_prepare import prepare_smollm2

        return prepare_smollm2()  # converts the GGUF once into the cache; later calls are no-ops
    return Path(config.policy)


def load_policy(config: TrainConfig, work_dir: str | Path) -> tuple[torch.nn.Module, Any]:
    """Load the policy (see :func:`policy_dir`) and its tokenizer; wrap with LoRA if asked."""
    from transformers import AutoModelForCausalLM, AutoTokenizer

    path = policy_dir(config, work_dir)
    tokenizer: Any
    if config.policy == "tiny":
        from agents.models.tiny_model import load_tiny_tokenizer

        tokenizer = load_tiny_tokenizer(path)
    else:
        tokenizer = AutoTokenizer.from_pretrained(path, local_files_only=True)
    model: Any = AutoModelForCausalLM.from_pretrained(path, local_files_only=True, dtype=torch.float32)
    if config.lora_rank > 0:
        from recal_gym.optional import require

        peft = require("peft", feature="LoRA (TrainConfig.lora_rank > 0)")
        LoraConfig, get_peft_model = peft.LoraConfig, peft.get_peft_model
        lora = LoraConfig(r=config.lora_rank, lora_alpha=2 * config.lora_rank, target_modules="all-linear")
        model = get_peft_model(model, lora)
    model.eval()
    return model, tokenizer


def build_envs(config: TrainConfig, tokenizer: Any, count: int) -> list[Any]:
    """``count`` RouterQA envs sharing one question set and one simulated pool (batch-mode rewards)."""
    from envs.router_qa import RouterQAEnv
    from recal_gym.data import load_questions
    from recal_gym.pools import build_pool
    from recal_gym.pools.options import PoolOptions
    from recal_gym.rewards import make_spec

    questions = load_questions(config.dataset)
    pool = build_pool(config.pool or None, PoolOptions(seed=config.pool_seed))
    spec = make_spec(config.reward_spec, update_mode="batch")
    return [
        RouterQAEnv(
            questions,
            pool=pool,
            reward=spec,
            max_routed_turns=config.max_routed_turns,
            max_turn_tokens=config.max_new_tokens,
            max_obs_length=config.max_obs_tokens,
            max_start_length=config.max_start_length,
            token_counter=tokenizer,
        )
        for _ in range(count)
    ]


def build_learner(config: TrainConfig, work_dir: str | Path, *, ctx: DistContext | None = None) -> Learner:
    """Build policy, envs, engine (and reference model when β > 0) into a :class:`Learner`."""
    import copy

    ctx = ctx or DistContext()
    model, tokenizer = load_policy(config, work_dir)
    n_local = max(config.batch_size // ctx.world_size, config.warmstart_batch // ctx.world_size)
    envs = build_envs(config, tokenizer, n_local)
    ref = None
    if config.kl_coef > 0.0:
        ref = copy.deepcopy(model).eval()
        for p in ref.parameters():
            p.requires_grad_(False)
    engine: GenerationEngine | None = None
    if config.engine == "vllm":
        from agents.grpo.engines import VLLMEngine

        engine = VLLMEngine(str(policy_dir(config, work_dir)), tokenizer)
    logger.info("learner built: policy=%s envs=%d reward=%s", config.policy, len(envs), config.reward)
    learner = Learner(config, model=model, tokenizer=tokenizer, envs=envs, engine=engine, ctx=ctx, ref_model=ref)
    if config.init_checkpoint:
        learner.load_init_weights(config.init_checkpoint)
    return learner
