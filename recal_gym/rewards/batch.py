"""Reward batches for learners and adapters: the one place that reads rewards out of ``info`` dicts.

``docs/rewards.md`` §14.5. A learner (the token GRPO learner, the discrete learner, the TRL and verl
adapters) collects the terminal ``info`` of each trajectory and calls :func:`reward_arrays_from_infos`;
adapters that only have raw component values (TRL reward functions, verl's reward extra info) call
:func:`reward_arrays_from_raw`, which gates them with the spec. Both return :class:`RewardArrays`:
NumPy arrays in the spec's component order, with the scalar the exact fold of the gated components, so
``scalar[i]`` equals the environment's reward bit for bit.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from recal_gym.errors import InvalidData, UnknownComponent, close_matches_hint
from recal_gym.rewards.spec import RewardSpec, fold_rewards, gate_components

__all__ = ["RewardArrays", "concat_reward_arrays", "reward_arrays_from_infos", "reward_arrays_from_raw"]


@dataclass(frozen=True, slots=True, kw_only=True)
class RewardArrays:
    """Per-trajectory rewards of a batch, in the reward spec's component order."""

    names: tuple[str, ...]
    """The K component names, in fold order."""
    raw: np.ndarray
    """``(N, K)`` float64 pre-gate components; NaN = unscorable."""
    gates: np.ndarray
    """``(N, K)`` float64 gates in {0, 1} (NaN where a value the gate reads is NaN)."""
    gated: np.ndarray
    """``(N, K)`` float64 gated components ``gates * raw``."""
    weights: np.ndarray
    """``(K,)`` float64 component weights."""
    scalar: np.ndarray
    """``(N,)`` float64 episode returns: the left fold of ``weights * gated`` (the env's reward)."""
    data_source: tuple[str, ...]
    """``(N,)`` dataset of each trajectory."""
    question_id: tuple[str, ...]
    """``(N,)`` question of each trajectory (``""`` when unknown)."""
    spec_hash: str
    """The reward spec's content hash (``""`` when unknown)."""

    def __len__(self) -> int:
        """N."""
        return int(self.raw.shape[0])

    def select(self, rows: slice | Sequence[int]) -> RewardArrays:
        """The sub-batch of ``rows`` (a slice or indices), in that order."""
        idx = list(range(len(self)))[rows] if isinstance(rows, slice) else [int(i) for i in rows]
        return RewardArrays(
            names=self.names,
            raw=self.raw[idx],
            gates=self.gates[idx],
            gated=self.gated[idx],
            weights=self.weights,
            scalar=self.scalar[idx],
            data_source=tuple(self.data_source[i] for i in idx),
            question_id=tuple(self.question_id[i] for i in idx),
            spec_hash=self.spec_hash,
        )

    def column(self, name: str) -> np.ndarray:
        """``(N,)`` raw values of component ``name``.

        Raises:
            UnknownComponent: no such component (with close matches).
        """
        if name not in self.names:
            raise UnknownComponent(
                f"RewardArrays has no component {name!r}; components: {list(self.names)}."
                + close_matches_hint(name, self.names)
            )
        return self.raw[:, self.names.index(name)]


def _vector(info: Mapping[str, Any], key: str, names: Sequence[str], i: int) -> list[float]:
    values = info.get(key)
    if not isinstance(values, Mapping) or list(values) != list(names):
        got = list(values) if isinstance(values, Mapping) else values
        raise InvalidData(
            f"info[{i}][{key!r}] has components {got!r}; expected {list(names)} (every trajectory of a batch must "
            "be scored under the same reward spec)"
        )
    return [float(values[k]) for k in names]


