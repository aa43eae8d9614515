"""Explicit state of the two history-dependent reward components (``docs/rewards.md`` §8-§10).

:class:`BalanceState` holds the EMA frequency vector of the balance component, :class:`CostNormalizer`
the window of transformed costs, and :class:`RewardState` both. None of them draws random numbers:
each is fully determined by its configuration, its initial contents and the ordered updates.
``score`` is pure; ``update`` applies an ``"episode"``-mode update (a no-op in ``"batch"`` mode) and
``update_batch`` a ``"batch"``-mode update (a no-op in ``"episode"`` mode); a ``frozen`` object never
updates.
"""

from __future__ import annotations

import itertools
import math
from collections import deque
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from recal_gym.errors import InvalidConfig, InvalidData
from recal_gym.protocol import scan_blocks
from recal_gym.resolver import resolve_model
from recal_gym.rewards.spec import BalanceConfig, CostConfig, RewardSpec
from recal_gym.types import EpisodeRecord

__all__ = [
    "COUNTED_OUTCOMES",
    "BalanceState",
    "CostNormalizer",
    "RewardState",
    "episode_raw_cost",
    "route_counts",
]

COUNTED_OUTCOMES: tuple[str, ...] = ("executed", "call_failed")
"""Route outcomes that count towards the balance component (routes in routing turns)."""


def route_counts(record: EpisodeRecord, listed: Sequence[str]) -> np.ndarray:
    """Count an episode's routes per listed model (``docs/rewards.md`` §9).

    A route counts if it resolved to a listed model with outcome ``executed`` or ``call_failed``.
    For a foreign log without ``calls``, a search block counts if its NAME (text before the first
    colon) resolves to a listed model and the next block of the scan is an information block (the
    environment answered it); final-turn routes have none and do not count.

    Args:
        record: The episode record.
        listed: The listed model display names (the balance component's M models), in order.

    Returns:
        (M,) int64 counts in the order of ``listed``.
    """
    index = {name: i for i, name in enumerate(listed)}
    counts = np.zeros(len(listed), dtype=np.int64)
    if record.calls is not None:
        for call in record.calls:
            i = index.get(call.model)
            if i is not None and call.outcome in COUNTED_OUTCOMES:
                counts[i] += 1
        return counts
    blocks = scan_blocks(record.transcript)
    for b, nxt in itertools.pairwise(blocks):
        if b.tag != "search" or nxt.tag != "information" or ":" not in b.content:
            continue
        i = index.get(resolve_model(b.content.split(":", 1)[0], record.pool) or "")
        if i is not None:
            counts[i] += 1
    return counts


def episode_raw_cost(record: EpisodeRecord) -> float | None:
    """Return an episode's raw cost in µ$, or ``None`` if the record holds no cost data.

    With ``calls``: Σ over executed calls of ``completion_tokens * price_per_1m``, summed from 0.0 in
    call order (``docs/rewards.md`` §10). Without ``calls``: the record's ``raw_cost`` (may be ``None``).
    """
    if record.calls is not None:
        total = 0.0
        for call in record.calls:
            if call.outcome == "executed":
                total = total + call.completion_tokens * call.price_per_1m
        return total
    return None if record.raw_cost is None else float(record.raw_cost)


