"""Gates as data: boolean conditions over other components' raw values (``docs/rewards.md`` §14.2).

A gate decides whether a reward component is paid: the gated value is ``g · r`` with ``g ∈ {0, 1}``.
Gates are written as small expressions over the *raw* (pre-gate) values of other components::

    true                                  # always paid
    format == 0                           # the format checks passed
    format == 0 and answer >= tau         # ... and the answer reaches the spec's threshold τ
    format == 0 and (answer > 0 or info == 1)
    not cheap_enough                      # a registered predicate (see register_gate)

Grammar (no ``eval``: a hand-written recursive-descent parser)::

    expr    := and_expr ("or" and_expr)*
    and_expr:= unary ("and" unary)*
    unary   := "not" unary | "(" expr ")" | "true" | "false" | compare | PREDICATE
    compare := NAME OP (NUMBER | "tau")          OP ∈ {==, !=, >=, <=, >, <}

The four rules of the first release are named presets (:data:`GATE_PRESETS`): ``always``,
``format_ok``, ``format_ok_and_answer_positive`` and ``format_ok_and_answer_at_least_tau``; a spec may
use either a preset name or an expression. Every gate has a canonical text form
(:meth:`Gate.canonical`), which is what spec files and the spec hash store.

Evaluation comes in two forms that agree exactly (tested): :meth:`Gate.evaluate` on one episode's raw
values (plain Python floats, the environment's inner loop) and :meth:`Gate.evaluate_batch` on ``(N,)``
NumPy columns (the learner's batch). NaN (unscorable) propagates: a gate that reads a NaN value is NaN.

Registered predicates (:func:`register_gate`) are Python functions of the raw values; they declare the
components they read, so the spec can check that the gating order is a DAG (no gate reads its own
component, no cycle; :func:`check_gate_order`).
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Literal

import numpy as np

from recal_gym.errors import InvalidConfig, UnknownComponent, UnknownName, close_matches_hint

__all__ = [
    "GATE_PREDICATES",
    "GATE_PRESETS",
    "And",
    "Compare",
    "Const",
    "Gate",
    "GatePredicate",
    "Not",
    "Or",
    "Predicate",
    "check_gate_order",
    "parse_gate",
    "register_gate",
    "unregister_gate",
]

CompareOp = Literal["==", "!=", ">=", "<=", ">", "<"]
_OPS: dict[str, Callable[[float, float], bool]] = {
    "==": lambda a, b: a == b,
    "!=": lambda a, b: a != b,
    ">=": lambda a, b: a >= b,
    "<=": lambda a, b: a <= b,
    ">": lambda a, b: a > b,
    "<": lambda a, b: a < b,
}
_NP_OPS: dict[str, Callable[[np.ndarray, float], np.ndarray]] = {
    "==": np.equal,
    "!=": np.not_equal,
    ">=": np.greater_equal,
    "<=": np.less_equal,
    ">": np.greater,
    "<": np.less,
}
_KEYWORDS = frozenset({"and", "or", "not", "true", "false", "tau"})
_NAME_RE = re.compile(r"[A-Za-z_][A-Za-z0-9_]*\Z")

GATE_PRESETS: Mapping[str, str] = {
    "always": "true",
    "format_ok": "format == 0",
    "format_ok_and_answer_positive": "format == 0 and answer > 0",
    "format_ok_and_answer_at_least_tau": "format == 0 and answer >= tau",
}
"""The first release's four gate rules, now named expressions."""


@dataclass(frozen=True, slots=True)
class GatePredicate:
    """A registered gate predicate: ``fn(values, tau) -> bool`` over the components in ``reads``."""

    name: str
    """Name used in gate expressions."""
    reads: tuple[str, ...]
    """Components whose raw values ``fn`` reads (for the DAG check and NaN propagation)."""
    fn: Callable[[Mapping[str, float], float], bool]
    """The predicate; receives ``{component: raw value}`` for ``reads`` and the spec's τ."""
    source: str
    """``module:qualname`` of ``fn`` (provenance; part of the spec hash)."""


GATE_PREDICATES: dict[str, GatePredicate] = {}
"""Registered predicates by name; change it only through :func:`register_gate`/:func:`unregister_gate`."""