def reward_arrays_from_infos(
    infos: Sequence[Mapping[str, Any]], *, spec: RewardSpec | None = None, tau: float | None = None
) -> RewardArrays:
    """Read a batch's rewards from the terminal ``info`` dicts (``docs/protocol.md`` §12).

    Args:
        infos: One terminal :class:`~recal_gym.types.RouterQAInfo` per trajectory (``info["final_info"]``
            entries of an autoresetting vector env work too).
        spec: The reward spec, needed only to recompute gates for a learner-side τ override.
        tau: τ override; with it, the gates are recomputed from the raw components with
            ``spec.compute_gates(raw, tau=tau)`` (the environment's own gate code) and the scalar refolded.

    Returns:
        The :class:`RewardArrays`; without ``tau``, ``gated``/``gates``/``scalar`` are the env's own values.

    Raises:
        InvalidData: an empty batch, a non-terminal info, or infos scored under different component sets.
    """
    if not infos:
        raise InvalidData("reward_arrays_from_infos: the batch is empty")
    first = infos[0].get("reward_components_raw")
    if not isinstance(first, Mapping):
        raise InvalidData("info[0] has no 'reward_components_raw' mapping: is it a RouterQA info?")
    names = tuple(first)
    for i, info in enumerate(infos):
        if not info.get("scored", False):
            raise InvalidData(f"info[{i}] is not a terminal (scored) step of question {info.get('question_id')!r}")
    raw = np.array([_vector(info, "reward_components_raw", names, i) for i, info in enumerate(infos)])  # (N, K)
    weights = np.array(_vector(infos[0], "reward_weights", names, 0), dtype=np.float64)  # (K,)
    if tau is not None:
        if spec is None or spec.names != names:
            raise InvalidData("reward_arrays_from_infos: a tau override needs the spec the infos were scored under")
        gates = spec.compute_gates(raw, tau=tau)
        gated = gate_components(raw, gates)
        scalar = fold_rewards(gated, weights)
    else:
        gates = np.array([_vector(info, "reward_gates", names, i) for i, info in enumerate(infos)])
        gated = np.array([_vector(info, "reward_components", names, i) for i, info in enumerate(infos)])
        scalar = fold_rewards(gated, weights)
    return RewardArrays(
        names=names,
        raw=raw,
        gates=gates,
        gated=gated,
        weights=weights,
        scalar=scalar,
        data_source=tuple(str(info["data_source"]) for info in infos),
        question_id=tuple(str(info.get("question_id", "")) for info in infos),
        spec_hash=str(infos[0].get("reward_spec_hash", "")),
    )


def reward_arrays_from_raw(
    raw: np.ndarray | Sequence[Sequence[float]],
    spec: RewardSpec,
    data_sources: Sequence[str],
    question_ids: Sequence[str] | None = None,
    *,
    tau: float | None = None,
) -> RewardArrays:
    """Gate raw components with ``spec`` and fold them (for adapters that only hold raw values).

    Args:
        raw: ``(N, K)`` raw components in ``spec``'s order (NaN = unscorable, e.g. TRL's ``None``).
        spec: The reward spec (gates, τ and weights).
        data_sources: ``(N,)`` dataset names.
        question_ids: ``(N,)`` question ids, if known.
        tau: τ override of the gates.

    Raises:
        InvalidData: shapes that do not match the spec or each other.
    """
    r = np.asarray(raw, dtype=np.float64)
    k = len(spec.names)
    if r.ndim != 2 or r.shape[1] != k or len(data_sources) != r.shape[0]:
        raise InvalidData(
            f"raw must be (N, {k}) for components {list(spec.names)} with N data sources; got {r.shape} and "
            f"{len(data_sources)} sources"
        )
    qids = tuple("" for _ in range(r.shape[0])) if question_ids is None else tuple(str(q) for q in question_ids)
    if len(qids) != r.shape[0]:
        raise InvalidData(f"{len(qids)} question ids for N={r.shape[0]} trajectories")
    gates = spec.compute_gates(r, tau=tau)
    gated = gate_components(r, gates)
    weights = np.array(spec.weights, dtype=np.float64)
    return RewardArrays(
        names=spec.names,
        raw=r,
        gates=gates,
        gated=gated,
        weights=weights,
        scalar=fold_rewards(gated, weights),
        data_source=tuple(str(s) for s in data_sources),
        question_id=qids,
        spec_hash=spec.hash,
    )


def concat_reward_arrays(parts: Sequence[RewardArrays]) -> RewardArrays:
    """Concatenate batches along N.

    Raises:
        InvalidData: no parts, or parts with different components, weights or spec hashes.
    """
    if not parts:
        raise InvalidData("concat_reward_arrays: nothing to concatenate")
    first = parts[0]
    for p in parts[1:]:
        if p.names != first.names or not np.array_equal(p.weights, first.weights) or p.spec_hash != first.spec_hash:
            raise InvalidData("concat_reward_arrays: the parts were scored under different reward specs")
    return RewardArrays(
        names=first.names,
        raw=np.concatenate([p.raw for p in parts]),
        gates=np.concatenate([p.gates for p in parts]),
        gated=np.concatenate([p.gated for p in parts]),
        weights=first.weights,
        scalar=np.concatenate([p.scalar for p in parts]),
        data_source=tuple(s for p in parts for s in p.data_source),
        question_id=tuple(q for p in parts for q in p.question_id),
        spec_hash=first.spec_hash,
    )
