"""The reward-component registry (``docs/rewards.md`` §14.1).

A reward **component** is a named, pure function of a finished episode returning a finite float in a
declared range. It receives an :class:`~recal_gym.rewards.view.EpisodeView` (re-exported here): the
:class:`~recal_gym.types.EpisodeRecord` plus everything scoring parses from it, computed once and shared
by every component (one block scan, one format check, the answer, EM/F1, the information blocks, route
counts, cost and latency). A **stateful** component (balance, cost) is a class whose instances hold its
history; the :class:`~recal_gym.rewards.state.RewardState` holds one instance per stateful component of a
spec.

Register a component with :func:`register_component`::

    @register_component("short_answer", range=(0.0, 1.0))
    def short_answer(ep, max_words=3):
        "1 when the final answer has at most `max_words` words."
        return 1.0 if ep.has_answer and len(ep.answer.split()) <= max_words else 0.0

Keyword arguments after ``ep`` are the component's parameters: a spec sets them with
``params: {max_words: 5}``. A stateful component is a class (decorate the class) implementing
:class:`ComponentState`; it is constructed as ``cls(spec, listed, **params)``.

The eight built-ins are registered below in this order: ``format``, ``answer``, ``info``, ``route``,
``balance``, ``cost`` (``docs/rewards.md`` §4-§10), ``latency`` and ``calls`` (§14.4).
"""

from __future__ import annotations

import importlib
import inspect
import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Protocol, runtime_checkable

from recal_gym.errors import InvalidConfig, InvalidData, UnknownComponent, close_matches_hint
from recal_gym.rewards.answer_metrics import contains_normalized
from recal_gym.rewards.format_rules import route_score
from recal_gym.rewards.view import COUNTED_OUTCOMES, EpisodeView, Resolver

if TYPE_CHECKING:
    from recal_gym.rewards.spec import RewardSpec

__all__ = [
    "BUILTIN_COMPONENTS",
    "COMPONENT_REGISTRY",
    "COUNTED_OUTCOMES",
    "ComponentDef",
    "ComponentState",
    "EpisodeView",
    "Resolver",
    "get_component",
    "load_object",
    "register_component",
    "unregister_component",
]


@runtime_checkable
class ComponentState(Protocol):
    """The state object of a stateful component (``docs/rewards.md`` §8, §14.1).

    ``score_episode`` is pure; ``observe`` applies an episode-mode update (a no-op in batch mode);
    ``observe_batch`` a batch-mode update (a no-op in episode mode); a ``frozen`` state never updates.
    """

    frozen: bool

    def score_episode(self, ep: EpisodeView) -> float:
        """The component's raw value for ``ep`` against the current state (pure)."""
        ...

    def observe(self, ep: EpisodeView) -> None:
        """Episode-mode update after ``ep`` was scored."""
        ...

    def observe_batch(self, eps: Sequence[EpisodeView]) -> None:
        """Batch-mode update with a rollout batch's episodes, in order."""
        ...

    def state_dict(self) -> dict[str, Any]:
        """JSON-ready contents."""
        ...

    def load_state_dict(self, d: Mapping[str, Any]) -> None:
        """Restore :meth:`state_dict`."""
        ...

    def copy(self) -> ComponentState:
        """An independent copy (same config, contents and frozen flag)."""
        ...


RangeSpec = tuple[float, float] | Callable[["RewardSpec", Mapping[str, Any]], tuple[float, float]]
"""A fixed ``(low, high)``, or ``f(spec, params) -> (low, high)`` for a range set by the spec."""


@dataclass(frozen=True, slots=True)
class ComponentDef:
    """One registered component."""

    name: str
    """Key in ``info["reward_components"]`` and spec files."""
    range: RangeSpec
    """Declared range of the raw value (inclusive)."""
    fn: Callable[..., float] | None
    """``fn(ep, **params) -> float`` for a stateless component; ``None`` for a stateful one."""
    state: Callable[..., ComponentState] | None
    """``state(spec, listed, **params)`` builds the state of a stateful component; ``None`` otherwise."""
    source: str
    """``module:qualname`` of the function or class (provenance; part of the spec hash)."""
    builtin: bool = False
    """One of the eight built-ins."""

    @property
    def stateful(self) -> bool:
        """Whether the component keeps a state between episodes."""
        return self.state is not None

    def bounds(self, spec: RewardSpec, params: Mapping[str, Any]) -> tuple[float, float]:
        """The range for ``spec`` and ``params``."""
        return self.range(spec, params) if callable(self.range) else self.range

    def describe(self) -> dict[str, Any]:
        """JSON-ready identity (for the spec hash): source, fixed range or ``"spec"``."""
        rng: Any = "spec" if callable(self.range) else [float(self.range[0]), float(self.range[1])]
        return {"source": self.source, "range": rng, "stateful": self.stateful}