def register_gate(
    name: str, *, reads: Sequence[str]
) -> Callable[[Callable[[Mapping[str, float], float], bool]], Callable[[Mapping[str, float], float], bool]]:
    """Register a gate predicate usable by name in gate expressions (a decorator).

    Example:
        >>> @register_gate("cheap_and_right", reads=("answer", "cost"))
        ... def cheap_and_right(v, tau):
        ...     return v["answer"] >= tau and v["cost"] > 0.5
        >>> str(parse_gate("format == 0 and cheap_and_right"))
        'format == 0 and cheap_and_right'
        >>> unregister_gate("cheap_and_right")

    Args:
        name: The predicate's name (an identifier, not a keyword, not already registered).
        reads: The components it reads.

    Raises:
        InvalidConfig: a bad or duplicate name, or an empty ``reads``.
    """
    if not isinstance(name, str) or not _NAME_RE.match(name) or name in _KEYWORDS:
        raise InvalidConfig(f"gate predicate name {name!r} must be an identifier and not one of {sorted(_KEYWORDS)}")
    if name in GATE_PREDICATES:
        raise InvalidConfig(f"gate predicate {name!r} is already registered; registered: {sorted(GATE_PREDICATES)}")
    reads_t = tuple(str(r) for r in reads)
    if not reads_t:
        raise InvalidConfig(f"gate predicate {name!r}: `reads` must name at least one component")

    def decorate(
        fn: Callable[[Mapping[str, float], float], bool],
    ) -> Callable[[Mapping[str, float], float], bool]:
        source = f"{getattr(fn, '__module__', '?')}:{getattr(fn, '__qualname__', repr(fn))}"
        GATE_PREDICATES[name] = GatePredicate(name=name, reads=reads_t, fn=fn, source=source)
        return fn

    return decorate


def unregister_gate(name: str) -> None:
    """Remove a registered predicate (for test fixtures).

    Raises:
        UnknownName: ``name`` is not registered.
    """
    if name not in GATE_PREDICATES:
        raise UnknownName(f"gate predicate {name!r} is not registered.{close_matches_hint(name, GATE_PREDICATES)}")
    del GATE_PREDICATES[name]


# --------------------------------------------------------------------------------------------------
# The gate tree
# --------------------------------------------------------------------------------------------------


class Gate:
    """A boolean condition over raw component values (abstract base of the expression nodes)."""

    __slots__ = ()

    @property
    def reads(self) -> frozenset[str]:
        """Components whose raw values this gate reads."""
        raise NotImplementedError

    def test(self, values: Mapping[str, float], tau: float) -> bool:
        """Whether the gate is open for one episode's finite raw values."""
        raise NotImplementedError

    def test_batch(self, columns: Mapping[str, np.ndarray], tau: float) -> np.ndarray:
        """``(N,)`` bool: whether the gate is open per row (NaN comparisons are False here)."""
        raise NotImplementedError

    def canonical(self) -> str:
        """The canonical expression text (parsing it gives an equal gate)."""
        raise NotImplementedError

    def compile(self) -> Callable[[Mapping[str, float], float], bool]:
        """A closure equivalent to :meth:`test` with the tree walked once (the scorer's inner loop)."""
        return self.test

    def evaluate(self, values: Mapping[str, float], tau: float) -> float:
        """The gate value ``1.0``/``0.0`` for one episode; NaN if a value it reads is NaN.

        Args:
            values: ``{component: raw value}`` (at least every component in :attr:`reads`).
            tau: The spec's answer threshold τ.
        """
        for name in self.reads:
            v = values[name]
            if v != v:  # NaN
                return math.nan
        return 1.0 if self.test(values, tau) else 0.0

    def evaluate_batch(self, columns: Mapping[str, np.ndarray], tau: float) -> np.ndarray:
        """Vectorised :meth:`evaluate`: ``(N,)`` float64 in {0.0, 1.0}, NaN where a read value is NaN.

        Args:
            columns: ``{component: (N,) float raw values}`` (every component in :attr:`reads`).
            tau: The spec's answer threshold τ.
        """
        n = len(next(iter(columns.values()))) if columns else 0
        opened = np.asarray(self.test_batch(columns, tau), dtype=bool)
        out = np.broadcast_to(opened, (n,)).astype(np.float64)
        for name in self.reads:
            out = np.where(np.isnan(columns[name]), np.nan, out)
        return out

    def __str__(self) -> str:
        """The canonical expression."""
        return self.canonical()

    def __repr__(self) -> str:
        """``Gate('<canonical>')``."""
        return f"Gate({self.canonical()!r})"


