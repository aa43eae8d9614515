"""Lock-step episodes on ``RouterQADiscrete-v0`` envs and the rollout batch they make.

:func:`run_episodes` plays one episode per ``(question_id, call_seed)`` pair, stepping all envs of a wave
together so the policy sees one batched forward per turn. Envs are used only through the Gymnasium API
(``reset`` with ``options={"question_id", "call_seed"}``, ``step``, ``info``) and the env's
``action_masks()`` hook (MaskablePPO's). :func:`reward_batch_from_infos` is the one place that turns
terminal ``info`` dicts into the estimators' :class:`~agents.grpo.advantages.RewardBatch`.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, NamedTuple

import numpy as np
import torch
from torch import Tensor

from agents.grpo.advantages import RewardBatch
from recal_gym.errors import InvalidData
from recal_gym.rewards.batch import reward_arrays_from_infos

__all__ = ["ActionFn", "DiscreteBatch", "Episode", "make_batch", "reward_batch_from_infos", "run_episodes"]

ActionFn = Callable[[Tensor, Tensor], Tensor]
"""``(obs (B, D) float32, mask (B, A) bool) -> actions (B,) int64``: sampling or greedy."""


@dataclass(slots=True)
class Episode:
    """One finished episode: what the policy saw and did, and the terminal step."""

    question_id: str
    call_seed: int
    obs: list[np.ndarray] = field(default_factory=list)
    masks: list[np.ndarray] = field(default_factory=list)
    actions: list[int] = field(default_factory=list)
    reward: float = 0.0
    info: dict[str, Any] = field(default_factory=dict)


class DiscreteBatch(NamedTuple):
    """A padded rollout batch of N trajectories of at most T actions."""

    obs: Tensor
    """``(N, T, D)`` float32 observations (0 at padded steps)."""
    masks: Tensor
    """``(N, T, A)`` bool action masks (all True at padded steps, so every row has an allowed action)."""
    actions: Tensor
    """``(N, T)`` int64 taken actions (0 at padded steps)."""
    step_mask: Tensor
    """``(N, T)`` float32: 1 on taken actions, 0 on padding (the loss mask)."""
    rewards: RewardBatch
    """Decomposed rewards, groups and data sources of the N trajectories."""
    episodes: tuple[Episode, ...]
    """The episodes, in batch order (terminal infos, episode records)."""


def _mask(env: Any) -> np.ndarray:
    mask = np.asarray(env.get_wrapper_attr("action_masks")(), dtype=bool)
    if not mask.any():
        raise InvalidData(f"env.action_masks() allowed no action: {mask.tolist()}")
    return mask


def run_episodes(
    envs: Sequence[Any], act: ActionFn, question_ids: Sequence[str], call_seeds: Sequence[int]
) -> list[Episode]:
    """Play one episode per question, ``len(envs)`` at a time in lock step.

    Args:
        envs: ``RouterQADiscrete-v0`` envs (wrapped or not); slot k of each wave uses ``envs[k]``.
        act: Chooses the actions of the active envs from their observations and masks.
        question_ids: The question of each episode.
        call_seeds: The ``call_seed`` reset option of each episode (keys the pool's per-call noise).

    Returns:
        The finished episodes in input order.

    Raises:
        InvalidData: ``question_ids`` and ``call_seeds`` differ in length, or a mask allows nothing.
    """
    if len(question_ids) != len(call_seeds):
        raise InvalidData(f"{len(question_ids)} question ids but {len(call_seeds)} call seeds.")
    episodes = [Episode(question_id=str(q), call_seed=int(s)) for q, s in zip(question_ids, call_seeds, strict=True)]
    for start in range(0, len(episodes), len(envs)):
        _play_wave(envs, act, episodes[start : start + len(envs)])
    return episodes


def _play_wave(envs: Sequence[Any], act: ActionFn, wave: Sequence[Episode]) -> None:
    current: dict[int, tuple[np.ndarray, np.ndarray]] = {}
    for slot, ep in enumerate(wave):
        obs, _ = envs[slot].reset(options={"question_id": ep.question_id, "call_seed": ep.call_seed})
        current[slot] = (np.asarray(obs, dtype=np.float32), _mask(envs[slot]))
    active = list(range(len(wave)))
    while active:
        obs_b = torch.from_numpy(np.stack([current[s][0] for s in active]))  # (B, D)
        mask_b = torch.from_numpy(np.stack([current[s][1] for s in active]))  # (B, A)
        chosen = act(obs_b, mask_b).tolist()
        still = []
        for slot, a in zip(active, chosen, strict=True):
            ep, env = wave[slot], envs[slot]
            ep.obs.append(current[slot][0])
            ep.masks.append(current[slot][1])
            ep.actions.append(int(a))
            obs, reward, terminated, truncated, info = env.step(int(a))
            if terminated or truncated:
                ep.reward, ep.info = float(reward), info
            else:
                current[slot] = (np.asarray(obs, dtype=np.float32), _mask(env))
                still.append(slot)
        active = still


def reward_batch_from_infos(
    infos: Sequence[Mapping[str, Any]], groups: Sequence[int], source_names: Sequence[str]
) -> RewardBatch:
    """The estimators' input from terminal ``info`` dicts (the one place that reads them).

    ``recal_gym.rewards.batch.reward_arrays_from_infos`` reads the components (names and order from the
    env's reward spec, any number of them), gates, weights and the scalar return (the env's reward, refolded
    bit for bit); :meth:`RewardBatch.from_arrays` turns them into tensors.

    Args:
        infos: Terminal (scored) infos.
        groups: Group id of each episode (one per question of the step).
        source_names: Dataset names; every ``info["data_source"]`` must be one of them.

    Returns:
        :class:`~agents.grpo.advantages.RewardBatch` with ``raw``/``gated`` ``(N, K)``, ``scalar``,
        ``group``, ``source`` ``(N,)``, ``weights`` ``(K,)`` and the component ``names``.

    Raises:
        InvalidData: a non-terminal info, infos scored under different component sets, or an unknown data source.
    """
    arrays = reward_arrays_from_infos(infos)
    return RewardBatch.from_arrays(arrays, torch.tensor(list(groups), dtype=torch.long), source_names=source_names)


def make_batch(episodes: Sequence[Episode], groups: Sequence[int], source_names: Sequence[str]) -> DiscreteBatch:
    """Pad finished episodes into a :class:`DiscreteBatch` (T = the longest episode)."""
    n, t = len(episodes), max(len(ep.actions) for ep in episodes)
    d, a = episodes[0].obs[0].shape[0], episodes[0].masks[0].shape[0]
    obs = np.zeros((n, t, d), dtype=np.float32)
    masks = np.ones((n, t, a), dtype=bool)
    actions = np.zeros((n, t), dtype=np.int64)
    step_mask = np.zeros((n, t), dtype=np.float32)
    for i, ep in enumerate(episodes):
        k = len(ep.actions)
        obs[i, :k] = np.stack(ep.obs)
        masks[i, :k] = np.stack(ep.masks)
        actions[i, :k] = ep.actions
        step_mask[i, :k] = 1.0
    rewards = reward_batch_from_infos([ep.info for ep in episodes], groups, source_names)
    return DiscreteBatch(
        obs=torch.from_numpy(obs),
        masks=torch.from_numpy(masks),
        actions=torch.from_numpy(actions),
        step_mask=torch.from_numpy(step_mask),
        rewards=rewards,
        episodes=tuple(episodes),
    )
