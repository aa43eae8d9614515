"""Dynamic sampling: the informative-group test (loop oracle) and the selection rule."""

from __future__ import annotations

import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from agents.grpo.dynamic_sampling import choose_groups, informative_rows


def _loop(gated, scalar, weights, group) -> list[bool]:
    """Plain-loop reference: a group is informative if a weighted column or the scalar varies."""
    out = []
    for i in range(len(group)):
        members = [j for j in range(len(group)) if group[j] == group[i]]
        cols = [[gated[j][k] for j in members] for k in range(len(weights)) if weights[k] != 0]
        cols.append([scalar[j] for j in members])
        out.append(any(len({v for v in col if v == v}) > 1 for col in cols))  # NaN != NaN: skipped
    return out


values = st.sampled_from([0.0, 1.0, -1.0, float("nan")])


@settings(max_examples=60, deadline=None)
@given(st.data())
def test_informative_rows_equal_the_loop(data) -> None:
    n = data.draw(st.integers(1, 10))
    k = data.draw(st.integers(1, 4))
    gated = data.draw(st.lists(st.lists(values, min_size=k, max_size=k), min_size=n, max_size=n))
    scalar = data.draw(st.lists(values, min_size=n, max_size=n))
    weights = data.draw(st.lists(st.sampled_from([0.0, 0.5, 1.0]), min_size=k, max_size=k))
    group = data.draw(st.lists(st.integers(0, 3), min_size=n, max_size=n))
    got = informative_rows(torch.tensor(gated), torch.tensor(scalar), torch.tensor(weights), torch.tensor(group))
    assert got.tolist() == _loop(gated, scalar, weights, group)


def test_zero_weight_columns_do_not_count() -> None:
    gated = torch.tensor([[1.0, 0.0], [1.0, 5.0]])
    same = torch.tensor([2.0, 2.0])
    group = torch.tensor([0, 0])
    assert informative_rows(gated, same, torch.tensor([1.0, 0.0]), group).tolist() == [False, False]
    assert informative_rows(gated, same, torch.tensor([1.0, 1.0]), group).tolist() == [True, True]


def test_choose_groups_prefers_informative_ones_in_order() -> None:
    assert choose_groups([False, True, False, True, True], 2) == [1, 3]
    assert choose_groups([False, True, False], 2) == [0, 1]  # topped up with the first zero-variance group
    assert choose_groups([True, True], 2) == [0, 1]