@dataclass(frozen=True, slots=True, repr=False)
class Const(Gate):
    """``true`` or ``false``."""

    value: bool

    @property
    def reads(self) -> frozenset[str]:
        """Reads nothing."""
        return frozenset()

    def test(self, values: Mapping[str, float], tau: float) -> bool:
        """The constant."""
        return self.value

    def test_batch(self, columns: Mapping[str, np.ndarray], tau: float) -> np.ndarray:
        """The constant, broadcast."""
        return np.asarray(self.value)

    def canonical(self) -> str:
        """``true`` / ``false``."""
        return "true" if self.value else "false"

    def compile(self) -> Callable[[Mapping[str, float], float], bool]:
        """A constant closure."""
        value = self.value
        return lambda v, tau: value


def _format_number(x: float) -> str:
    return repr(int(x)) if float(x).is_integer() and abs(x) < 1e15 else repr(float(x))


@dataclass(frozen=True, slots=True, repr=False)
class Compare(Gate):
    """``name OP value`` where value is a number or ``tau`` (``value=None``)."""

    name: str
    op: CompareOp
    value: float | None

    @property
    def reads(self) -> frozenset[str]:
        """The compared component."""
        return frozenset((self.name,))

    def test(self, values: Mapping[str, float], tau: float) -> bool:
        """``values[name] OP (value or tau)``."""
        return _OPS[self.op](values[self.name], tau if self.value is None else self.value)

    def test_batch(self, columns: Mapping[str, np.ndarray], tau: float) -> np.ndarray:
        """Vectorised comparison (NaN compares False, without a warning)."""
        with np.errstate(invalid="ignore"):
            return _NP_OPS[self.op](columns[self.name], tau if self.value is None else self.value)

    def compile(self) -> Callable[[Mapping[str, float], float], bool]:
        """The comparison as one closure."""
        name, op = self.name, _OPS[self.op]
        if self.value is None:
            return lambda v, tau: op(v[name], tau)
        rhs = self.value
        return lambda v, tau: op(v[name], rhs)

    def canonical(self) -> str:
        """E.g. ``answer >= tau``."""
        rhs = "tau" if self.value is None else _format_number(self.value)
        return f"{self.name} {self.op} {rhs}"


@dataclass(frozen=True, slots=True, repr=False)
class Not(Gate):
    """``not item``."""

    item: Gate

    @property
    def reads(self) -> frozenset[str]:
        """The item's reads."""
        return self.item.reads

    def test(self, values: Mapping[str, float], tau: float) -> bool:
        """Negation."""
        return not self.item.test(values, tau)

    def test_batch(self, columns: Mapping[str, np.ndarray], tau: float) -> np.ndarray:
        """Vectorised negation."""
        return np.logical_not(self.item.test_batch(columns, tau))

    def compile(self) -> Callable[[Mapping[str, float], float], bool]:
        """Negation of the compiled item."""
        inner = self.item.compile()
        return lambda v, tau: not inner(v, tau)

    def canonical(self) -> str:
        """``not (...)`` (parenthesised unless atomic)."""
        inner = self.item.canonical()
        return f"not {inner}" if isinstance(self.item, Const | Predicate | Not) else f"not ({inner})"


def _child_text(child: Gate, parent: type) -> str:
    text = child.canonical()
    return f"({text})" if isinstance(child, And | Or) and not isinstance(child, parent) else text


@dataclass(frozen=True, slots=True, repr=False)
class And(Gate):
    """``a and b and ...``."""

    items: tuple[Gate, ...]

    @property
    def reads(self) -> frozenset[str]:
        """Union of the items' reads."""
        return frozenset().union(*(g.reads for g in self.items))

    def test(self, values: Mapping[str, float], tau: float) -> bool:
        """All items open."""
        return all(g.test(values, tau) for g in self.items)

    def test_batch(self, columns: Mapping[str, np.ndarray], tau: float) -> np.ndarray:
        """Vectorised conjunction."""
        out: np.ndarray = np.asarray(True)
        for g in self.items:
            out = np.logical_and(out, g.test_batch(columns, tau))
        return out

    def compile(self) -> Callable[[Mapping[str, float], float], bool]:
        """Short-circuit conjunction of the compiled items."""
        parts = tuple(g.compile() for g in self.items)
        if len(parts) == 2:
            a, b = parts
            return lambda v, tau: a(v, tau) and b(v, tau)
        return lambda v, tau: all(p(v, tau) for p in parts)

    def canonical(self) -> str:
        """Items joined by `` and ``."""
        return " and ".join(_child_text(g, And) for g in self.items)


