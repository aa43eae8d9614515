"""Reward specifications, presets and the one NumPy gate function.

``docs/rewards.md`` §1 (fold), §11 (presets and custom specs) and ``docs/learner.md`` §4.1 (gates, NaN
propagation). A :class:`RewardSpec` is a frozen, validated configuration; :func:`compute_gates` is the
single implementation of the gate, used by the environment (N = 1) and by the learner (a batch).
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any, Literal, get_args

import numpy as np

from recal_gym.errors import InvalidConfig, InvalidData, UnknownComponent, close_matches_hint
from recal_gym.types import COMPONENTS

__all__ = [
    "GATE_RULES",
    "PRESETS",
    "AnswerMetric",
    "BalanceConfig",
    "CostConfig",
    "CostTransform",
    "GateRule",
    "InfoMatch",
    "RewardSpec",
    "UpdateMode",
    "compute_gates",
    "fold_reward",
    "fold_rewards",
    "gate_components",
    "make_spec",
    "recal_spec",
    "router_r1_spec",
]

GateRule = Literal["always", "format_ok", "format_ok_and_answer_positive", "format_ok_and_answer_at_least_tau"]
GATE_RULES: tuple[GateRule, ...] = get_args(GateRule)
AnswerMetric = Literal["em", "f1"]
InfoMatch = Literal["token", "substring"]
UpdateMode = Literal["episode", "batch"]
CostTransform = Literal["sqrt", "log1p", "none"]

PRESETS: tuple[str, ...] = ("router-r1", "recal")
"""Names accepted by :func:`make_spec`."""

_EPISODE_DECAY = 0.99
_BATCH_DECAY = 0.9  # the suggested balance decay in "batch" mode (docs/rewards.md §9)
_RECAL_WEIGHTS: tuple[float, ...] = (1.0, 1.0, 0.1, 0.1, 0.1, 0.1)
_RECAL_GATES: tuple[GateRule, ...] = ("always", "format_ok") + ("format_ok_and_answer_at_least_tau",) * 4
_ROUTER_R1_GATES: tuple[GateRule, ...] = ("always", "format_ok") + ("format_ok_and_answer_positive",) * 4


def _is_real(x: object) -> bool:
    return isinstance(x, (int, float, np.floating, np.integer)) and not isinstance(x, (bool, np.bool_))


def _check_finite(owner: str, name: str, value: object) -> None:
    if not _is_real(value) or not math.isfinite(float(value)):  # type: ignore[arg-type]
        raise InvalidConfig(f"{owner}.{name}={value!r}: must be a finite real number")


def _check_range(owner: str, name: str, value: object, lo: float, hi: float) -> None:
    _check_finite(owner, name, value)
    if not lo <= float(value) <= hi:  # type: ignore[arg-type]
        raise InvalidConfig(f"{owner}.{name}={value!r}: must lie in [{lo}, {hi}]")


def _check_choice(owner: str, name: str, value: object, allowed: Sequence[str]) -> None:
    if value not in allowed:
        hint = close_matches_hint(value, allowed) if isinstance(value, str) else ""
        raise InvalidConfig(f"{owner}.{name}={value!r}: must be one of {list(allowed)}.{hint}")


@dataclass(frozen=True, slots=True, kw_only=True)
class BalanceConfig:
    """Settings of the balance component (``docs/rewards.md`` §9)."""

    decay: float = _EPISODE_DECAY
    """EMA decay β of the frequency vector (0.99 in episode mode; 0.9 is suggested for batch mode)."""
    empty_value: float = 1.0
    """Score of an episode with no counted route (N = 0), or of a pool with one listed model."""
    update: UpdateMode = "episode"
    """``"episode"``: update after each scored episode; ``"batch"``: only in ``update_batch``."""

    def __post_init__(self) -> None:
        """Validate every field."""
        _check_range("BalanceConfig", "decay", self.decay, 0.0, 1.0)
        _check_range("BalanceConfig", "empty_value", self.empty_value, 0.0, 1.0)
        _check_choice("BalanceConfig", "update", self.update, get_args(UpdateMode))


@dataclass(frozen=True, slots=True, kw_only=True)
class CostConfig:
    """Settings of the cost normaliser (``docs/rewards.md`` §10); defaults are Router-R1's."""

    window: int = 1000
    """Number of most recent transformed costs kept."""
    transform: CostTransform = "sqrt"
    """``"sqrt"``: t = √raw; ``"log1p"``: t = ln(1 + 0.01·raw); ``"none"``: t = raw."""
    q_low: float = 0.05
    """Lower quantile of the window (linear interpolation)."""
    q_high: float = 0.95
    """Upper quantile of the window (linear interpolation)."""
    eps: float = 1e-8
    """If the quantile spread is below ``eps`` the score is ``fallback``."""
    fallback: float = 0.5
    """Score for a degenerate window (including the first episode of a fresh state)."""
    update: UpdateMode = "episode"
    """``"episode"``: append after each scored episode; ``"batch"``: only in ``update_batch``."""

    def __post_init__(self) -> None:
        """Validate every field."""
        if not isinstance(self.window, (int, np.integer)) or isinstance(self.window, bool) or self.window < 1:
            raise InvalidConfig(f"CostConfig.window={self.window!r}: must be an integer >= 1")
        _check_choice("CostConfig", "transform", self.transform, get_args(CostTransform))
        _check_range("CostConfig", "q_low", self.q_low, 0.0, 1.0)
        _check_range("CostConfig", "q_high", self.q_high, 0.0, 1.0)
        if not self.q_low < self.q_high:
            raise InvalidConfig(f"CostConfig: q_low={self.q_low!r} must be < q_high={self.q_high!r}")
        _check_range("CostConfig", "eps", self.eps, 0.0, math.inf)
        _check_range("CostConfig", "fallback", self.fallback, 0.0, 1.0)
        _check_choice("CostConfig", "update", self.update, get_args(UpdateMode))


