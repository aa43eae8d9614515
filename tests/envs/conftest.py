"""Fixtures for environment tests: a scripted candidate backend and small question sets."""

from __future__ import annotations

from collections.abc import Callable, Sequence

import pytest

from recal_gym.pools import Pool, default_pool_spec
from recal_gym.types import CallRequest, CallResult, QARow

ROWS = (
    QARow(question_id="toy/0", question="What is the capital of France?", golden_answers=("Paris",), data_source="toy"),
    QARow(question_id="toy/1", question="Who wrote Emma?", golden_answers=("Jane Austen",), data_source="toy"),
    QARow(question_id="other/0", question="When was X founded?", golden_answers=("1950",), data_source="other"),
)


class ScriptedBackend:
    """Answers every call with ``reply(request)``; can fail on demand. Records what it was asked."""

    def __init__(self, reply: Callable[[CallRequest], str], fail: bool = False, tokens: int = 10) -> None:
        self.reply, self.fail, self.tokens = reply, fail, tokens
        self.requests: list[CallRequest] = []

    def call_batch(self, requests: Sequence[CallRequest]) -> list[CallResult]:
        self.requests.extend(requests)
        if self.fail:
            return [CallResult(ok=False, error="scripted") for _ in requests]
        return [CallResult(ok=True, text=self.reply(r), completion_tokens=self.tokens) for r in requests]

    def metrics(self) -> dict[str, float]:
        return {"calls": float(len(self.requests))}

    def attach_questions(self, rows: Sequence[QARow]) -> None:
        pass

    def close(self) -> None:
        pass


def make_pool(reply: Callable[[CallRequest], str], fail: bool = False, tokens: int = 10) -> Pool:
    """A pool of the six default models answered by a :class:`ScriptedBackend`."""
    return Pool(default_pool_spec(), {"simulated": ScriptedBackend(reply, fail, tokens)})


@pytest.fixture
def toy_rows() -> tuple[QARow, ...]:
    return ROWS
