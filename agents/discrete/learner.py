"""Group-sampled policy gradient on ``RouterQADiscrete-v0`` with the token learner's estimators.

Each step (:meth:`DiscreteLearner.step`):

1. draw ``questions_per_step`` distinct training questions and one ``call_seed`` per trajectory from the
   data generator (identical across estimators of one seed: a paired design);
2. roll out ``group_size`` trajectories per question with the masked categorical policy
   (:mod:`agents.discrete.rollout`, actions sampled from the sampling generator);
3. in batch reward-state mode, push the batch's episode records into the shared
   :class:`~recal_gym.rewards.state.RewardState` (``docs/rewards.md`` §8), as the token learner does;
4. advantages per trajectory from the registered estimator
   (``agents.grpo.advantages.make_estimator``) and its :class:`~agents.grpo.calibration.CalibrationState`,
   broadcast to every action of the trajectory;
5. ``epochs × minibatches`` steps of the clipped surrogate, :func:`agents.grpo.losses.token_policy_loss`
   with actions as tokens (``docs/learner.md`` §7).

The learner orchestrates only: the math lives in ``agents.grpo`` and :mod:`agents.discrete.policy`.
"""

from __future__ import annotations

import copy
from collections.abc import Sequence
from typing import Any

import numpy as np
import torch
from torch import Tensor

from agents.discrete.config import DiscreteConfig
from agents.discrete.policy import MLPPolicy, greedy_actions, sample_actions, taken_log_prob_and_entropy
from agents.discrete.rollout import DiscreteBatch, Episode, make_batch, run_episodes
from agents.grpo.advantages import AdvantageOut, make_estimator
from agents.grpo.calibration import CalibrationState
from agents.grpo.losses import loss_denominator, token_policy_loss
from recal_gym.errors import InvalidConfig
from recal_gym.rewards.state import RewardState
from recal_gym.types import EpisodeRecord

__all__ = ["DiscreteLearner"]

_STREAMS = ("init", "data", "sample", "update")
_MAX_CALL_SEED = 2**31 - 1


def _stream_seed(seed: int, stream: str) -> int:
    """Seed of one named random stream of a run (independent streams from one run seed)."""
    return int(np.random.SeedSequence([seed, _STREAMS.index(stream)]).generate_state(1, dtype=np.uint64)[0] >> 1)