class BalanceState:
    """EMA frequency vector over the listed pool models (``docs/rewards.md`` §9).

    Attributes:
        config: The balance settings (decay β, empty value, update mode).
        listed: The M listed display names, in pool order.
        f: (M,) float64 frequency vector; starts uniform at 1/M and sums to 1.
        frozen: When True, updates are ignored (evaluation mode).
    """

    __slots__ = ("config", "f", "frozen", "listed")

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
        self.f: np.ndarray = np.full(m, 1.0 / m) if m else np.zeros(0)
        self.frozen = frozen

    def _check_counts(self, counts: np.ndarray) -> np.ndarray:
        c = np.asarray(counts)
        if c.shape != (len(self.listed),) or (c.size and c.min() < 0):
            raise InvalidData(f"BalanceState: counts must be ({len(self.listed)},) non-negative, got {c!r}")
        return c.astype(np.float64)

    def score(self, counts: np.ndarray) -> float:
        """Return ``r_balance`` for one episode's counts against the current state (pure).

        ``1 - Σ_m s_m · clip((f_m - u)/(1 - u), 0, 1)`` with ``s = n/N`` and ``u = 1/M``; the empty
        value when N = 0 or M ≤ 1.

        Args:
            counts: (M,) non-negative route counts per listed model.

        Returns:
            A Python float in [0, 1].
        """
        c = self._check_counts(counts)
        n = float(c.sum())
        m = len(self.listed)
        if n == 0.0 or m <= 1:
            return float(self.config.empty_value)
        u = 1.0 / m
        over = np.clip((self.f - u) / (1.0 - u), 0.0, 1.0)  # (M,)
        value = 1.0 - float(np.sum((c / n) * over))
        return min(1.0, max(0.0, value))  # Σ s = 1 only up to rounding

    def update(self, counts: np.ndarray) -> None:
        """Episode-mode update ``f ← β·f + (1 - β)·s`` if N > 0 (no-op when frozen or in batch mode)."""
        c = self._check_counts(counts)
        n = float(c.sum())
        if self.frozen or self.config.update != "episode" or n == 0.0:
            return
        beta = float(self.config.decay)
        self.f = beta * self.f + (1.0 - beta) * (c / n)

    def update_batch(self, counts: Sequence[np.ndarray]) -> None:
        """Batch-mode update ``f ← β·f + (1 - β)·s̄`` (no-op when frozen or in episode mode).

        ``s̄`` is the mean share vector over the batch's episodes with N > 0; without any, nothing
        changes.
        """
        rows = [self._check_counts(c) for c in counts]
        if self.frozen or self.config.update != "batch":
            return
        shares = [r / r.sum() for r in rows if r.sum() > 0]
        if not shares:
            return
        beta = float(self.config.decay)
        self.f = beta * self.f + (1.0 - beta) * np.mean(np.stack(shares), axis=0)

    def state_dict(self) -> dict[str, Any]:
        """Return ``{"f": {name: value}}`` (JSON-ready plain Python)."""
        return {"f": {name: float(v) for name, v in zip(self.listed, self.f, strict=True)}}

    def load_state_dict(self, d: Mapping[str, Any]) -> None:
        """Load a :meth:`state_dict` taken over the same listed models.

        Raises:
            InvalidData: if the names differ or a value is not finite and non-negative.
        """
        f = d.get("f") if isinstance(d, Mapping) else None
        if not isinstance(f, Mapping) or set(f) != set(self.listed):
            got = sorted(f) if isinstance(f, Mapping) else f
            raise InvalidData(f"BalanceState.load_state_dict: 'f' must map exactly {list(self.listed)}, got {got!r}")
        values = np.array([float(f[name]) for name in self.listed], dtype=np.float64)
        if not np.all(np.isfinite(values)) or np.any(values < 0):
            raise InvalidData(f"BalanceState.load_state_dict: 'f' values must be finite and >= 0, got {f!r}")
        self.f = values

    def copy(self) -> BalanceState:
        """Return an independent copy (same config, contents and frozen flag)."""
        new = BalanceState(self.listed, self.config, frozen=self.frozen)
        new.f = self.f.copy()
        return new


class CostNormalizer:
    """Router-R1's windowed quantile normaliser of the episode cost (``docs/rewards.md`` §10).

    Attributes:
        config: The normaliser settings.
        window: The most recent transformed costs (``deque`` with ``maxlen=config.window``).
        frozen: When True, updates are ignored (evaluation mode).
    """

    __slots__ = ("config", "frozen", "window")

    def __init__(self, config: CostConfig | None = None, *, frozen: bool = False) -> None:
        """Create a normaliser with an empty window."""
        self.config = CostConfig() if config is None else config
        self.window: deque[float] = deque(maxlen=int(self.config.window))
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

    def score(self, raw_cost: float) -> float:
        """Return the normalised cost score of one episode (pure; Router-R1's order).

        t enters a copy of the window first (evicting the oldest beyond ``window``); lo and hi are
        the window's ``q_low``/``q_high`` quantiles (both the single value if it holds one); the score
        is ``fallback`` if ``hi - lo < eps``, else ``1 - clip((t - lo)/(hi - lo), 0, 1)``.

        Args:
            raw_cost: The episode's raw cost in µ$.

        Returns:
            A Python float in [0, 1].
        """
        cfg = self.config
        t = self.transform(raw_cost)
        values = np.empty(min(len(self.window) + 1, cfg.window), dtype=np.float64)  # (W,)
        kept = len(values) - 1
        if kept:
            values[:kept] = list(self.window)[len(self.window) - kept :]
        values[kept] = t
        if len(values) >= 2:
            lo_hi = np.quantile(values, [cfg.q_low, cfg.q_high])  # linear interpolation (numpy default)
            lo, hi = float(lo_hi[0]), float(lo_hi[1])
        else:
            lo = hi = t
        if hi - lo < cfg.eps:
            return float(cfg.fallback)
        return 1.0 - min(1.0, max(0.0, (t - lo) / (hi - lo)))

    def update(self, raw_cost: float) -> None:
        """Episode-mode update: append t (no-op when frozen or in batch mode)."""
        t = self.transform(raw_cost)
        if not self.frozen and self.config.update == "episode":
            self.window.append(t)

    def update_batch(self, raw_costs: Sequence[float]) -> None:
        """Batch-mode update: append every t in order (no-op when frozen or in episode mode)."""
        ts = [self.transform(r) for r in raw_costs]
        if not self.frozen and self.config.update == "batch":
            self.window.extend(ts)

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

    def copy(self) -> CostNormalizer:
        """Return an independent copy (same config, contents and frozen flag)."""
        new = CostNormalizer(self.config, frozen=self.frozen)
        new.window = deque(self.window, maxlen=self.window.maxlen)
        return new


