"""Which GRPO groups carry a learning signal (DAPO's dynamic sampling, arXiv 2503.14476).

A group whose G rollouts all earn the same rewards has zero advantage under every group-relative
estimator, so it contributes no gradient (and, with a simulated pool whose replies are deterministic
per question and model, a group that always picks one model is such a group). Dynamic sampling rolls
out replacements for those groups. :func:`informative_rows` is the test, :func:`choose_groups` the
selection rule and :func:`refill_groups` the bounded refill loop the learner runs.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import NamedTuple

import torch
from torch import Tensor

from agents.grpo.rollout import RolloutBatch, concat_batches, select_rows

__all__ = ["SAMPLING_KEYS", "Refill", "choose_groups", "informative_rows", "refill_groups"]

SAMPLING_KEYS = ("sampling/zero_var_first", "sampling/rounds", "sampling/extra_groups", "sampling/zero_var_final")
"""Metrics of :func:`refill_groups` (``Refill.stats`` order)."""


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


class Refill(NamedTuple):
    """Result of :func:`refill_groups`."""

    batch: RolloutBatch
    """``n_groups`` groups: informative ones first, topped up with zero-variance ones."""
    stats: tuple[float, float, float, float]
    """Share of zero-variance groups in the first rollout, extra rounds, extra groups rolled out,
    share of zero-variance groups kept (:data:`SAMPLING_KEYS`)."""


def _flags(batch: RolloutBatch, group_size: int) -> list[bool]:
    rows = informative_rows(batch.gated, batch.scalar, batch.weights, batch.group)
    return rows.view(-1, group_size)[:, 0].tolist()  # groups are contiguous runs of group_size rows


def refill_groups(
    batch: RolloutBatch,
    n_groups: int,
    draw: Callable[[int, int], RolloutBatch],
    *,
    group_size: int,
    rounds: int,
    pad_id: int,
) -> Refill:
    """Replace zero-variance groups by fresh ones, at most ``rounds`` extra rollout rounds.

    Args:
        batch: The step's rollouts, ``n_groups`` contiguous groups of ``group_size`` rows.
        n_groups: Groups the step trains on.
        draw: ``draw(need, offset)`` rolls out ``need`` fresh groups (``offset`` = extra groups drawn
            so far, for unique group ids).
        group_size: G.
        rounds: Extra rounds at most.
        pad_id: Padding id for concatenating batches.
    """
    parts, flags = [batch], _flags(batch, group_size)
    first = sum(flags)
    done = extra = 0
    while sum(flags) < n_groups and done < rounds:
        need = n_groups - sum(flags)
        part = draw(need, extra)
        parts.append(part)
        flags += _flags(part, group_size)
        done, extra = done + 1, extra + need
    full = parts[0] if len(parts) == 1 else concat_batches(parts, pad_id)
    keep = choose_groups(flags, n_groups)
    chosen = select_rows(full, [k * group_size + j for k in keep for j in range(group_size)])
    kept_zero = 1.0 - sum(flags[k] for k in keep) / n_groups
    return Refill(chosen, (1.0 - first / max(1, n_groups), float(done), float(extra), kept_zero))
