"""Up-front checks of ``recal-gym`` invocations: flag types, paths, optional dependencies, error lines.

Every check runs before any work starts, so a bad invocation fails in a second with one line on
stderr (``recal-gym <command>: <what> — <how to fix>``) and exit code 2, never after a long run and
never with a traceback (``recal-gym --debug ...`` keeps the traceback for developers).
"""

from __future__ import annotations

import argparse
import importlib
from pathlib import Path
from typing import NoReturn

from recal_gym.errors import AssetMissing, BackendError, InvalidData, MissingDependency, RecalGymError, UsageError

__all__ = [
    "USER_ERRORS",
    "OneLineParser",
    "check_output_dir",
    "check_output_file",
    "error_line",
    "non_negative_int",
    "positive_int",
    "require_module",
]

USER_ERRORS: tuple[type[BaseException], ...] = (RecalGymError, OSError)
"""Errors caused by the invocation (bad values, files, paths); ``OSError`` only when it names a file."""


class OneLineParser(argparse.ArgumentParser):
    """An ``ArgumentParser`` whose usage errors are one line (``prog: message — see 'prog --help'``), exit 2."""

    def error(self, message: str) -> NoReturn:
        """Print one line and exit with status 2."""
        self.exit(2, f"{self.prog}: {message} — see '{self.prog} --help'\n")


def _int(text: str, low: int) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"must be an integer >= {low}, got {text!r}") from None
    if value < low:
        raise argparse.ArgumentTypeError(f"must be an integer >= {low}, got {value}")
    return value


def positive_int(text: str) -> int:
    """``argparse`` type: an integer >= 1."""
    return _int(text, 1)


def non_negative_int(text: str) -> int:
    """``argparse`` type: an integer >= 0."""
    return _int(text, 0)


def require_module(module: str, purpose: str, fix: str) -> None:
    """Import ``module`` or raise :class:`UsageError` saying what needs it and how to proceed.

    Args:
        module: The optional dependency (imported for real: a shadowed or broken install also fails).
        purpose: What needs it, e.g. ``"plots"``.
        fix: How to proceed, e.g. ``"pip install matplotlib, or pass --no-plots"``.
    """
    try:
        importlib.import_module(module)
    except ImportError:
        raise UsageError(f"{purpose} need {module}, which is not installed", fix) from None


def check_output_dir(path: Path, flag: str) -> None:
    """Raise :class:`UsageError` when ``path`` exists and is not a directory."""
    if path.exists() and not path.is_dir():
        raise UsageError(f"{flag} {str(path)!r} is a file, not a directory", f"give {flag} a directory path")


def check_output_file(path: Path, flag: str) -> None:
    """Raise :class:`UsageError` when ``path`` is an existing directory."""
    if path.is_dir():
        raise UsageError(f"{flag} {str(path)!r} is a directory, not a file", f"give {flag} a file path")


def _fix(exc: BaseException, prog: str) -> str:
    if isinstance(exc, UsageError):
        return exc.fix
    if isinstance(exc, MissingDependency):
        return ""  # its message already ends with the install command
    if isinstance(exc, InvalidData):
        return "fix the file, row and field named above"
    if isinstance(exc, AssetMissing):
        return "install the asset as shown"
    if isinstance(exc, BackendError):
        return "see the README section 'Use real models'"
    if isinstance(exc, OSError):
        return "check the path"
    return f"see '{prog} --help' and the README"


def error_line(prog: str, exc: BaseException) -> str:
    """The one-line message of a user error: ``<prog>: <what> — <how to fix>`` (no newline inside)."""
    what = exc.what if isinstance(exc, UsageError) else str(exc)
    if isinstance(exc, OSError) and exc.filename is not None and str(exc.filename) not in what:
        what = f"{what}: {exc.filename}"
    fix = _fix(exc, prog)
    line = f"{prog}: {what}" + (f" — {fix}" if fix else "")
    return " ".join(line.split())