COMPONENT_REGISTRY: dict[str, ComponentDef] = {}
"""Registered components by name; change it only through :func:`register_component`/:func:`unregister_component`."""


def _source(obj: object) -> str:
    return f"{getattr(obj, '__module__', '?')}:{getattr(obj, '__qualname__', repr(obj))}"


def _check_range(name: str, rng: object) -> RangeSpec:
    if callable(rng):
        return rng  # type: ignore[return-value]
    ok = (
        isinstance(rng, Sequence)
        and not isinstance(rng, str)
        and len(rng) == 2
        and all(isinstance(x, int | float) and not isinstance(x, bool) and math.isfinite(x) for x in rng)
        and float(rng[0]) <= float(rng[1])
    )
    if not ok:
        raise InvalidConfig(f"component {name!r}: range={rng!r} must be (low, high) finite numbers with low <= high")
    return (float(rng[0]), float(rng[1]))  # type: ignore[index]


def make_component_def(name: str, obj: object, rng: object, *, builtin: bool = False) -> ComponentDef:
    """Build (and validate) a :class:`ComponentDef` from a function or a state class.

    Raises:
        InvalidConfig: a bad name or range, or ``obj`` is neither a function nor a class.
    """
    if not isinstance(name, str) or not name.isidentifier():
        raise InvalidConfig(f"component name {name!r} must be an identifier (letters, digits, '_')")
    rng_t = _check_range(name, rng)
    if inspect.isclass(obj):
        missing = [m for m in ("score_episode", "observe", "observe_batch", "state_dict", "load_state_dict", "copy")
                   if not callable(getattr(obj, m, None))]  # fmt: skip
        if missing:
            raise InvalidConfig(f"stateful component {name!r}: class {obj.__name__} lacks {missing} (ComponentState)")
        factory: Callable[..., ComponentState] = obj  # type: ignore[assignment]  # checked above
        return ComponentDef(name=name, range=rng_t, fn=None, state=factory, source=_source(obj), builtin=builtin)
    if not callable(obj):
        raise InvalidConfig(f"component {name!r}: {obj!r} is neither a function nor a ComponentState class")
    return ComponentDef(name=name, range=rng_t, fn=obj, state=None, source=_source(obj), builtin=builtin)


def register_component(name: str, *, range: RangeSpec) -> Callable[[Any], Any]:
    """Register a reward component (a decorator for a function or a :class:`ComponentState` class).

    Example:
        >>> @register_component("short_answer", range=(0.0, 1.0))
        ... def short_answer(ep, max_words=3):
        ...     return 1.0 if ep.has_answer and len(ep.answer.split()) <= max_words else 0.0
        >>> unregister_component("short_answer")

    Args:
        name: The component's name (an identifier, not yet registered).
        range: ``(low, high)`` of the raw value; a value outside it is an error, never clipped.

    Raises:
        InvalidConfig: a duplicate or bad name, or a bad range.
    """
    if name in COMPONENT_REGISTRY:
        raise InvalidConfig(f"component {name!r} is already registered; registered: {sorted(COMPONENT_REGISTRY)}")

    def decorate(obj: Any) -> Any:
        COMPONENT_REGISTRY[name] = make_component_def(name, obj, range)
        return obj

    return decorate


def unregister_component(name: str) -> None:
    """Remove a registered component (for test fixtures); built-ins cannot be removed.

    Raises:
        UnknownComponent: ``name`` is not registered.
        InvalidConfig: ``name`` is a built-in.
    """
    if name not in COMPONENT_REGISTRY:
        raise UnknownComponent(f"component {name!r} is not registered.{close_matches_hint(name, COMPONENT_REGISTRY)}")
    if COMPONENT_REGISTRY[name].builtin:
        raise InvalidConfig(f"component {name!r} is a built-in and cannot be unregistered")
    del COMPONENT_REGISTRY[name]


def get_component(name: str) -> ComponentDef:
    """The registered component ``name``.

    Raises:
        UnknownComponent: not registered (the message lists the registered names and close matches).
    """
    found = COMPONENT_REGISTRY.get(name)
    if found is None:
        raise UnknownComponent(
            f"unknown reward component {name!r}; registered: {sorted(COMPONENT_REGISTRY)}."
            + close_matches_hint(str(name), COMPONENT_REGISTRY)
        )
    return found


def load_object(path: str, what: str = "component") -> Any:
    """Import ``"module:attribute"`` (the attribute may be dotted) and return it.

    Raises:
        InvalidConfig: a malformed path, a missing module or a missing attribute (the message names it).
    """
    module_name, sep, attr = str(path).partition(":")
    if not sep or not module_name or not attr:
        raise InvalidConfig(f"{what} function {path!r} must be 'module:function' (e.g. 'mypkg.rewards:latency')")
    try:
        obj: Any = importlib.import_module(module_name)
    except ImportError as exc:
        raise InvalidConfig(f"{what} function {path!r}: cannot import module {module_name!r} ({exc})") from None
    for part in attr.split("."):
        if not hasattr(obj, part):
            raise InvalidConfig(f"{what} function {path!r}: module {module_name!r} has no attribute {attr!r}")
        obj = getattr(obj, part)
    return obj