@dataclass(frozen=True, slots=True, kw_only=True)
class RewardSpec:
    """A validated reward specification (``docs/rewards.md`` §11).

    The scalar reward is the left fold of ``weights[k] * gates[k] * raw[k]`` in the order of
    :data:`recal_gym.types.COMPONENTS`. Build one from a mapping with :meth:`from_mapping` or
    :func:`make_spec`; both accept partial ``weights``/``gates`` mappings keyed by component name.
    """

    name: str = "custom"
    """Label for logs and provenance."""
    answer_metric: AnswerMetric = "em"
    """Metric of the ``answer`` component."""
    weights: tuple[float, ...] = _RECAL_WEIGHTS
    """Six finite weights in COMPONENTS order."""
    gates: tuple[GateRule, ...] = _RECAL_GATES
    """Six gate rules in COMPONENTS order."""
    tau: float = 1.0
    """Answer threshold of the ``format_ok_and_answer_at_least_tau`` rule, in [0, 1]."""
    format_penalty: float = -1.0
    """Raw ``format`` value on failure (non-zero, since 0.0 means "passed")."""
    info_match: InfoMatch = "token"
    """Gold containment mode of the ``info`` component."""
    route_empty_value: float = 1.0
    """``route`` value when the transcript has no search block, in [0, 1]."""
    balance: BalanceConfig = field(default_factory=BalanceConfig)
    """Balance component settings."""
    cost: CostConfig = field(default_factory=CostConfig)
    """Cost normaliser settings."""

    def __post_init__(self) -> None:
        """Validate every field (``docs/rewards.md`` §11(c))."""
        if not isinstance(self.name, str):
            raise InvalidConfig(f"RewardSpec.name={self.name!r}: must be a string")
        _check_choice("RewardSpec", "answer_metric", self.answer_metric, get_args(AnswerMetric))
        if not isinstance(self.weights, tuple) or len(self.weights) != len(COMPONENTS):
            raise InvalidConfig(
                f"RewardSpec.weights={self.weights!r}: must be a tuple of {len(COMPONENTS)} floats in order "
                f"{list(COMPONENTS)} (use make_spec or RewardSpec.from_mapping for a mapping)"
            )
        for k, w in zip(COMPONENTS, self.weights, strict=True):
            _check_finite("RewardSpec", f"weights[{k!r}]", w)
        if not isinstance(self.gates, tuple) or len(self.gates) != len(COMPONENTS):
            raise InvalidConfig(
                f"RewardSpec.gates={self.gates!r}: must be a tuple of {len(COMPONENTS)} gate rules in order "
                f"{list(COMPONENTS)}"
            )
        for k, g in zip(COMPONENTS, self.gates, strict=True):
            _check_choice("RewardSpec", f"gates[{k!r}]", g, GATE_RULES)
        _check_range("RewardSpec", "tau", self.tau, 0.0, 1.0)
        _check_finite("RewardSpec", "format_penalty", self.format_penalty)
        if self.format_penalty == 0.0:
            raise InvalidConfig("RewardSpec.format_penalty=0.0: must be non-zero (0.0 means the format passed)")
        _check_choice("RewardSpec", "info_match", self.info_match, get_args(InfoMatch))
        _check_range("RewardSpec", "route_empty_value", self.route_empty_value, 0.0, 1.0)
        if not isinstance(self.balance, BalanceConfig):
            raise InvalidConfig(f"RewardSpec.balance={self.balance!r}: must be a BalanceConfig")
        if not isinstance(self.cost, CostConfig):
            raise InvalidConfig(f"RewardSpec.cost={self.cost!r}: must be a CostConfig")

    def weights_dict(self) -> dict[str, float]:
        """Return ``{component: weight}`` as Python floats, in COMPONENTS order."""
        return {k: float(w) for k, w in zip(COMPONENTS, self.weights, strict=True)}

    def gates_dict(self) -> dict[str, GateRule]:
        """Return ``{component: gate rule}`` in COMPONENTS order."""
        return dict(zip(COMPONENTS, self.gates, strict=True))

    def to_dict(self) -> dict[str, Any]:
        """Return a JSON-ready dict that :meth:`from_mapping` turns back into an equal spec."""
        return {
            "name": self.name,
            "answer_metric": self.answer_metric,
            "weights": self.weights_dict(),
            "gates": self.gates_dict(),
            "tau": float(self.tau),
            "format_penalty": float(self.format_penalty),
            "info_match": self.info_match,
            "route_empty_value": float(self.route_empty_value),
            "balance": dataclasses.asdict(self.balance),
            "cost": dataclasses.asdict(self.cost),
        }

    @classmethod
    def from_mapping(cls, d: Mapping[str, Any]) -> RewardSpec:
        """Build a spec from a (parsed YAML/JSON) mapping.

        A ``"preset"`` key starts from that preset (:func:`make_spec`); otherwise the defaults of
        :class:`RewardSpec` are the base. ``weights`` and ``gates`` may be partial mappings keyed by
        component; ``balance`` and ``cost`` may be mappings of their fields.

        Raises:
            InvalidConfig: for an unknown key or an invalid value.
            UnknownComponent: for an unknown component key in ``weights`` or ``gates``.
        """
        rest = dict(d)
        preset = rest.pop("preset", None)
        if preset is not None:
            return make_spec(preset, **rest)
        return _apply_overrides(cls(), rest)


