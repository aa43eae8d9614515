"""Throughput of the terminal-reward scorer (``recal_gym.rewards.scoring.score_episode``).

Run with::

    pytest benchmarks/bench_scoring.py --benchmark-json=benchmarks/results/scoring.json

Transcripts are realistic RouterQA episodes (0-4 routes, replies of a few hundred words) scored
against a warm reward state (a full 1000-value cost window, a non-uniform balance vector), which
is the steady state of a training run. pytest-benchmark handles warm-up and repetition.
"""

from __future__ import annotations

import numpy as np
import pytest

from recal_gym.rewards import RewardSpec, make_spec, recal_spec, router_r1_spec
from recal_gym.rewards.scoring import rescore, score_episode
from recal_gym.rewards.state import RewardState
from recal_gym.types import AliasRule, CallRecord, EpisodeRecord, NameTable

_NAMES = (
    "Qwen2.5-7B-Instruct",
    "LLaMA-3.1-8B-Instruct",
    "LLaMA-3.1-70B-Instruct",
    "Mistral-7B-Instruct",
    "Mixtral-8x22B-Instruct",
    "Gemma-2-27B-Instruct",
)
_PRICES = (0.3, 0.18, 0.88, 0.2, 1.2, 0.8)
TABLE = NameTable(
    names=_NAMES,
    listed=_NAMES,
    alias_rules=(
        AliasRule(keywords=("qwen",), model=_NAMES[0]),
        AliasRule(keywords=("llama", "70b"), model=_NAMES[2]),
        AliasRule(keywords=("llama", "8b"), model=_NAMES[1]),
        AliasRule(keywords=("llama",), model=None),
        AliasRule(keywords=("mistral",), model=_NAMES[3]),
        AliasRule(keywords=("mixtral",), model=_NAMES[4]),
        AliasRule(keywords=("gemma",), model=_NAMES[5]),
    ),
    name_matching="router-r1",
)


def _episode(n_routes: int, reply_words: int, seed: int) -> EpisodeRecord:
    rng = np.random.default_rng(seed)
    vocab = ["the", "company", "was", "founded", "in", "1950", "by", "engineers", "near", "Paris,", "France."]
    transcript, spans, calls = "", [], []
    for turn in range(n_routes):
        m = int(rng.integers(len(_NAMES)))
        transcript += (
            "<think>The question needs the founding year; a general model should know it, so I will ask "
            f"{_NAMES[m]} for the date and then check it.</think>\n"
            f"<search> {_NAMES[m]}: In which year was the company X founded? </search>"
        )
        reply = " ".join(rng.choice(vocab, size=reply_words).tolist())
        transcript += "\n\n<information>"
        spans.append((len(transcript), len(transcript) + len(reply)))
        transcript += reply + "</information>\n\n"
        tokens = int(rng.integers(50, 500))
        calls.append(
            CallRecord(
                turn=turn + 1,
                requested_model=_NAMES[m],
                model=_NAMES[m],
                outcome="executed",
                completion_tokens=tokens,
                price_per_1m=_PRICES[m],
                cost=tokens * _PRICES[m],
            )
        )
    transcript += "<think>The replies agree on the year.</think>\n<answer> 1950 </answer>"
    raw_cost = 0.0
    for c in calls:
        raw_cost += c.cost
    return EpisodeRecord(
        question_id=f"nq/{seed}",
        data_source="nq",
        question="In which year was the company X founded?",
        golden_answers=("1950", "nineteen fifty"),
        transcript=transcript,
        information_spans=tuple(spans),
        calls=tuple(calls),
        raw_cost=raw_cost,
        termination="answer",
        pool=TABLE,
    )


def _warm_state(spec: RewardSpec) -> RewardState:
    state = RewardState.default(spec, TABLE.listed)
    rng = np.random.default_rng(0)
    state.cost.load_state_dict({"window": np.sqrt(rng.uniform(0.0, 600.0, size=1000)).tolist()})
    f = rng.dirichlet(np.ones(len(_NAMES)))
    state.balance.load_state_dict({"f": dict(zip(_NAMES, f.tolist(), strict=True))})
    return state


EPISODES = {
    "direct": _episode(0, 0, 1),
    "one_route": _episode(1, 120, 2),
    "four_routes": _episode(4, 300, 3),
}


@pytest.mark.parametrize("name", list(EPISODES))
@pytest.mark.parametrize("preset", ["router-r1", "recal"])
def test_score_episode(benchmark, name: str, preset: str) -> None:
    spec = router_r1_spec(0.6) if preset == "router-r1" else recal_spec()
    record = EPISODES[name]
    state = _warm_state(spec)
    benchmark.group = f"score_episode/{preset}"
    score = benchmark(score_episode, record, spec, state)
    assert score.format_ok and score.em == 1.0


def test_rescore_batch_of_64(benchmark) -> None:
    spec = make_spec("recal", update_mode="batch")
    records = [_episode(i % 5, 150, 100 + i) for i in range(64)]
    state = _warm_state(spec)
    batches = [list(range(0, 32)), list(range(32, 64))]
    benchmark.group = "rescore"
    scores, _ = benchmark(rescore, records, spec, state, batches)
    assert len(scores) == 64