# --------------------------------------------------------------------------------------------------
# Built-in components (docs/rewards.md §4-§10, §14.4)
# --------------------------------------------------------------------------------------------------


def _format(ep: EpisodeView) -> float:
    """``format``: 0.0 when every rule F1-F9 passes, else the spec's ``format_penalty`` (§6)."""
    return 0.0 if ep.format.ok else float(ep.spec.format_penalty)


def _format_range(spec: RewardSpec, params: Mapping[str, Any]) -> tuple[float, float]:
    p = float(spec.format_penalty)
    return (min(p, 0.0), max(p, 0.0))


def _answer(ep: EpisodeView) -> float:
    """``answer``: EM or F1 of the final answer against any gold answer (§4)."""
    return ep.em if ep.spec.answer_metric == "em" else ep.f1


def _info(ep: EpisodeView) -> float:
    """``info``: an executed call's information block contains a gold answer (§5)."""
    mode = ep.spec.info_match
    golds = ep.golden_normalized
    return 1.0 if any(contains_normalized(t, golds, mode) for t in ep.info_texts) else 0.0


def _route(ep: EpisodeView) -> float:
    """``route``: valid search blocks / search blocks, or ``route_empty_value`` without any (§7)."""
    return route_score(ep.format, ep.spec.route_empty_value)


def _latency(ep: EpisodeView, budget_s: float = 30.0) -> float:
    """``latency``: ``1 − min(1, L / budget_s)`` with L the executed calls' total latency in seconds.

    Fast episodes score near 1, episodes at or over the budget 0. A record whose calls carry no latency
    scores 0.5 when the component's weight is 0, and raises otherwise (like ``cost``, §13).

    Raises:
        InvalidData: the latency is unknown and the component has a non-zero weight.
    """
    if not (isinstance(budget_s, int | float) and math.isfinite(budget_s) and budget_s > 0):
        raise InvalidConfig(f"component 'latency': budget_s={budget_s!r} must be a finite number > 0")
    total = ep.latency_s
    if total is None:
        if ep.weight("latency") != 0.0:
            raise InvalidData(
                f"episode record {ep.question_id!r}: a call has no latency_s, but the latency weight is "
                f"{ep.weight('latency')!r}; the scorer never substitutes 0"
            )
        return 0.5
    return 1.0 - min(1.0, total / float(budget_s))


def _calls(ep: EpisodeView, cap: int = 4) -> float:
    """``calls``: ``1 − min(n, cap) / cap`` with n the routed calls (executed or failed).

    No call scores 1, ``cap`` or more calls 0: with a positive weight every call costs ``weight / cap``.
    """
    if isinstance(cap, bool) or not isinstance(cap, int) or cap < 1:
        raise InvalidConfig(f"component 'calls': cap={cap!r} must be an int >= 1")
    return 1.0 - min(ep.n_calls, cap) / cap


def _balance_state(spec: RewardSpec, listed: Sequence[str]) -> ComponentState:
    from recal_gym.rewards.state import BalanceState

    return BalanceState(listed, spec.balance)


def _cost_state(spec: RewardSpec, listed: Sequence[str]) -> ComponentState:
    from recal_gym.rewards.state import CostNormalizer

    return CostNormalizer(spec.cost)


def _register_builtins() -> None:
    stateless: tuple[tuple[str, Callable[..., float], RangeSpec], ...] = (
        ("format", _format, _format_range),
        ("answer", _answer, (0.0, 1.0)),
        ("info", _info, (0.0, 1.0)),
        ("route", _route, (0.0, 1.0)),
        ("latency", _latency, (0.0, 1.0)),
        ("calls", _calls, (0.0, 1.0)),
    )
    for name, fn, rng in stateless:
        COMPONENT_REGISTRY[name] = ComponentDef(
            name=name, range=rng, fn=fn, state=None, source=_source(fn), builtin=True
        )
    for name, factory, cls in (
        ("balance", _balance_state, "recal_gym.rewards.state:BalanceState"),
        ("cost", _cost_state, "recal_gym.rewards.state:CostNormalizer"),
    ):
        COMPONENT_REGISTRY[name] = ComponentDef(
            name=name, range=(0.0, 1.0), fn=None, state=factory, source=cls, builtin=True
        )


BUILTIN_COMPONENTS: tuple[str, ...] = ("format", "answer", "info", "route", "balance", "cost", "latency", "calls")
"""The built-in components in their default key order."""


_register_builtins()