# ---------------------------------------------------------------------------------------------------
# Presets and overrides


def _merge_components(name: str, base: tuple[Any, ...], value: Any) -> tuple[Any, ...]:
    if isinstance(value, Mapping):
        for k in value:
            if k not in COMPONENTS:
                raise UnknownComponent(
                    f"RewardSpec.{name}: unknown component {k!r}; known: {list(COMPONENTS)}."
                    + close_matches_hint(str(k), COMPONENTS)
                )
        return tuple(value.get(k, b) for k, b in zip(COMPONENTS, base, strict=True))
    if isinstance(value, (str, bytes)) or not isinstance(value, Sequence):
        raise InvalidConfig(f"RewardSpec.{name}={value!r}: must be a mapping by component or a sequence of 6")
    return tuple(value)


def _merge_sub(name: str, cls: type, base: Any, value: Any) -> Any:
    if isinstance(value, cls):
        return value
    if not isinstance(value, Mapping):
        raise InvalidConfig(f"RewardSpec.{name}={value!r}: must be a {cls.__name__} or a mapping of its fields")
    allowed = [f.name for f in dataclasses.fields(cls)]
    for k in value:
        if k not in allowed:
            raise InvalidConfig(
                f"RewardSpec.{name}: unknown field {k!r}; allowed: {allowed}." + close_matches_hint(str(k), allowed)
            )
    return dataclasses.replace(base, **value)


