"""Explicit state of the history-dependent reward components (``docs/rewards.md`` §8-§10, §14.1).

:class:`BalanceState` holds the EMA frequency vector of the balance component, :class:`CostNormalizer`
the window of transformed costs, and :class:`RewardState` one state object per stateful component of a
reward spec (user components included). None of them draws random numbers: each is fully determined
by its configuration, its initial contents and the ordered updates. ``score`` is pure; ``update``
applies an ``"episode"``-mode update (a no-op in ``"batch"`` mode) and ``update_batch`` a
``"batch"``-mode update (a no-op in ``"episode"`` mode); a ``frozen`` object never updates.

Scoring is the inner loop of every env step and of re-scoring large logs, so the per-episode paths use
plain Python floats (no NumPy): the cost window keeps a sorted copy for O(log W) quantiles, computed
with NumPy's ``linear`` quantile formula, and balance sums follow NumPy's pairwise summation, so every
value is bit-identical to the NumPy reference formulas (tested).
"""

from __future__ import annotations

import bisect
import math
from collections import deque
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from recal_gym.errors import InvalidConfig, InvalidData
from recal_gym.rewards.components import ComponentState
from recal_gym.rewards.spec import BalanceConfig, CostConfig, RewardSpec
from recal_gym.rewards.view import EpisodeView
from recal_gym.types import EpisodeRecord

__all__ = [
    "COUNTED_OUTCOMES",
    "BalanceState",
    "CostNormalizer",
    "RewardState",
    "episode_raw_cost",
    "linear_quantile",
    "pairwise_sum",
    "route_counts",
]

COUNTED_OUTCOMES: tuple[str, ...] = ("executed", "call_failed")
"""Route outcomes that count towards the balance component (routes in routing turns)."""


def pairwise_sum(values: Sequence[float]) -> float:
    """Σ values in NumPy's pairwise order (``np.sum`` of a contiguous float64 array), bit for bit."""
    n = len(values)
    if n < 8:
        total = 0.0
        for v in values:
            total += v
        return total
    if n <= 128:
        r = list(values[:8])
        i = 8
        stop = n - n % 8
        while i < stop:
            for j in range(8):
                r[j] += values[i + j]
            i += 8
        total = ((r[0] + r[1]) + (r[2] + r[3])) + ((r[4] + r[5]) + (r[6] + r[7]))
        while i < n:
            total += values[i]
            i += 1
        return total
    half = n // 2
    half -= half % 8
    return pairwise_sum(values[:half]) + pairwise_sum(values[half:])


def linear_quantile(sorted_values: Sequence[float], q: float) -> float:
    """``np.quantile(values, q)`` (method ``linear``) of an ascending sequence, bit for bit.

    virtual index ``v = (n − 1)·q``; ``a, b`` the order statistics at ``floor(v)`` and ``floor(v) + 1``;
    result ``a + (b − a)·γ`` for ``γ = v − floor(v) < 0.5``, else ``b − (b − a)·(1 − γ)``.
    """
    n = len(sorted_values)
    v = (n - 1) * q
    if v >= n - 1:
        return float(sorted_values[n - 1])
    lo = math.floor(v)
    gamma = v - lo
    a = sorted_values[lo]
    b = sorted_values[lo + 1]
    diff = b - a
    return b - diff * (1 - gamma) if gamma >= 0.5 else a + diff * gamma


def route_counts(record: EpisodeRecord, listed: Sequence[str]) -> np.ndarray:
    """Count an episode's routes per listed model (``docs/rewards.md`` §9).

    A route counts if it resolved to a listed model with outcome ``executed`` or ``call_failed``. For a
    foreign log without ``calls``, a search block counts if its NAME resolves to a listed model and the
    next block of the scan is an information block (the environment answered it).

    Returns:
        ``(M,)`` int64 counts in the order of ``listed``.
    """
    counts = EpisodeView(record, None).route_counts  # type: ignore[arg-type]  # counts need no spec
    return np.array([counts.get(name, 0) for name in listed], dtype=np.int64)


