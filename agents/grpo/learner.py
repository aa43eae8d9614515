"""The token-level GRPO/ReCal learner: orchestration only (``docs/learner.md`` §4.6, §6-§8, §10).

One :meth:`Learner.step`: sample the step's questions → roll out G episodes each in the
:class:`~envs.vector.RouterQAVectorEnv` (:mod:`agents.grpo.rollout`; one pool batch per turn) → with
``dynamic_sampling``, replace zero-variance groups (:mod:`agents.grpo.dynamic_sampling`) →
batch-mode update of the reward state the learner owns and the env shares → advantages on the
gathered global batch (:mod:`agents.grpo.advantages` registry, with the learner's
:class:`~agents.grpo.calibration.CalibrationState`) → token loss with a global denominator over
micro-batches (:mod:`agents.grpo.losses`) → gradient average over ranks, clip, AdamW → one flat metrics
dict. :meth:`Learner.warm_start_iter` is the supervised warm start on scripted demonstrations with
probe-based stop criteria (§10.3). Checkpoints (:mod:`agents.grpo.checkpoint`) hold everything a
resumed run needs to continue bit for bit. Construction lives in :mod:`agents.grpo.build`.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, NamedTuple

import torch
from torch import Tensor

from agents.grpo.advantages import AdvantageOut, RewardBatch, make_estimator
from agents.grpo.calibration import CalibrationState
from agents.grpo.checkpoint import MANIFEST, find_checkpoint, read_checkpoint, write_checkpoint
from agents.grpo.config import TrainConfig
from agents.grpo.distributed import (
    DistContext,
    all_gather_cat,
    all_gather_objects,
    all_reduce_sum,
    average_gradients,
    shard,
)
from agents.grpo.dynamic_sampling import SAMPLING_KEYS, refill_groups
from agents.grpo.engines import GenerationEngine, HFEngine, SamplingParams, token_logprobs
from agents.grpo.losses import kl_penalty, loss_denominator, token_policy_loss
from agents.grpo.precision import autocast, resolve_precision
from agents.grpo.prefix import PrefixKV, encode_prefix
from agents.grpo.rollout import (
    RolloutBatch,
    TerseRouter,
    TextCodec,
    collect_demos,
    collect_rollouts,
    concat_batches,
)
from agents.grpo.route_stats import route_metrics, route_stats
from agents.grpo.warmstart import criteria_met, probe_metrics
from recal_gym.errors import InvalidConfig
from recal_gym.types import EpisodeRecord

if TYPE_CHECKING:
    from agents.grpo.build import TrainEnv

__all__ = ["Learner"]

logger = logging.getLogger(__name__)

_TOKEN_MEAN_KEYS = (
    "policy/clipfrac_low",
    "policy/clipfrac_high",
    "policy/approx_kl",
    "policy/entropy",
    "policy/sampler_kl",
)
_ROUTE_MEAN_KEYS = ("policy/route_entropy",)


class _Acc:
    """Sums of loss metrics (additive) and token-weighted sums of per-token means (policy or route tokens)."""

    def __init__(self) -> None:
        self.sums: dict[str, Tensor] = {}
        self.tokens = torch.zeros((), dtype=torch.float64)
        self.route_tokens = torch.zeros((), dtype=torch.float64)

    def add(self, metrics: dict[str, Tensor], n_tok: Tensor, n_route: Tensor) -> None:
        one = torch.ones((), dtype=torch.float64)
        for key, value in metrics.items():
            w = n_tok if key in _TOKEN_MEAN_KEYS else n_route if key in _ROUTE_MEAN_KEYS else one
            self.sums[key] = self.sums.get(key, torch.zeros((), dtype=torch.float64)) + value.double() * w
        self.tokens = self.tokens + n_tok
        self.route_tokens = self.route_tokens + n_route

    def result(self, ctx: DistContext, n_updates: int) -> dict[str, float]:
        keys = sorted(self.sums)
        packed = all_reduce_sum(torch.stack([self.sums[k] for k in keys] + [self.tokens, self.route_tokens]), ctx)
        tokens, route = float(packed[-2]) or 1.0, float(packed[-1]) or 1.0
        scale = {
            k: tokens if k in _TOKEN_MEAN_KEYS else route if k in _ROUTE_MEAN_KEYS else max(1, n_updates) for k in keys
        }
        return {k: float(v) / scale[k] for k, v in zip(keys, packed[:-2].tolist(), strict=True)}


class _Minibatch(NamedTuple):
    ids: Tensor
    attn: Tensor
    mask: Tensor
    adv: Tensor
    logp_old: Tensor | None
    sampler_logp: Tensor
    route: Tensor


class Learner:
    """ReCal/GRPO learner over a RouterQA vector env (one process of a data-parallel group).

    Args:
        config: The run configuration.
        model: The policy (a transformers causal LM, possibly LoRA-wrapped).
        tokenizer: Its tokenizer (with a chat template).
        env: The vector env and what it was built from (:func:`agents.grpo.build.build_env`), with at
            least ``questions_per_step / world_size × group_size`` sub-envs, in ``"batch"`` reward mode.
        engine: Sampler; default :class:`~agents.grpo.engines.HFEngine` on ``model``.
        ctx: Data-parallel context.
        ref_model: Frozen reference for the KL term (required iff ``config.loss.kl_coef > 0``); it is
            reset to the warm-started weights when the warm start ends.
    """

    def __init__(
        self,
        config: TrainConfig,
        *,
        model: torch.nn.Module,
        tokenizer: Any,
        env: TrainEnv,
        engine: GenerationEngine | None = None,
        ctx: DistContext | None = None,
        ref_model: torch.nn.Module | None = None,
    ) -> None:
        """Bind the parts; build the estimator, optimiser, calibration state and generators."""
        self.config = config
        self.ctx = ctx or DistContext()
        self.model = model
        self.codec = TextCodec(tokenizer)
        self.env = env.env
        self.questions = env.questions
        self.models = env.models
        self.reward_state = env.reward_state
        self.reward_spec = env.spec
        n_local = config.batch_size // self.ctx.world_size
        if int(self.env.num_envs) < n_local:
            raise InvalidConfig(f"Learner needs {n_local} sub-envs on each rank, got {self.env.num_envs}.")
        if config.loss.kl_coef > 0.0 and ref_model is None:
            raise InvalidConfig(f"loss.kl_coef={config.loss.kl_coef!r} needs a reference model (ref_model).")
        self.ref_model = ref_model
        self.precision = resolve_precision(config.precision)
        self.engine = engine or HFEngine.from_config(model, tokenizer, config)
        self.estimator = make_estimator(config.estimator, config.recal)
        self.loss_cfg = config.loss_config
        self.calibration = CalibrationState()
        self.trainable = [p for p in model.parameters() if p.requires_grad]
        self.optimizer = torch.optim.AdamW(self.trainable, lr=config.lr, weight_decay=config.weight_decay)
        self.question_generator = torch.Generator().manual_seed(config.seed)
        self.sample_generator = torch.Generator().manual_seed(config.seed * 7919 + 1 + self.ctx.rank)
        self.refill_generator = torch.Generator().manual_seed(config.seed * 7919 + 104729 + self.ctx.rank)
        self.step_count = 0
        self.episodes_rolled = 0
        """Training trajectories this rank rolled out so far; keys the next ones' ``call_seed``."""
        self.warmstart_done = config.warmstart_steps == 0
        self.last_rollout: RolloutBatch | None = None
        """This rank's rollout batch of the last :meth:`step` (records and exact rewards, for episode logs)."""
        self.warmstart_steps_done = 0
        from agents.grpo.build import split_question_ids

        train, heldout = split_question_ids(env.questions, config.heldout_fraction, config.split_seed)
        self.question_ids: tuple[str, ...] = tuple(train)
        self.heldout_ids: tuple[str, ...] = tuple(heldout)
        self.source_names: tuple[str, ...] = tuple(sorted(env.questions.datasets()))
        tau = config.recal.answer_threshold
        self.gate_tau = None if tau is None or tau == env.spec.tau else (env.spec, float(tau))
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

    def _roll(self, qids: Sequence[str], gids: Sequence[int], generator: torch.Generator | None = None) -> RolloutBatch:
        g = self.config.group_size
        n, world, rank = len(qids) * g, self.ctx.world_size, self.ctx.rank
        base = self.episodes_rolled
        self.episodes_rolled += n
        return collect_rollouts(
            self.env,
            self.engine,
            self.codec,
            [q for q in qids for _ in range(g)],
            [i for i in gids for _ in range(g)],
            self.params,
            generator or self.sample_generator,
            source_names=self.source_names,
            gate_tau=self.gate_tau,
            call_seeds=[(base + i) * world + rank for i in range(n)],  # unique per trajectory, rank and step
        )

    def rollout(self) -> RolloutBatch:
        """Sample this step's questions and roll out G episodes each (no update)."""
        return self._rollout_step()[0]

    def _rollout_step(self) -> tuple[RolloutBatch, dict[str, float]]:
        qids, gids = self._step_questions(self.config.questions_per_step)
        self.model.eval()
        batch = self._roll(qids, gids)
        if not self.config.dynamic_sampling:
            return batch, {}
        return self._refill(batch, len(qids))

    def _refill(self, batch: RolloutBatch, n_groups: int) -> tuple[RolloutBatch, dict[str, float]]:
        """Dynamic sampling: roll out fresh groups for zero-variance ones, in bounded extra rounds."""
        cfg = self.config
        base = cfg.questions_per_step * (1 + self.ctx.rank * max(1, cfg.dynamic_sampling_rounds))

        def draw(need: int, offset: int) -> RolloutBatch:
            order = torch.randperm(len(self.question_ids), generator=self.refill_generator)[:need].tolist()
            gids = range(base + offset, base + offset + need)  # unique across ranks and rounds
            return self._roll([self.question_ids[j] for j in order], list(gids))

        g, rounds, pad = cfg.group_size, cfg.dynamic_sampling_rounds, self.codec.pad_id
        out = refill_groups(batch, n_groups, draw, group_size=g, rounds=rounds, pad_id=pad)
        mean = all_reduce_sum(torch.tensor(out.stats, dtype=torch.float64), self.ctx) / self.ctx.world_size
        return out.batch, dict(zip(SAMPLING_KEYS, mean.tolist(), strict=True))

    def _update_reward_state(self, records: Sequence[dict[str, Any]]) -> None:
        """Batch-mode update of the shared reward state on the global batch (``docs/learner.md`` §4.6)."""
        gathered = [r for part in all_gather_objects(list(records), self.ctx) for r in part]
        self.reward_state.update_batch([EpisodeRecord.from_dict(r) for r in gathered], self.reward_spec)

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
            logp_old = self._logprobs_nograd(batch.ids, batch.attn_mask, mask)
        k = n // cfg.minibatches
        return [
            _Minibatch(
                batch.ids[s : s + k],
                batch.attn_mask[s : s + k],
                mask[s : s + k],
                adv.advantages[s : s + k],
                None if logp_old is None else logp_old[s : s + k],
                batch.sampler_logp[s : s + k],
                batch.route_mask[s : s + k] * mask[s : s + k],
            )
            for s in range(0, n, k)
        ]

    def _token_logprobs(
        self, model: torch.nn.Module, ids: Tensor, attn: Tensor, mask: Tensor, **kwargs: Any
    ) -> tuple[Tensor, Tensor | None]:
        """:func:`token_logprobs` with the head only on ``mask`` positions, under this forward's own autocast."""
        needed = None if self.config.logits == "all" else mask > 0
        with autocast(self.precision):  # per forward call: never a context spanning optimiser steps
            return token_logprobs(model, ids, attn, needed=needed, **kwargs)

    def _step_prefix(self, ids: Tensor, attn: Tensor, mask: Tensor) -> PrefixKV | None:
        """The prompt prefix of one optimiser step's rows, encoded once for all its micro-batches."""
        if self.config.logits == "all" or ids.shape[0] <= self.config.micro_batch_size:
            return None
        with autocast(self.precision):
            return encode_prefix(self.model, ids, attn, mask > 0)

    @torch.no_grad()
    def _logprobs_nograd(self, ids: Tensor, attn: Tensor, mask: Tensor, model: torch.nn.Module | None = None) -> Tensor:
        m = model or self.model
        parts = []
        for s in range(0, ids.shape[0], self.config.micro_batch_size):
            sl = slice(s, s + self.config.micro_batch_size)
            width = int(attn[sl].sum(1).max())
            lp, _ = self._token_logprobs(
                m, ids[sl, :width], attn[sl, :width], mask[sl, :width], temperature=self.config.temperature
            )
            parts.append(torch.nn.functional.pad(lp, (0, ids.shape[1] - width)))
        return torch.cat(parts)

    def _micro_loss(self, mb: _Minibatch, rows: slice, denom: Tensor, acc: _Acc, prefix: PrefixKV | None) -> None:
        cfg, lc = self.config, self.loss_cfg
        width = int(mb.attn[rows].sum(1).max())
        ids, attn, mask = mb.ids[rows, :width], mb.attn[rows, :width], mb.mask[rows, :width]
        route = mb.route[rows, :width]
        logp, maybe_ent = self._token_logprobs(
            self.model, ids, attn, mask, temperature=cfg.temperature, with_entropy=True,
            entropy_grad=lc.entropy_coef > 0, prefix=prefix,
        )  # fmt: skip
        ent = torch.zeros_like(logp) if maybe_ent is None else maybe_ent
        old = logp.detach() if mb.logp_old is None else mb.logp_old[rows, :width]
        ref = None if self.ref_model is None else self._logprobs_nograd(ids, attn, mask, self.ref_model)
        bonus = None if lc.entropy_coef == 0 else ent if lc.entropy_scope == "all" else ent * route
        out = token_policy_loss(
            logp, old, mb.adv[rows], mask,
            clip_low=lc.clip_low, clip_high=lc.clip_high, dual_clip=lc.dual_clip,
            kl_coef=lc.kl_coef, kl_estimator=lc.kl_estimator, logp_ref=ref,
            entropy=bonus, entropy_coef=lc.entropy_coef,
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
        n_route = route.double().sum()
        metrics["policy/route_entropy"] = (ent.detach().double() * route).sum() / n_route.clamp(min=1.0)
        acc.add(metrics, n_tok, n_route)

    def _optimise(self, mb: _Minibatch, acc: _Acc) -> float:
        """One optimiser step on a minibatch; returns the pre-clip gradient norm."""
        lc = self.loss_cfg
        row_tokens = all_gather_cat(mb.mask.sum(dim=1, keepdim=True).double(), self.ctx)  # (N_global, 1)
        denom = loss_denominator(row_tokens, lc.loss_agg, lc.l_norm)
        self.optimizer.zero_grad(set_to_none=True)
        prefix = self._step_prefix(mb.ids, mb.attn, mb.mask)
        for s in range(0, mb.ids.shape[0], self.config.micro_batch_size):
            self._micro_loss(mb, slice(s, s + self.config.micro_batch_size), denom, acc, prefix)
        if prefix is not None:
            prefix.backward()
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
        batch, sampling = self._rollout_step()
        self.last_rollout = batch
        t1 = time.perf_counter()
        self._update_reward_state(batch.records)
        metrics = self.update(batch)
        t2 = time.perf_counter()
        metrics.update(self.episode_metrics(batch))
        metrics.update(sampling)
        tokens = float(all_reduce_sum(batch.attn_mask.sum().double(), self.ctx))
        metrics.update({"time/rollout_s": t1 - t0, "time/update_s": t2 - t1, "time/tokens_per_s": tokens / (t2 - t0)})
        self.step_count += 1
        return metrics

    def episode_metrics(self, batch: RolloutBatch, *, gather: bool = True) -> dict[str, float]:
        """``episode/*`` means and ``route/*`` metrics of a batch (over all ranks unless ``gather=False``)."""
        packed = torch.stack(
            [batch.em.sum(), batch.format_ok.sum(), batch.turns.sum(), batch.loss_mask.sum(), batch.scalar.sum()]
        ).double()
        n = torch.tensor(float(batch.em.shape[0]), dtype=torch.float64)
        parts = [(batch.routes, batch.question_ids)]
        if gather:
            packed, n = all_reduce_sum(packed, self.ctx), all_reduce_sum(n, self.ctx)
            parts = all_gather_objects(parts[0], self.ctx)
        names = ("episode/em", "episode/format_ok", "episode/turns", "episode/policy_tokens", "episode/return")
        out = {k: float(v) / float(n) for k, v in zip(names, packed.tolist(), strict=True)}
        out["episode/format_error"] = 1.0 - out["episode/format_ok"]
        routes = [r for part in parts for r in part[0]]
        rows = [self.questions.by_id(q) for part in parts for q in part[1]]
        out.update(route_metrics(route_stats(routes, rows, self.models)))
        return out

    # ------------------------------------------------------------------ warm start
    def demos(self, count: int) -> RolloutBatch:
        """Roll out ``count`` scripted demonstrations (this rank's share) for the warm start.

        ``round(warmstart_direct_share · count)`` answer at once; the others route, their models
        cycling through the listed models in a shuffled order, so every model is demonstrated
        (near) equally often and the cloned choice starts (near) uniform.
        """
        qids, mine = self._step_questions(count)
        n_direct = round(self.config.warmstart_direct_share * count)
        order = torch.randperm(len(self.models), generator=self.question_generator).tolist()
        plan = [""] * n_direct + [self.models[order[i % len(order)]] for i in range(count - n_direct)]
        slots = torch.randperm(count, generator=self.question_generator).tolist()
        seeds = torch.randint(0, 2**31 - 1, (count,), generator=self.question_generator).tolist()
        routers = [TerseRouter(models=self.models, plan=plan[slots[j]], seed=int(seeds[j])) for j in mine]
        return collect_demos(self.env, routers, self.codec, qids, source_names=self.source_names)

    def _warm_step(self, opt: torch.optim.Optimizer) -> dict[str, float]:
        cfg = self.config
        batch = self.demos(cfg.warmstart_batch)
        self.model.train()
        row_tokens = all_gather_cat(batch.loss_mask.sum(dim=1, keepdim=True).double(), self.ctx)
        denom = loss_denominator(row_tokens, "token-mean")
        opt.zero_grad(set_to_none=True)
        total = torch.zeros((), dtype=torch.float64)
        prefix = self._step_prefix(batch.ids, batch.attn_mask, batch.loss_mask)
        for s in range(0, batch.ids.shape[0], cfg.micro_batch_size):
            sl = slice(s, s + cfg.micro_batch_size)
            width = int(batch.attn_mask[sl].sum(1).max())
            ids, attn = batch.ids[sl, :width], batch.attn_mask[sl, :width]
            logp, _ = self._token_logprobs(self.model, ids, attn, batch.loss_mask[sl, :width], prefix=prefix)
            loss = -(logp * batch.loss_mask[sl, :width]).sum() / denom.to(logp.dtype)
            (loss * self.ctx.world_size).backward()
            total = total + loss.detach().double()
        if prefix is not None:
            prefix.backward()
        average_gradients(self.trainable, self.ctx)
        torch.nn.utils.clip_grad_norm_(self.trainable, cfg.max_grad_norm)
        opt.step()
        self.model.eval()
        ep = self.episode_metrics(batch)
        self.warmstart_steps_done += 1
        return {
            "warmstart/loss": float(all_reduce_sum(total, self.ctx)),
            "warmstart/demo_return": ep["episode/return"],
            "warmstart/demo_em": ep["episode/em"],
            "warmstart/demo_choice_entropy": ep["route/choice_entropy"],
        }

    def probe_ids(self) -> list[str]:
        """The fixed training questions of the warm-start probe (a permutation seeded by ``seed``)."""
        gen = torch.Generator().manual_seed(self.config.seed + 1)
        order = torch.randperm(len(self.question_ids), generator=gen).tolist()
        return [self.question_ids[j] for j in order[: self.config.warmstart_probe_questions]]

    def probe(self, question_ids: Sequence[str]) -> dict[str, float]:
        """``probe/*`` metrics of one sampled rollout per question (no update, no state change)."""
        batch = self.evaluate(question_ids, 1, seed=self.config.seed + 2)
        return probe_metrics(self.episode_metrics(batch, gather=False))

    def warm_start_iter(self) -> Iterator[dict[str, float]]:
        """Supervised warm start, one metrics record per step (``docs/learner.md`` §10.3).

        Behaviour cloning on env-rolled scripted demos: only the demonstrator's own text is a target
        (``<information>`` splices are masked), with its own AdamW at ``warmstart_lr``. At most
        ``warmstart_steps`` steps; with ``warmstart_probe_every`` > 0 the policy is probed every that
        many steps (after ``warmstart_min_steps``) and the warm start stops once every set criterion
        holds (:func:`agents.grpo.warmstart.criteria_met`). The last record holds
        ``warmstart/steps_total``, ``warmstart/criteria_met_at_end`` and ``warmstart/stopped_early``
        (met before the budget ran out). A no-op once done (e.g. resumed).
        """
        if self.warmstart_done:
            return
        cfg = self.config
        opt = torch.optim.AdamW(self.trainable, lr=cfg.warmstart_lr)
        probes = self.probe_ids() if cfg.warmstart_probe_every else []
        stopped = False
        for k in range(1, cfg.warmstart_steps + 1):
            record = self._warm_step(opt)
            due = cfg.warmstart_probe_every and k >= cfg.warmstart_min_steps
            if due and (k % cfg.warmstart_probe_every == 0 or k == cfg.warmstart_steps):
                probe = self.probe(probes)
                stopped, _ = criteria_met(probe, cfg)
                record.update(probe)
                record["warmstart/criteria_met"] = float(stopped)
            if stopped or k == cfg.warmstart_steps:
                self._finish_warm_start()
                record.update(
                    {
                        "warmstart/steps_total": float(k),
                        "warmstart/criteria_met_at_end": float(stopped),
                        "warmstart/stopped_early": float(stopped and k < cfg.warmstart_steps),
                    }
                )
                yield record
                return
            yield record
        self._finish_warm_start()

    def _finish_warm_start(self) -> None:
        self.model.eval()
        self.engine.sync_weights(self.model)
        if self.ref_model is not None:  # KL to the warm-started policy
            self.ref_model.load_state_dict(self.model.state_dict())
        self.warmstart_done = True

    def warm_start(self) -> list[dict[str, float]]:
        """Run :meth:`warm_start_iter` to the end; returns its records."""
        return list(self.warm_start_iter())

    @torch.no_grad()
    def evaluate(self, question_ids: Sequence[str], group_size: int, *, seed: int) -> RolloutBatch:
        """Roll out the current policy on fixed questions with its own generator (no update, no state change).

        Rows go out in chunks of at most ``num_envs``; the reward state is restored after.
        """
        reps = [q for q in question_ids for _ in range(group_size)]
        gen = torch.Generator().manual_seed(seed)
        snapshot = self.reward_state.state_dict()
        self.model.eval()
        parts = []
        width = int(self.env.num_envs)
        for s in range(0, len(reps), width):
            chunk = reps[s : s + width]
            parts.append(
                collect_rollouts(
                    self.env,
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
        self.reward_state.load_state_dict(snapshot)
        return parts[0] if len(parts) == 1 else concat_batches(parts, self.codec.pad_id)

    # ------------------------------------------------------------------ checkpoints
    def state_dict(self) -> dict[str, Any]:
        """Everything a resumed run needs (model, optimiser, calibration, reward state, RNGs, counters)."""
        return {
            "model": {k: v.detach().clone() for k, v in self.model.state_dict().items()},
            "ref_model": None if self.ref_model is None else self.ref_model.state_dict(),
            "optimizer": self.optimizer.state_dict(),
            "calibration": self.calibration.state_dict(),
            "reward_state": self.reward_state.state_dict(),
            "question_generator": self.question_generator.get_state(),
            "sample_generator": self.sample_generator.get_state(),
            "refill_generator": self.refill_generator.get_state(),
            "step": self.step_count,
            "episodes_rolled": self.episodes_rolled,
            "warmstart_done": self.warmstart_done,
            "warmstart_steps_done": self.warmstart_steps_done,
            "config": self.config.to_dict(),
            "reward_spec_hash": self.reward_spec.hash,
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Restore :meth:`state_dict` (the shared reward state in place).

        Raises:
            InvalidConfig: the state was trained under another reward spec (its ``reward_spec_hash``
                differs from this learner's): its calibration and reward state would not mean the same.
        """
        saved = state.get("reward_spec_hash")
        if saved is not None and saved != self.reward_spec.hash:
            raise InvalidConfig(
                f"checkpoint was trained under reward spec {saved}, this run scores under {self.reward_spec.hash}; "
                "resume with the checkpoint's own reward (or start a new run with --init-checkpoint)"
            )
        self.model.load_state_dict(state["model"])
        if self.ref_model is not None and state.get("ref_model") is not None:
            self.ref_model.load_state_dict(state["ref_model"])
        self.optimizer.load_state_dict(state["optimizer"])
        self.calibration.load_state_dict(state["calibration"])
        self.reward_state.load_state_dict(state["reward_state"])
        self.question_generator.set_state(state["question_generator"])
        self.sample_generator.set_state(state["sample_generator"])
        self.refill_generator.set_state(state["refill_generator"])
        self.step_count = int(state["step"])
        self.episodes_rolled = int(state.get("episodes_rolled", 0))  # absent in checkpoints before reply noise
        self.warmstart_done = bool(state["warmstart_done"])
        self.warmstart_steps_done = int(state["warmstart_steps_done"])
        self.engine.sync_weights(self.model)

    def save_checkpoint(self, directory: str | Path) -> Path:
        """Write a verified checkpoint into ``directory`` (rank 0 only); returns the manifest's path.

        Crash-safe (temporary file, ``fsync``, ``os.replace``; see :mod:`agents.grpo.checkpoint`). The
        manifest records the config, the step and the run metadata of the determinism contract.
        """
        directory = Path(directory)
        if self.ctx.rank == 0:
            meta = {
                "torch": torch.__version__,
                "threads": torch.get_num_threads(),
                "world_size": self.ctx.world_size,
                "reward_spec_hash": self.reward_spec.hash,
            }
            config = self.config.to_dict()
            write_checkpoint(directory, self.state_dict(), step=self.step_count, config=config, meta=meta)
        return directory / MANIFEST

    def load_init_weights(self, directory: str | Path) -> None:
        """Start from the model weights of the checkpoint in ``directory`` (e.g. a shared warm start).

        Only the weights are taken (the reference model too, when there is one); the optimiser,
        calibration state, reward state, generators and step counter stay fresh, and the warm start
        is marked done.

        Raises:
            CorruptCheckpoint: ``directory`` holds no valid checkpoint.
        """
        state, _ = read_checkpoint(find_checkpoint(directory))
        self.model.load_state_dict(state["model"])
        if self.ref_model is not None:
            self.ref_model.load_state_dict(state["model"])
        self.warmstart_done = True
        self.engine.sync_weights(self.model)

    def load_checkpoint(self, directory: str | Path) -> None:
        """Verify and load the checkpoint in ``directory`` (or ``directory/checkpoint``).

        Raises:
            CorruptCheckpoint: no manifest, or a torn or altered state file.
        """
        state, _ = read_checkpoint(find_checkpoint(directory))
        self.load_state_dict(state)
