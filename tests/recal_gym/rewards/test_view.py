"""The shared episode view's caches (docs/rewards.md §14.1): they never change a value."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from recal_gym.rewards.answer_metrics import normalize_answer
from recal_gym.rewards.view import GoldNormalizer


@given(st.lists(st.lists(st.text(max_size=12), max_size=3).map(tuple), max_size=20))
def test_gold_normalizer_equals_normalising_each_time(questions: list[tuple[str, ...]]) -> None:
    cache = GoldNormalizer(max_size=4)  # small: the cache is emptied several times
    for golds in questions + questions:
        assert cache(golds) == tuple(normalize_answer(g) for g in golds)
    assert len(cache._cache) <= 4


def test_gold_normalizer_accepts_an_unhashable_gold_list() -> None:
    cache = GoldNormalizer()
    assert cache(["The Beatles!", "a-ha"]) == ("beatles", "aha")  # type: ignore[arg-type]
    assert cache._cache == {}
