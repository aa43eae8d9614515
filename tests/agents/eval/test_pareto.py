"""Tests for agents.eval.pareto: hand-computed frontiers and AIQs, a brute-force hull reference, properties."""

from __future__ import annotations

import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from agents.eval.pareto import aiq, hull_quality, non_decreasing_hull, pareto_frontier
from recal_gym.errors import InvalidConfig, InvalidData

# ----------------------------------------------------------------------------------------------
# Plain-loop references
# ----------------------------------------------------------------------------------------------


def brute_hull(costs: list[float], quals: list[float], c: float) -> float:
    """R̃(c) as the linear programme max Σλq s.t. Σλc ≤ c: an optimum mixes at most two points."""
    if c < min(costs):
        return 0.0
    best = max(q for ci, q in zip(costs, quals, strict=True) if ci <= c)
    for ci, qi in zip(costs, quals, strict=True):
        for cj, qj in zip(costs, quals, strict=True):
            if ci <= c < cj:
                best = max(best, qi + (qj - qi) * (c - ci) / (cj - ci))
    return best


def dominates(a: tuple[float, float], b: tuple[float, float]) -> bool:
    return a[0] <= b[0] and a[1] >= b[1] and (a[0] < b[0] or a[1] > b[1])


# ----------------------------------------------------------------------------------------------
# Hand-computed cases
# ----------------------------------------------------------------------------------------------


def test_frontier_hand_case_keeps_duplicates_and_orders_by_cost():
    points = [(1.0, 0.5), (2.0, 0.4), (2.0, 0.7), (3.0, 0.7), (0.5, 0.1), (2.0, 0.7)]
    # (2, .4) is dominated by (1, .5); (3, .7) by (2, .7); the two copies of (2, .7) are both kept.
    assert pareto_frontier(points).tolist() == [4, 0, 2, 5]


def test_frontier_of_nothing_and_of_one_point():
    assert pareto_frontier(np.zeros((0, 2))).tolist() == []
    assert pareto_frontier([(3.0, 0.2)]).tolist() == [0]


def test_frontier_equal_cost_keeps_only_the_better():
    assert pareto_frontier([(1.0, 0.2), (1.0, 0.3)]).tolist() == [1]


@pytest.mark.parametrize(
    ("costs", "quals", "cost_range", "expected"),
    [
        ([0.0, 1.0, 2.0], [0.0, 1.0, 0.5], None, 0.75),  # hull (0,0)→(1,1), flat to 2: (0.5 + 1) / 2
        ([3.0], [0.4], None, 0.4),  # a single point, degenerate range: its quality
        ([3.0], [0.4], (0.0, 4.0), 0.1),  # 0 on [0, 3), 0.4 on [3, 4]: 0.4 / 4
        ([0.0, 10.0], [0.2, 0.6], None, 0.4),  # one segment: its mean height
        ([0.0, 1.0, 2.0, 3.0, 1.5], [0.0, 0.6, 0.8, 0.5, 0.3], None, 0.6),  # (0.3 + 0.7 + 0.8) / 3
        ([0.0, 1.0, 2.0], [0.0, 0.2, 1.0], None, 0.5),  # (1, .2) lies under the chord: hull is c / 2
        ([1.0, 1.0, 2.0], [0.2, 0.5, 0.5], None, 0.5),  # tie at cost 1 keeps .5; (2, .5) adds nothing
        ([2.0], [1.0], (0.0, 4.0), 0.5),  # range starting below the cheapest point
        ([5.0], [1.0], (0.0, 4.0), 0.0),  # range entirely below the cheapest point
        ([1.0, 3.0], [0.0, 1.0], (2.0, 2.0), 0.5),  # degenerate range inside: R̃(2)
        ([1.0], [1.0], (0.0, 0.0), 0.0),  # degenerate range below the cheapest point
        ([0.0, 4.0], [0.0, 1.0], (1.0, 3.0), 0.5),  # sub-range of one segment: mean of .25 and .75
        ([1.0, 2.0], [0.5, 0.5], (0.0, 10.0), 0.45),  # flat extension to the right: .5 · 9 / 10
    ],
)
def test_aiq_hand_computed(costs, quals, cost_range, expected):
    assert aiq(costs, quals, cost_range=cost_range) == pytest.approx(expected, abs=1e-12)


def test_aiq_matches_routerbench_reference_normalisation():
    # RouterBench's reference code pads the hull to the largest cost and divides its area by that
    # cost, i.e. the range (0, c_max) with 0 below the cheapest point.
    costs, quals = [1.0, 2.0, 4.0], [0.3, 0.6, 0.7]
    hc, hq = non_decreasing_hull(costs, quals)
    area = np.sum(0.5 * (hq[1:] + hq[:-1]) * np.diff(hc)) + hq[-1] * (4.0 - hc[-1])
    assert aiq(costs, quals, cost_range=(0.0, 4.0)) == pytest.approx(area / 4.0)


def test_hull_vertices_hand_case():
    hc, hq = non_decreasing_hull([0.0, 1.0, 2.0, 3.0, 1.5], [0.0, 0.6, 0.8, 0.5, 0.3])
    assert hc.tolist() == [0.0, 1.0, 2.0]
    assert hq.tolist() == [0.0, 0.6, 0.8]
    assert hull_quality([0.0, 2.0], [0.0, 1.0], [-1.0, 1.0, 5.0]).tolist() == [0.0, 0.5, 1.0]


