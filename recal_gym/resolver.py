"""Model-name resolution shared by the environment, the format reward and the scorer.

``docs/protocol.md`` §8: a pure function of (NAME, pool names, matching mode). It returns a pool display
name or ``None`` (unknown); it never raises for any string.
"""

from __future__ import annotations

from recal_gym.types import NameTable

__all__ = ["resolve_model", "squash"]


def squash(s: str) -> str:
    """Case-fold ``s`` and keep only its letters and digits (the lenient comparison key)."""
    return "".join(ch for ch in s.casefold() if ch.isalnum())


def _exact(key: str, table: NameTable) -> str | None:
    for display in table.names:
        if key == display.casefold():
            return display
    for alias, display in table.exact_aliases:
        if key == alias.casefold() and display in table.names:
            return display
    return None


def _squashed(name: str, table: NameTable) -> str | None:
    key = squash(name)
    if not key:
        return None
    for display in table.names:
        if key == squash(display):
            return display
    for alias, display in table.exact_aliases:
        if key == squash(alias) and display in table.names:
            return display
    return None


def _keyword_rules(lowered: str, table: NameTable) -> str | None:
    for rule in table.alias_rules:
        if all(k in lowered for k in rule.keywords):
            # The first matching rule decides; a target outside the active pool is unknown.
            return rule.model if rule.model in table.names else None
    return None


def resolve_model(name: str, table: NameTable) -> str | None:
    """Resolve a requested model NAME to a pool display name.

    Args:
        name: NAME as the policy wrote it (surrounding whitespace is ignored).
        table: The pool's names, aliases, keyword rules and ``name_matching`` mode:
            ``"exact"`` (case-folded equality with a display name or alias), ``"lenient"`` (exact,
            then squashed equality, then keyword rules) or ``"router-r1"`` (keyword rules alone on
            ``str.lower`` of NAME, Router-R1's resolver).

    Returns:
        The display name, or ``None`` when NAME is unknown (including an empty NAME).
    """
    stripped = name.strip()
    if not stripped:
        return None
    if table.name_matching == "router-r1":
        return _keyword_rules(stripped.lower(), table)
    found = _exact(stripped.casefold(), table)
    if found is not None or table.name_matching == "exact":
        return found
    found = _squashed(stripped, table)
    if found is not None:
        return found
    return _keyword_rules(stripped.lower(), table)
