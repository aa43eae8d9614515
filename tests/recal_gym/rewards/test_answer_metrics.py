"""Tests of recal_gym.rewards.answer_metrics: normalisation, EM, F1 and containment (docs/rewards.md §3-§5)."""

from __future__ import annotations

import re
import string

import pytest
from hypothesis import given
from hypothesis import strategies as st

from recal_gym.rewards.answer_metrics import (
    contains_answer,
    contains_normalized,
    exact_match,
    exact_match_normalized,
    f1_normalized,
    f1_score,
    normalize_answer,
)


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ("The Beatles!", "beatles"),  # the spec's examples
        ("U.S.A.", "usa"),
        ("a-ha", "aha"),  # punctuation goes before articles
        ("Paris, France", "paris france"),
        ("  An   apple\tA day\n", "apple day"),
        ("THE END", "end"),
        ("theater", "theater"),  # whole words only
        ("L\u2019Or\u00e9al", "l\u2019or\u00e9al"),  # Unicode punctuation is kept, Unicode lower-casing
        ("a\u2013ha", "\u2013ha"),  # the en dash is kept, so "a" is a whole word here
        ("the\u00e9 a", "the\u00e9"),  # \u00e9 is a word character: no boundary after "the"
        ("\u00c9COLE the", "\u00e9cole"),
        ("", ""),
        ("!!!", ""),
        ("the a an", ""),
    ],
)
def test_normalize_answer_oracles(raw: str, expected: str) -> None:
    assert normalize_answer(raw) == expected


def test_normalize_removes_exactly_the_32_ascii_punctuation_characters() -> None:
    assert len(string.punctuation) == 32
    assert normalize_answer("x" + string.punctuation + "y") == "xy"
    assert normalize_answer("x\u00bfy\u00a1z\u2014w") == "x\u00bfy\u00a1z\u2014w"


_PLAIN_TABLE = str.maketrans("", "", string.punctuation)


@given(st.one_of(st.text(), st.text(st.characters(max_codepoint=127)), st.text("Kk\u212aAa İ.-!,")))
def test_normalize_equals_the_plain_steps(s: str) -> None:
    # ASCII strings are filtered as bytes; every string must equal the four steps of docs/rewards.md §3.
    plain = " ".join(re.sub(r"\b(a|an|the)\b", " ", s.lower().translate(_PLAIN_TABLE)).split())
    assert normalize_answer(s) == plain


@given(st.text())
def test_normalize_is_idempotent_and_trimmed(s: str) -> None:
    n = normalize_answer(s)
    assert normalize_answer(n) == n
    assert n == n.strip()
    assert "  " not in n


@pytest.mark.parametrize(
    ("pred", "golds", "expected"),
    [
        ("the beatles", ["The Beatles!"], 1.0),
        ("Beatles", ["Rolling Stones", "the Beatles"], 1.0),
        ("Beatle", ["Beatles"], 0.0),
        (None, ["x"], 0.0),
        ("", ["x"], 0.0),
        ("x", [], 0.0),
        ("the", ["a"], 1.0),  # both normalise to "": equal strings (Router-R1's em_check)
    ],
)
def test_exact_match(pred: str | None, golds: list[str], expected: float) -> None:
    assert exact_match(pred, golds) == expected


@pytest.mark.parametrize(
    ("pred", "golds", "expected"),
    [
        ("yes", ["yes"], 1.0),
        ("yes", ["yes indeed"], 0.0),  # p is a special word and p != q
        ("yes indeed", ["yes"], 0.0),  # q is a special word and p != q
        ("no", ["No."], 1.0),
        ("noanswer", ["no answer"], 0.0),
        ("the", ["a"], 0.0),  # both normalise to empty: 0 (Router-R1), not SQuAD's 1
        ("Barack Obama", ["Obama"], 2 * 0.5 * 1.0 / 1.5),
        ("Obama", ["Barack Obama", "Obama"], 1.0),  # max over golds
        ("x b b", ["b b c"], (2 * (2 / 3) * (2 / 3)) / (2 / 3 + 2 / 3)),  # multiset intersection
        ("a b b", ["b b c"], 0.8),  # "a" is an article: p = "b b"
        (None, ["x"], 0.0),
        ("x", ["y"], 0.0),
    ],
)
def test_f1_oracles(pred: str | None, golds: list[str], expected: float) -> None:
    assert f1_score(pred, golds) == expected


