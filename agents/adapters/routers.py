"""Router plug-ins: load a user's router from ``module:factory`` (``recal-gym eval --router``).

A plug-in router is any object with the :class:`~agents.eval.baselines.Router` protocol: ``reset(prompt,
info)`` at the start of an episode and ``act(observation, info) -> str`` for each turn (a ``name`` is
optional). ``recal-gym eval --router mypkg.routers:make_router`` imports ``mypkg.routers``, calls
``make_router()`` and evaluates the result with the same tables, Pareto status and AIQ as the built-in
routers. Keyword arguments follow a ``?``: ``mypkg.routers:make_router?seed=3&models=["a","b"]``; each value
is read as JSON when it parses (``3``, ``0.5``, ``true``, ``["a"]``, ``"x"``) and as a plain string otherwise.

Spec grammar: ``<dotted.module>:<attribute>[.<attribute>...][?key=value[&key=value...]]``. The built-in kinds
``single:``, ``sb3:`` and ``checkpoint:`` keep their meaning; any other ``<left>:<right>`` whose parts are
dotted Python identifiers is a plug-in. The module is imported from ``sys.path`` (``PYTHONPATH`` or an
installed package) and, failing that, from the current directory, as ``uvicorn main:app`` does.

Example:
    >>> parse_factory_spec("mypkg.routers:make_router?seed=3")
    FactorySpec(module='mypkg.routers', attribute='make_router', kwargs={'seed': 3})
"""

from __future__ import annotations

import importlib
import inspect
import json
import os
import re
import sys
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from recal_gym.errors import UsageError

__all__ = [
    "RESERVED_KINDS",
    "FactorySpec",
    "NamedRouter",
    "is_factory_spec",
    "load_factory_router",
    "parse_factory_spec",
]

RESERVED_KINDS: frozenset[str] = frozenset({"single", "sb3", "checkpoint"})
"""``--router <kind>:<arg>`` kinds built into the CLI; never read as module names."""

_DOTTED = re.compile(r"[A-Za-z_][A-Za-z0-9_]*(\.[A-Za-z_][A-Za-z0-9_]*)*")
_FIX = "give --router <dotted.module>:<factory>, e.g. mypkg.routers:make_router, with the module on PYTHONPATH"


@dataclass(frozen=True, slots=True, kw_only=True)
class FactorySpec:
    """A parsed ``module:factory?key=value`` router spec."""

    module: str
    """Dotted module path, e.g. ``mypkg.routers``."""
    attribute: str
    """Attribute path inside the module, e.g. ``make_router`` or ``Routers.create``."""
    kwargs: dict[str, Any] = field(default_factory=dict)
    """Keyword arguments of the factory call."""


def is_factory_spec(spec: str) -> bool:
    """Whether ``spec`` is a plug-in spec (``<dotted.module>:<attribute>``, not a built-in kind)."""
    left, sep, right = spec.partition(":")
    if not sep or left in RESERVED_KINDS:
        return False
    return bool(_DOTTED.fullmatch(left)) and bool(_DOTTED.fullmatch(right.partition("?")[0]))


def _value(text: str) -> Any:
    try:
        return json.loads(text)
    except ValueError:
        return text


def parse_factory_spec(spec: str) -> FactorySpec:
    """Parse ``<module>:<attribute>[?key=value[&key=value...]]``.

    Raises:
        UsageError: the spec is not of that form, or an argument is not ``key=value`` with an identifier key.
    """
    if not is_factory_spec(spec):
        raise UsageError(f"--router {spec}: not a <dotted.module>:<factory> spec", _FIX)
    module, _, rest = spec.partition(":")
    attribute, _, query = rest.partition("?")
    kwargs: dict[str, Any] = {}
    for part in query.split("&") if query else []:
        key, eq, raw = part.partition("=")
        if not eq or not key.isidentifier():
            raise UsageError(
                f"--router {spec}: argument {part!r} is not key=value with an identifier key",
                "write module:factory?seed=3&name=mine",
            )
        if key in kwargs:
            raise UsageError(f"--router {spec}: argument {key!r} is given twice", "give each argument once")
        kwargs[key] = _value(raw)
    return FactorySpec(module=module, attribute=attribute, kwargs=kwargs)