class DiscreteLearner:
    """Trains a :class:`~agents.discrete.policy.MLPPolicy` on ``RouterQADiscrete-v0`` envs.

    Args:
        config: The run's settings.
        envs: Training envs (at least one; a wave of rollouts uses all of them in lock step). They must share
            ``reward_state`` when one is given.
        question_ids: The training questions (never the held-out ones).
        source_names: Every ``data_source`` the envs can report (keys of the per-dataset statistics).
        reward_state: The envs' shared reward state when their spec updates it in ``"batch"`` mode; the
            learner updates it once per step from the step's episode records. ``None`` leaves the envs'
            own (episode-mode) updates alone.

    Raises:
        InvalidConfig: fewer training questions than ``questions_per_step``, or no envs.
    """

    def __init__(
        self,
        config: DiscreteConfig,
        envs: Sequence[Any],
        question_ids: Sequence[str],
        *,
        source_names: Sequence[str],
        reward_state: RewardState | None = None,
    ) -> None:
        """Build the policy, optimiser, estimator and random streams."""
        if not envs:
            raise InvalidConfig("DiscreteLearner needs at least one env.")
        if len(question_ids) < config.questions_per_step:
            raise InvalidConfig(
                f"{len(question_ids)} training questions < questions_per_step={config.questions_per_step}."
            )
        self.config = config
        self.envs = list(envs)
        self.question_ids = tuple(str(q) for q in question_ids)
        self.source_names = tuple(source_names)
        self.reward_state = reward_state
        gens = {name: torch.Generator().manual_seed(_stream_seed(config.seed, name)) for name in _STREAMS}
        self.data_generator, self.sample_generator, self.update_generator = gens["data"], gens["sample"], gens["update"]
        obs_dim = int(envs[0].observation_space.shape[0])
        self.n_actions = int(envs[0].action_space.n)
        self.policy = MLPPolicy(
            obs_dim,
            self.n_actions,
            hidden_size=config.hidden_size,
            num_layers=config.num_layers,
            generator=gens["init"],
        )
        self.optimizer = torch.optim.Adam(self.policy.parameters(), lr=config.lr)
        self.estimator = make_estimator(config.estimator, config.recal)
        self.calibration = CalibrationState()
        self.step_count = 0

    # ------------------------------------------------------------------ acting
    def _sample(self, obs: Tensor, mask: Tensor) -> Tensor:
        with torch.no_grad():
            return sample_actions(self.policy(obs), mask, self.sample_generator)

    def greedy(self, obs: Tensor, mask: Tensor) -> Tensor:
        """Greedy actions ``(B,)`` of the current policy (an :data:`~agents.discrete.rollout.ActionFn`)."""
        with torch.no_grad():
            return greedy_actions(self.policy(obs), mask)

    def _step_questions(self) -> tuple[list[str], list[int], list[int]]:
        """This step's question per trajectory, its group id and its call seed (all from the data stream)."""
        cfg = self.config
        order = torch.randperm(len(self.question_ids), generator=self.data_generator)[: cfg.questions_per_step]
        seeds = torch.randint(0, _MAX_CALL_SEED, (cfg.batch_size,), generator=self.data_generator).tolist()
        qids = [self.question_ids[int(i)] for i in order for _ in range(cfg.group_size)]
        groups = [g for g in range(cfg.questions_per_step) for _ in range(cfg.group_size)]
        return qids, groups, seeds

    def rollout(self) -> DiscreteBatch:
        """Sample this step's questions and roll out G trajectories each (no update)."""
        qids, groups, seeds = self._step_questions()
        self.policy.eval()
        episodes = run_episodes(self.envs, self._sample, qids, seeds)
        return make_batch(episodes, groups, self.source_names)

    def evaluate(self, envs: Sequence[Any], question_ids: Sequence[str], call_seeds: Sequence[int]) -> list[Episode]:
        """Greedy (argmax over allowed actions) episodes, one per question; no update, no RNG consumed.

        Use envs whose reward state is a frozen copy of the training state
        (:meth:`~recal_gym.rewards.state.RewardState.copy`) so evaluation never shifts training rewards.
        """
        self.policy.eval()
        return run_episodes(envs, self.greedy, question_ids, call_seeds)

    # ------------------------------------------------------------------ learning
    def update(self, batch: DiscreteBatch, adv: AdvantageOut) -> dict[str, float]:
        """``epochs × minibatches`` clipped-surrogate steps on ``batch``; returns mean loss metrics."""
        cfg = self.config
        self.policy.train()
        with torch.no_grad():
            logp_old, _ = taken_log_prob_and_entropy(self.policy(batch.obs), batch.masks, batch.actions)
        loss_mask = batch.step_mask * adv.valid.to(batch.step_mask.dtype).unsqueeze(1)  # (N, T)
        sums: dict[str, Tensor] = {}
        n_updates = 0
        for _ in range(cfg.epochs):
            perm = torch.randperm(batch.obs.shape[0], generator=self.update_generator)
            for rows in perm.chunk(cfg.minibatches):
                logp, entropy = taken_log_prob_and_entropy(
                    self.policy(batch.obs[rows]), batch.masks[rows], batch.actions[rows]
                )
                out = token_policy_loss(
                    logp,
                    logp_old[rows],
                    adv.advantages[rows],
                    loss_mask[rows],
                    clip_low=cfg.clip_low,
                    clip_high=cfg.clip_high,
                    dual_clip=None,
                    kl_coef=0.0,
                    kl_estimator="k3",
                    entropy=entropy,
                    entropy_coef=cfg.entropy_coef,
                    loss_agg=cfg.loss_agg,
                    l_norm=None,
                    denominator=loss_denominator(loss_mask[rows], cfg.loss_agg),
                )
                self.optimizer.zero_grad(set_to_none=True)
                out.loss.backward()
                if cfg.max_grad_norm > 0.0:
                    grad = torch.nn.utils.clip_grad_norm_(self.policy.parameters(), cfg.max_grad_norm)
                    out.metrics["policy/grad_norm"] = grad.detach()
                self.optimizer.step()
                for k, v in out.metrics.items():
                    sums[k] = sums.get(k, torch.zeros((), dtype=torch.float64)) + v.to(torch.float64)
                n_updates += 1
        return {k: float(v) / n_updates for k, v in sums.items()}

    def step(self) -> dict[str, float]:
        """One rollout + advantage + update step; returns one flat metrics dict (synced once)."""
        batch = self.rollout()
        if self.reward_state is not None:
            self.reward_state.update_batch(
                [EpisodeRecord.from_dict(ep.info["episode_record"]) for ep in batch.episodes]
            )
        adv = self.estimator(batch.rewards, self.calibration)
        metrics = self.update(batch, adv)
        metrics.update({k: float(v) for k, v in adv.metrics.items()})
        metrics.update(self._episode_metrics(batch))
        self.step_count += 1
        metrics["step"] = float(self.step_count)
        return metrics

    def _episode_metrics(self, batch: DiscreteBatch) -> dict[str, float]:
        eps = batch.episodes
        first = np.bincount([ep.actions[0] for ep in eps], minlength=self.n_actions) / len(eps)
        with torch.no_grad():
            _, entropy = taken_log_prob_and_entropy(
                self.policy(batch.obs[:, :1]), batch.masks[:, :1], batch.actions[:, :1]
            )
        out = {
            "episode/reward": float(np.mean([ep.reward for ep in eps])),
            "episode/em": float(np.mean([float(ep.info["em"]) for ep in eps])),
            "episode/raw_cost": float(np.mean([float(ep.info["raw_cost"]) for ep in eps])),
            "episode/n_calls": float(np.mean([float(ep.info["n_calls"]) for ep in eps])),
            "episode/length": float(np.mean([len(ep.actions) for ep in eps])),
            "policy/entropy_first": float(entropy.mean()),  # after the update, on this batch's first states
        }
        out.update({f"actions/first/{k}": float(share) for k, share in enumerate(first)})
        return out

    # ------------------------------------------------------------------ state
    def state_dict(self) -> dict[str, Any]:
        """Policy, optimiser, calibration, reward state, the random streams and the step counter."""
        return {
            "policy": {k: v.detach().clone() for k, v in self.policy.state_dict().items()},
            "optimizer": copy.deepcopy(self.optimizer.state_dict()),  # not views of the live Adam moments
            "calibration": self.calibration.state_dict(),
            "reward_state": None if self.reward_state is None else self.reward_state.state_dict(),
            "generators": {
                "data": self.data_generator.get_state(),
                "sample": self.sample_generator.get_state(),
                "update": self.update_generator.get_state(),
            },
            "step": self.step_count,
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Restore :meth:`state_dict` (the reward state in place, so envs sharing it see it)."""
        self.policy.load_state_dict(state["policy"])
        self.optimizer.load_state_dict(state["optimizer"])
        self.calibration.load_state_dict(state["calibration"])
        if self.reward_state is not None and state["reward_state"] is not None:
            self.reward_state.load_state_dict(state["reward_state"])
        self.data_generator.set_state(state["generators"]["data"])
        self.sample_generator.set_state(state["generators"]["sample"])
        self.update_generator.set_state(state["generators"]["update"])
        self.step_count = int(state["step"])