def episode_raw_cost(record: EpisodeRecord) -> float | None:
    """An episode's raw cost in µ$ (Σ tokens × price of executed calls), or ``None`` without cost data."""
    return EpisodeView(record, None).raw_cost  # type: ignore[arg-type]


class BalanceState:
    """EMA frequency vector over the listed pool models (``docs/rewards.md`` §9).

    Attributes:
        config: The balance settings (decay β, empty value, update mode).
        listed: The M listed display names, in pool order.
        frozen: When True, updates are ignored (evaluation mode).
    """

    __slots__ = ("_f", "config", "frozen", "listed")

    def __init__(self, listed: Sequence[str], config: BalanceConfig | None = None, *, frozen: bool = False) -> None:
        """Create a uniform state over ``listed``.

        Raises:
            InvalidConfig: if ``listed`` holds a duplicate name.
        """
        self.listed: tuple[str, ...] = tuple(listed)
        if len(set(self.listed)) != len(self.listed):
            raise InvalidConfig(f"BalanceState: listed names must be unique, got {list(self.listed)}")
        self.config = BalanceConfig() if config is None else config
        m = len(self.listed)
        self._f: list[float] = [1.0 / m] * m
        self.frozen = frozen

    @property
    def f(self) -> np.ndarray:
        """``(M,)`` float64 frequency vector (a copy); starts uniform at 1/M and sums to 1."""
        return np.array(self._f, dtype=np.float64)

    def _counts(self, counts: Sequence[float] | np.ndarray) -> list[float]:
        c = [float(x) for x in np.asarray(counts).ravel()] if isinstance(counts, np.ndarray) else list(counts)
        if len(c) != len(self.listed) or any(x < 0 for x in c):
            raise InvalidData(f"BalanceState: counts must be ({len(self.listed)},) non-negative, got {counts!r}")
        return [float(x) for x in c]

    def _score(self, c: list[float]) -> float:
        n = pairwise_sum(c)
        m = len(self.listed)
        if n == 0.0 or m <= 1:
            return float(self.config.empty_value)
        u = 1.0 / m
        terms = [(x / n) * min(1.0, max(0.0, (fm - u) / (1.0 - u))) for x, fm in zip(c, self._f, strict=True)]
        value = 1.0 - pairwise_sum(terms)
        return min(1.0, max(0.0, value))  # Σ s = 1 only up to rounding

    def score(self, counts: Sequence[float] | np.ndarray) -> float:
        """Return ``r_balance`` for one episode's counts against the current state (pure).

        ``1 - Σ_m s_m · clip((f_m - u)/(1 - u), 0, 1)`` with ``s = n/N`` and ``u = 1/M``; the empty value
        when N = 0 or M ≤ 1.

        Args:
            counts: ``(M,)`` non-negative route counts per listed model.

        Returns:
            A Python float in [0, 1].
        """
        return self._score(self._counts(counts))

    def _update(self, c: list[float]) -> None:
        n = pairwise_sum(c)
        if self.frozen or self.config.update != "episode" or n == 0.0:
            return
        beta = float(self.config.decay)
        self._f = [beta * fm + (1.0 - beta) * (x / n) for fm, x in zip(self._f, c, strict=True)]

    def update(self, counts: Sequence[float] | np.ndarray) -> None:
        """Episode-mode update ``f ← β·f + (1 - β)·s`` if N > 0 (no-op when frozen or in batch mode)."""
        self._update(self._counts(counts))

    def _update_batch(self, rows: list[list[float]]) -> None:
        if self.frozen or self.config.update != "batch":
            return
        shares = [[x / n for x in r] for r in rows if (n := pairwise_sum(r)) > 0]
        if not shares:
            return
        m = len(self.listed)
        if m == 1:  # NumPy reduces a single contiguous column pairwise
            mean = [pairwise_sum([s[0] for s in shares]) / len(shares)]
        else:  # ... and several columns row by row
            acc = list(shares[0])
            for s in shares[1:]:
                acc = [a + x for a, x in zip(acc, s, strict=True)]
            mean = [a / len(shares) for a in acc]
        beta = float(self.config.decay)
        self._f = [beta * fm + (1.0 - beta) * s for fm, s in zip(self._f, mean, strict=True)]

    def update_batch(self, counts: Sequence[Sequence[float] | np.ndarray]) -> None:
        """Batch-mode update ``f ← β·f + (1 - β)·s̄`` (no-op when frozen or in episode mode).

        ``s̄`` is the mean share vector over the batch's episodes with N > 0; without any, nothing changes.
        """
        self._update_batch([self._counts(c) for c in counts])

    # ------------------------------------------------------------------ ComponentState protocol
    def _episode_counts(self, ep: EpisodeView) -> list[float]:
        counts = ep.route_counts
        return [float(counts.get(name, 0)) for name in self.listed]

    def score_episode(self, ep: EpisodeView) -> float:
        """``r_balance`` of an episode (pure)."""
        if not ep.route_counts:  # no routed call: N = 0
            return float(self.config.empty_value)
        return self._score(self._episode_counts(ep))

    def observe(self, ep: EpisodeView) -> None:
        """Episode-mode update with an episode's route shares."""
        if ep.route_counts:  # N = 0 changes nothing
            self._update(self._episode_counts(ep))

    def observe_batch(self, eps: Sequence[EpisodeView]) -> None:
        """Batch-mode update with a batch's episodes."""
        self._update_batch([self._episode_counts(ep) for ep in eps])

    def state_dict(self) -> dict[str, Any]:
        """Return ``{"f": {name: value}}`` (JSON-ready plain Python)."""
        return {"f": {name: float(v) for name, v in zip(self.listed, self._f, strict=True)}}

    def load_state_dict(self, d: Mapping[str, Any]) -> None:
        """Load a :meth:`state_dict` taken over the same listed models.

        Raises:
            InvalidData: if the names differ or a value is not finite and non-negative.
        """
        f = d.get("f") if isinstance(d, Mapping) else None
        if not isinstance(f, Mapping) or set(f) != set(self.listed):
            got = sorted(f) if isinstance(f, Mapping) else f
            raise InvalidData(f"BalanceState.load_state_dict: 'f' must map exactly {list(self.listed)}, got {got!r}")
        values = [float(f[name]) for name in self.listed]
        if not all(math.isfinite(v) and v >= 0 for v in values):
            raise InvalidData(f"BalanceState.load_state_dict: 'f' values must be finite and >= 0, got {f!r}")
        self._f = values

    def copy(self) -> BalanceState:
        """Return an independent copy (same config, contents and frozen flag)."""
        new = BalanceState(self.listed, self.config, frozen=self.frozen)
        new._f = list(self._f)
        return new


