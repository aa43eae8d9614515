"""Tag grammar, cut rule, action parsing and neutralisation of the RouterQA protocol.

Implements ``docs/protocol.md`` §4 (blocks), §5.2 (cut), §5.3 (parse) and §15 (neutralisation).
Everything here is a pure function of strings.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Literal

__all__ = [
    "RESERVED_TAGS",
    "TAG_STRINGS",
    "ActionKind",
    "Block",
    "CutKind",
    "ParseError",
    "ParsedAction",
    "QuerySplit",
    "cut_action",
    "last_answer",
    "neutralise",
    "parse_action",
    "scan_block_pairs",
    "scan_blocks",
    "scrub_surrogates",
]

RESERVED_TAGS: tuple[str, ...] = ("think", "search", "information", "answer")
"""The four reserved tags, lower case, no attributes (``docs/protocol.md`` §4)."""
TAG_STRINGS: tuple[str, ...] = tuple(s for t in RESERVED_TAGS for s in (f"<{t}>", f"</{t}>"))
"""The eight reserved tag strings."""

ActionKind = Literal["answer", "route", "route_invalid", "none"]
ParseError = Literal["", "no_action", "placeholder", "no_colon", "empty_query"]
CutKind = Literal["search", "answer", "none"]
QuerySplit = Literal["first-colon", "router-r1"]

_BLOCK_RE = re.compile(r"<(think|search|information|answer)>(.*?)</\1>", re.DOTALL)
_ACTION_RE = re.compile(r"<(search|answer)>(.*?)</\1>", re.DOTALL)
_ANSWER_RE = re.compile(r"<answer>(.*?)</answer>", re.DOTALL)
_NEUTRALISE_RE = re.compile(r"<\s*/?\s*(?:think|search|information|answer)\s*>", re.IGNORECASE)
_SURROGATE_RE = re.compile("[\ud800-\udfff]")


@dataclass(frozen=True, slots=True)
class Block:
    """One tag block found by :func:`scan_blocks`.

    Offsets index the scanned string: ``text[start:end]`` is the whole block including its tags and
    ``text[content_start:content_end] == content``.
    """

    tag: str
    content: str
    start: int
    end: int
    content_start: int
    content_end: int


def scan_blocks(text: str) -> list[Block]:
    """Find every block by one left-to-right, non-overlapping scan (``docs/protocol.md`` §4).

    A block is an opening reserved tag, the shortest content after it (may span lines) and the
    matching closing tag. Matching is case-sensitive.

    Args:
        text: Any string.

    Returns:
        The blocks in order of appearance.
    """
    return [
        Block(
            tag=m.group(1),
            content=m.group(2),
            start=m.start(),
            end=m.end(),
            content_start=m.start(2),
            content_end=m.end(2),
        )
        for m in _BLOCK_RE.finditer(text)
    ]


def scan_block_pairs(text: str) -> list[tuple[str, str]]:
    """The ``(tag, content)`` of every block of :func:`scan_blocks`, without offsets.

    The same single regex pass as :func:`scan_blocks` (``docs/protocol.md`` §4), returning plain tuples
    instead of :class:`Block` objects: ``scan_block_pairs(t) == [(b.tag, b.content) for b in
    scan_blocks(t)]`` for every string. The scorer's format check, answer and route counts read only tags
    and contents, and building the frozen :class:`Block` objects costs more than the regex itself.

    Args:
        text: Any string.

    Returns:
        ``(tag, content)`` pairs in order of appearance.
    """
    return _BLOCK_RE.findall(text)


def last_answer(text: str) -> str | None:
    """Return the stripped content of the **last** answer block, or ``None`` (``docs/rewards.md`` §2).

    This is a separate scan for answer blocks only, so an answer nested in a think block is found.
    """
    found = _ANSWER_RE.findall(text)
    if not found:
        return None
    return found[-1].strip()


def neutralise(text: str) -> tuple[str, bool]:
    r"""Escape every reserved-tag look-alike in untrusted text (``docs/protocol.md`` §15).

    Every match of ``<\s*/?\s*(think|search|information|answer)\s*>`` (case-insensitive) has its
    ``<`` replaced by ``&lt;`` and its ``>`` by ``&gt;``. Nothing else changes; nothing is un-escaped.

    Args:
        text: A candidate reply or question text.

    Returns:
        ``(neutralised_text, changed)``.
    """
    out, n = _NEUTRALISE_RE.subn(lambda m: m.group(0).replace("<", "&lt;").replace(">", "&gt;"), text)
    return out, n > 0


def scrub_surrogates(text: str) -> str:
    r"""Replace every surrogate code point (U+D800-U+DFFF) by U+FFFD, keeping the length.

    A Python ``str`` may hold lone surrogates (e.g. from a JSON ``"\ud800"`` escape), which no UTF-8
    encoder or tokenizer accepts. Scrubbed text encodes everywhere, and its character offsets are
    those of the input.
    """
    return _SURROGATE_RE.sub("\ufffd", text) if _SURROGATE_RE.search(text) else text


def cut_action(text: str) -> tuple[str, CutKind]:
    """Apply the cut rule of ``docs/protocol.md`` §5.2.

    Keep up to and including the first ``</search>`` if there is one; otherwise up to and including
    the first ``</answer>``; otherwise everything.

    Returns:
        ``(kept_text, cut_kind)`` with ``cut_kind`` in ``{"search", "answer", "none"}``.
    """
    for tag in ("search", "answer"):
        close = f"</{tag}>"
        idx = text.find(close)
        if idx >= 0:
            return text[: idx + len(close)], tag  # type: ignore[return-value]
    return text, "none"


@dataclass(frozen=True, slots=True)
class ParsedAction:
    """The action found in one turn's kept text (``docs/protocol.md`` §5.3)."""

    kind: ActionKind
    parse_error: ParseError = ""
    content: str = ""
    """Stripped inner text of the action block."""
    name: str = ""
    """Requested model NAME as written (text before the first colon, stripped); routes only."""
    query: str = ""
    """The routed query; routes only."""


def parse_action(kept: str, query_split: QuerySplit = "first-colon") -> ParsedAction:
    """Parse the first ``search`` or ``answer`` block of a turn's kept text.

    Checks P1 (placeholder), P2 (no colon) and P3 (empty query after the *last* colon) in order.

    Args:
        kept: The turn's text after the cut.
        query_split: ``"first-colon"`` (default): QUERY is everything after the first colon, stripped.
            ``"router-r1"``: the text between the first and second colon, unstripped.

    Returns:
        The parsed action; never raises for any string.
    """
    m = _ACTION_RE.search(kept)
    if m is None:
        return ParsedAction(kind="none", parse_error="no_action")
    content = m.group(2).strip()
    if m.group(1) == "answer":
        return ParsedAction(kind="answer", content=content)
    lowered = content.lower()
    if "llm-name" in lowered or "your-query" in lowered:
        return ParsedAction(kind="route_invalid", parse_error="placeholder", content=content)
    if ":" not in content:
        return ParsedAction(kind="route_invalid", parse_error="no_colon", content=content)
    if not content.rsplit(":", 1)[1].strip():
        return ParsedAction(kind="route_invalid", parse_error="empty_query", content=content)
    name, rest = content.split(":", 1)
    query = rest.strip() if query_split == "first-colon" else rest.split(":", 1)[0]
    return ParsedAction(kind="route", content=content, name=name.strip(), query=query)
