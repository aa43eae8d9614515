"""Scripted routers that act through the Gymnasium text API (no model, no torch).

They are the single-model, random, prompt-only and direct baselines of ``recal-gym eval`` and the
demonstrators of the supervised warm start (``docs/learner.md`` §10.3). A router sees exactly what a
policy sees: the prompt at reset and each step's observation. :class:`OracleRouter` is the one
exception: it is an evaluation mode of :func:`agents.eval.evaluation.run_episode` that looks at the
outcome of every model, an upper bound no policy can reach.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

import numpy as np

from recal_gym.errors import InvalidConfig
from recal_gym.pools.replies import STOP_WORDS, answer_from_splice
from recal_gym.rewards.answer_metrics import normalize_answer

__all__ = [
    "DirectRouter",
    "OracleRouter",
    "PromptOnlyRouter",
    "RandomRouter",
    "Router",
    "SingleModelRouter",
    "answer_from_reply",
    "descriptors_from_prompt",
    "question_from_prompt",
]

_SIZE_RE = re.compile(r"(\d+(?:\.\d+)?)(?:-billion\b|\s?billion\b|B\b)")


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
    """The answer a copier takes from an information splice (see ``answer_from_splice``)."""
    return answer_from_splice(observation)


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


def _words(text: str) -> frozenset[str]:
    """Normalised content words of ``text`` (SQuAD normalisation minus the pool's stop-words)."""
    return frozenset(t for t in normalize_answer(text).split() if t not in STOP_WORDS)


def _stated_size(descriptor: str) -> float:
    """Largest parameter count (billions) a descriptor states, e.g. ``"141B total"`` -> 141; 0 if none."""
    return max((float(m) for m in _SIZE_RE.findall(descriptor)), default=0.0)


def descriptors_from_prompt(prompt: str, models: Sequence[str]) -> dict[str, str]:
    """Return each model's descriptor as the router prompt lists it (``""`` when absent).

    The prompt lists every model as a paragraph ``"<name>:<descriptor>"`` (``docs/protocol.md`` §3).
    """
    paragraphs = prompt.split("\n\n")
    found: dict[str, str] = {}
    for name in models:
        head = f"{name}:"
        found[name] = next((p[len(head) :].strip() for p in paragraphs if p.startswith(head)), "")
    return found


@dataclass
class PromptOnlyRouter:
    """Pick one model from the prompt alone (no learning, no feedback), route the question to it once.

    Rule, applied at every reset to the descriptors the prompt shows:

    1. **Keyword overlap.** Score each model by the number of the question's content words (SQuAD
       normalisation, pool stop-words removed) that occur in its descriptor, counting only words
       that do *not* occur in every descriptor (those cannot discriminate).
    2. **Stated strength.** Ties (including the usual all-zero case for trivia questions) go to the
       descriptor stating the largest parameter count ("70-billion-parameter", "141B total").
    3. **Pool order** breaks any remaining tie.

    It then answers with the stated answer of the reply, like :class:`SingleModelRouter`.

    Args:
        models: Names to choose from (the pool's listed models, in pool order).
    """

    models: Sequence[str]
    name: str = "prompt"
    _question: str = field(default="", init=False, repr=False)
    _choice: str = field(default="", init=False, repr=False)

    def __post_init__(self) -> None:
        """Check there is something to choose from."""
        if not self.models:
            raise InvalidConfig("PromptOnlyRouter.models must name at least one model, got []")

    def choose(self, prompt: str) -> str:
        """Return the model the rule picks for ``prompt``."""
        descriptors = descriptors_from_prompt(prompt, self.models)
        words = {m: _words(d) for m, d in descriptors.items()}
        common = frozenset.intersection(*words.values())
        question = _words(question_from_prompt(prompt))
        best = max(
            range(len(self.models)),
            key=lambda i: (
                len(question & (words[self.models[i]] - common)),
                _stated_size(descriptors[self.models[i]]),
                -i,
            ),
        )
        return self.models[best]

    def reset(self, prompt: str, info: dict[str, Any]) -> None:
        """Read the question and choose the model."""
        self._question = question_from_prompt(prompt)
        self._choice = self.choose(prompt)

    def act(self, observation: str, info: dict[str, Any]) -> str:
        """Route on the first turn, answer after."""
        if info.get("turn", 0.0) == 0.0:
            return _route(self._choice, self._question, f"The descriptor of {self._choice} fits best.")
        return _answer(answer_from_reply(observation))


@dataclass(frozen=True)
class OracleRouter:
    """The per-question oracle: the cheapest model whose reply is correct (RouterBench's *Oracle*).

    Not a text policy but an evaluation mode of :func:`agents.eval.evaluation.run_episode`: for each
    question it plays one :class:`SingleModelRouter` episode per model on the same ``question_id``
    (the simulated pool is deterministic per question, so replies do not depend on call order) and
    keeps the cheapest episode with EM = 1, or the cheapest episode when no model is correct; equal
    costs go to pool order. The reported cost counts only the kept episode's call, and the env's
    reward state ends as if only that episode had been played.

    Args:
        models: Candidate models, in pool order.
    """

    models: Sequence[str]
    name: str = "oracle"

    def __post_init__(self) -> None:
        """Check there is something to choose from."""
        if not self.models:
            raise InvalidConfig("OracleRouter.models must name at least one model, got []")

    def reset(self, prompt: str, info: dict[str, Any]) -> None:
        """Refuse: the oracle is played by :func:`agents.eval.evaluation.run_episode`."""
        raise InvalidConfig(
            "OracleRouter is an evaluation mode, not a text policy; play it with agents.eval.evaluation.run_episode "
            "or agents.eval.evaluation.evaluate"
        )

    def act(self, observation: str, info: dict[str, Any]) -> str:
        """Refuse, as :meth:`reset` does."""
        raise InvalidConfig("OracleRouter cannot act through the text API; use agents.eval.evaluation.run_episode")
