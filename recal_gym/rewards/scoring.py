"""Scoring one finished episode, online or offline (``docs/rewards.md`` §13).

:func:`score_episode` is the environment's terminal reward: a pure function of the episode record,
the reward spec and the reward state, returning the scalar, every component (raw, gated, gates,
weights) and the *new* state. :func:`rescore` folds it over a logged run, so replaying a run's
records from the same initial state reproduces every online reward bit for bit.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal

import numpy as np

from recal_gym.errors import InvalidConfig, InvalidData
from recal_gym.protocol import Block, last_answer, scan_blocks
from recal_gym.rewards.answer_metrics import contains_answer, exact_match, f1_score
from recal_gym.rewards.format_rules import check_format, route_score
from recal_gym.rewards.spec import RewardSpec, compute_gates, fold_reward, gate_components
from recal_gym.rewards.state import RewardState, episode_raw_cost, route_counts
from recal_gym.types import COMPONENTS, EpisodeRecord

__all__ = ["EpisodeScore", "SpansMode", "rescore", "score_episode"]

SpansMode = Literal["record", "infer"]


@dataclass(frozen=True, slots=True, kw_only=True)
class EpisodeScore:
    """Everything the terminal step reports about one scored episode (``docs/rewards.md`` §13)."""

    reward: float
    """The scalar: ``fold_reward(components, weights)``, bit for bit."""
    components: dict[str, float]
    """Gated components ``c_k = g_k · r_k`` in COMPONENTS order."""
    components_raw: dict[str, float]
    """Pre-gate components ``r_k``."""
    gates: dict[str, float]
    """Gates ``g_k`` in {0.0, 1.0}."""
    weights: dict[str, float]
    """The spec's weights."""
    em: float
    """Ungated exact match of the last answer (0.0 without one)."""
    f1: float
    """Ungated token F1 of the last answer (0.0 without one)."""
    format_ok: bool
    """True when every format rule passes (``r_format == 0.0``)."""
    format_error: str
    """Id of the first failing format rule, ``""`` when ok."""
    answer: str
    """The extracted final answer, ``""`` when there is none."""
    has_answer: bool
    """Whether the transcript holds an answer block."""
    raw_cost: float
    """Σ tokens * price of executed calls in µ$ (NaN only for a foreign log without cost data)."""
    state_after: RewardState
    """The new reward state (the input state is never mutated)."""
    spec: RewardSpec
    """The spec used, for provenance."""
    spans_inferred: bool = False
    """True when information blocks were taken from the block scan (``spans="infer"``)."""


def _information_texts(record: EpisodeRecord, blocks: Sequence[Block], spans: SpansMode) -> list[str]:
    """Return the contents of the information blocks the ``info`` component may read (§5)."""
    if spans == "infer":
        # A foreign log: every scanned information block except the None splices of failed routes.
        return [b.content for b in blocks if b.tag == "information" and b.content != "None"]
    if spans != "record":
        raise InvalidConfig(f"score_episode: spans={spans!r}: must be 'record' or 'infer'")
    if record.information_spans is None:
        raise InvalidData(
            f"episode record {record.question_id!r} has no 'information_spans'; score a foreign log with spans='infer'"
        )
    n = len(record.transcript)
    texts = []
    for start, end in record.information_spans:
        if not 0 <= start <= end <= n:
            raise InvalidData(
                f"episode record {record.question_id!r}: information span {(start, end)} is outside "
                f"the transcript (length {n})"
            )
        texts.append(record.transcript[start:end])
    return texts


def _check_state(state: RewardState, record: EpisodeRecord) -> None:
    if tuple(record.pool.listed) != state.listed:
        raise InvalidData(
            f"episode record {record.question_id!r}: pool listed models {list(record.pool.listed)} differ "
            f"from the reward state's {list(state.listed)}"
        )


