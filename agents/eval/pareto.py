"""Cost–quality analysis of router runs: the Pareto frontier and RouterBench's AIQ.

Every run of a router gives one point (mean cost per question, quality), e.g. (µ$, EM). Two runs can
be mixed by flipping a biased coin per question, so every point on the segment between two runs is
reachable; and spending more never has to lower quality (the extra budget can be left unused). The
best quality reachable at cost ``c`` is therefore the *non-decreasing convex hull* (NDCH) of the
points, RouterBench's R̃ (Hu et al., 2024, arXiv 2403.12031, §3):

    R̃(c) = max { Σᵢ λᵢ qᵢ : λ ∈ Δ, Σᵢ λᵢ cᵢ ≤ c }     for c ≥ min cᵢ,

the upper concave envelope of the points, cut at its highest point and extended flat to the right.
RouterBench's *Average Improvement in Quality* is the mean height of R̃ over a cost range:

    AIQ = 1 / (c_hi − c_lo) · ∫_{c_lo}^{c_hi} R̃(c) dc.

Conventions of this module (each one is tested):

* Default range: ``(c_lo, c_hi) = (min cᵢ, max cᵢ)`` of the points passed. To compare routers, pass
  the same ``cost_range`` to each (e.g. the range of the whole run set).
* Below the cheapest point no mixture exists and R̃(c) = 0 (the quality of answering nothing), as in
  RouterBench's reference code, which integrates over [0, max cost]. Qualities are meant to be ≥ 0.
* Above the dearest point R̃ stays at the highest quality (non-decreasing extension).
* Degenerate range ``c_lo == c_hi`` (one point, or equal costs): AIQ = R̃(c_lo), the limit of the mean.
* Ties: points of equal cost keep only the best quality; duplicate points change nothing.
* The integral is exact: R̃ is piecewise linear, so the trapezoid rule over its vertices is exact.

The functions are pure NumPy (the evaluation path never imports torch) and take a few hundred
points at most, so the O(N log N) hull scan and the O(N²) dominance test are plain and exact.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from numpy.typing import ArrayLike

from recal_gym.errors import InvalidConfig, InvalidData

__all__ = ["aiq", "hull_quality", "non_decreasing_hull", "pareto_frontier"]


def _as_points(costs: ArrayLike, qualities: ArrayLike) -> tuple[np.ndarray, np.ndarray]:
    c = np.asarray(costs, dtype=np.float64).reshape(-1)
    q = np.asarray(qualities, dtype=np.float64).reshape(-1)
    if c.shape != q.shape:
        raise InvalidData(f"costs and qualities must have the same length, got {c.size} and {q.size}")
    if not (np.all(np.isfinite(c)) and np.all(np.isfinite(q))):
        raise InvalidData("costs and qualities must be finite (no NaN or inf)")
    return c, q


def _split_points(points: ArrayLike) -> tuple[np.ndarray, np.ndarray]:
    p = np.asarray(points, dtype=np.float64)
    if p.size == 0:
        return np.zeros(0), np.zeros(0)
    if p.ndim != 2 or p.shape[1] != 2:
        raise InvalidData(f"points must have shape (N, 2) as (cost, quality) rows, got shape {p.shape}")
    return _as_points(p[:, 0], p[:, 1])


def pareto_frontier(points: ArrayLike) -> np.ndarray:
    """Indices of the non-dominated points (low cost and high quality are better).

    Point i is dominated when some point j has ``c_j ≤ c_i`` and ``q_j ≥ q_i`` with at least one of
    the two strict. Exact duplicates do not dominate each other, so every copy of a frontier point is
    returned.

    Args:
        points: (N, 2) float, rows ``(cost, quality)``; N may be 0.

    Returns:
        (M,) int64 indices into ``points``, ordered by cost ascending, then quality descending, then
        index.

    Raises:
        InvalidData: a shape other than (N, 2), or a non-finite value.
    """
    c, q = _split_points(points)
    if c.size == 0:
        return np.zeros(0, dtype=np.int64)
    no_worse = (c[:, None] <= c[None, :]) & (q[:, None] >= q[None, :])  # (N, N): j=row no worse than i=col
    better = (c[:, None] < c[None, :]) | (q[:, None] > q[None, :])
    dominated = np.any(no_worse & better, axis=0)  # (N,)
    keep = np.flatnonzero(~dominated)
    order = np.lexsort((keep, -q[keep], c[keep]))
    return keep[order].astype(np.int64)


def non_decreasing_hull(costs: ArrayLike, qualities: ArrayLike) -> tuple[np.ndarray, np.ndarray]:
    """Vertices of RouterBench's non-decreasing convex hull R̃ (module docstring).

    Args:
        costs: (N,) float, N ≥ 1.
        qualities: (N,) float.

    Returns:
        ``(hull_costs, hull_qualities)``, each (K,) float64 with 1 ≤ K ≤ N, costs strictly increasing
        and qualities strictly increasing: the upper concave envelope from the cheapest point (its best
        quality) to the cheapest point of highest quality. R̃ interpolates linearly between vertices,
        is flat after the last and 0 before the first.

    Raises:
        InvalidData: empty input, different lengths or non-finite values.
    """
    c, q = _as_points(costs, qualities)
    if c.size == 0:
        raise InvalidData("the hull needs at least one (cost, quality) point")
    order = np.lexsort((-q, c))
    c, q = c[order], q[order]
    first = np.ones(c.size, dtype=bool)
    first[1:] = c[1:] != c[:-1]  # best quality of each distinct cost (sorted quality-descending)
    c, q = c[first], q[first]
    hull: list[int] = []
    for i in range(c.size):  # Andrew's monotone chain, upper part: keep only clockwise turns
        while len(hull) >= 2:
            o, a = hull[-2], hull[-1]
            cross = (c[a] - c[o]) * (q[i] - q[o]) - (q[a] - q[o]) * (c[i] - c[o])
            if cross < 0:
                break
            hull.pop()
        hull.append(i)
    h = np.asarray(hull)
    top = int(np.argmax(q[h]))  # the envelope rises, then falls: keep the rising part
    return c[h[: top + 1]], q[h[: top + 1]]


def hull_quality(costs: ArrayLike, qualities: ArrayLike, at: ArrayLike) -> np.ndarray:
    """Evaluate R̃ at the costs ``at``.

    Args:
        costs: (N,) float, N ≥ 1.
        qualities: (N,) float.
        at: (M,) float, the costs to evaluate at.

    Returns:
        (M,) float64: 0 below the cheapest point, the linear interpolation of the hull vertices inside,
        the highest quality beyond.
    """
    hc, hq = non_decreasing_hull(costs, qualities)
    x = np.asarray(at, dtype=np.float64)
    return np.where(x < hc[0], 0.0, np.interp(x, hc, hq))


def aiq(
    costs: ArrayLike,
    qualities: ArrayLike,
    *,
    cost_range: Sequence[float] | None = None,
) -> float:
    """RouterBench's Average Improvement in Quality (arXiv 2403.12031, §3).

    ``AIQ = 1/(c_hi − c_lo) · ∫_{c_lo}^{c_hi} R̃(c) dc`` with R̃ the non-decreasing convex hull of the
    points; conventions for the range, ties and degenerate cases are in the module docstring.

    Args:
        costs: (N,) float, N ≥ 1, e.g. mean µ$ per question of each run.
        qualities: (N,) float, e.g. EM of each run.
        cost_range: ``(c_lo, c_hi)`` with ``c_lo ≤ c_hi``; ``None`` uses ``(min costs, max costs)``.

    Returns:
        The AIQ, in quality units (for EM it lies in [0, 1]).

    Raises:
        InvalidData: empty input, different lengths or non-finite values.
        InvalidConfig: a ``cost_range`` that is not two finite floats with ``c_lo ≤ c_hi``.

    Example:
        >>> aiq([0.0, 1.0, 2.0], [0.0, 1.0, 0.5])  # hull (0, 0) → (1, 1) → flat: (0.5 + 1) / 2
        0.75
    """
    c, q = _as_points(costs, qualities)
    if c.size == 0:
        raise InvalidData("AIQ needs at least one (cost, quality) point")
    if cost_range is None:
        lo, hi = float(c.min()), float(c.max())
    else:
        bounds = np.asarray(cost_range, dtype=np.float64).reshape(-1)
        if bounds.size != 2 or not np.all(np.isfinite(bounds)) or bounds[0] > bounds[1]:
            raise InvalidConfig(f"cost_range must be (c_lo, c_hi) with finite c_lo <= c_hi, got {cost_range!r}")
        lo, hi = float(bounds[0]), float(bounds[1])
    hc, hq = non_decreasing_hull(c, q)
    if hi == lo:  # the mean over a vanishing interval tends to the value at its (right-closed) point
        return float(hull_quality(hc, hq, [lo])[0])
    start = max(lo, float(hc[0]))  # R̃ = 0 on [lo, c_0)
    if start >= hi:
        return 0.0
    inner = hc[(hc > start) & (hc < hi)]
    x = np.concatenate(([start], inner, [hi]))  # breakpoints of the piecewise-linear R̃ on [start, hi]
    y = np.interp(x, hc, hq)
    area = float(np.sum(0.5 * (y[1:] + y[:-1]) * np.diff(x)))
    return area / (hi - lo)