class CostNormalizer:
    """Router-R1's windowed quantile normaliser of the episode cost (``docs/rewards.md`` §10).

    Attributes:
        config: The normaliser settings.
        window: The most recent transformed costs, oldest first (read it; change it only through the methods).
        frozen: When True, updates are ignored (evaluation mode).
    """

    __slots__ = ("_sorted", "config", "frozen", "window")

    def __init__(self, config: CostConfig | None = None, *, frozen: bool = False) -> None:
        """Create a normaliser with an empty window."""
        self.config = CostConfig() if config is None else config
        self.window: deque[float] = deque(maxlen=int(self.config.window))
        self._sorted: list[float] = []
        self.frozen = frozen

    def transform(self, raw_cost: float) -> float:
        """Return t for a raw cost: √raw, ln(1 + 0.01·raw) or raw.

        Raises:
            InvalidData: if ``raw_cost`` is negative or not finite.
        """
        raw = float(raw_cost)
        if not math.isfinite(raw) or raw < 0.0:
            raise InvalidData(f"CostNormalizer: raw_cost must be finite and >= 0, got {raw_cost!r}")
        if self.config.transform == "sqrt":
            return math.sqrt(raw)
        if self.config.transform == "log1p":
            return math.log1p(0.01 * raw)
        return raw

    def _append(self, t: float) -> None:
        if len(self.window) == self.window.maxlen:
            old = self.window[0]
            del self._sorted[bisect.bisect_left(self._sorted, old)]
        self.window.append(t)
        bisect.insort(self._sorted, t)

    def score(self, raw_cost: float) -> float:
        """Return the normalised cost score of one episode (pure; Router-R1's order).

        t enters (a virtual copy of) the window first, evicting the oldest beyond ``window``; lo and hi are
        the window's ``q_low``/``q_high`` quantiles (both the single value if it holds one); the score is
        ``fallback`` if ``hi - lo < eps``, else ``1 - clip((t - lo)/(hi - lo), 0, 1)``.

        Args:
            raw_cost: The episode's raw cost in µ$.

        Returns:
            A Python float in [0, 1].
        """
        cfg = self.config
        t = self.transform(raw_cost)
        s = self._sorted
        # A full window's oldest value leaves the virtual window: skipped by index, not copied out.
        drop = bisect.bisect_left(s, self.window[0]) if len(self.window) == self.window.maxlen else -1
        if len(s) == (drop >= 0):
            return float(cfg.fallback)  # one value: lo == hi
        view = _Inserted(s, t, drop)
        lo = linear_quantile(view, cfg.q_low)
        hi = linear_quantile(view, cfg.q_high)
        if hi - lo < cfg.eps:
            return float(cfg.fallback)
        return 1.0 - min(1.0, max(0.0, (t - lo) / (hi - lo)))

    def update(self, raw_cost: float) -> None:
        """Episode-mode update: append t (no-op when frozen or in batch mode)."""
        t = self.transform(raw_cost)
        if not self.frozen and self.config.update == "episode":
            self._append(t)

    def update_batch(self, raw_costs: Sequence[float]) -> None:
        """Batch-mode update: append every t in order (no-op when frozen or in episode mode)."""
        ts = [self.transform(r) for r in raw_costs]
        if not self.frozen and self.config.update == "batch":
            for t in ts:
                self._append(t)

    # ------------------------------------------------------------------ ComponentState protocol
    def score_episode(self, ep: EpisodeView) -> float:
        """``r_cost`` of an episode (pure); an unknown raw cost scores ``fallback``."""
        raw = ep.raw_cost
        return float(self.config.fallback) if raw is None else self.score(raw)

    def observe(self, ep: EpisodeView) -> None:
        """Episode-mode update (an unknown raw cost leaves the window unchanged)."""
        raw = ep.raw_cost
        if raw is not None:
            self.update(raw)

    def observe_batch(self, eps: Sequence[EpisodeView]) -> None:
        """Batch-mode update with every known raw cost of the batch, in order."""
        self.update_batch([c for c in (ep.raw_cost for ep in eps) if c is not None])

    def state_dict(self) -> dict[str, Any]:
        """Return ``{"window": [t, ...]}`` oldest first (JSON-ready plain Python)."""
        return {"window": [float(t) for t in self.window]}

    def load_state_dict(self, d: Mapping[str, Any]) -> None:
        """Load a :meth:`state_dict`; a longer window keeps its most recent values.

        Raises:
            InvalidData: if ``window`` is not a list of finite floats.
        """
        w = d.get("window") if isinstance(d, Mapping) else None
        if not isinstance(w, Sequence) or isinstance(w, str):
            raise InvalidData(f"CostNormalizer.load_state_dict: 'window' must be a list of floats, got {w!r}")
        values = [float(t) for t in w]
        if not all(math.isfinite(t) for t in values):
            raise InvalidData("CostNormalizer.load_state_dict: 'window' values must be finite")
        self.window = deque(values, maxlen=int(self.config.window))
        self._sorted = sorted(self.window)

    def copy(self) -> CostNormalizer:
        """Return an independent copy (same config, contents and frozen flag)."""
        new = CostNormalizer(self.config, frozen=self.frozen)
        new.window = deque(self.window, maxlen=self.window.maxlen)
        new._sorted = list(self._sorted)
        return new


