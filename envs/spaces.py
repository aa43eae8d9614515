"""A permissive text space for free-form LLM turns (``docs/protocol.md`` §14)."""

from __future__ import annotations

from typing import Any

import numpy as np
from gymnasium.spaces import Text

__all__ = ["PRINTABLE_ASCII", "FreeText"]

PRINTABLE_ASCII = "".join(chr(c) for c in range(32, 127))
"""Space plus the 94 visible ASCII characters (includes ``<``, ``>``, ``/`` and ``:``)."""


class FreeText(Text):
    r"""Any Python ``str`` of any length is a member; samples are printable ASCII.

    Gymnasium's :class:`~gymnasium.spaces.Text` rejects spaces (alphanumeric default charset),
    non-ASCII text and ``""``; LLM turns contain all three. ``contains`` is therefore
    ``isinstance(x, str)``, while ``sample`` draws printable ASCII (length 0 to ``max_length``) from
    the space's own generator, so ``check_env`` can step with random junk.

    Args:
        max_length: Largest length :meth:`sample` draws (membership has no length limit).
        seed: Seed of the space's generator.

    Example:
        >>> FreeText().contains("hello world, café <think>")
        True
    """

    def __init__(self, max_length: int = 256, *, seed: int | np.random.Generator | None = None) -> None:
        """Create the space."""
        super().__init__(max_length, min_length=0, charset=PRINTABLE_ASCII, seed=seed)

    def contains(self, x: Any) -> bool:
        """Return True for every ``str``."""
        return isinstance(x, str)

    def __eq__(self, other: object) -> bool:
        """Equal to another :class:`FreeText` with the same ``max_length``."""
        return type(other) is type(self) and other.max_length == self.max_length  # type: ignore[attr-defined]

    def __hash__(self) -> int:
        """Hash consistent with :meth:`__eq__`."""
        return hash((type(self).__name__, self.max_length))

    def __repr__(self) -> str:
        """Readable form."""
        return f"FreeText(max_length={self.max_length})"
