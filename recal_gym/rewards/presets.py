"""Presets, overrides and spec files (``docs/rewards.md`` §11, §14.3).

:func:`make_spec` builds a :class:`~recal_gym.rewards.spec.RewardSpec` from a preset name (``router-r1``,
``recal``), a spec file (YAML/JSON), a mapping or an existing spec, then applies overrides: partial
``weights``/``gates``/``params`` mappings by component, ``components`` entries (update by name, append
new ones), ``balance``/``cost`` field mappings, ``update_mode`` and the scalar fields. Every error names
the file (or ``reward spec``) and the field.
"""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any, get_args

from recal_gym.errors import InvalidConfig, UnknownComponent, close_matches_hint
from recal_gym.rewards.gates import parse_gate
from recal_gym.rewards.spec import (
    EPISODE_DECAY,
    AnswerMetric,
    BalanceConfig,
    ComponentSpec,
    CostConfig,
    PredicateSpec,
    RewardSpec,
    UpdateMode,
    _check_choice,
    _check_range,
    _component,
    _is_real,
    _recal_components,
)

__all__ = ["PRESETS", "SPEC_SUFFIXES", "load_spec", "make_spec", "recal_spec", "router_r1_spec"]

PRESETS: tuple[str, ...] = ("router-r1", "recal")
"""Names accepted by :func:`make_spec`."""

SPEC_SUFFIXES: tuple[str, ...] = (".yaml", ".yml", ".json")
"""File suffixes :func:`make_spec`/:func:`load_spec` read as spec files."""

_BATCH_DECAY = 0.9  # the suggested balance decay in "batch" mode (docs/rewards.md §9)
_AUX_POS = "format_ok_and_answer_positive"




def _component_entry(entry: Any, base: ComponentSpec | None, source: str) -> ComponentSpec:
    """A ``components`` entry of a spec file: a new component, or changes to ``base`` (same name)."""
    if not isinstance(entry, Mapping):
        raise InvalidConfig(f"{source}: each 'components' entry must be a mapping with a 'name', got {entry!r}")
    allowed = ("name", "weight", "gate", "params", "function", "range")
    for key in entry:
        if key not in allowed:
            raise InvalidConfig(
                f"{source}: component {entry.get('name')!r}: unknown field {key!r}; allowed: {list(allowed)}."
                + close_matches_hint(str(key), allowed)
            )
    name = entry.get("name")
    if not isinstance(name, str):
        raise InvalidConfig(f"{source}: a 'components' entry needs a string 'name', got {name!r}")
    where = f"{source}: component {name!r}"
    old = base if base is not None else ComponentSpec(name=name) if name.isidentifier() else None
    if old is None:
        raise InvalidConfig(f"{where}: the name must be an identifier (letters, digits, '_')")
    changes: dict[str, Any] = {}
    if "weight" in entry:
        if not _is_real(entry["weight"]):
            raise InvalidConfig(f"{where}: weight={entry['weight']!r} must be a number")
        changes["weight"] = float(entry["weight"])
    if "gate" in entry:
        try:
            changes["gate"] = parse_gate(entry["gate"])
        except InvalidConfig as exc:
            raise InvalidConfig(f"{where}: {exc}") from None
    if "params" in entry:
        if not isinstance(entry["params"], Mapping):
            raise InvalidConfig(f"{where}: params={entry['params']!r} must be a mapping")
        changes["params"] = tuple(sorted((str(k), v) for k, v in entry["params"].items()))
    changes.update(_definition_fields(entry, where))
    try:
        return dataclasses.replace(old, **changes)
    except InvalidConfig as exc:
        raise InvalidConfig(f"{source}: {exc}") from None


def _definition_fields(entry: Mapping[str, Any], where: str) -> dict[str, Any]:
    """The ``function``/``range`` fields of an in-place component definition, validated."""
    out: dict[str, Any] = {}
    if "function" in entry:
        if not isinstance(entry["function"], str):
            raise InvalidConfig(f"{where}: function={entry['function']!r} must be 'module:function'")
        out["function"] = entry["function"]
    if "range" in entry:
        rng = entry["range"]
        if isinstance(rng, str) or not isinstance(rng, Sequence) or len(rng) != 2 or not all(_is_real(x) for x in rng):
            raise InvalidConfig(f"{where}: range={rng!r} must be [low, high] (two numbers)")
        out["range"] = (float(rng[0]), float(rng[1]))
    return out