def _import(spec: str, module: str) -> Any:
    """Import ``module`` from ``sys.path``, then from the current directory."""
    try:
        return importlib.import_module(module)
    except ModuleNotFoundError as exc:
        missing = exc.name or ""
        own = missing == module or module.startswith(missing + ".")
        cwd = os.getcwd()
        if not own:
            raise UsageError(
                f"--router {spec}: importing {module} failed: {exc}", f"install the package {missing!r} it needs"
            ) from None
        if cwd in sys.path:
            raise UsageError(f"--router {spec}: no module named {module!r}", _FIX) from None
    sys.path.append(cwd)  # lowest priority: never shadows an installed module
    try:
        return importlib.import_module(module)
    except ModuleNotFoundError as exc:
        raise UsageError(f"--router {spec}: no module named {module!r} ({exc})", _FIX) from None
    finally:
        sys.path.remove(cwd)


def _resolve(spec: str, mod: Any, attribute: str) -> Callable[..., Any]:
    target: Any = mod
    for i, part in enumerate(attribute.split(".")):
        if not hasattr(target, part):
            where = ".".join([mod.__name__, *attribute.split(".")[:i]])
            public = sorted(n for n in dir(target) if not n.startswith("_") and callable(getattr(target, n)))
            raise UsageError(
                f"--router {spec}: {where} has no attribute {part!r}",
                f"callables there: {', '.join(public) or 'none'}",
            )
        target = getattr(target, part)
    if not callable(target):
        raise UsageError(
            f"--router {spec}: {mod.__name__}.{attribute} is a {type(target).__name__}, not a callable",
            "point at a function or class that returns a router",
        )
    return target  # type: ignore[no-any-return]


def _call(spec: str, factory: Callable[..., Any], kwargs: Mapping[str, Any]) -> Any:
    try:
        signature = inspect.signature(factory)
    except (TypeError, ValueError):  # a builtin without a signature: let the call decide
        return factory(**kwargs)
    try:
        signature.bind(**kwargs)
    except TypeError as exc:
        raise UsageError(
            f"--router {spec}: the factory cannot be called with {dict(kwargs)} ({exc})",
            f"its signature is {signature}",
        ) from None
    return factory(**kwargs)


class NamedRouter:
    """A router without a ``name`` attribute, shown under its spec.

    ``reset`` and ``act`` are delegated, and so is every other attribute (optional capabilities the CLI looks
    for, such as ``env_kwargs()``), so the wrapper changes nothing but the name.

    Args:
        router: The user's router.
        name: Display name (the ``--router`` spec).
    """

    def __init__(self, router: Any, name: str) -> None:
        """Wrap ``router``."""
        self.router = router
        self.name = name

    def reset(self, prompt: str, info: dict[str, Any]) -> None:
        """Start an episode."""
        self.router.reset(prompt, info)

    def act(self, observation: str, info: dict[str, Any]) -> str:
        """Return the next turn's text."""
        return str(self.router.act(observation, info))

    def __getattr__(self, item: str) -> Any:
        """Delegate any other attribute to the wrapped router."""
        if item == "router":  # not set yet (e.g. during unpickling): no recursion
            raise AttributeError(item)
        return getattr(self.router, item)


def load_factory_router(spec: str) -> Any:
    """Import the module of ``spec``, call its factory and return the router it built.

    Args:
        spec: ``<dotted.module>:<attribute>[?key=value&...]``.

    Returns:
        The router; wrapped in :class:`NamedRouter` (named ``spec``) when it has no ``str`` ``name``.

    Raises:
        UsageError: a malformed spec, a module that cannot be imported, a missing or non-callable attribute,
            arguments the factory does not accept, or a result without callable ``reset`` and ``act``.
    """
    parsed = parse_factory_spec(spec)
    factory = _resolve(spec, _import(spec, parsed.module), parsed.attribute)
    router = _call(spec, factory, parsed.kwargs)
    missing = [m for m in ("reset", "act") if not callable(getattr(router, m, None))]
    if missing:
        raise UsageError(
            f"--router {spec}: {parsed.module}.{parsed.attribute}() returned a {type(router).__name__} without "
            f"{' and '.join(m + '()' for m in missing)}",
            "return an object with reset(prompt, info) and act(observation, info) -> str",
        )
    if not isinstance(getattr(router, "name", None), str):
        return NamedRouter(router, spec)
    return router
