"""A toy two-model RouterQADiscrete setting: one model is right 90 % of the time, the other 10 %."""

from __future__ import annotations

from typing import Any

from envs.discrete import RouterQADiscreteEnv
from envs.router_qa import RouterQAEnv
from recal_gym.data import QuestionSet
from recal_gym.pools import Pool, build_pool
from recal_gym.pools.options import PoolOptions
from recal_gym.rewards import make_spec
from recal_gym.rewards.state import RewardState
from recal_gym.types import QARow

GOOD, BAD = "Good-Model", "Bad-Model"


def toy_rows(n: int = 40) -> list[QARow]:
    """Questions with unique content words (so every query matches its own target)."""
    return [
        QARow(
            question_id=f"toy/{i}",
            question=f"Which value is recorded for item{i} under category{i % 7}?",
            golden_answers=(f"Entity{i} Holdings",),
            data_source="toy",
        )
        for i in range(n)
    ]


def toy_pool_dict(good: float = 0.9, bad: float = 0.1) -> dict[str, Any]:
    def model(name: str, em: float) -> dict[str, Any]:
        return {
            "name": name,
            "descriptor": f"{name}, a toy model.",
            "backend": "simulated",
            "price_per_1m_output": 0.2,
            "profile_em": {"toy": em},
            "mean_tokens": {"toy": 40.0},
        }

    return {"name": "toy", "models": [model(GOOD, good), model(BAD, bad)], "dataset_profile_map": {"toy": "toy"}}


def toy_envs(
    count: int, *, seed: int = 0, rows: list[QARow] | None = None, pool: Pool | None = None
) -> tuple[list[RouterQADiscreteEnv], RewardState, QuestionSet]:
    """``count`` envs sharing one pool, question set and batch-mode reward state."""
    questions = QuestionSet(rows or toy_rows())
    pool = pool or build_pool(toy_pool_dict(), PoolOptions(seed=seed))
    spec = make_spec("recal", update_mode="batch")
    state = RewardState.default(spec, tuple(m.name for m in pool.spec.listed))
    envs = [
        RouterQADiscreteEnv(text_env=RouterQAEnv(questions, pool=pool, reward=spec, reward_state=state))
        for _ in range(count)
    ]
    return envs, state, questions
