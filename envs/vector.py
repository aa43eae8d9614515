"""A vector RouterQA whose sub-envs share one pool and send each turn's calls as one batch."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
from gymnasium.vector import AutoresetMode, VectorEnv
from gymnasium.vector.utils import batch_space

from envs.router_qa import RouterQAEnv
from recal_gym.errors import InvalidAction, InvalidConfig, ResetNeeded
from recal_gym.types import CallResult

__all__ = ["RouterQAVectorEnv"]


class RouterQAVectorEnv(VectorEnv):
    """``num_envs`` RouterQA episodes stepped together, one ``pool.call_batch`` per turn.

    All sub-envs share the question set, the pool (so a live backend sends every active episode's
    call concurrently, and a vLLM backend generates them in one batch) and the reward state. Autoreset
    is ``DISABLED``, the mode recommended for GRPO: reset sub-envs explicitly, a group at a time.

    Args:
        num_envs: Number of sub-envs.
        **env_kwargs: Arguments of :class:`~envs.router_qa.RouterQAEnv` (the first sub-env builds the
            pool; the others reuse it and its reward state).

    Reset options (besides the single-env ``question_id`` / ``dataset``, applied to every reset
    sub-env): ``reset_mask`` (bool array, which sub-envs to reset; default all) and
    ``question_ids`` (a sequence with one id, or ``None``, per sub-env) and ``call_seeds`` (a sequence
    with one int per sub-env: each episode's ``call_seed``, which keys the simulated pool's per-call
    reply noise).

    Step: ``actions`` is a sequence of ``num_envs`` strings; a finished sub-env must get ``None``
    (it is skipped: observation ``""``, reward 0, both flags False, no info).

    Example:
        >>> import gymnasium as gym, recal_gym
        >>> envs = gym.make_vec("RouterQA-v0", num_envs=4, vectorization_mode="vector_entry_point")
        >>> obs, infos = envs.reset(seed=0, options={"question_ids": ["fanoutqa_single/ff0d7990633e89ee"] * 4})
    """

    metadata = {"autoreset_mode": AutoresetMode.DISABLED, "render_modes": []}  # noqa: RUF012

    def __init__(self, num_envs: int = 1, **env_kwargs: Any) -> None:
        """Build the sub-envs."""
        if isinstance(num_envs, bool) or not isinstance(num_envs, int) or num_envs < 1:
            raise InvalidConfig(f"num_envs must be an int >= 1, got {num_envs!r}")
        first = RouterQAEnv(**env_kwargs)
        shared = {**env_kwargs, "pool": first.pool, "reward_state": first.reward_state, "dataset": first.questions}
        self.envs = [first] + [RouterQAEnv(**shared) for _ in range(num_envs - 1)]
        self.num_envs = num_envs
        self.single_observation_space = first.observation_space
        self.single_action_space = first.action_space
        self.observation_space = batch_space(first.observation_space, num_envs)
        self.action_space = batch_space(first.action_space, num_envs)
        self._done = np.ones(num_envs, dtype=bool)

    @property
    def pool(self) -> Any:
        """The shared pool."""
        return self.envs[0].pool

    @property
    def reward_state(self) -> Any:
        """The shared reward state."""
        return self.envs[0].reward_state

    def reset(
        self, *, seed: int | Sequence[int | None] | None = None, options: dict[str, Any] | None = None
    ) -> tuple[tuple[str, ...], dict[str, Any]]:
        """Reset the masked sub-envs (all by default); see the class docstring for options."""
        opts = dict(options or {})
        mask = np.asarray(opts.pop("reset_mask", np.ones(self.num_envs, dtype=bool)), dtype=bool)
        qids = opts.pop("question_ids", None)
        call_seeds = opts.pop("call_seeds", None)
        if call_seeds is not None and len(call_seeds) != self.num_envs:
            raise ValueError(f"call_seeds must hold {self.num_envs} entries, got {len(call_seeds)}")
        if mask.shape != (self.num_envs,):
            raise ValueError(f"reset_mask must have shape ({self.num_envs},), got {mask.shape}")
        if qids is not None and len(qids) != self.num_envs:
            raise ValueError(f"question_ids must hold {self.num_envs} entries, got {len(qids)}")
        seeds = self._seeds(seed)
        obs = [""] * self.num_envs
        infos: dict[str, Any] = {}
        for i, env in enumerate(self.envs):
            if not mask[i]:
                continue
            env_opts = dict(opts)
            if qids is not None and qids[i] is not None:
                env_opts["question_id"] = qids[i]
            if call_seeds is not None:
                env_opts["call_seed"] = call_seeds[i]
            obs[i], info = env.reset(seed=seeds[i], options=env_opts)
            infos = self._add_info(infos, info, i)
            self._done[i] = False
        return tuple(obs), infos

    def _seeds(self, seed: int | Sequence[int | None] | None) -> list[int | None]:
        if seed is None:
            return [None] * self.num_envs
        if isinstance(seed, int):
            return [seed + i for i in range(self.num_envs)]
        if len(seed) != self.num_envs:
            raise ValueError(f"seed must be an int or {self.num_envs} seeds, got {len(seed)}")
        return list(seed)

    def step(
        self, actions: Sequence[str | None]
    ) -> tuple[tuple[str, ...], np.ndarray, np.ndarray, np.ndarray, dict[str, Any]]:
        """Step every active sub-env; their candidate calls go to the pool as one batch."""
        if len(actions) != self.num_envs:
            raise ValueError(f"expected {self.num_envs} actions, got {len(actions)}")
        for i, action in enumerate(actions):  # validate everything before any sub-env moves
            if self._done[i] and action is not None:
                raise ResetNeeded(f"sub-env {i} has finished: pass None as its action or reset it")
            if not self._done[i] and not isinstance(action, str):
                raise InvalidAction(f"sub-env {i}: actions are str, got {type(action).__name__}")
        pending = {i: env.begin_step(str(actions[i])) for i, env in enumerate(self.envs) if not self._done[i]}
        calls = [(i, p.request) for i, p in pending.items() if p is not None]
        try:
            answers = self.pool.call_batch([r for _, r in calls]) if calls else []
        except BaseException:  # a backend bug: undo every begun step so the sub-envs stay usable
            for i in pending:
                self.envs[i].abort_step()
            raise
        results: dict[int, CallResult] = {i: a for (i, _), a in zip(calls, answers, strict=True)}
        obs = [""] * self.num_envs
        rewards = np.zeros(self.num_envs, dtype=np.float64)
        terminated = np.zeros(self.num_envs, dtype=bool)
        truncated = np.zeros(self.num_envs, dtype=bool)
        infos: dict[str, Any] = {}
        for i in pending:
            obs[i], rewards[i], terminated[i], truncated[i], info = self.envs[i].finish_step(results.get(i))
            infos = self._add_info(infos, info, i)
            self._done[i] = bool(terminated[i] or truncated[i])
        return tuple(obs), rewards, terminated, truncated, infos

    def close_extras(self, **kwargs: Any) -> None:
        """Close the sub-envs (the first owns the pool)."""
        for env in self.envs:
            env.close()