def test_hull_drops_collinear_middle_points():
    hc, _ = non_decreasing_hull([0.0, 1.0, 2.0], [0.0, 0.5, 1.0])
    assert hc.tolist() == [0.0, 2.0]


# ----------------------------------------------------------------------------------------------
# Validation
# ----------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("costs", "quals", "match"),
    [
        ([], [], "at least one"),
        ([1.0, 2.0], [0.1], "same length"),
        ([1.0, math.nan], [0.1, 0.2], "finite"),
        ([1.0], [math.inf], "finite"),
    ],
)
def test_aiq_rejects_bad_points(costs, quals, match):
    with pytest.raises(InvalidData, match=match):
        aiq(costs, quals)


@pytest.mark.parametrize("cost_range", [(2.0, 1.0), (0.0, 1.0, 2.0), (0.0, math.nan), (math.inf, math.inf)])
def test_aiq_rejects_bad_cost_range(cost_range):
    with pytest.raises(InvalidConfig, match="cost_range"):
        aiq([1.0], [0.5], cost_range=cost_range)


@pytest.mark.parametrize(
    ("points", "match"), [([1.0, 2.0], "shape"), ([(1.0, 2.0, 3.0)], "shape"), ([(1.0, math.nan)], "finite")]
)
def test_frontier_rejects_bad_points(points, match):
    with pytest.raises(InvalidData, match=match):
        pareto_frontier(points)


# ----------------------------------------------------------------------------------------------
# Properties
# ----------------------------------------------------------------------------------------------

coord = st.integers(0, 40).map(lambda v: v / 4.0)  # a coarse grid makes ties and collinear points common
quality = st.integers(0, 20).map(lambda v: v / 20.0)
point_lists = st.lists(st.tuples(coord, quality), min_size=1, max_size=9)


@settings(max_examples=200, deadline=None)
@given(point_lists)
def test_frontier_is_exactly_the_non_dominated_set(points):
    front = set(pareto_frontier(points).tolist())
    for i, p in enumerate(points):
        is_dominated = any(dominates(q, p) for q in points)
        assert (i in front) == (not is_dominated)
        if i not in front:
            assert any(dominates(points[j], p) for j in front)  # a frontier point covers it


@settings(max_examples=150, deadline=None)
@given(point_lists, st.randoms(use_true_random=False))
def test_frontier_and_aiq_are_permutation_invariant(points, rnd):
    shuffled = list(points)
    rnd.shuffle(shuffled)
    front = sorted(points[i] for i in pareto_frontier(points))
    front_shuffled = sorted(shuffled[i] for i in pareto_frontier(shuffled))
    assert front == front_shuffled
    c, q = zip(*points, strict=True)
    cs, qs = zip(*shuffled, strict=True)
    assert aiq(c, q) == aiq(cs, qs)


@settings(max_examples=200, deadline=None)
@given(point_lists, st.lists(coord, min_size=1, max_size=12))
def test_hull_matches_the_brute_force_linear_programme(points, at):
    c, q = (list(v) for v in zip(*points, strict=True))
    values = hull_quality(c, q, at)
    for x, v in zip(at, values, strict=True):
        assert v == pytest.approx(brute_hull(c, q, x), abs=1e-12)


@settings(max_examples=200, deadline=None)
@given(point_lists, st.data())
def test_aiq_monotone_in_adding_a_dominating_point(points, data):
    c, q = (list(v) for v in zip(*points, strict=True))
    span = (min(c), max(c))
    base = aiq(c, q, cost_range=span)
    k = data.draw(st.integers(0, len(c) - 1))
    new_c = data.draw(st.integers(0, int(c[k] * 4)).map(lambda v: v / 4.0))
    new_q = data.draw(st.integers(round(q[k] * 20), 20).map(lambda v: v / 20.0))
    assert aiq([*c, new_c], [*q, new_q], cost_range=span) >= base - 1e-12
    if (new_c, new_q) != (c[k], q[k]):
        assert dominates((new_c, new_q), (c[k], q[k]))


@settings(max_examples=150, deadline=None)
@given(point_lists, st.floats(0.1, 50.0), st.floats(-20.0, 20.0))
def test_aiq_invariant_to_affine_cost_units(points, scale, shift):
    c, q = (np.array(v) for v in zip(*points, strict=True))
    lo, hi = float(c.min()) - 1.0, float(c.max()) + 1.0
    got = aiq(c * scale + shift, q, cost_range=(lo * scale + shift, hi * scale + shift))
    assert got == pytest.approx(aiq(c, q, cost_range=(lo, hi)), abs=1e-9)


@settings(max_examples=50, deadline=None)
@given(point_lists)
def test_aiq_is_the_mean_of_the_brute_force_hull(points):
    c, q = (list(v) for v in zip(*points, strict=True))
    lo, hi = min(c) - 0.5, max(c) + 0.5
    n = 500  # midpoint rule; R̃ is piecewise linear with one jump (≤ 1), so the error is ≤ 1/n
    mids = lo + (hi - lo) * (np.arange(n) + 0.5) / n
    numeric = float(np.mean([brute_hull(c, q, x) for x in mids]))
    assert aiq(c, q, cost_range=(lo, hi)) == pytest.approx(numeric, abs=3e-3)
    assert 0.0 <= aiq(c, q) <= max(q) + 1e-12
