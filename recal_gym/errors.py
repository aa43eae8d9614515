"""One error hierarchy for recal-gym.

Every error raised on purpose by ``recal_gym``, ``envs`` or ``agents`` derives from
:class:`RecalGymError`. Where the specs name a built-in (``ValueError``, ``KeyError``,
``TypeError``, ``RuntimeError``) the error also subclasses it, so callers may catch either.
Messages carry the bad value, the allowed set and, for names, close matches.
"""

from __future__ import annotations

import difflib
from collections.abc import Iterable

__all__ = [
    "AssetMissing",
    "BackendError",
    "InvalidAction",
    "InvalidConfig",
    "InvalidData",
    "MissingDependency",
    "RecalGymError",
    "ResetNeeded",
    "RewardComponentError",
    "UnknownComponent",
    "UnknownModel",
    "UnknownName",
    "UsageError",
    "close_matches_hint",
]


class RecalGymError(Exception):
    """Base class of every error raised on purpose by recal-gym."""


class InvalidConfig(RecalGymError, ValueError):
    """A configuration field has a value outside its allowed set or range."""


class InvalidData(RecalGymError, ValueError):
    """A dataset row or file is missing a field or holds a malformed value."""


class InvalidAction(RecalGymError, TypeError):
    """An action of the wrong Python type was passed to ``step`` (a programmer error)."""


class ResetNeeded(RecalGymError, RuntimeError):
    """``step`` was called on an episode that has ended (or was never reset)."""


class RewardComponentError(RecalGymError, ValueError):
    """A reward component returned a non-float, a non-finite value or a value outside its declared range."""


class UnknownName(RecalGymError, KeyError):
    """A name was looked up in a registry or table that does not hold it."""

    def __str__(self) -> str:
        """Return the message unquoted (``KeyError`` would quote it)."""
        return str(self.args[0]) if self.args else ""


class UnknownComponent(UnknownName):
    """A reward component name is not registered (or not part of a reward spec)."""


class UnknownModel(UnknownName):
    """A pool model name is not in the pool (programmer-facing lookups only)."""


class AssetMissing(RecalGymError, FileNotFoundError):
    """An optional offline asset (model or data package) is not installed."""


class BackendError(RecalGymError, RuntimeError):
    """A candidate backend could not be constructed or configured."""


class MissingDependency(RecalGymError, ImportError):
    """An optional dependency is not installed; the message names it and the pip extra that brings it."""


class UsageError(RecalGymError, ValueError):
    """A command-line invocation cannot run: a bad flag value or path, or a missing optional dependency.

    Args:
        what: What is wrong, naming the bad value.
        fix: How to fix it (the CLI prints ``recal-gym <command>: <what> — <fix>``).
    """

    def __init__(self, what: str, fix: str = "") -> None:
        """Keep ``what`` and ``fix`` apart for the one-line CLI message."""
        super().__init__(what + (f" — {fix}" if fix else ""))
        self.what = what
        self.fix = fix


def close_matches_hint(name: str, allowed: Iterable[str]) -> str:
    """Return a ``" Did you mean ...?"`` suffix naming close matches, or ``""``.

    Args:
        name: The name that was not found.
        allowed: The valid names.

    Returns:
        A sentence fragment to append to an error message.
    """
    matches = difflib.get_close_matches(name, list(allowed), n=3)
    if not matches:
        return ""
    return " Did you mean " + " or ".join(repr(m) for m in matches) + "?"