@dataclass(frozen=True, slots=True, repr=False)
class Or(Gate):
    """``a or b or ...``."""

    items: tuple[Gate, ...]

    @property
    def reads(self) -> frozenset[str]:
        """Union of the items' reads."""
        return frozenset().union(*(g.reads for g in self.items))

    def test(self, values: Mapping[str, float], tau: float) -> bool:
        """Any item open."""
        return any(g.test(values, tau) for g in self.items)

    def test_batch(self, columns: Mapping[str, np.ndarray], tau: float) -> np.ndarray:
        """Vectorised disjunction."""
        out: np.ndarray = np.asarray(False)
        for g in self.items:
            out = np.logical_or(out, g.test_batch(columns, tau))
        return out

    def compile(self) -> Callable[[Mapping[str, float], float], bool]:
        """Short-circuit disjunction of the compiled items."""
        parts = tuple(g.compile() for g in self.items)
        if len(parts) == 2:
            a, b = parts
            return lambda v, tau: a(v, tau) or b(v, tau)
        return lambda v, tau: any(p(v, tau) for p in parts)

    def canonical(self) -> str:
        """Items joined by `` or ``."""
        return " or ".join(_child_text(g, Or) for g in self.items)


@dataclass(frozen=True, slots=True, repr=False)
class Predicate(Gate):
    """A registered predicate (:func:`register_gate`), looked up by name at evaluation time."""

    name: str

    def _get(self) -> GatePredicate:
        pred = GATE_PREDICATES.get(self.name)
        if pred is None:
            raise UnknownName(
                f"gate predicate {self.name!r} is not registered; registered: {sorted(GATE_PREDICATES)}."
                + close_matches_hint(self.name, GATE_PREDICATES)
            )
        return pred

    @property
    def reads(self) -> frozenset[str]:
        """The predicate's declared reads."""
        return frozenset(self._get().reads)

    def test(self, values: Mapping[str, float], tau: float) -> bool:
        """Call the predicate on the values it reads."""
        pred = self._get()
        return bool(pred.fn({k: values[k] for k in pred.reads}, tau))

    def test_batch(self, columns: Mapping[str, np.ndarray], tau: float) -> np.ndarray:
        """Call the predicate row by row (predicates are plain Python functions of floats)."""
        pred = self._get()
        n = len(next(iter(columns.values()))) if columns else 0
        out = np.zeros(n, dtype=bool)
        for i in range(n):
            row = {k: float(columns[k][i]) for k in pred.reads}
            if not any(v != v for v in row.values()):  # NaN rows are set by evaluate_batch
                out[i] = bool(pred.fn(row, tau))
        return out

    def canonical(self) -> str:
        """The predicate's name."""
        return self.name


ALWAYS = Const(True)
"""The gate of the ``always`` preset."""


# --------------------------------------------------------------------------------------------------
# Parsing
# --------------------------------------------------------------------------------------------------

_TOKEN_RE = re.compile(
    r"\s*(?:(?P<num>[-+]?(?:\d+\.?\d*|\.\d+)(?:[eE][-+]?\d+)?)|(?P<op>==|!=|>=|<=|>|<)|(?P<par>[()])"
    r"|(?P<name>[A-Za-z_][A-Za-z0-9_]*))"
)


def _tokenise(text: str) -> list[tuple[str, str]]:
    tokens: list[tuple[str, str]] = []
    pos = 0
    stripped = text.rstrip()
    while pos < len(stripped):
        m = _TOKEN_RE.match(stripped, pos)
        if m is None or m.end() == pos:
            at = len(stripped) - len(stripped[pos:].lstrip())
            raise InvalidConfig(
                f"gate {text!r}: unexpected text at column {at + 1}: {stripped[at:at + 12]!r}; "
                "a gate is e.g. 'format == 0 and answer >= tau'"
            )
        kind = m.lastgroup or ""
        tokens.append((kind, m.group(kind)))
        pos = m.end()
    return tokens


