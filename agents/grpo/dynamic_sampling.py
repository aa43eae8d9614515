"""Which GRPO groups carry a learning signal (DAPO's dynamic sampling, arXiv 2503.14476).

A group whose G rollouts all earn the same rewards has zero advantage under every group-relative
estimator, so it contributes no gradient (and, with a simulated pool whose replies are deterministic
per question and model, a group that always picks one model is such a group). Dynamic sampling rolls
out replacements for those groups. :func:`informative_rows` is the test; :func:`choose_groups` the
pure selection rule the learner applies after each extra round.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import Tensor

__all__ = ["choose_groups", "informative_rows"]


def informative_rows(gated: Tensor, scalar: Tensor, weights: Tensor, group: Tensor) -> Tensor:
    """Whether each row's group has reward spread (NaN values ignored).

    A group is informative when its scalar return, or any gated component with a non-zero weight,
    takes two different finite values inside it.

    Args:
        gated: ``(N, K)`` gated components.
        scalar: ``(N,)`` returns.
        weights: ``(K,)`` component weights.
        group: ``(N,)`` int64 group ids.

    Returns:
        ``(N,)`` bool, constant within each group.
    """
    cols = torch.cat([gated[:, weights != 0], scalar.unsqueeze(1)], dim=1).double()  # (N, C)
    uniq, seg = torch.unique(group, return_inverse=True)
    finite = torch.isfinite(cols)
    idx = seg.unsqueeze(1).expand_as(cols)
    inf = torch.tensor(float("inf"), dtype=torch.float64)
    shape = (int(uniq.shape[0]), cols.shape[1])
    lo = torch.full(shape, float("inf"), dtype=torch.float64).scatter_reduce(
        0, idx, torch.where(finite, cols, inf), "amin"
    )
    hi = torch.full(shape, -float("inf"), dtype=torch.float64).scatter_reduce(
        0, idx, torch.where(finite, cols, -inf), "amax"
    )
    spread = (hi > lo).any(dim=1)  # (G,)
    return spread.index_select(0, seg)


def choose_groups(informative: Sequence[bool], count: int) -> list[int]:
    """Indices of ``count`` groups: informative ones first (in order), then the others (in order).

    Args:
        informative: One flag per candidate group, in rollout order.
        count: Groups to keep (at most ``len(informative)``).

    Returns:
        The kept group indices, sorted ascending.
    """
    good = [i for i, flag in enumerate(informative) if flag]
    rest = [i for i, flag in enumerate(informative) if not flag]
    return sorted((good + rest)[:count])