def score_episode(
    record: EpisodeRecord,
    spec: RewardSpec,
    state: RewardState | None = None,
    *,
    spans: SpansMode = "record",
) -> EpisodeScore:
    """Score one finished episode (``docs/rewards.md`` §1-§13). Pure: no I/O, no mutation of inputs.

    Args:
        record: The episode record (transcript, gold answers, spans, calls, pool).
        spec: The reward spec.
        state: The reward state before this episode; ``None`` means a fresh default state over the
            record's listed models.
        spans: ``"record"`` reads ``information_spans``; ``"infer"`` takes the information blocks of
            the block scan (for foreign logs) and flags the score ``spans_inferred``.

    Returns:
        The :class:`EpisodeScore`, with ``state_after`` the updated copy of ``state``.

    Raises:
        InvalidData: if the record lacks ``information_spans`` (with ``spans="record"``), if it lacks
            both ``calls`` and ``raw_cost`` while the cost weight is non-zero, or if its listed models
            differ from the state's.
    """
    state = RewardState.default(spec, record.pool.listed) if state is None else state
    _check_state(state, record)
    transcript = record.transcript
    blocks = scan_blocks(transcript)
    info_texts = _information_texts(record, blocks, spans)
    raw_cost = episode_raw_cost(record)
    w_cost = spec.weights[COMPONENTS.index("cost")]
    if raw_cost is None and w_cost != 0.0:
        raise InvalidData(
            f"episode record {record.question_id!r} has neither 'calls' nor 'raw_cost', but the cost weight "
            f"is {w_cost!r}; the scorer never substitutes 0"
        )

    fmt = check_format(transcript, record.pool, spans=blocks)
    answer = last_answer(transcript)
    em = exact_match(answer, record.golden_answers)
    f1 = f1_score(answer, record.golden_answers)
    info = any(contains_answer(t, record.golden_answers, spec.info_match) for t in info_texts)
    counts = route_counts(record, state.listed)
    r_balance, r_cost = state.score(counts, raw_cost)
    raw = np.array(  # (1, 6), COMPONENTS order
        [
            [
                0.0 if fmt.ok else float(spec.format_penalty),
                em if spec.answer_metric == "em" else f1,
                1.0 if info else 0.0,
                route_score(fmt, spec.route_empty_value),
                r_balance,
                r_cost,
            ]
        ],
        dtype=np.float64,
    )
    gates = compute_gates(raw, spec.gates, spec.tau)
    gated = gate_components(raw, gates)
    components: dict[str, float] = {k: float(v) for k, v in zip(COMPONENTS, gated[0], strict=True)}
    weights = spec.weights_dict()
    state_after = state.copy()
    state_after.update(counts, raw_cost)
    return EpisodeScore(
        reward=fold_reward(components, weights),
        components=components,
        components_raw={k: float(v) for k, v in zip(COMPONENTS, raw[0], strict=True)},
        gates={k: float(v) for k, v in zip(COMPONENTS, gates[0], strict=True)},
        weights=weights,
        em=em,
        f1=f1,
        format_ok=fmt.ok,
        format_error=fmt.error,
        answer="" if answer is None else answer,
        has_answer=answer is not None,
        raw_cost=float("nan") if raw_cost is None else float(raw_cost),
        state_after=state_after,
        spec=spec,
        spans_inferred=spans == "infer",
    )


def _scoring_order(n: int, batches: Sequence[Sequence[int]] | None) -> list[list[int]]:
    if batches is None:
        return [list(range(n))]
    order = [[int(i) for i in b] for b in batches]
    flat = sorted(i for b in order for i in b)
    if flat != list(range(n)):
        raise InvalidConfig(
            f"rescore: batches must partition the record indices 0..{n - 1} (each exactly once), got {batches!r}"
        )
    return order


def rescore(
    records: Sequence[EpisodeRecord],
    spec: RewardSpec,
    state: RewardState | None = None,
    batches: Sequence[Sequence[int]] | None = None,
    *,
    spans: SpansMode = "record",
) -> tuple[list[EpisodeScore], RewardState]:
    """Re-score a logged run: fold :func:`score_episode` over the records, threading the state.

    Without ``batches``, records are scored in order and each score's ``state_after`` feeds the
    next. With ``batches`` (lists of record indices that partition the records), episodes are
    scored batch by batch in the given order, and after each batch ``update_batch`` applies the
    batch-mode updates (a no-op for a component in episode mode).

    Args:
        records: The episode records, in scoring order.
        spec: The reward spec.
        state: The initial state (not mutated); ``None`` means fresh over the first record's listed
            models.
        batches: Optional rollout-batch boundaries.
        spans: As for :func:`score_episode`.

    Returns:
        ``(scores in record order, final state)``.

    Raises:
        InvalidConfig: if ``batches`` does not partition the indices.
    """
    order = _scoring_order(len(records), batches)
    if state is None:
        listed = records[0].pool.listed if records else ()
        current = RewardState.default(spec, listed)
    else:
        current = state.copy()
    scores: list[EpisodeScore | None] = [None] * len(records)
    for batch in order:
        for i in batch:
            sc = score_episode(records[i], spec, current, spans=spans)
            scores[i] = sc
            current = sc.state_after
        if batches is not None:
            current = current.copy()  # keep every returned state_after unchanged
            current.update_batch([records[i] for i in batch])
    return [s for s in scores if s is not None], current.copy()  # never alias a returned state_after
