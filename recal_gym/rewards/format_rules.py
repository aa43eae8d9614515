"""Router-R1's structural format checks F1-F9 and the route component (``docs/rewards.md`` §6-§7).

:func:`check_format` runs the nine rules in Router-R1's order and reports the first failing rule's
id, plus the validity of every search block (F8 and F9 on that block alone), from which
:func:`route_score` computes the fraction of valid routes.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Literal, get_args

from recal_gym.protocol import RESERVED_TAGS, TAG_STRINGS, Block, scan_block_pairs
from recal_gym.resolver import resolve_model
from recal_gym.types import NameTable

__all__ = [
    "FORMAT_ERRORS",
    "FormatError",
    "FormatResult",
    "check_format",
    "check_format_pairs",
    "route_score",
    "search_block_valid",
]

FormatError = Literal[
    "",
    "no_blocks",
    "unbalanced_tags",
    "empty_think",
    "nested_tags",
    "block_counts",
    "not_starting_with_think",
    "not_ending_with_answer",
    "bad_route_syntax",
    "unknown_model",
]
FORMAT_ERRORS: tuple[str, ...] = get_args(FormatError)[1:]
"""The rule ids F1-F9, in checking order."""


@dataclass(frozen=True, slots=True, kw_only=True)
class FormatResult:
    """Outcome of :func:`check_format`."""

    ok: bool
    """True when every rule F1-F9 passes."""
    error: FormatError
    """Id of the first failing rule, ``""`` when ``ok``."""
    search_valid: tuple[bool, ...]
    """For each search block of the scan, in order: does it pass F8 and F9 on its own?"""
    syntax_ok: tuple[bool, ...] = ()
    """For each search block: does it pass F8 on its own? (Diagnostics.)"""


def _route_syntax_ok(content: str) -> bool:
    """F8 on one search block's content."""
    stripped = content.strip()
    if stripped.count(":") != 1:
        return False
    name, query = stripped.split(":", 1)
    if not query.strip():
        return False
    lowered = stripped.lower()
    if "llm-name" in lowered or "your-query" in lowered:
        return False
    # An empty name occurs in every query, so it fails here.
    return name.strip().lower() not in query.strip().lower()


def search_block_valid(content: str, table: NameTable) -> bool:
    """Return True if one search block's content passes F8 and F9 (a valid route, ``docs/rewards.md`` §7)."""
    return _route_syntax_ok(content) and resolve_model(content.strip().split(":", 1)[0], table) is not None


def _balanced(text: str) -> bool:
    return all(text.count(f"<{t}>") == text.count(f"</{t}>") for t in RESERVED_TAGS)


def _counts_ok(tags: list[str]) -> bool:
    return tags.count("answer") == 1 and tags.count("think") >= 1 and tags.count("search") == tags.count("information")


def check_format(
    transcript: str,
    table: NameTable,
    *,
    spans: Sequence[Block] | None = None,
    resolve: Callable[[str], str | None] | None = None,
) -> FormatResult:
    """Check the format rules F1-F9 in order (``docs/rewards.md`` §6).

    Args:
        transcript: The episode transcript as scored.
        table: The pool's name table (F9 resolves every search block's NAME with it).
        spans: The transcript's block scan (``scan_blocks(transcript)``) when the caller already
            has it; ``None`` scans here.
        resolve: NAME → display name or ``None`` (e.g. a cached
            :class:`~recal_gym.rewards.view.Resolver`); default ``resolve_model(name, table)``.

    Returns:
        A :class:`FormatResult`; never raises for any string.
    """
    pairs = scan_block_pairs(transcript) if spans is None else [(b.tag, b.content) for b in spans]
    res = resolve if resolve is not None else (lambda name: resolve_model(name, table))
    return check_format_pairs(transcript, pairs, res)


def check_format_pairs(
    transcript: str, pairs: Sequence[tuple[str, str]], resolve: Callable[[str], str | None]
) -> FormatResult:
    """:func:`check_format` on the transcript's ``(tag, content)`` block scan (``scan_block_pairs``).

    The scorer's form: the :class:`~recal_gym.rewards.view.EpisodeView` shares one scan between
    the format check, the answer and the route counts.

    Args:
        transcript: The episode transcript as scored.
        pairs: ``scan_block_pairs(transcript)``.
        resolve: NAME → display name or ``None`` (F9).

    Returns:
        A :class:`FormatResult` equal to ``check_format(transcript, table)``; never raises for any string.
    """
    tags = [t for t, _ in pairs]
    if "search" in tags:
        searches = [c for t, c in pairs if t == "search"]
        syntax = tuple(map(_route_syntax_ok, searches))
        names = [c.strip().split(":", 1)[0] for c in searches]
        valid = tuple([s and resolve(n) is not None for n, s in zip(names, syntax, strict=True)])
    else:
        syntax = valid = ()
    error = _first_failure(transcript, pairs, tags, syntax, valid)
    return FormatResult(ok=not error, error=error, search_valid=valid, syntax_ok=syntax)


def _nested(pairs: Sequence[tuple[str, str]]) -> bool:
    """F4 fails: some block's content holds a reserved tag string (a '<' check first: most content has none)."""
    return any("<" in c and any(tag in c for tag in TAG_STRINGS) for _, c in pairs)


def _first_failure(
    transcript: str,
    pairs: Sequence[tuple[str, str]],
    tags: list[str],
    syntax: tuple[bool, ...],
    valid: tuple[bool, ...],
) -> FormatError:
    """The id of the first failing rule F1-F9 in Router-R1's order (``""`` when all pass); lazy."""
    if not pairs:
        return "no_blocks"
    # Every block has exactly two '<' in its own tags, and blocks do not overlap. When the transcript has
    # no other '<', each reserved tag string in it is one of those tags (F2 holds: one opening and one
    # closing string per block) and no content holds a '<' (F4 holds): one count instead of nine scans.
    clean = transcript.count("<") == 2 * len(pairs)
    if not clean and not _balanced(transcript):
        return "unbalanced_tags"
    if any([t == "think" and c.strip() in ("", "...") for t, c in pairs]):
        return "empty_think"
    if not clean and _nested(pairs):
        return "nested_tags"
    if not _counts_ok(tags):
        return "block_counts"
    stripped = transcript.strip()
    if not stripped.startswith("<think>"):
        return "not_starting_with_think"
    if not stripped.endswith("</answer>"):
        return "not_ending_with_answer"
    if not all(syntax):
        return "bad_route_syntax"
    if not all(valid):
        return "unknown_model"
    return ""


def route_score(result: FormatResult, empty_value: float) -> float:
    """Return ``r_route``: valid search blocks / search blocks, or ``empty_value`` with none (§7)."""
    n = len(result.search_valid)
    if n == 0:
        return float(empty_value)
    return sum(result.search_valid) / n
