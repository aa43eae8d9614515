"""Reward specifications: components, weights, gates, presets, spec files and the spec hash.

``docs/rewards.md`` §1 (the fold), §11 (presets) and §14 (custom components, gates, spec files). A
:class:`RewardSpec` is a frozen, validated list of :class:`ComponentSpec` (name, weight, gate,
parameters) plus the settings the built-in components read. The scalar reward is the left fold
``Σ_k w_k · g_k · r_k`` in the spec's component order. :meth:`RewardSpec.hash` identifies a spec by
content, so runs are comparable by hash.

A spec can be built in Python (:func:`make_spec`, :class:`RewardSpec`), from a mapping
(:meth:`RewardSpec.from_mapping`) or from a YAML/JSON file (:func:`load_spec`); the presets
``router-r1`` and ``recal`` are expressible as files (``to_dict`` round-trips).
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal, get_args

import numpy as np

from recal_gym.errors import InvalidConfig, InvalidData, UnknownComponent, UnknownName, close_matches_hint
from recal_gym.rewards.components import (
    COMPONENT_REGISTRY,
    ComponentDef,
    load_object,
    make_component_def,
)
from recal_gym.rewards.gates import (
    ALWAYS,
    GATE_PREDICATES,
    Gate,
    Not,
    Predicate,
    check_gate_order,
    parse_gate,
    register_gate,
)

__all__ = [
    "AnswerMetric",
    "BalanceConfig",
    "ComponentSpec",
    "CostConfig",
    "CostTransform",
    "InfoMatch",
    "PredicateSpec",
    "RewardSpec",
    "UpdateMode",
    "compute_gates",
    "fold_reward",
    "fold_rewards",
    "gate_components",
]

AnswerMetric = Literal["em", "f1"]
InfoMatch = Literal["token", "substring"]
UpdateMode = Literal["episode", "batch"]
CostTransform = Literal["sqrt", "log1p", "none"]

EPISODE_DECAY = 0.99
"""Default balance decay in ``"episode"`` mode (``docs/rewards.md`` §9)."""
_AUX_TAU = "format_ok_and_answer_at_least_tau"


def _is_real(x: object) -> bool:
    return isinstance(x, int | float | np.floating | np.integer) and not isinstance(x, bool | np.bool_)


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

    decay: float = EPISODE_DECAY
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
        if not isinstance(self.window, int | np.integer) or isinstance(self.window, bool) or self.window < 1:
            raise InvalidConfig(f"CostConfig.window={self.window!r}: must be an integer >= 1")
        _check_choice("CostConfig", "transform", self.transform, get_args(CostTransform))
        _check_range("CostConfig", "q_low", self.q_low, 0.0, 1.0)
        _check_range("CostConfig", "q_high", self.q_high, 0.0, 1.0)
        if not self.q_low < self.q_high:
            raise InvalidConfig(f"CostConfig: q_low={self.q_low!r} must be < q_high={self.q_high!r}")
        _check_range("CostConfig", "eps", self.eps, 0.0, math.inf)
        _check_range("CostConfig", "fallback", self.fallback, 0.0, 1.0)
        _check_choice("CostConfig", "update", self.update, get_args(UpdateMode))


def _json_value(owner: str, value: Any) -> Any:
    """``value`` if it is JSON-ready (str, bool, finite number, None, or lists/dicts of those)."""
    if value is None or isinstance(value, str | bool):
        return value
    if _is_real(value):
        if not math.isfinite(float(value)):
            raise InvalidConfig(f"{owner}={value!r}: must be finite")
        return value
    if isinstance(value, list | tuple):
        return [_json_value(owner, v) for v in value]
    if isinstance(value, Mapping):
        return {str(k): _json_value(owner, v) for k, v in value.items()}
    raise InvalidConfig(f"{owner}={value!r}: must be a string, bool, number, or a list/mapping of those")


@dataclass(frozen=True, slots=True, kw_only=True)
class ComponentSpec:
    """One component of a :class:`RewardSpec`: its name, weight, gate and parameters.

    The component is the registered one of that name (:func:`~recal_gym.rewards.components.register_component`),
    or, with ``function`` set, the function/class at ``"module:attr"`` with the declared ``range`` (a spec
    file can define a component without any registration code).
    """

    name: str
    """Component name (key in ``info["reward_components"]``)."""
    weight: float = 0.0
    """Weight ``w_k`` in the fold."""
    gate: Gate = ALWAYS
    """Gate ``g_k`` over other components' raw values (:func:`~recal_gym.rewards.gates.parse_gate`)."""
    params: tuple[tuple[str, Any], ...] = ()
    """Keyword parameters of the component function (sorted ``(key, value)`` pairs)."""
    function: str = ""
    """``"module:attr"`` of a component defined in place (``""`` = the registry's ``name``)."""
    range: tuple[float, float] | None = None
    """Declared range when ``function`` is set."""

    def __post_init__(self) -> None:
        """Validate the entry (the component itself is resolved by :class:`RewardSpec`)."""
        if not isinstance(self.name, str) or not self.name.isidentifier():
            raise InvalidConfig(f"component name {self.name!r} must be an identifier (letters, digits, '_')")
        _check_finite(f"components[{self.name!r}]", "weight", self.weight)
        if not isinstance(self.gate, Gate):
            raise InvalidConfig(f"components[{self.name!r}].gate={self.gate!r}: must be a Gate (use parse_gate)")
        if not isinstance(self.params, tuple) or not all(
            isinstance(p, tuple) and len(p) == 2 and isinstance(p[0], str) for p in self.params
        ):
            raise InvalidConfig(f"components[{self.name!r}].params={self.params!r}: must be (key, value) pairs")
        for key, value in self.params:
            _json_value(f"components[{self.name!r}].params[{key!r}]", value)
        if self.function and self.range is None:
            raise InvalidConfig(f"components[{self.name!r}]: a 'function' component needs a 'range' [low, high]")
        if self.range is not None and not self.function:
            raise InvalidConfig(f"components[{self.name!r}]: 'range' is only for components with a 'function'")

    @property
    def params_dict(self) -> dict[str, Any]:
        """``params`` as a dict."""
        return dict(self.params)

    def definition(self) -> ComponentDef:
        """The component's definition: the in-place ``function``, else the registry's entry.

        Raises:
            UnknownComponent: the name is not registered (with close matches).
            InvalidConfig: ``function`` cannot be imported, or its range is bad.
        """
        if self.function:
            return make_component_def(self.name, load_object(self.function), self.range)
        found = COMPONENT_REGISTRY.get(self.name)
        if found is None:
            raise UnknownComponent(
                f"unknown reward component {self.name!r}; registered: {sorted(COMPONENT_REGISTRY)} "
                "(register it with @register_component or give 'function: module:attr' and 'range')."
                + close_matches_hint(self.name, COMPONENT_REGISTRY)
            )
        return found

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready form (what spec files hold)."""
        out: dict[str, Any] = {"name": self.name, "weight": float(self.weight), "gate": self.gate.canonical()}
        if self.params:
            out["params"] = dict(self.params)
        if self.function:
            out["function"] = self.function
            out["range"] = [float(self.range[0]), float(self.range[1])]  # type: ignore[index]
        return out


def _component(
    name: str, weight: float, gate: str, params: Mapping[str, Any] | None = None, **kw: Any
) -> ComponentSpec:
    return ComponentSpec(
        name=name, weight=weight, gate=parse_gate(gate), params=tuple(sorted((params or {}).items())), **kw
    )


def _recal_components() -> tuple[ComponentSpec, ...]:
    aux = ("info", "route", "balance", "cost")
    return (
        _component("format", 1.0, "always"),
        _component("answer", 1.0, "format_ok"),
        *(_component(k, 0.1, _AUX_TAU) for k in aux),
        _component("latency", 0.0, _AUX_TAU),
        _component("calls", 0.0, _AUX_TAU),
    )


@dataclass(frozen=True, slots=True, kw_only=True)
class PredicateSpec:
    """A gate predicate defined by a spec (file): registered under ``name`` when the spec is built.

    Lets a spec file use a predicate without registration code (``docs/rewards.md`` §14.2). Building the
    spec registers ``function`` with :func:`~recal_gym.rewards.gates.register_gate` unless the same
    function is registered under ``name`` already; a different function under that name is an error.
    """

    name: str
    """Name used in gate expressions."""
    function: str
    """``"module:attr"`` of ``fn(values, tau) -> bool``."""
    reads: tuple[str, ...]
    """Components the predicate reads."""

    def __post_init__(self) -> None:
        """Validate the fields and make sure the predicate is registered (idempotent)."""
        if not isinstance(self.function, str) or ":" not in self.function:
            raise InvalidConfig(f"predicate {self.name!r}: function={self.function!r} must be 'module:function'")
        if not isinstance(self.reads, tuple) or not self.reads or not all(isinstance(r, str) for r in self.reads):
            raise InvalidConfig(f"predicate {self.name!r}: reads={self.reads!r} must be a non-empty list of names")
        existing = GATE_PREDICATES.get(self.name)
        fn = load_object(self.function, what="predicate")
        if existing is None:
            register_gate(self.name, reads=self.reads)(fn)
        elif existing.fn is not fn or existing.reads != self.reads:
            raise InvalidConfig(
                f"predicate {self.name!r} is registered already with another function or reads ({existing.source}, "
                f"reads {list(existing.reads)}); rename it"
            )

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready form."""
        return {"name": self.name, "function": self.function, "reads": list(self.reads)}


