"""route/* metrics: shares, related routes, normalised choice entropy (hand-computed oracles)."""

from __future__ import annotations

import math

import pytest
from hypothesis import given
from hypothesis import strategies as st

from agents.grpo.route_stats import choice_entropy, route_metrics, route_stats
from recal_gym.types import QARow, SubQuestion

ROW = QARow(
    question_id="d/0",
    question="Who directed Jaws and when was he born?",
    golden_answers=("1946",),
    data_source="d",
    decomposition=(SubQuestion(question="Who directed Jaws?", golden_answers=("Steven Spielberg",)),),
)
OTHER = QARow(question_id="e/0", question="What is the capital of France?", golden_answers=("Paris",), data_source="e")


def test_counts_shares_and_related_routes() -> None:
    routes = [
        [("A", "who directed jaws")],  # a gold sub-question: related
        [("B", "completely unrelated words"), ("A", "Who directed Jaws and when was he born?")],
        [],
        [("A", "capital of France")],
    ]
    stats = route_stats(routes, [ROW, ROW, ROW, OTHER], ["A", "B", "C"])
    assert (stats.trajectories, stats.routed, stats.routes, stats.related) == (4, 3, 4, 3)
    m = route_metrics(stats)
    assert m["route/rate"] == 0.75 and m["route/related"] == 0.75
    assert (m["route/share/A"], m["route/share/B"], m["route/share/C"]) == (0.75, 0.25, 0.0)
    assert m["route/d/share/A"] == 2 / 3 and m["route/e/share/A"] == 1.0
    p = [0.75, 0.25]
    assert m["route/choice_entropy"] == pytest.approx(-sum(x * math.log(x) for x in p) / math.log(3))


def test_no_routes_give_zeros() -> None:
    m = route_metrics(route_stats([[], []], [ROW, ROW], ["A", "B"]))
    assert m["route/rate"] == m["route/related"] == m["route/choice_entropy"] == 0.0


@given(st.dictionaries(st.sampled_from("abcdef"), st.integers(0, 50), min_size=2))
def test_choice_entropy_lies_in_0_1_and_is_1_when_uniform(counts: dict[str, int]) -> None:
    h = choice_entropy(counts)
    assert 0.0 <= h <= 1.0 + 1e-12
    n = len(counts)
    assert choice_entropy(dict.fromkeys(counts, 7)) == pytest.approx(1.0)
    assert choice_entropy({**dict.fromkeys(counts, 0), next(iter(counts)): 5}) == 0.0
    assert n >= 2