class _Parser:
    def __init__(self, text: str) -> None:
        self.text = text
        self.tokens = _tokenise(text)
        self.i = 0

    def _peek(self) -> tuple[str, str] | None:
        return self.tokens[self.i] if self.i < len(self.tokens) else None

    def _fail(self, what: str) -> InvalidConfig:
        return InvalidConfig(
            f"gate {self.text!r}: {what}; a gate is e.g. 'format == 0 and answer >= tau' "
            f"(operators {list(_OPS)}, 'and', 'or', 'not', parentheses, 'true', 'false', 'tau', "
            "registered predicates)"
        )

    def _take(self) -> tuple[str, str]:
        tok = self._peek()
        if tok is None:
            raise self._fail("unexpected end")
        self.i += 1
        return tok

    def parse(self) -> Gate:
        if not self.tokens:
            raise self._fail("empty gate")
        gate = self._or()
        if self._peek() is not None:
            raise self._fail(f"unexpected {self._peek()[1]!r}")  # type: ignore[index]
        return gate

    def _or(self) -> Gate:
        items = [self._and()]
        while self._peek() == ("name", "or"):
            self.i += 1
            items.append(self._and())
        return items[0] if len(items) == 1 else Or(tuple(_flatten(items, Or)))

    def _and(self) -> Gate:
        items = [self._unary()]
        while self._peek() == ("name", "and"):
            self.i += 1
            items.append(self._unary())
        return items[0] if len(items) == 1 else And(tuple(_flatten(items, And)))

    def _unary(self) -> Gate:
        kind, value = self._take()
        if (kind, value) == ("name", "not"):
            return Not(self._unary())
        if (kind, value) == ("par", "("):
            inner = self._or()
            if self._peek() != ("par", ")"):
                raise self._fail("missing ')'")
            self.i += 1
            return inner
        if kind == "name" and value in ("true", "false"):
            return Const(value == "true")
        if kind != "name" or value in _KEYWORDS:
            raise self._fail(f"unexpected {value!r}")
        nxt = self._peek()
        if nxt is not None and nxt[0] == "op":
            self.i += 1
            rk, rv = self._take()
            if rk == "num":
                return Compare(value, nxt[1], float(rv))  # type: ignore[arg-type]
            if (rk, rv) == ("name", "tau"):
                return Compare(value, nxt[1], None)  # type: ignore[arg-type]
            raise self._fail(f"the right side of {value!r} {nxt[1]} must be a number or 'tau', got {rv!r}")
        return Predicate(value)


def _flatten(items: Sequence[Gate], kind: type) -> Iterator[Gate]:
    for g in items:
        if isinstance(g, kind):
            yield from g.items  # type: ignore[attr-defined]
        else:
            yield g


def parse_gate(text: str | Gate) -> Gate:
    """Parse a gate expression or preset name (a :class:`Gate` is returned as it is).

    Args:
        text: An expression such as ``"format == 0 and answer >= tau"``, or a preset name
            (:data:`GATE_PRESETS`).

    Returns:
        The gate tree.

    Raises:
        InvalidConfig: a syntax error (the message quotes the gate and the position).
    """
    if isinstance(text, Gate):
        return text
    if not isinstance(text, str):
        raise InvalidConfig(
            f"gate {text!r}: must be a string expression (e.g. 'format == 0') or a preset name "
            f"{sorted(GATE_PRESETS)}"
        )
    return _Parser(GATE_PRESETS.get(text.strip(), text)).parse()


def check_gate_order(gates: Mapping[str, Gate], owner: str = "RewardSpec") -> tuple[str, ...]:
    """Check that the gating order is a DAG and every read names a component; return a topological order.

    Args:
        gates: ``{component: its gate}`` for every component of a spec.
        owner: Prefix of error messages (e.g. the spec file).

    Returns:
        The components ordered so that every gate only reads components earlier in the order.

    Raises:
        UnknownComponent: a gate reads a component the spec does not have.
        UnknownName: a gate names an unregistered predicate.
        InvalidConfig: a gate reads its own component, or the gates form a cycle.
    """
    names = list(gates)
    for comp, gate in gates.items():
        for read in sorted(gate.reads):  # .reads of an unregistered predicate raises UnknownName
            if read == comp:
                raise InvalidConfig(f"{owner}: the gate of {comp!r} ({gate}) reads {comp!r} itself")
            if read not in gates:
                raise UnknownComponent(
                    f"{owner}: the gate of {comp!r} ({gate}) reads unknown component {read!r}; components: "
                    f"{names}.{close_matches_hint(read, names)}"
                )
    order: list[str] = []
    state: dict[str, int] = {}  # 1 = on the stack, 2 = done

    def visit(comp: str, path: tuple[str, ...]) -> None:
        if state.get(comp) == 2:
            return
        if state.get(comp) == 1:
            cycle = " -> ".join((*path[path.index(comp) :], comp))
            raise InvalidConfig(f"{owner}: the gates form a cycle ({cycle}); gating must be a DAG")
        state[comp] = 1
        for read in sorted(gates[comp].reads):
            visit(read, (*path, comp))
        state[comp] = 2
        order.append(comp)

    for comp in names:
        visit(comp, ())
    return tuple(order)