def _balance_explicit_decay(value: Any) -> bool:
    return isinstance(value, BalanceConfig) or (isinstance(value, Mapping) and "decay" in value)


def _apply_overrides(spec: RewardSpec, overrides: Mapping[str, Any]) -> RewardSpec:
    """Return ``spec`` with ``overrides`` applied (partial component mappings are merged).

    The extra key ``update_mode`` sets the update mode of both stateful components. When the balance
    update mode switches to ``"batch"`` and no decay is given, the decay becomes 0.9 (``docs/rewards.md``
    §9's suggested batch value) if it was the episode default 0.99.
    """
    allowed = [f.name for f in dataclasses.fields(RewardSpec)] + ["update_mode"]
    for k in overrides:
        if k not in allowed:
            raise InvalidConfig(
                f"unknown reward spec field {k!r}; allowed: {allowed}." + close_matches_hint(str(k), allowed)
            )
    changes: dict[str, Any] = {k: v for k, v in overrides.items() if k != "update_mode"}
    if "weights" in changes:
        changes["weights"] = _merge_components("weights", spec.weights, changes["weights"])
    if "gates" in changes:
        changes["gates"] = _merge_components("gates", spec.gates, changes["gates"])
    balance = _merge_sub("balance", BalanceConfig, spec.balance, changes.get("balance", spec.balance))
    cost = _merge_sub("cost", CostConfig, spec.cost, changes.get("cost", spec.cost))
    mode = overrides.get("update_mode")
    if mode is not None:
        _check_choice("make_spec", "update_mode", mode, get_args(UpdateMode))
        balance = dataclasses.replace(balance, update=mode)
        cost = dataclasses.replace(cost, update=mode)
    explicit = _balance_explicit_decay(overrides.get("balance"))
    if (
        not explicit
        and balance.update == "batch"
        and spec.balance.update == "episode"
        and balance.decay == _EPISODE_DECAY
    ):
        balance = dataclasses.replace(balance, decay=_BATCH_DECAY)
    changes["balance"] = balance
    changes["cost"] = cost
    return dataclasses.replace(spec, **changes)


def _default_tau(answer_metric: object) -> float:
    return 0.5 if answer_metric == "f1" else 1.0


def router_r1_spec(alpha: float = 0.0, answer_metric: AnswerMetric = "em") -> RewardSpec:
    """Return the ``router-r1`` preset: Router-R1's training reward, exactly (``docs/rewards.md`` §11(a)).

    Weights: format 1, answer ``1.0 - alpha``, cost ``alpha``, the rest 0. Gates: format always,
    answer on format ok, the other four on format ok and answer > 0.

    Args:
        alpha: Router-R1's ``cost_coe`` (alpha), in [0, 1].
        answer_metric: ``"em"`` (default) or ``"f1"``.

    Raises:
        InvalidConfig: if ``alpha`` is outside [0, 1] or the metric is unknown.
    """
    _check_range("router_r1_spec", "alpha", alpha, 0.0, 1.0)
    return RewardSpec(
        name="router-r1",
        answer_metric=answer_metric,
        weights=(1.0, 1.0 - alpha, 0.0, 0.0, 0.0, alpha),
        gates=_ROUTER_R1_GATES,
        tau=_default_tau(answer_metric),
    )


