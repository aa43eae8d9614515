"""Scripted routers that act through the Gymnasium text API (no model, no torch).

They are the single-model, random and direct baselines of ``recal-gym eval`` and the
demonstrators of the supervised warm start (``recal.md`` §10.3). A router sees exactly what a
policy sees: the prompt at reset and each step's observation.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

import numpy as np

from recal_gym.pools.replies import extract_stated_answer

__all__ = [
    "DirectRouter",
    "RandomRouter",
    "Router",
    "SingleModelRouter",
    "answer_from_reply",
    "question_from_prompt",
]

_INFO_RE = re.compile(r"<information>(.*?)</information>", re.DOTALL)


class Router(Protocol):
    """A policy over RouterQA text: ``reset`` with the prompt, then ``act`` on each observation."""

    name: str

    def reset(self, prompt: str, info: dict[str, Any]) -> None:
        """Start an episode."""
        ...

    def act(self, observation: str, info: dict[str, Any]) -> str:
        """Return the next turn's text."""
        ...


def question_from_prompt(prompt: str) -> str:
    """Return the question of a RouterQA prompt (the text after the last ``Question: ``)."""
    return prompt.rsplit("Question: ", 1)[-1].strip()


def answer_from_reply(observation: str) -> str | None:
    """The answer a copier takes from an information splice.

    Simulated replies state their answer in a fixed template (exact extraction); for live replies
    the first sentence of the reply is used, cut to 12 words. ``None`` for ``None`` splices,
    abstentions and empty replies.
    """
    m = _INFO_RE.search(observation)
    if m is None:
        return None
    reply = m.group(1).strip()
    if not reply or reply == "None":
        return None
    stated = extract_stated_answer(reply)
    if stated is not None:
        return stated
    if reply.startswith(("I cannot", "I have no")):
        return None
    first = re.split(r"(?<=[.!?])\s|\n", reply, maxsplit=1)[0].strip().rstrip(".")
    return " ".join(first.split()[:12]) or None


def _route(model: str, query: str, why: str) -> str:
    return f"<think>{why}</think>\n<search> {model}:{query} </search>"


def _answer(answer: str | None) -> str:
    return f"<think>I have what I need.</think>\n<answer> {answer or 'unknown'} </answer>"


@dataclass
class SingleModelRouter:
    """Route the question once to ``model``, then answer with the stated answer of its reply."""

    model: str
    name: str = ""
    _question: str = field(default="", init=False, repr=False)

    def __post_init__(self) -> None:
        """Default the display name."""
        self.name = self.name or f"single:{self.model}"

    def reset(self, prompt: str, info: dict[str, Any]) -> None:
        """Remember the question."""
        self._question = question_from_prompt(prompt)

    def act(self, observation: str, info: dict[str, Any]) -> str:
        """Route on the first turn, answer after."""
        if info.get("turn", 0.0) == 0.0:
            return _route(self.model, self._question, f"I will ask {self.model}.")
        return _answer(answer_from_reply(observation))


@dataclass
class RandomRouter:
    """Route the question to a uniformly random model (1 to ``max_calls`` times), then answer.

    Args:
        models: Names to choose from (the pool's listed models).
        seed: Seed of the router's own generator.
        max_calls: Largest number of routed calls per question.
    """

    models: Sequence[str]
    seed: int = 0
    max_calls: int = 1
    name: str = "random"
    _rng: np.random.Generator = field(init=False, repr=False)
    _question: str = field(default="", init=False, repr=False)
    _calls_left: int = field(default=0, init=False, repr=False)
    _best: str | None = field(default=None, init=False, repr=False)

    def __post_init__(self) -> None:
        """Seed the generator."""
        self._rng = np.random.default_rng(self.seed)

    def reset(self, prompt: str, info: dict[str, Any]) -> None:
        """Draw the number of calls for this episode."""
        self._question = question_from_prompt(prompt)
        self._calls_left = int(self._rng.integers(1, self.max_calls + 1))
        self._best = None

    def act(self, observation: str, info: dict[str, Any]) -> str:
        """Route while calls are left, then answer with the first stated answer seen."""
        stated = answer_from_reply(observation)
        self._best = self._best or stated
        if self._calls_left > 0 and info.get("routed_turns_left", 0.0) > 0:
            self._calls_left -= 1
            model = str(self.models[int(self._rng.integers(len(self.models)))])
            return _route(model, self._question, f"I will ask {model}.")
        return _answer(self._best)


@dataclass
class DirectRouter:
    """Answer at once without routing (a lower bound: the router knows nothing itself)."""

    answer: str = "unknown"
    name: str = "direct"

    def reset(self, prompt: str, info: dict[str, Any]) -> None:
        """Nothing to remember."""

    def act(self, observation: str, info: dict[str, Any]) -> str:
        """Answer immediately."""
        return _answer(self.answer)
