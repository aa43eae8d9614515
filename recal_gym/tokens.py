"""Token counters: the units of every length limit of the protocol (``docs/protocol.md`` §7).

The dependency-free default, :class:`WordPunctCounter`, counts words and single punctuation
characters. :class:`TokenizerCounter` wraps any tokenizer with ``encode``/``decode`` (for example
a Hugging Face tokenizer) to get Router-R1-exact counts with the policy's own tokenizer.
"""

from __future__ import annotations

import re
from typing import Any, Protocol, runtime_checkable

__all__ = ["TokenCounter", "TokenizerCounter", "WordPunctCounter"]

_WORD_PUNCT_RE = re.compile(r"\w+|[^\w\s]")


@runtime_checkable
class TokenCounter(Protocol):
    """Counts tokens and cuts text to a token budget."""

    def count(self, text: str) -> int:
        """Return the number of tokens in ``text``."""
        ...

    def truncate(self, text: str, n: int) -> str:
        """Return the longest prefix of ``text`` that holds at most ``n`` tokens."""
        ...


class WordPunctCounter:
    r"""Counts ``\w+`` runs and single non-space punctuation characters.

    >>> WordPunctCounter().count("Hello, world!")
    4
    """

    def count(self, text: str) -> int:
        """Return the number of word and punctuation tokens in ``text``."""
        return sum(1 for _ in _WORD_PUNCT_RE.finditer(text))

    def truncate(self, text: str, n: int) -> str:
        """Return ``text`` cut right after its ``n``-th token (``""`` when ``n <= 0``)."""
        if n <= 0:
            return ""
        for i, m in enumerate(_WORD_PUNCT_RE.finditer(text), start=1):
            if i == n:
                return text[: m.end()]
        return text

    def __eq__(self, other: object) -> bool:
        """Counters are stateless; all instances are equal."""
        return isinstance(other, WordPunctCounter)

    def __hash__(self) -> int:
        """Hash consistent with :meth:`__eq__`."""
        return hash(WordPunctCounter)


class TokenizerCounter:
    """Adapts a tokenizer with ``encode``/``decode`` (e.g. a Hugging Face tokenizer).

    Args:
        tokenizer: Any object with ``encode(text) -> list[int]`` and ``decode(ids) -> str``.
            Hugging Face tokenizers are called with ``add_special_tokens=False``; fast ones use
            offset mappings so that :meth:`truncate` returns an exact prefix of the input.
    """

    def __init__(self, tokenizer: Any) -> None:
        """Wrap ``tokenizer``."""
        self.tokenizer = tokenizer

    def _encode(self, text: str) -> list[int]:
        try:
            return list(self.tokenizer.encode(text, add_special_tokens=False))
        except TypeError:  # a plain encode(text) without HF keyword arguments
            return list(self.tokenizer.encode(text))

    def count(self, text: str) -> int:
        """Return the number of tokens of ``text`` (no special tokens added)."""
        return len(self._encode(text))

    def truncate(self, text: str, n: int) -> str:
        """Return the prefix of ``text`` covered by its first ``n`` tokens."""
        if n <= 0:
            return ""
        if getattr(self.tokenizer, "is_fast", False):
            enc = self.tokenizer(text, add_special_tokens=False, return_offsets_mapping=True)
            offsets = enc["offset_mapping"]
            if len(offsets) <= n:
                return text
            return text[: offsets[n - 1][1]]
        ids = self._encode(text)
        if len(ids) <= n:
            return text
        return str(self.tokenizer.decode(ids[:n]))