def recal_spec(**overrides: Any) -> RewardSpec:
    """Return the ``recal`` preset (``docs/rewards.md`` §11(b)) with optional overrides.

    Defaults: weights (1, 1, 0.1, 0.1, 0.1, 0.1); format always, answer on format ok, auxiliaries
    on format ok and answer ≥ τ; τ = 1.0 for EM and 0.5 for F1 unless ``tau`` is given.

    Args:
        **overrides: RewardSpec field names (``weights``/``gates`` may be partial mappings,
            ``balance``/``cost`` mappings of their fields) and ``update_mode``.

    Raises:
        InvalidConfig: for unknown fields or invalid values.
        UnknownComponent: for an unknown component key.
    """
    metric = overrides.get("answer_metric", "em")
    base = RewardSpec(
        name="recal",
        answer_metric=metric,
        weights=_RECAL_WEIGHTS,
        gates=_RECAL_GATES,
        tau=_default_tau(metric),
    )
    return _apply_overrides(base, overrides)


def make_spec(preset: str | RewardSpec, **overrides: Any) -> RewardSpec:
    """Return a preset (by name) or an existing spec, with overrides applied.

    Args:
        preset: ``"router-r1"``, ``"recal"`` or a :class:`RewardSpec`.
        **overrides: As for :func:`recal_spec`; ``router-r1`` also takes ``alpha``.

    Raises:
        InvalidConfig: for an unknown preset name (listing :data:`PRESETS`), field or value.
        UnknownComponent: for an unknown component key.
    """
    if isinstance(preset, RewardSpec):
        return _apply_overrides(preset, overrides)
    if preset == "router-r1":
        rest = dict(overrides)
        alpha = rest.pop("alpha", 0.0)
        metric = rest.pop("answer_metric", "em")
        return _apply_overrides(router_r1_spec(alpha=alpha, answer_metric=metric), rest)
    if preset == "recal":
        return recal_spec(**overrides)
    hint = close_matches_hint(preset, PRESETS) if isinstance(preset, str) else ""
    raise InvalidConfig(f"unknown reward preset {preset!r}; allowed: {list(PRESETS)}.{hint}")


# ---------------------------------------------------------------------------------------------------
# Gates and the fold

GateFn = Callable[[np.ndarray, np.ndarray, float], np.ndarray]
"""``(format_ok (N,) bool, answer (N,) float, tau) -> open (N,) bool``."""

_GATE_FNS: Mapping[GateRule, GateFn] = MappingProxyType(
    {
        "always": lambda ok, ans, tau: np.ones_like(ok),
        "format_ok": lambda ok, ans, tau: ok,
        "format_ok_and_answer_positive": lambda ok, ans, tau: ok & (ans > 0.0),
        "format_ok_and_answer_at_least_tau": lambda ok, ans, tau: ok & (ans >= tau),
    }
)
_USES_ANSWER: frozenset[str] = frozenset({"format_ok_and_answer_positive", "format_ok_and_answer_at_least_tau"})


def compute_gates(raw: np.ndarray, rules: Sequence[GateRule], tau: float) -> np.ndarray:
    """Compute the gates of a batch of raw component vectors (``docs/rewards.md`` §11, ``docs/learner.md`` §4.1).

    ``format_ok`` means ``raw[:, 0] == 0.0``. NaN propagates (``docs/learner.md`` §4.1): a NaN ``format``
    makes every gate of its row NaN; a NaN ``answer`` makes every gate whose rule reads the answer
    NaN (whatever the format).

    Args:
        raw: (N, 6) float, pre-gate components in COMPONENTS order; NaN = unscorable.
        rules: Six gate rules in COMPONENTS order.
        tau: Threshold of ``format_ok_and_answer_at_least_tau``.

    Returns:
        (N, 6) float64 gates in {0.0, 1.0} (NaN where unscorable).

    Raises:
        InvalidData: if ``raw`` is not (N, 6).
        InvalidConfig: for a bad rule list or a non-finite ``tau``.
    """
    raw = np.asarray(raw, dtype=np.float64)
    if raw.ndim != 2 or raw.shape[1] != len(COMPONENTS):
        raise InvalidData(f"compute_gates: raw must have shape (N, {len(COMPONENTS)}), got {raw.shape}")
    if len(rules) != len(COMPONENTS):
        raise InvalidConfig(f"compute_gates: rules must hold {len(COMPONENTS)} gate rules, got {len(rules)}")
    _check_finite("compute_gates", "tau", tau)
    fmt = raw[:, 0]  # (N,)
    ans = raw[:, 1]  # (N,)
    fmt_nan = np.isnan(fmt)
    ans_nan = np.isnan(ans)
    ok = fmt == 0.0  # NaN compares False, without a warning
    gates = np.empty(raw.shape, dtype=np.float64)  # (N, 6)
    for k, rule in enumerate(rules):
        _check_choice("compute_gates", f"rules[{k}]", rule, GATE_RULES)
    for k, rule in enumerate(rules):
        fn = _GATE_FNS[rule]
        unscorable = (fmt_nan | ans_nan) if rule in _USES_ANSWER else fmt_nan
        gates[:, k] = np.where(unscorable, np.nan, fn(ok, ans, float(tau)).astype(np.float64))
    return gates


