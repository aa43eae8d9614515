"""A permissive text space for free-form LLM turns (``docs/protocol.md`` §14)."""

from __future__ import annotations

from typing import Any

import numpy as np
from gymnasium.error import CustomSpaceError
from gymnasium.spaces import Text
from gymnasium.vector.utils import create_shared_memory

__all__ = ["PRINTABLE_ASCII", "FreeText"]

PRINTABLE_ASCII = "".join(chr(c) for c in range(32, 127))
"""Space plus the 94 visible ASCII characters (includes ``<``, ``>``, ``/`` and ``:``)."""


class FreeText(Text):
    r"""Any Python ``str`` of any length is a member; :meth:`sample` draws short printable-ASCII junk.

    Gymnasium's :class:`~gymnasium.spaces.Text` rejects spaces (alphanumeric default charset),
    non-ASCII text and ``""``; LLM turns contain all three. ``contains`` is therefore
    ``isinstance(x, str)``: membership has **no length limit** (RouterQA prompts are thousands of
    characters). ``sample_length`` (Gymnasium's ``max_length`` attribute) bounds only what
    :meth:`sample` draws.

    :meth:`sample` is random junk, not a policy: printable ASCII of length 0 to ``sample_length`` from
    the space's own generator. That is what ``check_env`` steps with, and RouterQA treats it as a
    malformed turn (a non-terminal step with ``info["action_kind"] == "none"``). For random turns
    that route and answer, use :class:`envs.random_agent.RandomAgent` (``recal_gym.RandomAgent``).

    The space cannot live in shared memory (its members are unbounded), so
    ``gym.vector.AsyncVectorEnv`` needs ``shared_memory=False``; with the default it fails at
    construction with a message saying so (``docs/protocol.md`` §14).

    Args:
        sample_length: Largest length :meth:`sample` draws.
        seed: Seed of the space's generator.

    Example:
        >>> FreeText().contains("hello world, café <think>" * 1000)
        True
        >>> FreeText()
        FreeText(contains=any str, sample=printable ASCII of 0-256 chars)
    """

    def __init__(self, sample_length: int = 256, *, seed: int | np.random.Generator | None = None) -> None:
        """Create the space."""
        super().__init__(sample_length, min_length=0, charset=PRINTABLE_ASCII, seed=seed)

    @property
    def sample_length(self) -> int:
        """Largest length :meth:`sample` draws (membership has no length limit)."""
        return int(self.max_length)

    def contains(self, x: Any) -> bool:
        """Return True for every ``str``, whatever its length or characters."""
        return isinstance(x, str)

    def sample(self, mask: Any = None, probability: Any = None) -> str:
        """Random printable-ASCII junk of length 0 to :attr:`sample_length` (see the class docstring).

        Args:
            mask: Gymnasium's ``Text`` mask ``(length, charset_mask)``, passed through.
            probability: Gymnasium's ``Text`` probability ``(length, charset_probability)``, passed through.
        """
        return str(super().sample(mask=mask, probability=probability))

    def __eq__(self, other: object) -> bool:
        """Equal to another :class:`FreeText` with the same ``sample_length``."""
        return type(other) is type(self) and other.max_length == self.max_length  # type: ignore[attr-defined]

    def __hash__(self) -> int:
        """Hash consistent with :meth:`__eq__`."""
        return hash((type(self).__name__, self.max_length))

    def __repr__(self) -> str:
        """What the space holds and what :meth:`sample` draws."""
        return f"FreeText(contains=any str, sample=printable ASCII of 0-{self.max_length} chars)"


@create_shared_memory.register(FreeText)
def _no_shared_memory(space: FreeText, n: int = 1, ctx: Any = None) -> Any:
    """Refuse shared memory: Gymnasium's ``AsyncVectorEnv`` turns this into "use shared_memory=False"."""
    raise CustomSpaceError(
        f"{space!r} holds text of any length, which cannot be stored in fixed-size shared memory: "
        "create the vector env with gym.vector.AsyncVectorEnv(env_fns, shared_memory=False)"
    )