def _parse_components(value: Any, base: tuple[ComponentSpec, ...], source: str) -> tuple[ComponentSpec, ...]:
    if isinstance(value, str | bytes) or not isinstance(value, Sequence):
        raise InvalidConfig(f"{source}: 'components' must be a list of mappings, got {value!r}")
    out = list(base)
    index = {c.name: i for i, c in enumerate(out)}
    for entry in value:
        name = entry.get("name") if isinstance(entry, Mapping) else None
        i = index.get(name) if isinstance(name, str) else None
        spec = _component_entry(entry, None if i is None else out[i], source)
        if i is None:
            index[spec.name] = len(out)
            out.append(spec)
        else:
            out[i] = spec
    return tuple(out)


def _by_component(
    what: str, value: Any, spec_names: Sequence[str], source: str
) -> Mapping[str, Any]:
    if not isinstance(value, Mapping):
        raise InvalidConfig(f"{source}: {what}={value!r} must be a mapping by component name")
    for k in value:
        if k not in spec_names:
            raise UnknownComponent(
                f"{source}: {what}: unknown component {k!r}; components: {list(spec_names)} (add a new one "
                "with a 'components' entry)." + close_matches_hint(str(k), spec_names)
            )
    return value


def _merge_sub(name: str, cls: type, base: Any, value: Any, source: str) -> Any:
    if isinstance(value, cls):
        return value
    if not isinstance(value, Mapping):
        raise InvalidConfig(f"{source}: {name}={value!r} must be a {cls.__name__} or a mapping of its fields")
    allowed = [f.name for f in dataclasses.fields(cls)]
    for k in value:
        if k not in allowed:
            raise InvalidConfig(
                f"{source}: {name}: unknown field {k!r}; allowed: {allowed}." + close_matches_hint(str(k), allowed)
            )
    return dataclasses.replace(base, **value)


_SCALAR_FIELDS = ("name", "answer_metric", "tau", "format_penalty", "info_match", "route_empty_value")
_OVERRIDE_KEYS = (
    *_SCALAR_FIELDS, "predicates", "components", "weights", "gates", "params", "balance", "cost", "update_mode"
)  # fmt: skip


def _apply_components(spec: RewardSpec, overrides: Mapping[str, Any], source: str) -> tuple[ComponentSpec, ...]:
    comps = spec.components
    if "components" in overrides:
        comps = _parse_components(overrides["components"], comps, source)
    names = [c.name for c in comps]
    weights = _by_component("weights", overrides.get("weights", {}), names, source)
    gates = _by_component("gates", overrides.get("gates", {}), names, source)
    params = _by_component("params", overrides.get("params", {}), names, source)
    out = []
    for c in comps:
        changes: dict[str, Any] = {}
        if c.name in weights:
            if not _is_real(weights[c.name]):
                raise InvalidConfig(f"{source}: weights[{c.name!r}]={weights[c.name]!r} must be a number")
            changes["weight"] = float(weights[c.name])
        if c.name in gates:
            try:
                changes["gate"] = parse_gate(gates[c.name])
            except InvalidConfig as exc:
                raise InvalidConfig(f"{source}: gates[{c.name!r}]: {exc}") from None
        if c.name in params:
            p = params[c.name]
            if not isinstance(p, Mapping):
                raise InvalidConfig(f"{source}: params[{c.name!r}]={p!r} must be a mapping")
            changes["params"] = tuple(sorted({**c.params_dict, **{str(k): v for k, v in p.items()}}.items()))
        out.append(dataclasses.replace(c, **changes) if changes else c)
    return tuple(out)