def gate_components(raw: np.ndarray, gates: np.ndarray) -> np.ndarray:
    """Return the gated components ``gates * raw``.

    A closed gate (0.0) zeroes every finite raw value; NaN is sticky (an unscorable raw value stays
    NaN under any gate, and a NaN gate gives NaN), so gating is idempotent. Results are normalised
    to ``+0.0`` (no ``-0.0`` from a closed gate on a negative value).

    Args:
        raw: (N, 6) float pre-gate components; NaN = unscorable.
        gates: (N, 6) float gates from :func:`compute_gates`.

    Returns:
        (N, 6) float64 gated components.
    """
    raw = np.asarray(raw, dtype=np.float64)
    gates = np.asarray(gates, dtype=np.float64)
    with np.errstate(invalid="ignore"):  # 0 * inf -> NaN: a non-finite raw value is unscorable
        return gates * raw + 0.0  # + 0.0 turns -0.0 into +0.0 and changes nothing else


def _ordered_values(what: str, m: Mapping[str, float]) -> list[float]:
    for k in m:
        if k not in COMPONENTS:
            raise UnknownComponent(
                f"{what}: unknown component {k!r}; known: {list(COMPONENTS)}." + close_matches_hint(str(k), COMPONENTS)
            )
    missing = [k for k in COMPONENTS if k not in m]
    if missing:
        raise InvalidData(f"{what}: missing component(s) {missing}; all of {list(COMPONENTS)} are required")
    return [float(m[k]) for k in COMPONENTS]


def fold_reward(components: Mapping[str, float], weights: Mapping[str, float]) -> float:
    """Return the scalar reward: the left fold of ``w_k * c_k`` in COMPONENTS order from 0.0.

    ``docs/rewards.md`` §1: ``(((0.0 + w_format·c_format) + w_answer·c_answer) + …) + w_cost·c_cost``.

    Args:
        components: Gated component values keyed by component (all six).
        weights: Weights keyed by component (all six).

    Returns:
        The reward as a Python float.

    Raises:
        UnknownComponent: for a key that is not a component.
        InvalidData: for a missing component.
    """
    c = _ordered_values("fold_reward components", components)
    w = _ordered_values("fold_reward weights", weights)
    total = 0.0
    for wk, ck in zip(w, c, strict=True):
        total = total + wk * ck
    return total


def fold_rewards(components: np.ndarray, weights: Sequence[float] | np.ndarray) -> np.ndarray:
    """Vectorised :func:`fold_reward`: the same left fold, bit for bit, on every row.

    Args:
        components: (N, 6) float gated components in COMPONENTS order.
        weights: (6,) float weights in COMPONENTS order.

    Returns:
        (N,) float64 rewards.
    """
    c = np.asarray(components, dtype=np.float64)
    w = np.asarray(weights, dtype=np.float64)
    if c.ndim != 2 or c.shape[1] != len(COMPONENTS) or w.shape != (len(COMPONENTS),):
        raise InvalidData(f"fold_rewards: expected (N, 6) components and (6,) weights, got {c.shape}, {w.shape}")
    total = np.zeros(c.shape[0], dtype=np.float64)
    for k in range(len(COMPONENTS)):
        total = total + w[k] * c[:, k]
    return total