@dataclass(frozen=True, slots=True, kw_only=True)
class RewardSpec:
    """A validated reward specification (``docs/rewards.md`` §11, §14).

    The scalar reward is the left fold of ``weight_k * gate_k * raw_k`` over :attr:`components` in
    order, starting from 0.0. Build one with :func:`~recal_gym.rewards.presets.make_spec` (presets + overrides),
    :meth:`from_mapping` or :func:`~recal_gym.rewards.presets.load_spec` (files).

    Raises:
        InvalidConfig: a field outside its range, duplicate component names, a gate that reads its own
            component or a gate cycle.
        UnknownComponent: an unregistered component name.
        UnknownName: a gate reading a component the spec does not have.
    """

    name: str = "custom"
    """Label for logs and provenance."""
    answer_metric: AnswerMetric = "em"
    """Metric of the ``answer`` component."""
    components: tuple[ComponentSpec, ...] = field(default_factory=_recal_components)
    """The components in fold order (default: the ``recal`` preset's eight)."""
    tau: float = 1.0
    """Answer threshold τ that gates may compare with (``answer >= tau``), in [0, 1]."""
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
    predicates: tuple[PredicateSpec, ...] = ()
    """Gate predicates this spec defines (registered when it is built)."""

    def __post_init__(self) -> None:
        """Validate every field, resolve every component and check the gating order."""
        if not isinstance(self.name, str):
            raise InvalidConfig(f"RewardSpec.name={self.name!r}: must be a string")
        _check_choice("RewardSpec", "answer_metric", self.answer_metric, get_args(AnswerMetric))
        if not isinstance(self.components, tuple) or not self.components:
            raise InvalidConfig(
                f"RewardSpec.components={self.components!r}: must be a non-empty tuple of ComponentSpec"
            )
        seen: set[str] = set()
        for c in self.components:
            if not isinstance(c, ComponentSpec):
                raise InvalidConfig(f"RewardSpec.components holds {c!r}; every entry must be a ComponentSpec")
            if c.name in seen:
                raise InvalidConfig(f"RewardSpec.components: component {c.name!r} appears twice")
            seen.add(c.name)
            c.definition()  # raises UnknownComponent / InvalidConfig
        if not isinstance(self.predicates, tuple) or not all(isinstance(q, PredicateSpec) for q in self.predicates):
            raise InvalidConfig(f"RewardSpec.predicates={self.predicates!r}: must be a tuple of PredicateSpec")
        check_gate_order({c.name: c.gate for c in self.components}, owner=f"RewardSpec {self.name!r}")
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

    # ------------------------------------------------------------------ views
    @property
    def names(self) -> tuple[str, ...]:
        """Component names in fold order."""
        return tuple(c.name for c in self.components)

    @property
    def weights(self) -> tuple[float, ...]:
        """Weights in fold order."""
        return tuple(float(c.weight) for c in self.components)

    @property
    def gates(self) -> tuple[Gate, ...]:
        """Gates in fold order."""
        return tuple(c.gate for c in self.components)

    def component(self, name: str) -> ComponentSpec:
        """The entry of component ``name``.

        Raises:
            UnknownComponent: the spec has no such component (with close matches).
        """
        for c in self.components:
            if c.name == name:
                return c
        raise UnknownComponent(
            f"reward spec {self.name!r} has no component {name!r}; components: {list(self.names)}."
            + close_matches_hint(name, self.names)
        )

    def weight_of(self, name: str) -> float:
        """The weight of ``name`` (0.0 if the spec has no such component)."""
        for c in self.components:
            if c.name == name:
                return float(c.weight)
        return 0.0

    def weights_dict(self) -> dict[str, float]:
        """``{component: weight}`` as Python floats, in fold order."""
        return {c.name: float(c.weight) for c in self.components}

    def gates_dict(self) -> dict[str, str]:
        """``{component: canonical gate expression}`` in fold order."""
        return {c.name: c.gate.canonical() for c in self.components}

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready dict that :meth:`from_mapping` (and :func:`load_spec`) turn back into an equal spec."""
        return {
            "name": self.name,
            "answer_metric": self.answer_metric,
            "tau": float(self.tau),
            "format_penalty": float(self.format_penalty),
            "info_match": self.info_match,
            "route_empty_value": float(self.route_empty_value),
            "balance": dataclasses.asdict(self.balance),
            "cost": dataclasses.asdict(self.cost),
            "components": [c.to_dict() for c in self.components],
            **({"predicates": [q.to_dict() for q in self.predicates]} if self.predicates else {}),
        }

    @property
    def hash(self) -> str:
        """A stable content hash: ``"rs-"`` + 16 hex digits of SHA-256 over the canonical spec.

        The canonical form is :meth:`to_dict` without ``name`` plus each component's definition
        (``module:qualname`` and range), serialised as sorted-key JSON. Two specs with the same hash score
        every episode identically as long as the component code they name is unchanged (the hash cannot
        see inside a function).
        """
        body = self.to_dict()
        body.pop("name")
        body["definitions"] = {c.name: c.definition().describe() for c in self.components}
        body["gate_predicates"] = _predicate_sources(self)
        digest = hashlib.sha256(json.dumps(body, sort_keys=True, separators=(",", ":")).encode()).hexdigest()
        return "rs-" + digest[:16]

    # ------------------------------------------------------------------ gates on a batch
    def compute_gates(self, raw: np.ndarray, *, tau: float | None = None) -> np.ndarray:
        """Gates of a batch of raw component vectors (``docs/rewards.md`` §14.2, ``docs/learner.md`` §4.1).

        Args:
            raw: ``(N, K)`` float pre-gate components in this spec's order; NaN = unscorable.
            tau: τ override (default: the spec's ``tau``).

        Returns:
            ``(N, K)`` float64 gates in {0.0, 1.0}; NaN where a value the gate reads is NaN.

        Raises:
            InvalidData: ``raw`` is not ``(N, K)``.
        """
        r = np.asarray(raw, dtype=np.float64)
        k = len(self.components)
        if r.ndim != 2 or r.shape[1] != k:
            raise InvalidData(
                f"compute_gates: raw must have shape (N, {k}) for components {list(self.names)}, got {r.shape}"
            )
        t = self.tau if tau is None else tau
        _check_range("compute_gates", "tau", t, 0.0, 1.0)
        columns = {name: r[:, i] for i, name in enumerate(self.names)}
        out = np.empty(r.shape, dtype=np.float64)  # (N, K)
        for i, c in enumerate(self.components):
            out[:, i] = c.gate.evaluate_batch(columns, float(t))
        return out

    # ------------------------------------------------------------------ construction
    @classmethod
    def from_mapping(cls, d: Mapping[str, Any], *, source: str = "reward spec") -> RewardSpec:
        """Build a spec from a (parsed YAML/JSON) mapping (``docs/rewards.md`` §14.3).

        A ``"preset"`` key starts from that preset; otherwise the ``recal`` preset's defaults are the base
        and ``components`` (if given) replaces its component list. With a preset, ``components`` entries
        naming an existing component update it and new names are appended. ``weights`` and ``gates`` may be
        partial mappings by component; ``params`` maps component → parameters; ``balance``/``cost`` map
        their fields; ``update_mode`` sets both stateful components' update mode.

        Args:
            d: The mapping.
            source: Where it came from (a file path), for error messages.

        Raises:
            InvalidConfig: an unknown key or an invalid value (the message names ``source`` and the field).
            UnknownComponent: an unknown component name.
        """
        from recal_gym.rewards.presets import _apply_overrides, _merge_predicates, _parse_components, make_spec

        if not isinstance(d, Mapping):
            raise InvalidConfig(f"{source}: a reward spec must be a mapping, got {type(d).__name__}")
        rest = dict(d)
        preset = rest.pop("preset", None)
        try:
            if "predicates" in rest:  # registered before any gate that names them is checked
                _merge_predicates((), rest["predicates"], source)
            if preset is not None:
                return make_spec(preset, **rest)
            if "components" in rest:
                base = dataclasses.replace(cls(), components=_parse_components(rest.pop("components"), (), source))
                return _apply_overrides(base, rest, source)
            return _apply_overrides(cls(), rest, source)
        except (InvalidConfig, UnknownName) as exc:
            msg = str(exc)
            if msg.startswith(source):
                raise
            raise type(exc)(f"{source}: {msg}") from None


def _predicate_sources(spec: RewardSpec) -> dict[str, Any]:
    """``{predicate: {source, reads}}`` of every registered predicate the spec's gates use."""
    used: set[str] = set()

    def walk(g: Gate) -> None:
        if isinstance(g, Predicate):
            used.add(g.name)
        for child in getattr(g, "items", ()) or ((g.item,) if isinstance(g, Not) else ()):
            walk(child)

    for c in spec.components:
        walk(c.gate)
    return {n: {"source": GATE_PREDICATES[n].source, "reads": list(GATE_PREDICATES[n].reads)} for n in sorted(used)}


# ---------------------------------------------------------------------------------------------------
# Gated values and the fold


def gate_components(raw: np.ndarray, gates: np.ndarray) -> np.ndarray:
    """Return the gated components ``gates * raw``.

    A closed gate (0.0) zeroes every finite raw value; NaN is sticky (an unscorable raw value stays NaN under
    any gate, and a NaN gate gives NaN), so gating is idempotent. Results are normalised to ``+0.0`` (no
    ``-0.0`` from a closed gate on a negative value).

    Args:
        raw: ``(N, K)`` float pre-gate components; NaN = unscorable.
        gates: ``(N, K)`` float gates from :meth:`RewardSpec.compute_gates`.

    Returns:
        ``(N, K)`` float64 gated components.
    """
    raw = np.asarray(raw, dtype=np.float64)
    gates = np.asarray(gates, dtype=np.float64)
    with np.errstate(invalid="ignore"):  # 0 * inf -> NaN: a non-finite raw value is unscorable
        return gates * raw + 0.0  # + 0.0 turns -0.0 into +0.0 and changes nothing else


def compute_gates(raw: np.ndarray, spec: RewardSpec, tau: float | None = None) -> np.ndarray:
    """``spec.compute_gates(raw, tau=tau)`` (the one batch gate function)."""
    return spec.compute_gates(raw, tau=tau)


def fold_reward(components: Mapping[str, float], weights: Mapping[str, float]) -> float:
    """Return the scalar reward: the left fold of ``w_k * c_k`` in ``weights``' key order from 0.0.

    ``docs/rewards.md`` §1: ``(((0.0 + w_1·c_1) + w_2·c_2) + …) + w_K·c_K``.

    Args:
        components: Gated component values keyed by component.
        weights: Weights keyed by component, in fold order (e.g. ``info["reward_weights"]``).

    Returns:
        The reward as a Python float.

    Raises:
        UnknownComponent: a component key that has no weight.
        InvalidData: a weighted component is missing.
    """
    for k in components:
        if k not in weights:
            raise UnknownComponent(
                f"fold_reward: component {k!r} has no weight; weighted: {list(weights)}."
                + close_matches_hint(str(k), weights)
            )
    missing = [k for k in weights if k not in components]
    if missing:
        raise InvalidData(f"fold_reward: missing component(s) {missing}; all of {list(weights)} are required")
    total = 0.0
    for k, w in weights.items():
        total = total + float(w) * float(components[k])
    return total


def fold_rewards(components: np.ndarray, weights: Sequence[float] | np.ndarray) -> np.ndarray:
    """Vectorised :func:`fold_reward`: the same left fold, bit for bit, on every row.

    Args:
        components: ``(N, K)`` float gated components in fold order.
        weights: ``(K,)`` float weights in fold order.

    Returns:
        ``(N,)`` float64 rewards.
    """
    c = np.asarray(components, dtype=np.float64)
    w = np.asarray(weights, dtype=np.float64)
    if c.ndim != 2 or w.ndim != 1 or c.shape[1] != w.shape[0]:
        raise InvalidData(f"fold_rewards: expected (N, K) components and (K,) weights, got {c.shape}, {w.shape}")
    total = np.zeros(c.shape[0], dtype=np.float64)
    for k in range(w.shape[0]):
        total = total + w[k] * c[:, k]
    return total
