"""Tests of recal_gym.rewards.state: balance EMA and cost normaliser (docs/rewards.md §8-§10)."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from recal_gym.errors import InvalidConfig, InvalidData
from recal_gym.rewards import BalanceConfig, CostConfig, EpisodeView, make_spec, recal_spec
from recal_gym.rewards.state import BalanceState, CostNormalizer, RewardState, episode_raw_cost, route_counts
from recal_gym.types import CallRecord, EpisodeRecord, NameTable

LISTED = ("A", "B", "C", "D")
TABLE = NameTable(names=(*LISTED, "U"), listed=LISTED, exact_aliases=(), name_matching="exact")


def _call(model: str, outcome: str = "executed", tokens: int = 10, price: float = 0.5) -> CallRecord:
    return CallRecord(
        turn=1,
        requested_model=model,
        model=model if outcome != "unknown_model" else "",
        outcome=outcome,  # type: ignore[arg-type]
        completion_tokens=tokens,
        price_per_1m=price,
        cost=tokens * price if outcome == "executed" else 0.0,
    )


def _record(calls: tuple[CallRecord, ...] | None, transcript: str = "", raw_cost: float | None = None) -> EpisodeRecord:
    return EpisodeRecord(
        question_id="q/0",
        data_source="q",
        question="q?",
        golden_answers=("x",),
        transcript=transcript,
        information_spans=(),
        calls=calls,
        raw_cost=raw_cost,
        termination="answer",
        pool=TABLE,
    )


# --- cost normaliser -----------------------------------------------------------------------------------


def test_cost_first_episode_scores_fallback() -> None:
    cost = CostNormalizer()
    assert cost.score(123.0) == 0.5
    assert cost.score(0.0) == 0.5
    assert len(cost.window) == 0  # score is pure


def test_cost_two_values_oracle() -> None:
    cost = CostNormalizer(CostConfig(transform="none"))
    cost.update(4.0)
    assert cost.score(8.0) == 0.0  # t is the window's maximum: above the 95th percentile
    assert cost.score(1.0) == 1.0  # below the 5th percentile
    assert cost.score(4.0) == 0.5  # window [4, 4] is degenerate


def test_cost_quantile_oracle() -> None:
    cost = CostNormalizer(CostConfig(transform="none"))
    for v in (0, 1, 2, 3, 4, 6, 7, 8, 9, 10):
        cost.update(float(v))
    # Window + t = 0..10: lo = 0.5, hi = 9.5, so t = 5 scores 1 - 4.5 / 9 = 0.5.
    assert cost.score(5.0) == 0.5
    assert cost.score(10.0) == 0.0
    values = np.arange(11.0)
    lo, hi = np.quantile(values, 0.05), np.quantile(values, 0.95)
    assert cost.score(2.0) == 1.0 - (2.0 - lo) / (hi - lo)


def test_cost_degenerate_window_falls_back() -> None:
    cost = CostNormalizer(CostConfig(fallback=0.25))
    for _ in range(5):
        cost.update(9.0)
    assert cost.score(9.0) == 0.25


def test_cost_window_eviction() -> None:
    cost = CostNormalizer(CostConfig(window=3, transform="none"))
    for v in (100.0, 1.0, 2.0, 3.0):
        cost.update(v)
    assert list(cost.window) == [1.0, 2.0, 3.0]  # 100 evicted
    # Scoring appends t first, evicting 1.0: the quantiles come from [2, 3, t].
    values = np.array([2.0, 3.0, 2.5])
    lo, hi = np.quantile(values, [0.05, 0.95])
    assert cost.score(2.5) == 1.0 - (2.5 - lo) / (hi - lo)
    assert list(cost.window) == [1.0, 2.0, 3.0]


@pytest.mark.parametrize(
    ("transform", "raw", "t"),
    [("sqrt", 16.0, 4.0), ("log1p", 100.0, math.log1p(1.0)), ("none", 7.5, 7.5), ("sqrt", 0.0, 0.0)],
)
def test_cost_transforms(transform: str, raw: float, t: float) -> None:
    cost = CostNormalizer(CostConfig(transform=transform))  # type: ignore[arg-type]
    assert cost.transform(raw) == t
    cost.update(raw)
    assert list(cost.window) == [t]


@pytest.mark.parametrize("raw", [-1.0, math.nan, math.inf])
def test_cost_rejects_bad_raw_costs(raw: float) -> None:
    with pytest.raises(InvalidData, match="raw_cost must be finite and >= 0"):
        CostNormalizer().score(raw)


def test_cost_batch_mode() -> None:
    episode = CostNormalizer(CostConfig(transform="none"))
    batch = CostNormalizer(CostConfig(transform="none", update="batch"))
    for v in (1.0, 2.0, 3.0):
        batch.update(v)  # a no-op in batch mode
        episode.update_batch([v])  # a no-op in episode mode
    assert len(batch.window) == 0 and len(episode.window) == 0
    batch.update_batch([3.0, 1.0, 2.0])
    assert list(batch.window) == [3.0, 1.0, 2.0]  # record order
    for v in (3.0, 1.0, 2.0):
        episode.update(v)
    assert [batch.score(x) for x in (0.0, 1.5, 9.0)] == [episode.score(x) for x in (0.0, 1.5, 9.0)]


def test_cost_frozen_never_updates() -> None:
    cost = CostNormalizer(frozen=True)
    cost.update(4.0)
    cost.update_batch([1.0])
    assert len(cost.window) == 0


@given(st.lists(st.floats(0.0, 1e6), max_size=30), st.floats(0.0, 1e6), st.sampled_from(["sqrt", "log1p", "none"]))
def test_cost_score_range(history: list[float], raw: float, transform: str) -> None:
    cost = CostNormalizer(CostConfig(window=10, transform=transform))  # type: ignore[arg-type]
    for v in history:
        cost.update(v)
    before = cost.state_dict()
    value = cost.score(raw)
    assert type(value) is float and 0.0 <= value <= 1.0
    assert cost.state_dict() == before


# --- balance -------------------------------------------------------------------------------------------


def test_balance_uniform_start_scores_one() -> None:
    bal = BalanceState(LISTED)
    assert bal.f.tolist() == [0.25] * 4
    assert bal.score(np.array([3, 0, 0, 0])) == 1.0
    assert bal.score(np.array([1, 1, 1, 1])) == 1.0


def test_balance_no_routes_scores_empty_value() -> None:
    assert BalanceState(LISTED).score(np.zeros(4, dtype=int)) == 1.0
    assert BalanceState(LISTED, BalanceConfig(empty_value=0.5)).score(np.zeros(4, dtype=int)) == 0.5
    single = BalanceState(("A",), BalanceConfig(empty_value=0.75))
    assert single.score(np.array([5])) == 0.75  # M = 1


def test_balance_one_model_taking_all_traffic_scores_zero() -> None:
    bal = BalanceState(LISTED)
    bal.load_state_dict({"f": {"A": 1.0, "B": 0.0, "C": 0.0, "D": 0.0}})
    assert bal.score(np.array([2, 0, 0, 0])) == 0.0
    assert bal.score(np.array([0, 1, 0, 0])) == 1.0  # routing away from the over-used model
    assert bal.score(np.array([1, 1, 0, 0])) == 0.5


def test_balance_episode_update_oracle() -> None:
    bal = BalanceState(LISTED)
    bal.update(np.array([1, 0, 0, 0]))
    f = [0.99 * 0.25 + 0.01 * 1.0] + [0.99 * 0.25] * 3
    assert bal.f.tolist() == f
    over = (f[0] - 0.25) / 0.75
    assert bal.score(np.array([1, 0, 0, 0])) == 1.0 - over
    bal.update(np.zeros(4, dtype=int))  # N = 0: unchanged
    assert bal.f.tolist() == f
    assert math.isclose(sum(bal.f), 1.0)


def test_balance_batch_update_oracle() -> None:
    bal = BalanceState(LISTED, BalanceConfig(decay=0.9, update="batch"))
    bal.update(np.array([1, 0, 0, 0]))  # no-op in batch mode
    assert bal.f.tolist() == [0.25] * 4
    bal.update_batch([np.array([2, 0, 0, 0]), np.zeros(4, dtype=int), np.array([0, 1, 0, 1])])
    s_bar = np.mean([[1.0, 0, 0, 0], [0, 0.5, 0, 0.5]], axis=0)  # episodes with N = 0 are skipped
    assert bal.f.tolist() == (0.9 * np.full(4, 0.25) + 0.1 * s_bar).tolist()
    before = bal.f.copy()
    bal.update_batch([np.zeros(4, dtype=int)])
    assert bal.f.tolist() == before.tolist()


def test_balance_validation() -> None:
    with pytest.raises(InvalidConfig, match="unique"):
        BalanceState(("A", "A"))
    with pytest.raises(InvalidData, match=r"counts must be \(4,\) non-negative"):
        BalanceState(LISTED).score(np.array([1, 2]))
    with pytest.raises(InvalidData, match="non-negative"):
        BalanceState(LISTED).score(np.array([1, -1, 0, 0]))
    with pytest.raises(InvalidData, match="'f' must map exactly"):
        BalanceState(LISTED).load_state_dict({"f": {"A": 1.0}})
    with pytest.raises(InvalidData, match="finite"):
        BalanceState(LISTED).load_state_dict({"f": {"A": math.nan, "B": 0.0, "C": 0.0, "D": 0.0}})


@given(
    st.lists(st.floats(0.0, 1.0), min_size=4, max_size=4).filter(lambda v: sum(v) > 0),
    st.lists(st.integers(0, 5), min_size=4, max_size=4),
)
def test_balance_score_range(f: list[float], counts: list[int]) -> None:
    bal = BalanceState(LISTED)
    total = sum(f)
    bal.load_state_dict({"f": {k: v / total for k, v in zip(LISTED, f, strict=True)}})
    value = bal.score(np.array(counts))
    assert type(value) is float and 0.0 <= value <= 1.0


# --- record helpers --------------------------------------------------------------------------------------


def test_route_counts_from_calls() -> None:
    rec = _record(
        (
            _call("A"),
            _call("A", "call_failed"),
            _call("B"),
            _call("", "unknown_model"),
            _call("C", "not_executed_final_turn"),
            _call("U"),  # resolvable but unlisted: ignored by balance
        )
    )
    assert route_counts(rec, LISTED).tolist() == [2, 1, 0, 0]


def test_route_counts_inferred_without_calls() -> None:
    t = (
        "<think>t</think><search>A: q</search><information>r</information>"
        "<think>t</think><search>b: q</search><information>None</information>"
        "<think>t</think><search>Z: q</search><information>None</information>"
        "<think>t</think><search>U: q</search><information>r</information>"
        "<think>t</think><search>D: q</search>"  # final-turn route: no information block
    )
    assert route_counts(_record(None, t), LISTED).tolist() == [1, 1, 0, 0]


def test_episode_raw_cost() -> None:
    calls = (_call("A", tokens=10, price=0.3), _call("B", "call_failed"), _call("C", tokens=7, price=1.2))
    assert episode_raw_cost(_record(calls)) == 0.0 + 10 * 0.3 + 7 * 1.2
    assert episode_raw_cost(_record(())) == 0.0
    assert episode_raw_cost(_record(None, raw_cost=5.0)) == 5.0
    assert episode_raw_cost(_record(None)) is None


# --- RewardState ---------------------------------------------------------------------------------------


def _history(state: RewardState, n: int = 6) -> RewardState:
    for i in range(n):
        state.balance.update(np.array([i % 2, 1, 0, i % 3]))
        state.cost.update(float(i * i))
    return state


def test_reward_state_default_and_score() -> None:
    state = RewardState.default(recal_spec(), LISTED)
    assert state.listed == LISTED and not state.frozen
    assert state.names == ("balance", "cost")
    assert state.balance.score(np.array([1, 0, 0, 0])) == 1.0 and state.cost.score(10.0) == 0.5
    unknown = _record(None)  # no calls and no raw_cost: the cost component scores its fallback
    assert state.cost.score_episode(EpisodeView(unknown, recal_spec())) == 0.5


def test_state_dict_round_trip_through_json() -> None:
    state = _history(RewardState.default(recal_spec(), LISTED))
    d = json.loads(json.dumps(state.state_dict()))
    fresh = RewardState.default(recal_spec(), LISTED)
    fresh.load_state_dict(d)
    assert fresh == state
    assert fresh.state_dict() == state.state_dict()
    counts = np.array([1, 0, 2, 0])
    assert fresh.balance.score(counts) == state.balance.score(counts) and fresh.cost.score(3.0) == state.cost.score(3.0)
    with pytest.raises(InvalidData, match=r"expected keys \['balance', 'cost'\]"):
        fresh.load_state_dict({"balance": d["balance"]})
    with pytest.raises(InvalidData, match="'window' must be a list"):
        fresh.load_state_dict({"balance": d["balance"], "cost": {"window": "abc"}})


def test_load_longer_window_keeps_the_most_recent_values() -> None:
    cost = CostNormalizer(CostConfig(window=2))
    cost.load_state_dict({"window": [1.0, 2.0, 3.0]})
    assert list(cost.window) == [2.0, 3.0]


def test_copy_is_independent_and_assign_is_in_place() -> None:
    state = _history(RewardState.default(recal_spec(), LISTED))
    twin = state.copy()
    assert twin == state and twin is not state
    twin.balance.update(np.array([5, 0, 0, 0]))
    twin.cost.update(100.0)
    assert twin != state
    frozen = state.copy(frozen=True)
    assert frozen.frozen and not state.frozen
    shared = RewardState.default(recal_spec(), LISTED)
    balance, cost = shared.balance, shared.cost
    shared.assign(twin)
    assert shared.state_dict() == twin.state_dict()
    assert shared.balance is balance and shared.cost is cost  # same objects, updated in place
    twin.balance.update(np.array([0, 5, 0, 0]))
    twin.cost.update(1.0)
    assert shared.state_dict() != twin.state_dict()  # no aliasing


def test_frozen_state_never_updates() -> None:
    state = RewardState.default(recal_spec(), LISTED)
    state.frozen = True
    assert state.balance.frozen and state.cost.frozen
    _history(state)
    state.update_batch([_record((_call("A"),))])
    assert state == RewardState.default(recal_spec(), LISTED).copy(frozen=True)


def test_update_batch_from_records() -> None:
    spec = make_spec("recal", update_mode="batch")
    state = RewardState.default(spec, LISTED)
    records = [
        _record((_call("A", tokens=4, price=1.0),)),
        _record(()),
        _record((_call("B", tokens=9, price=1.0), _call("B", "call_failed"))),
        _record(None),  # no cost data: leaves the window alone
    ]
    state.update_batch(records)
    assert list(state.cost.window) == [2.0, 0.0, 3.0]
    s_bar = np.array([0.5, 0.5, 0.0, 0.0])
    assert state.balance.f.tolist() == (0.9 * np.full(4, 0.25) + 0.1 * s_bar).tolist()
    # The same records do nothing to an episode-mode state.
    episode = RewardState.default(recal_spec(), LISTED)
    episode.update_batch(records)
    assert episode == RewardState.default(recal_spec(), LISTED)


def test_determinism() -> None:
    a = _history(RewardState.default(recal_spec(), LISTED), 20)
    b = _history(RewardState.default(recal_spec(), LISTED), 20)
    assert a.state_dict() == b.state_dict()


# --- exactness of the NumPy-free inner loop --------------------------------------------------------------


def _numpy_cost_score(window: list[float], t: float, cfg: CostConfig) -> float:
    """The first release's NumPy formula (Router-R1's np.percentile), the reference."""
    values = np.array([*window, t][-cfg.window :], dtype=np.float64)
    lo, hi = (float(x) for x in np.quantile(values, [cfg.q_low, cfg.q_high])) if len(values) >= 2 else (t, t)
    if hi - lo < cfg.eps:
        return float(cfg.fallback)
    return 1.0 - min(1.0, max(0.0, (t - lo) / (hi - lo)))


@given(
    st.lists(st.floats(0.0, 500.0), max_size=60),
    st.floats(0.0, 500.0),
    st.integers(1, 25),
    st.sampled_from([(0.05, 0.95), (0.0, 1.0), (0.25, 0.75), (0.1, 0.5)]),
)
def test_cost_score_equals_the_numpy_quantile_formula(history: list[float], raw: float, window: int, q) -> None:
    cfg = CostConfig(window=window, q_low=q[0], q_high=q[1], transform="none")
    cost = CostNormalizer(cfg)
    for h in history:
        cost.update(h)
    assert cost.score(raw) == _numpy_cost_score(list(cost.window), raw, cfg)
    assert cost._sorted == sorted(cost.window)  # the sorted mirror tracks evictions


@given(st.lists(st.floats(0.0, 1e6), min_size=1, max_size=300), st.floats(0.0, 1.0))
def test_linear_quantile_and_pairwise_sum_match_numpy(values: list[float], q: float) -> None:
    from recal_gym.rewards.state import linear_quantile, pairwise_sum

    assert linear_quantile(sorted(values), q) == float(np.quantile(np.array(values), q))
    assert pairwise_sum(values) == float(np.sum(np.array(values)))


def _numpy_balance(f: np.ndarray, counts: np.ndarray, m: int) -> float:
    c = counts.astype(np.float64)
    n = float(c.sum())
    if n == 0.0 or m <= 1:
        return 1.0
    u = 1.0 / m
    over = np.clip((f - u) / (1.0 - u), 0.0, 1.0)
    return min(1.0, max(0.0, 1.0 - float(np.sum((c / n) * over))))


@given(
    st.integers(1, 11),
    st.lists(st.lists(st.integers(0, 3), min_size=11, max_size=11), min_size=1, max_size=12),
    st.sampled_from(["episode", "batch"]),
)
def test_balance_matches_the_numpy_formulas(m: int, rows: list[list[int]], mode: str) -> None:
    names = tuple(f"m{i}" for i in range(m))
    state = BalanceState(names, BalanceConfig(update=mode, decay=0.9))
    f = np.full(m, 1.0 / m)
    counts = [np.array(r[:m]) for r in rows]
    for c in counts:
        assert state.score(c) == _numpy_balance(f, c, m)
        state.update(c)
        if mode == "episode" and c.sum() > 0:
            f = 0.9 * f + (1.0 - 0.9) * (c / float(c.sum()))
    state.update_batch(counts)
    shares = [c / c.sum() for c in counts if c.sum() > 0]
    if mode == "batch" and shares:
        f = 0.9 * f + (1.0 - 0.9) * np.mean(np.stack(shares), axis=0)
    assert state.f.tolist() == f.tolist()


@given(st.lists(st.integers(0, 6).map(float), min_size=1, max_size=12), st.integers(0, 6).map(float), st.data())
def test_cost_window_view_is_the_sorted_window_with_one_value_in_and_one_out(
    values: list[float], t: float, data: st.DataObject
) -> None:
    from recal_gym.rewards.state import _Inserted

    s = sorted(values)
    drop = data.draw(st.integers(-1, len(s) - 1))
    kept = [v for i, v in enumerate(s) if i != drop]
    view = _Inserted(s, t, drop)
    assert len(view) == len(kept) + 1
    assert [view[i] for i in range(len(view))] == sorted([*kept, t])
