"""A scripted random router whose every turn is a well-formed RouterQA action (no model, no torch).

``env.action_space.sample()`` draws printable-ASCII junk, which is what Gymnasium's ``check_env``
needs (a junk turn is a non-terminal step with ``info["action_kind"] == "none"``), but it almost
never routes or answers. :class:`RandomAgent` is the random baseline that plays the protocol
(``docs/protocol.md`` §4-§6): each turn thinks, then either routes the question to a uniformly
random listed model or answers with the answer stated in the last reply.

Example:
    >>> import gymnasium as gym
    >>> import recal_gym
    >>> env = gym.make("RouterQA-v0")
    >>> agent = recal_gym.RandomAgent.for_env(env, seed=0)
    >>> prompt, info = env.reset(seed=0)
    >>> agent.reset(prompt, info)
    >>> obs, done = "", False
    >>> while not done:
    ...     obs, reward, terminated, truncated, info = env.step(agent.act(obs, info))
    ...     done = terminated or truncated
    >>> info["format_ok"]
    True
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from typing import Any

import gymnasium as gym
import numpy as np

from recal_gym.errors import InvalidConfig
from recal_gym.pools.replies import answer_from_splice

__all__ = ["RandomAgent"]

_RESERVED = re.compile(r"[<>:]")
"""Characters a query or answer must not carry: tag brackets and the route's colon (format rule F8)."""


def _clean(text: str) -> str:
    """``text`` on one line without ``<``, ``>`` or ``:``, so it can sit inside a route or answer block."""
    return " ".join(_RESERVED.sub(" ", text).split())


class RandomAgent:
    """Route to uniformly random models, then answer with the last stated answer; every turn parses.

    Each turn is ``<think>…</think>`` followed by exactly one action block:

    - ``<search> NAME:QUESTION </search>`` with NAME drawn uniformly from ``models`` (while routing turns
      are left and the episode has made fewer than ``max_calls`` routes, with probability ``1 - answer_prob``
      after the first turn; the first turn always routes);
    - ``<answer> A </answer>`` otherwise, A being the answer stated in the most recent reply that stated one
      (``"unknown"`` when none did).

    Colons and angle brackets are removed from the question and the answer, so a route has exactly one
    colon and no block can be forged (format rules F4 and F8, ``docs/rewards.md`` §6).

    Args:
        models: Display names to route to (usually the pool's listed models; see :meth:`for_env`).
        seed: Seed (or generator) of the agent's own random draws; the env's generator is never used.
        answer_prob: Probability of answering instead of routing again after the first call.
        max_calls: Largest number of routes per episode.

    Raises:
        InvalidConfig: ``models`` is empty, ``answer_prob`` is outside [0, 1] or ``max_calls`` < 1.
    """

    name = "random-agent"

    def __init__(
        self,
        models: Sequence[str],
        *,
        seed: int | np.random.Generator | None = None,
        answer_prob: float = 0.5,
        max_calls: int = 2,
    ) -> None:
        """Create the agent (see the class docstring)."""
        if not models:
            raise InvalidConfig("RandomAgent.models must name at least one model, got []")
        if not 0.0 <= answer_prob <= 1.0:
            raise InvalidConfig(f"RandomAgent.answer_prob must be in [0, 1], got {answer_prob!r}")
        if max_calls < 1:
            raise InvalidConfig(f"RandomAgent.max_calls must be >= 1, got {max_calls!r}")
        self.models = tuple(models)
        self.answer_prob = float(answer_prob)
        self.max_calls = int(max_calls)
        self.rng = seed if isinstance(seed, np.random.Generator) else np.random.default_rng(seed)
        self._question = ""
        self._calls = 0
        self._stated: str | None = None

    @classmethod
    def for_env(cls, env: gym.Env[Any, Any], **kwargs: Any) -> RandomAgent:
        """Build an agent that routes to the listed models of ``env``'s pool (``RouterQA-v0`` or a wrapper)."""
        pool = getattr(env.unwrapped, "pool", None)
        if pool is None:
            raise InvalidConfig(f"RandomAgent.for_env needs a RouterQA env with a .pool, got {env.unwrapped!r}")
        return cls([m.name for m in pool.spec.listed], **kwargs)

    def state_dict(self) -> dict[str, Any]:
        """The generator state and the episode memory (for exact resumption)."""
        return {
            "rng": self.rng.bit_generator.state,
            "question": self._question,
            "calls": self._calls,
            "stated": self._stated,
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Restore what :meth:`state_dict` returned."""
        self.rng.bit_generator.state = state["rng"]
        self._question, self._calls, self._stated = state["question"], int(state["calls"]), state["stated"]

    def reset(self, prompt: str, info: dict[str, Any]) -> None:
        """Start an episode: remember the question (the text after the prompt's last ``Question: ``)."""
        self._question = _clean(prompt.rsplit("Question: ", 1)[-1]) or "the question"
        self._calls = 0
        self._stated = None

    def act(self, observation: str, info: dict[str, Any]) -> str:
        """Return the next turn: a route or an answer (see the class docstring).

        Args:
            observation: The env's last observation (``""`` on the first turn).
            info: The env's last ``info`` (``routed_turns_left`` decides whether a route can still run).
        """
        stated = answer_from_splice(observation)
        if stated is not None and _clean(stated):
            self._stated = _clean(stated)
        can_route = float(info.get("routed_turns_left", 0.0)) > 0.0 and self._calls < self.max_calls
        if can_route and (self._calls == 0 or self.rng.random() >= self.answer_prob):
            self._calls += 1
            model = self.models[int(self.rng.integers(len(self.models)))]
            return f"<think>I will ask {model}.</think>\n<search> {model}:{self._question} </search>"
        return f"<think>I have what I need.</think>\n<answer> {self._stated or 'unknown'} </answer>"