class _Inserted(Sequence[float]):
    """Read-only ascending view of a sorted list with one value inserted and optionally one dropped (no copy).

    ``_Inserted(s, t, drop)`` reads as ``sorted(s without s[drop], plus t)`` (``drop < 0``: nothing dropped).
    """

    __slots__ = ("_at", "_drop", "_n", "_s", "_t")

    def __init__(self, s: list[float], t: float, drop: int = -1) -> None:
        self._s, self._t, self._drop = s, t, drop
        at = bisect.bisect_left(s, t)
        self._at = at - 1 if 0 <= drop < at else at  # s[drop] < t: one fewer value before t
        self._n = len(s) + (0 if drop >= 0 else 1)

    def __len__(self) -> int:
        return self._n

    def __getitem__(self, i: int) -> float:  # type: ignore[override]  # int indices only
        at = self._at
        if i == at:
            return self._t
        if i > at:
            i -= 1  # an index of the list without t
        drop = self._drop
        return self._s[i + 1 if 0 <= drop <= i else i]


class RewardState:
    """The reward state: one state object per stateful component of a spec (``docs/rewards.md`` §8).

    For the presets these are ``balance`` (:class:`BalanceState`) and ``cost`` (:class:`CostNormalizer`);
    a user's stateful component adds its own (``state["name"]``). Pass one instance to every
    sub-environment that should share it; keep separate instances for training and evaluation (by default
    evaluation uses a frozen :meth:`copy`).

    Args:
        states: ``{component: state object}``; the spec's stateful components, in spec order.
        listed: The listed pool models (the balance component's M models).
    """

    __slots__ = ("_states", "listed")

    def __init__(self, states: Mapping[str, ComponentState], listed: Sequence[str] = ()) -> None:
        """Bundle the component states."""
        self._states: dict[str, ComponentState] = dict(states)
        self.listed: tuple[str, ...] = tuple(listed)

    @classmethod
    def default(cls, spec: RewardSpec, listed: Sequence[str]) -> RewardState:
        """A fresh state for every stateful component of ``spec`` over the ``listed`` models."""
        states: dict[str, ComponentState] = {}
        for c in spec.components:
            d = c.definition()
            if d.state is not None:
                states[c.name] = d.state(spec, tuple(listed), **c.params_dict)
        return cls(states, listed)

    def __getitem__(self, name: str) -> ComponentState:
        """The state of component ``name``."""
        return self._states[name]

    def __contains__(self, name: object) -> bool:
        """Whether component ``name`` has a state here."""
        return name in self._states

    @property
    def names(self) -> tuple[str, ...]:
        """Stateful components held, in order."""
        return tuple(self._states)

    @property
    def balance(self) -> BalanceState:
        """The balance component's state."""
        return self._states["balance"]  # type: ignore[return-value]

    @property
    def cost(self) -> CostNormalizer:
        """The cost component's state."""
        return self._states["cost"]  # type: ignore[return-value]

    @property
    def frozen(self) -> bool:
        """True when every component state is frozen; setting it sets all."""
        return all(s.frozen for s in self._states.values())

    @frozen.setter
    def frozen(self, value: bool) -> None:
        for s in self._states.values():
            s.frozen = bool(value)

    def check(self, spec: RewardSpec, listed: Sequence[str], where: str = "reward state") -> None:
        """Raise unless this state holds exactly ``spec``'s stateful components over ``listed``.

        Raises:
            InvalidData: the components or the listed models differ.
        """
        wanted = [c.name for c in spec.components if c.definition().stateful]
        if list(self._states) != wanted:
            raise InvalidData(
                f"{where}: holds states for {list(self._states)}, but the spec's stateful components are {wanted}"
            )
        if tuple(listed) != self.listed:
            raise InvalidData(f"{where}: built over listed models {list(self.listed)}, not {list(listed)}")

    def observe(self, ep: EpisodeView) -> None:
        """Episode-mode update of every component state after ``ep`` was scored."""
        for s in self._states.values():
            s.observe(ep)

    def update_batch(self, records: Sequence[EpisodeRecord], spec: RewardSpec | None = None) -> None:
        """Apply one batch-mode update from a rollout batch's records, in record order.

        Args:
            records: The batch's episode records.
            spec: The spec the records were scored under (stateful user components may read it); built-in
                states need none.
        """
        eps = [EpisodeView(r, spec) for r in records]  # type: ignore[arg-type]
        for s in self._states.values():
            s.observe_batch(eps)

    def state_dict(self) -> dict[str, Any]:
        """Return each component state's ``state_dict()`` by component name (JSON-ready plain Python)."""
        return {name: s.state_dict() for name, s in self._states.items()}

    def load_state_dict(self, d: Mapping[str, Any]) -> None:
        """Load a :meth:`state_dict` (e.g. from a checkpoint or a previous run).

        Raises:
            InvalidData: if a part is missing or malformed.
        """
        if not isinstance(d, Mapping) or set(d) != set(self._states):
            got = sorted(d) if isinstance(d, Mapping) else d
            raise InvalidData(f"RewardState.load_state_dict: expected keys {list(self._states)}, got {got!r}")
        for name, s in self._states.items():
            s.load_state_dict(d[name])

    def copy(self, *, frozen: bool | None = None) -> RewardState:
        """Return an independent copy; ``frozen`` overrides the copy's flag when given."""
        new = RewardState({k: s.copy() for k, s in self._states.items()}, self.listed)
        if frozen is not None:
            new.frozen = frozen
        return new

    def assign(self, other: RewardState) -> None:
        """Copy the component states of ``other`` into this object in place (keeps this object's frozen flags).

        Component state objects with the same names are updated in place (configuration and contents), so
        references to ``state.balance``/``state.cost`` stay valid.
        """
        if list(self._states) != list(other._states):
            flags = {k: s.frozen for k, s in self._states.items()}
            self._states = {k: s.copy() for k, s in other._states.items()}
            for k, s in self._states.items():
                s.frozen = flags.get(k, s.frozen)
        else:
            for name, mine in self._states.items():
                theirs = other._states[name]
                if hasattr(theirs, "config"):
                    mine.config = theirs.config  # type: ignore[attr-defined]
                if isinstance(mine, BalanceState) and isinstance(theirs, BalanceState):
                    mine.listed = theirs.listed
                if isinstance(mine, CostNormalizer) and isinstance(theirs, CostNormalizer):
                    mine.window = deque(theirs.window, maxlen=theirs.window.maxlen)
                    mine._sorted = list(theirs._sorted)
                else:
                    mine.load_state_dict(theirs.state_dict())
        self.listed = other.listed

    def __eq__(self, other: object) -> bool:
        """Equal components, configurations, contents and frozen flags."""
        if not isinstance(other, RewardState):
            return NotImplemented
        return (
            self.listed == other.listed
            and list(self._states) == list(other._states)
            and all(
                getattr(a, "config", None) == getattr(b, "config", None) and a.frozen == b.frozen
                for a, b in zip(self._states.values(), other._states.values(), strict=True)
            )
            and self.state_dict() == other.state_dict()
        )

    __hash__ = None  # type: ignore[assignment]  # mutable

    def __repr__(self) -> str:
        """Short summary."""
        return f"RewardState(components={list(self._states)}, listed={list(self.listed)}, frozen={self.frozen})"
