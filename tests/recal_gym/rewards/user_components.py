"""Reward components defined outside recal-gym, referenced by spec files as ``module:function``."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from recal_gym.rewards import EpisodeView


def short_answer(ep: EpisodeView, max_words: int = 3) -> float:
    """1.0 when the final answer has at most ``max_words`` words."""
    return 1.0 if ep.has_answer and len(ep.answer.split()) <= max_words else 0.0


def always_nan(ep: EpisodeView) -> float:
    """A broken component (for the error tests)."""
    return float("nan")


def too_big(ep: EpisodeView) -> float:
    """A component that leaves its declared range [0, 1]."""
    return 2.0


def not_a_float(ep: EpisodeView) -> Any:
    """A component that returns a string."""
    return "high"


class Novelty:
    """Stateful: 1.0 for the first episode of a question, 0.0 afterwards (episode mode) or per batch."""

    def __init__(self, spec: Any, listed: Sequence[str], update: str = "episode") -> None:
        self.seen: set[str] = set()
        self.update = update
        self.frozen = False

    def score_episode(self, ep: EpisodeView) -> float:
        return 0.0 if ep.question_id in self.seen else 1.0

    def observe(self, ep: EpisodeView) -> None:
        if not self.frozen and self.update == "episode":
            self.seen.add(ep.question_id)

    def observe_batch(self, eps: Sequence[EpisodeView]) -> None:
        if not self.frozen and self.update == "batch":
            self.seen.update(ep.question_id for ep in eps)

    def state_dict(self) -> dict[str, Any]:
        return {"seen": sorted(self.seen)}

    def load_state_dict(self, d: Mapping[str, Any]) -> None:
        self.seen = set(d["seen"])

    def copy(self) -> Novelty:
        new = Novelty(None, (), self.update)
        new.seen, new.frozen = set(self.seen), self.frozen
        return new


def answered_in_words(values: Mapping[str, float], tau: float) -> bool:
    """A gate predicate: the answer is right and the short-answer component fired."""
    return values["answer"] >= tau and values["short"] > 0.0