def _merge_predicates(base: tuple[PredicateSpec, ...], value: Any, source: str) -> tuple[PredicateSpec, ...]:
    if isinstance(value, str | bytes) or not isinstance(value, Sequence):
        raise InvalidConfig(f"{source}: 'predicates' must be a list of {{name, function, reads}} mappings")
    out = {q.name: q for q in base}
    for entry in value:
        if isinstance(entry, PredicateSpec):
            out[entry.name] = entry
            continue
        if not isinstance(entry, Mapping) or set(entry) - {"name", "function", "reads"} or "name" not in entry:
            raise InvalidConfig(f"{source}: predicate {entry!r} must be a mapping with name, function and reads")
        reads = entry.get("reads")
        if isinstance(reads, str) or not isinstance(reads, Sequence):
            raise InvalidConfig(f"{source}: predicate {entry.get('name')!r}: reads={reads!r} must be a list of names")
        try:
            q = PredicateSpec(name=str(entry["name"]), function=str(entry.get("function", "")), reads=tuple(reads))
        except InvalidConfig as exc:
            raise InvalidConfig(f"{source}: {exc}") from None
        out[q.name] = q
    return tuple(out.values())


def _apply_overrides(spec: RewardSpec, overrides: Mapping[str, Any], source: str = "reward spec") -> RewardSpec:
    """Return ``spec`` with ``overrides`` applied (partial component mappings are merged).

    ``update_mode`` sets the update mode of every stateful component: the built-ins' ``balance``/``cost``
    configs, and the ``update`` parameter of user stateful components. When the balance update mode switches
    to ``"batch"`` and no decay is given, the decay becomes 0.9 (``docs/rewards.md`` §9's suggested batch
    value) if it was the episode default 0.99.
    """
    for k in overrides:
        if k not in _OVERRIDE_KEYS:
            raise InvalidConfig(
                f"{source}: unknown reward spec field {k!r}; allowed: {list(_OVERRIDE_KEYS)}."
                + close_matches_hint(str(k), _OVERRIDE_KEYS)
            )
    changes: dict[str, Any] = {k: overrides[k] for k in _SCALAR_FIELDS if k in overrides}
    if "predicates" in overrides:  # registered before the components' gates are parsed and checked
        changes["predicates"] = _merge_predicates(spec.predicates, overrides["predicates"], source)
    changes["components"] = _apply_components(spec, overrides, source)
    balance = _merge_sub("balance", BalanceConfig, spec.balance, overrides.get("balance", spec.balance), source)
    cost = _merge_sub("cost", CostConfig, spec.cost, overrides.get("cost", spec.cost), source)
    mode = overrides.get("update_mode")
    if mode is not None:
        _check_choice(source, "update_mode", mode, get_args(UpdateMode))
        balance = dataclasses.replace(balance, update=mode)
        cost = dataclasses.replace(cost, update=mode)
        changes["components"] = tuple(
            dataclasses.replace(c, params=tuple(sorted({**c.params_dict, "update": mode}.items())))
            if c.definition().stateful and not c.definition().builtin
            else c
            for c in changes["components"]
        )
    given = overrides.get("balance")
    explicit = isinstance(given, BalanceConfig) or (isinstance(given, Mapping) and "decay" in given)
    switched = balance.update == "batch" and spec.balance.update == "episode"
    if not explicit and switched and balance.decay == EPISODE_DECAY:
        balance = dataclasses.replace(balance, decay=_BATCH_DECAY)
    changes["balance"] = balance
    changes["cost"] = cost
    return dataclasses.replace(spec, **changes)


def _default_tau(answer_metric: object) -> float:
    return 0.5 if answer_metric == "f1" else 1.0


def router_r1_spec(alpha: float = 0.0, answer_metric: AnswerMetric = "em") -> RewardSpec:
    """Return the ``router-r1`` preset: Router-R1's training reward, exactly (``docs/rewards.md`` §11(a)).

    Weights: format 1, answer ``1.0 - alpha``, cost ``alpha``, the rest 0. Gates: format always, answer on
    format ok, the others on format ok and answer > 0.

    Args:
        alpha: Router-R1's ``cost_coe`` (alpha), in [0, 1].
        answer_metric: ``"em"`` (default) or ``"f1"``.

    Raises:
        InvalidConfig: if ``alpha`` is outside [0, 1] or the metric is unknown.
    """
    _check_range("router_r1_spec", "alpha", alpha, 0.0, 1.0)
    comps = (
        _component("format", 1.0, "always"),
        _component("answer", 1.0 - alpha, "format_ok"),
        *(_component(k, 0.0, _AUX_POS) for k in ("info", "route", "balance")),
        _component("cost", alpha, _AUX_POS),
        _component("latency", 0.0, _AUX_POS),
        _component("calls", 0.0, _AUX_POS),
    )
    return RewardSpec(name="router-r1", answer_metric=answer_metric, components=comps, tau=_default_tau(answer_metric))