def test_f1_computes_2pr_over_p_plus_r_in_that_order() -> None:
    # c = 1, |p| = 1, |q| = 5: 2PR/(P+R) and 2c/(|p|+|q|) differ in the last bit.
    value = f1_score("x", ["x b c d e"])
    precision, recall = 1 / 1, 1 / 5
    assert value == (2 * precision * recall) / (precision + recall) == 0.33333333333333337
    assert value != 2 * 1 / (1 + 5)


_words = st.lists(st.sampled_from(["a", "the", "x", "y", "yes", "no", "Z!", "1990", "\u00e9t\u00e9"]), max_size=5)


@given(_words, st.lists(_words, min_size=1, max_size=3))
def test_f1_and_em_ranges_and_consistency(pred_words: list[str], gold_lists: list[list[str]]) -> None:
    pred = " ".join(pred_words)
    golds = [" ".join(g) for g in gold_lists]
    em = exact_match(pred, golds)
    f1 = f1_score(pred, golds)
    assert em in (0.0, 1.0)
    assert 0.0 <= f1 <= 1.0
    if em == 1.0 and normalize_answer(pred):
        assert f1 == 1.0
    if f1 == 1.0:  # F1 is a bag-of-words score: "y x" vs "x y" scores 1 with EM 0
        bag = sorted(normalize_answer(pred).split())
        assert any(bag == sorted(normalize_answer(g).split()) for g in golds)


@pytest.mark.parametrize(
    ("text", "golds", "mode", "expected"),
    [
        ("It was founded in 1990.", ["1"], "token", False),  # token boundaries
        ("It was founded in 1990.", ["1"], "substring", True),  # Router-R1's subem
        ("It was founded in 1990.", ["1990"], "token", True),
        ("The capital is Paris, France.", ["paris france"], "token", True),
        ("Answer: The Beatles", ["beatles"], "token", True),
        ("nothing here", ["the"], "token", False),  # normalises to empty: never contained
        ("nothing here", ["the"], "substring", False),
        ("nothing here", [], "token", False),
        ("", ["x"], "substring", False),
    ],
)
def test_contains_answer(text: str, golds: list[str], mode: str, expected: bool) -> None:
    assert contains_answer(text, golds, mode) is expected  # type: ignore[arg-type]


def test_contains_answer_bad_mode() -> None:
    with pytest.raises(ValueError, match="mode must be 'token' or 'substring'"):
        contains_answer("x", ["x"], "regex")  # type: ignore[arg-type]


@given(st.text(max_size=40), st.lists(st.text(max_size=10), max_size=3))
def test_token_containment_implies_substring_containment(text: str, golds: list[str]) -> None:
    if contains_answer(text, golds, "token"):
        assert contains_answer(text, golds, "substring")
    if exact_match(text, golds) == 1.0 and normalize_answer(text):
        assert contains_answer(text, golds, "token")


_WORDS = st.text(st.sampled_from("ab tTHEe1.,-!\u00e9\u2019 "), max_size=30)


@given(st.one_of(_WORDS, st.text(max_size=40)), st.lists(st.one_of(_WORDS, st.text(max_size=8)), max_size=3))
def test_scorer_forms_on_normalised_golds_equal_the_plain_functions(text: str, golds: list[str]) -> None:
    # The scorer normalises each gold once (and skips the article pass when no gold can occur): same values.
    normed = tuple(normalize_answer(g) for g in golds)
    for mode in ("token", "substring"):
        assert contains_normalized(text, normed, mode) is contains_answer(text, golds, mode)  # type: ignore[arg-type]
    p = normalize_answer(text)
    assert exact_match_normalized(p, normed) == exact_match(text, golds)
    assert f1_normalized(p, normed) == f1_score(text, golds)
    assert exact_match_normalized(None, normed) == f1_normalized(None, normed) == 0.0
