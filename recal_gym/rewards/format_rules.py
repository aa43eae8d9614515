"""Router-R1's structural format checks F1-F9 and the route component (``docs/rewards.md`` §6-§7).

:func:`check_format` runs the nine rules in Router-R1's order and reports the first failing rule's
id, plus the validity of every search block (F8 and F9 on that block alone), from which
:func:`route_score` computes the fraction of valid routes.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal, get_args

from recal_gym.protocol import RESERVED_TAGS, TAG_STRINGS, Block, scan_blocks
from recal_gym.resolver import resolve_model
from recal_gym.types import NameTable

__all__ = [
    "FORMAT_ERRORS",
    "FormatError",
    "FormatResult",
    "check_format",
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


def _counts_ok(blocks: Sequence[Block]) -> bool:
    tags = [b.tag for b in blocks]
    return tags.count("answer") == 1 and tags.count("think") >= 1 and tags.count("search") == tags.count("information")


def check_format(transcript: str, table: NameTable, *, spans: Sequence[Block] | None = None) -> FormatResult:
    """Check the format rules F1-F9 in order (``docs/rewards.md`` §6).

    Args:
        transcript: The episode transcript as scored.
        table: The pool's name table (F9 resolves every search block's NAME with it).
        spans: The transcript's block scan (``scan_blocks(transcript)``) when the caller already
            has it; ``None`` scans here.

    Returns:
        A :class:`FormatResult`; never raises for any string.
    """
    blocks = scan_blocks(transcript) if spans is None else spans
    searches = [b.content for b in blocks if b.tag == "search"]
    syntax = tuple(_route_syntax_ok(c) for c in searches)
    valid = tuple(
        s and resolve_model(c.strip().split(":", 1)[0], table) is not None
        for c, s in zip(searches, syntax, strict=True)
    )
    stripped = transcript.strip()
    checks: tuple[tuple[FormatError, bool], ...] = (
        ("no_blocks", len(blocks) > 0),
        ("unbalanced_tags", _balanced(transcript)),
        ("empty_think", not any(b.tag == "think" and b.content.strip() in ("", "...") for b in blocks)),
        ("nested_tags", not any(tag in b.content for b in blocks for tag in TAG_STRINGS)),
        ("block_counts", _counts_ok(blocks)),
        ("not_starting_with_think", stripped.startswith("<think>")),
        ("not_ending_with_answer", stripped.endswith("</answer>")),
        ("bad_route_syntax", all(syntax)),
        ("unknown_model", all(valid)),
    )
    for rule_id, passed in checks:
        if not passed:
            return FormatResult(ok=False, error=rule_id, search_valid=valid, syntax_ok=syntax)
    return FormatResult(ok=True, error="", search_valid=valid, syntax_ok=syntax)


def route_score(result: FormatResult, empty_value: float) -> float:
    """Return ``r_route``: valid search blocks / search blocks, or ``empty_value`` with none (§7)."""
    n = len(result.search_valid)
    if n == 0:
        return float(empty_value)
    return sum(result.search_valid) / n