def recal_spec(**overrides: Any) -> RewardSpec:
    """Return the ``recal`` preset (``docs/rewards.md`` §11(b)) with optional overrides.

    Defaults: weights format 1, answer 1, info/route/balance/cost 0.1, latency/calls 0; format always, answer
    on format ok, the others on format ok and answer ≥ τ; τ = 1.0 for EM and 0.5 for F1 unless given.

    Args:
        **overrides: As for :meth:`RewardSpec.from_mapping` (``weights``/``gates``/``params`` partial
            mappings, ``components`` entries, ``balance``/``cost`` field mappings, ``update_mode``, scalar
            fields).

    Raises:
        InvalidConfig: for unknown fields or invalid values.
        UnknownComponent: for an unknown component key.
    """
    metric = overrides.get("answer_metric", "em")
    base = RewardSpec(name="recal", answer_metric=metric, components=_recal_components(), tau=_default_tau(metric))
    return _apply_overrides(base, overrides)


def make_spec(preset: str | RewardSpec | Mapping[str, Any], **overrides: Any) -> RewardSpec:
    """Return a preset (by name), a spec file, a mapping or an existing spec, with overrides applied.

    Args:
        preset: ``"router-r1"``, ``"recal"``, a path to a ``.yaml``/``.yml``/``.json`` spec file, a mapping
            (:meth:`RewardSpec.from_mapping`) or a :class:`RewardSpec`.
        **overrides: As for :func:`recal_spec`; ``router-r1`` also takes ``alpha``.

    Raises:
        InvalidConfig: for an unknown preset name (listing :data:`PRESETS`), field or value, or an unreadable
            spec file.
        UnknownComponent: for an unknown component key.
    """
    if isinstance(preset, RewardSpec):
        return _apply_overrides(preset, overrides)
    if isinstance(preset, Mapping):
        return _apply_overrides(RewardSpec.from_mapping(preset), overrides)
    if isinstance(preset, str | Path) and str(preset).lower().endswith(SPEC_SUFFIXES):
        return _apply_overrides(load_spec(preset), overrides, str(preset))
    if preset == "router-r1":
        rest = dict(overrides)
        alpha = rest.pop("alpha", 0.0)
        metric = rest.pop("answer_metric", "em")
        return _apply_overrides(router_r1_spec(alpha=alpha, answer_metric=metric), rest)
    if preset == "recal":
        return recal_spec(**overrides)
    hint = close_matches_hint(preset, PRESETS) if isinstance(preset, str) else ""
    raise InvalidConfig(
        f"unknown reward preset {preset!r}; allowed: {list(PRESETS)} or a spec file "
        f"({', '.join(SPEC_SUFFIXES)}).{hint}"
    )


def load_spec(path: str | Path) -> RewardSpec:
    """Read a reward spec from a YAML or JSON file (``docs/rewards.md`` §14.3).

    Raises:
        InvalidConfig: the file is missing or unreadable, does not parse (the message names the file and
            line), or holds an invalid spec (the message names the file and the field).
        UnknownComponent: the file names an unknown component.
    """
    p = Path(path)
    try:
        text = p.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise InvalidConfig(f"reward spec file {str(p)!r} cannot be read: {exc}") from None
    data: Any
    if p.suffix.lower() == ".json":
        try:
            data = json.loads(text)
        except (json.JSONDecodeError, RecursionError) as exc:
            raise InvalidConfig(f"reward spec file {str(p)!r} is not valid JSON: {exc}") from None
    else:
        import yaml

        try:
            data = yaml.safe_load(text)
        except yaml.YAMLError as exc:
            mark = getattr(exc, "problem_mark", None)
            where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark is not None else ""
            raise InvalidConfig(f"reward spec file {str(p)!r} is not valid YAML{where}: {exc}") from None
    return RewardSpec.from_mapping(data, source=f"reward spec file {str(p)!r}")