class RewardState:
    """The reward state of the stateful components: balance plus cost (``docs/rewards.md`` §8).

    Pass one instance to every sub-environment that should share it; keep separate instances for
    training and evaluation (by default evaluation uses a frozen :meth:`copy`).
    """

    __slots__ = ("balance", "cost")

    def __init__(self, balance: BalanceState, cost: CostNormalizer) -> None:
        """Bundle a balance state and a cost normaliser."""
        self.balance = balance
        self.cost = cost

    @classmethod
    def default(cls, spec: RewardSpec, listed: Sequence[str]) -> RewardState:
        """Return a fresh state for ``spec``: uniform ``f`` over ``listed`` and an empty window."""
        return cls(BalanceState(listed, spec.balance), CostNormalizer(spec.cost))

    @property
    def frozen(self) -> bool:
        """True when both components are frozen; setting it sets both."""
        return self.balance.frozen and self.cost.frozen

    @frozen.setter
    def frozen(self, value: bool) -> None:
        self.balance.frozen = bool(value)
        self.cost.frozen = bool(value)

    @property
    def listed(self) -> tuple[str, ...]:
        """The listed models of the balance component."""
        return self.balance.listed

    def score(self, counts: np.ndarray, raw_cost: float | None) -> tuple[float, float]:
        """Return ``(r_balance, r_cost)`` for one episode (pure).

        Args:
            counts: (M,) route counts per listed model (:func:`route_counts`).
            raw_cost: The episode's raw cost in µ$; ``None`` (unknown) scores the cost ``fallback``.
        """
        cost = float(self.cost.config.fallback) if raw_cost is None else self.cost.score(raw_cost)
        return self.balance.score(counts), cost

    def update(self, counts: np.ndarray, raw_cost: float | None) -> None:
        """Apply one episode-mode update (an unknown ``raw_cost`` leaves the window unchanged)."""
        self.balance.update(counts)
        if raw_cost is not None:
            self.cost.update(raw_cost)

    def update_batch(self, records: Sequence[EpisodeRecord]) -> None:
        """Apply one batch-mode update from a rollout batch's records, in record order."""
        self.balance.update_batch([route_counts(r, self.balance.listed) for r in records])
        costs = [episode_raw_cost(r) for r in records]
        self.cost.update_batch([c for c in costs if c is not None])

    def state_dict(self) -> dict[str, Any]:
        """Return ``{"balance": ..., "cost": ...}`` (JSON-ready plain Python)."""
        return {"balance": self.balance.state_dict(), "cost": self.cost.state_dict()}

    def load_state_dict(self, d: Mapping[str, Any]) -> None:
        """Load a :meth:`state_dict` (e.g. from a checkpoint or a previous run).

        Raises:
            InvalidData: if a part is missing or malformed.
        """
        if not isinstance(d, Mapping) or "balance" not in d or "cost" not in d:
            raise InvalidData(f"RewardState.load_state_dict: expected keys 'balance' and 'cost', got {d!r}")
        self.balance.load_state_dict(d["balance"])
        self.cost.load_state_dict(d["cost"])

    def copy(self, *, frozen: bool | None = None) -> RewardState:
        """Return an independent copy; ``frozen`` overrides the copy's flag when given."""
        new = RewardState(self.balance.copy(), self.cost.copy())
        if frozen is not None:
            new.frozen = frozen
        return new

    def assign(self, other: RewardState) -> None:
        """Copy ``other``'s configuration and contents into this object in place (keeps ``frozen``)."""
        self.balance.listed = other.balance.listed
        self.balance.config = other.balance.config
        self.balance.f = other.balance.f.copy()
        self.cost.config = other.cost.config
        self.cost.window = deque(other.cost.window, maxlen=other.cost.window.maxlen)

    def __eq__(self, other: object) -> bool:
        """Equal configuration, contents and frozen flags."""
        if not isinstance(other, RewardState):
            return NotImplemented
        return (
            self.balance.listed == other.balance.listed
            and self.balance.config == other.balance.config
            and self.cost.config == other.cost.config
            and self.frozen == other.frozen
            and self.state_dict() == other.state_dict()
        )

    __hash__ = None  # type: ignore[assignment]  # mutable

    def __repr__(self) -> str:
        """Short summary."""
        return (
            f"RewardState(listed={list(self.balance.listed)}, f={self.balance.f.tolist()}, "
            f"window_len={len(self.cost.window)}, frozen={self.frozen})"
        )
