"""The reward-component registry and the shared per-episode view (``docs/rewards.md`` §14.1).

A reward **component** is a named, pure function of a finished episode returning a finite float in a
declared range. It receives an :class:`EpisodeView`: the :class:`~recal_gym.types.EpisodeRecord` plus
everything scoring parses from it, computed once and shared by every component (one block scan, one
format check, the answer, EM/F1, the information blocks, route counts, cost and latency). A
**stateful** component (balance, cost) is a class whose instances hold its history; the
:class:`~recal_gym.rewards.state.RewardState` holds one instance per stateful component of a spec.

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
import itertools
import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Protocol, runtime_checkable

from recal_gym.errors import InvalidConfig, InvalidData, UnknownComponent, close_matches_hint
from recal_gym.protocol import Block, last_answer, scan_block_pairs, scan_blocks
from recal_gym.resolver import resolve_model
from recal_gym.rewards.answer_metrics import (
    contains_normalized,
    exact_match_normalized,
    f1_normalized,
    normalize_answer,
)
from recal_gym.rewards.format_rules import FormatResult, check_format_pairs, route_score
from recal_gym.types import EpisodeRecord, NameTable

if TYPE_CHECKING:
    from recal_gym.rewards.spec import RewardSpec

__all__ = [
    "BUILTIN_COMPONENTS",
    "COMPONENT_REGISTRY",
    "ComponentDef",
    "ComponentState",
    "EpisodeView",
    "Resolver",
    "get_component",
    "load_object",
    "register_component",
    "unregister_component",
]

COUNTED_OUTCOMES: tuple[str, ...] = ("executed", "call_failed")
"""Route outcomes that count as routed calls (routes in routing turns)."""


class Resolver:
    """Model-name resolution for one pool's name table, with a per-name cache (explicit, per pool).

    Scoring resolves every search block's NAME (format rule F9, the route component, route counts of
    foreign logs); a log re-scores the same few names thousands of times.
    """

    __slots__ = ("_cache", "table")

    def __init__(self, table: NameTable) -> None:
        """Wrap ``table`` with an empty cache."""
        self.table = table
        self._cache: dict[str, str | None] = {}

    def __call__(self, name: str) -> str | None:
        """``resolve_model(name, table)``, cached."""
        try:
            return self._cache[name]
        except KeyError:
            found = self._cache[name] = resolve_model(name, self.table)
            return found


class EpisodeView:
    """A finished episode with everything scoring parses from it, computed at most once.

    Components read these attributes; none of them mutates the record. Lazily computed values are
    cached on the view, so ``format``, ``route`` and the route counts share one block scan.

    Attributes:
        record: The episode record.
        spec: The reward spec being scored (built-in components read their settings from it).
        transcript: ``record.transcript``.
        golden_answers: ``record.golden_answers``.
        data_source: ``record.data_source``.
        question_id: ``record.question_id``.
        pool: The pool's name table (``record.pool``).
        spans_mode: ``"record"`` (information blocks from ``information_spans``) or ``"infer"``.
    """

    __slots__ = (
        "_answer",
        "_answer_norm",
        "_blocks",
        "_counts",
        "_em",
        "_f1",
        "_format",
        "_golds_norm",
        "_info_texts",
        "_pairs",
        "_raw_cost",
        "_resolve",
        "data_source",
        "golden_answers",
        "pool",
        "question_id",
        "record",
        "spans_mode",
        "spec",
        "transcript",
    )

    _UNSET: Any = object()

    def __init__(
        self,
        record: EpisodeRecord,
        spec: RewardSpec,
        *,
        resolve: Callable[[str], str | None] | None = None,
        spans: str = "record",
    ) -> None:
        """Wrap ``record`` (nothing is computed until a component asks)."""
        self.record = record
        self.spec = spec
        self.transcript = record.transcript
        self.golden_answers = record.golden_answers
        self.data_source = record.data_source
        self.question_id = record.question_id
        self.pool = record.pool
        self.spans_mode = spans
        self._resolve = resolve if resolve is not None else Resolver(record.pool)
        self._blocks: list[Block] | None = None
        self._pairs: list[tuple[str, str]] | None = None
        self._format: FormatResult | None = None
        self._answer: Any = EpisodeView._UNSET
        self._answer_norm: Any = EpisodeView._UNSET
        self._golds_norm: tuple[str, ...] | None = None
        self._em: float | None = None
        self._f1: float | None = None
        self._info_texts: list[str] | None = None
        self._raw_cost: Any = EpisodeView._UNSET
        self._counts: dict[str, int] | None = None

    # ------------------------------------------------------------------ parsing (cached)
    @property
    def pairs(self) -> list[tuple[str, str]]:
        """``(tag, content)`` of every block of the transcript's block scan, computed once.

        The scan every built-in reads (``scan_block_pairs``, ``docs/protocol.md`` §4): the format check,
        the answer, the information blocks of a foreign log and its route counts.
        """
        if self._pairs is None:
            self._pairs = scan_block_pairs(self.transcript)
        return self._pairs

    @property
    def blocks(self) -> list[Block]:
        """The transcript's block scan with offsets (``scan_blocks``, ``docs/protocol.md`` §4), computed once.

        Built on first use (no built-in component reads it; :attr:`pairs` holds the same tags and contents).
        """
        if self._blocks is None:
            self._blocks = scan_blocks(self.transcript)
        return self._blocks

    @property
    def format(self) -> FormatResult:
        """The format rules F1-F9 (``docs/rewards.md`` §6) on the shared block scan."""
        if self._format is None:
            self._format = check_format_pairs(self.transcript, self.pairs, self._resolve)
        return self._format

    @property
    def format_ok(self) -> bool:
        """Every format rule passes."""
        return self.format.ok

    @property
    def answer(self) -> str:
        """The stripped content of the last answer block (``docs/rewards.md`` §2); ``""`` if none."""
        found = self._last_answer()
        return "" if found is None else found

    @property
    def has_answer(self) -> bool:
        """Whether the transcript holds an answer block."""
        return self._last_answer() is not None

    def _last_answer(self) -> str | None:
        if self._answer is EpisodeView._UNSET:
            # The answer-only scan equals the last answer block of the shared scan whenever every
            # "<answer>" string starts a block of that scan (then no answer hides inside another
            # block); otherwise fall back to the separate answer scan (Router-R1's behaviour).
            answers = [c for t, c in self.pairs if t == "answer"]
            if self.transcript.count("<answer>") == len(answers):
                self._answer = answers[-1].strip() if answers else None
            else:
                self._answer = last_answer(self.transcript)
        return self._answer  # type: ignore[no-any-return]

    @property
    def golden_normalized(self) -> tuple[str, ...]:
        """The gold answers after SQuAD normalisation (``docs/rewards.md`` §3), computed once."""
        if self._golds_norm is None:
            self._golds_norm = tuple(normalize_answer(g) for g in self.golden_answers)
        return self._golds_norm

    @property
    def answer_normalized(self) -> str | None:
        """The normalised final answer, ``None`` without one."""
        if self._answer_norm is EpisodeView._UNSET:
            found = self._last_answer()
            self._answer_norm = None if found is None else normalize_answer(found)
        return self._answer_norm  # type: ignore[no-any-return]

    @property
    def em(self) -> float:
        """Ungated exact match of the final answer (0.0 without one)."""
        if self._em is None:
            self._em = exact_match_normalized(self.answer_normalized, self.golden_normalized)
        return self._em

    @property
    def f1(self) -> float:
        """Ungated token F1 of the final answer (0.0 without one)."""
        if self._f1 is None:
            self._f1 = f1_normalized(self.answer_normalized, self.golden_normalized)
        return self._f1

    @property
    def info_texts(self) -> list[str]:
        """Contents of the information blocks the ``info`` component may read (``docs/rewards.md`` §5).

        Raises:
            InvalidData: the record has no ``information_spans`` (score with ``spans="infer"``) or a span
                lies outside the transcript.
        """
        if self._info_texts is None:
            self._info_texts = self._read_info_texts()
        return self._info_texts

    def _read_info_texts(self) -> list[str]:
        if self.spans_mode == "infer":  # a foreign log: every scanned information block except None splices
            return [c for t, c in self.pairs if t == "information" and c != "None"]
        spans = self.record.information_spans
        if spans is None:
            raise InvalidData(
                f"episode record {self.question_id!r} has no 'information_spans'; score a foreign log with "
                "spans='infer'"
            )
        n = len(self.transcript)
        texts = []
        for start, end in spans:
            if not 0 <= start <= end <= n:
                raise InvalidData(
                    f"episode record {self.question_id!r}: information span {(start, end)} is outside the "
                    f"transcript (length {n})"
                )
            texts.append(self.transcript[start:end])
        return texts

    # ------------------------------------------------------------------ calls, cost, latency
    @property
    def route_counts(self) -> dict[str, int]:
        """Routed calls per resolved model name (``docs/rewards.md`` §9).

        With ``calls``: routes with outcome ``executed`` or ``call_failed``, by resolved model. For a foreign
        log without ``calls``: search blocks whose NAME resolves and whose next block is an information
        block (the environment answered it).
        """
        if self._counts is None:
            counts: dict[str, int] = {}
            calls = self.record.calls
            if calls is not None:
                for call in calls:
                    if call.outcome in COUNTED_OUTCOMES and call.model:
                        counts[call.model] = counts.get(call.model, 0) + 1
            else:
                for (tag, content), (nxt, _) in itertools.pairwise(self.pairs):
                    if tag != "search" or nxt != "information" or ":" not in content:
                        continue
                    model = self._resolve(content.split(":", 1)[0])
                    if model is not None:
                        counts[model] = counts.get(model, 0) + 1
            self._counts = counts
        return self._counts

    @property
    def n_calls(self) -> int:
        """Number of routed calls (executed or failed; unknown names and final-turn routes excluded)."""
        return sum(self.route_counts.values())

    @property
    def raw_cost(self) -> float | None:
        """Σ ``completion_tokens × price`` of executed calls in µ$; the record's ``raw_cost`` without calls."""
        if self._raw_cost is EpisodeView._UNSET:
            calls = self.record.calls
            if calls is not None:
                total = 0.0
                for call in calls:
                    if call.outcome == "executed":
                        total = total + call.completion_tokens * call.price_per_1m
                self._raw_cost = total
            else:
                self._raw_cost = None if self.record.raw_cost is None else float(self.record.raw_cost)
        return self._raw_cost  # type: ignore[no-any-return]

    @property
    def latency_s(self) -> float | None:
        """Σ latency of executed calls in seconds; ``None`` when a call's latency is unknown."""
        calls = self.record.calls
        if calls is None:
            return None
        total = 0.0
        for call in calls:
            if call.outcome == "executed":
                if call.latency_s is None:
                    return None
                total = total + call.latency_s
        return total

    def weight(self, name: str) -> float:
        """The spec's weight of component ``name`` (0.0 if the spec has no such component)."""
        return self.spec.weight_of(name)


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
