"""Scoring one finished episode, online or offline (``docs/rewards.md`` §13, §14).

:class:`EpisodeScorer` is a reward spec compiled for scoring: the environment's terminal reward and the
offline re-scorer use it. One :class:`~recal_gym.rewards.view.EpisodeView` per episode shares one
block scan between all components; gates are evaluated on plain floats; model names are resolved once
per pool (:class:`~recal_gym.rewards.view.Resolver`). :func:`score_episode` is the pure functional
form (it returns the *new* state); :func:`rescore` folds the scorer over a logged run, so replaying a
run's records from the same initial state reproduces every online reward bit for bit.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Literal

from recal_gym.errors import InvalidConfig, InvalidData, RewardComponentError
from recal_gym.rewards.components import ComponentState
from recal_gym.rewards.spec import RewardSpec
from recal_gym.rewards.state import RewardState
from recal_gym.rewards.view import EpisodeView, GoldNormalizer, Resolver
from recal_gym.types import EpisodeRecord, NameTable

__all__ = ["EpisodeScore", "EpisodeScorer", "SpansMode", "rescore", "score_episode"]

SpansMode = Literal["record", "infer"]


@dataclass(frozen=True, slots=True, kw_only=True)
class EpisodeScore:
    """Everything the terminal step reports about one scored episode (``docs/rewards.md`` §13)."""

    reward: float
    """The scalar: the fold of ``weights[k] * components[k]`` in spec order, bit for bit."""
    components: dict[str, float]
    """Gated components ``c_k = g_k · r_k`` in spec order."""
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
    """True when every format rule passes."""
    format_error: str
    """Id of the first failing format rule, ``""`` when ok."""
    answer: str
    """The extracted final answer, ``""`` when there is none."""
    has_answer: bool
    """Whether the transcript holds an answer block."""
    raw_cost: float
    """Σ tokens * price of executed calls in µ$ (NaN only for a foreign log without cost data)."""
    state_after: RewardState | None
    """The new reward state (:func:`score_episode`; the input state is never mutated), or ``None`` when
    the scorer updated a state in place (the environment and :func:`rescore`)."""
    spec: RewardSpec
    """The spec used, for provenance."""
    spec_hash: str = ""
    """``spec.hash``."""
    spans_inferred: bool = False
    """True when information blocks were taken from the block scan (``spans="infer"``)."""


@dataclass(frozen=True, slots=True)
class _Compiled:
    name: str
    weight: float
    gate: int  # index into EpisodeScorer._gates
    lo: float
    hi: float
    fn: Callable[..., float] | None  # None: stateful, read from the RewardState
    params: dict[str, object]


class EpisodeScorer:
    """A reward spec compiled for scoring episodes of pools' name tables (explicit caches).

    Args:
        spec: The reward spec.

    Example:
        >>> from recal_gym.rewards import make_spec
        >>> scorer = EpisodeScorer(make_spec("recal"))
        >>> scorer.names[:2]
        ('format', 'answer')
    """

    def __init__(self, spec: RewardSpec) -> None:
        """Compile ``spec``: resolve every component, its range and gate (once)."""
        self.spec = spec
        self.spec_hash = spec.hash
        compiled = []
        unique: dict[str, int] = {}  # canonical gate -> index: presets share one gate between six components
        for c in spec.components:
            d = c.definition()
            lo, hi = d.bounds(spec, c.params_dict)
            slot = unique.setdefault(c.gate.canonical(), len(unique))
            compiled.append(_Compiled(c.name, float(c.weight), slot, lo, hi, d.fn, c.params_dict))
        self._compiled: tuple[_Compiled, ...] = tuple(compiled)
        self._fold: tuple[tuple[str, float, int], ...] = tuple((c.name, c.weight, c.gate) for c in compiled)
        gates = {text: next(c.gate for c in spec.components if c.gate.canonical() == text) for text in unique}
        self._gates: tuple[Callable[[dict[str, float], float], bool], ...] = tuple(g.compile() for g in gates.values())
        self.names: tuple[str, ...] = spec.names
        self.weights: dict[str, float] = spec.weights_dict()
        self._stateful = tuple(c.name for c in compiled if c.fn is None)
        self._resolvers: dict[NameTable, Resolver] = {}
        self._by_id: dict[int, tuple[NameTable, Resolver]] = {}
        self._golds = GoldNormalizer()

    def default_state(self, listed: Sequence[str]) -> RewardState:
        """A fresh :class:`RewardState` for this spec over ``listed``."""
        return RewardState.default(self.spec, listed)

    def view(self, record: EpisodeRecord, spans: SpansMode = "record") -> EpisodeView:
        """The shared view of ``record`` (name resolution cached per pool name table, gold answers per question)."""
        if spans not in ("record", "infer"):
            raise InvalidConfig(f"score_episode: spans={spans!r}: must be 'record' or 'infer'")
        table = record.pool
        hit = self._by_id.get(id(table))
        if hit is not None and hit[0] is table:  # the env's records share one table object: no hashing
            resolver = hit[1]
        else:
            found = self._resolvers.get(table)
            resolver = found if found is not None else Resolver(table)
            self._resolvers[table] = resolver
            self._by_id[id(table)] = (table, resolver)  # keeps `table` alive, so its id cannot be reused
        return EpisodeView(record, self.spec, resolve=resolver, golds=self._golds, spans=spans)

    def _raw(self, ep: EpisodeView, state: RewardState) -> dict[str, float]:
        raw: dict[str, float] = {}
        for c in self._compiled:
            fn = c.fn
            if fn is None:
                st: ComponentState = state[c.name]
                value = st.score_episode(ep)
            else:
                value = fn(ep, **c.params) if c.params else fn(ep)
            if not isinstance(value, float):
                value = _as_float(c.name, value, ep)
            if not (c.lo <= value <= c.hi):  # also catches NaN
                raise _out_of_range(c, value, ep)
            raw[c.name] = value
        return raw

    def score_view(self, ep: EpisodeView, state: RewardState) -> EpisodeScore:
        """Score ``ep`` against ``state`` without changing it (``state_after`` is ``None``).

        Raises:
            RewardComponentError: a component returned a non-float, a non-finite value or a value outside
                its declared range.
            InvalidData: see :func:`score_episode`.
        """
        tau = float(self.spec.tau)
        raw = self._raw(ep, state)
        opened = [1.0 if gate(raw, tau) else 0.0 for gate in self._gates]  # raw values are finite here
        gates: dict[str, float] = {}
        components: dict[str, float] = {}
        reward = 0.0
        for name, weight, slot in self._fold:
            g = opened[slot]
            gates[name] = g
            value = g * raw[name] + 0.0  # + 0.0 turns -0.0 into +0.0
            components[name] = value
            reward = reward + weight * value
        fmt = ep.format
        raw_cost = ep.raw_cost
        return EpisodeScore(
            reward=reward,
            components=components,
            components_raw=raw,
            gates=gates,
            weights=dict(self.weights),
            em=ep.em,
            f1=ep.f1,
            format_ok=fmt.ok,
            format_error=fmt.error,
            answer=ep.answer,
            has_answer=ep.has_answer,
            raw_cost=math.nan if raw_cost is None else float(raw_cost),
            state_after=None,
            spec=self.spec,
            spec_hash=self.spec_hash,
            spans_inferred=ep.spans_mode == "infer",
        )

    def _check(self, ep: EpisodeView, state: RewardState) -> None:
        if tuple(ep.pool.listed) != state.listed:
            raise InvalidData(
                f"episode record {ep.question_id!r}: pool listed models {list(ep.pool.listed)} differ from the "
                f"reward state's {list(state.listed)}"
            )
        missing = [n for n in self._stateful if n not in state]
        if missing:
            raise InvalidData(f"the reward state has no state for the spec's stateful component(s) {missing}")
        w_cost = self.weights.get("cost", 0.0)
        if w_cost != 0.0 and ep.raw_cost is None:
            raise InvalidData(
                f"episode record {ep.question_id!r} has neither 'calls' nor 'raw_cost', but the cost weight is "
                f"{w_cost!r}; the scorer never substitutes 0"
            )

    def score(
        self, record: EpisodeRecord, state: RewardState, *, spans: SpansMode = "record", update: bool = True
    ) -> EpisodeScore:
        """Score one episode; with ``update`` apply its episode-mode update to ``state`` in place.

        Args:
            record: The finished episode.
            state: The reward state before this episode (updated in place when ``update``).
            spans: ``"record"`` (``information_spans``) or ``"infer"`` (foreign logs).
            update: Apply the episode-mode update (batch-mode states ignore it).

        Returns:
            The :class:`EpisodeScore` (``state_after`` is ``None``).
        """
        ep = self.view(record, spans)
        self._check(ep, state)
        result = self.score_view(ep, state)
        if update:
            state.observe(ep)
        return result


def _as_float(name: str, value: object, ep: EpisodeView) -> float:
    """An int component value as a float; anything else that is not a float is an error."""
    if isinstance(value, bool) or not isinstance(value, int):
        raise RewardComponentError(
            f"reward component {name!r} returned {value!r} ({type(value).__name__}) for episode "
            f"{ep.question_id!r}; components must return a float"
        )
    return float(value)


def _out_of_range(c: _Compiled, value: float, ep: EpisodeView) -> RewardComponentError:
    what = "a non-finite value" if not math.isfinite(value) else "a value outside its declared range"
    return RewardComponentError(
        f"reward component {c.name!r} returned {what} {value!r} for episode {ep.question_id!r}; "
        f"declared range [{c.lo}, {c.hi}] (values are never clipped)"
    )


def score_episode(
    record: EpisodeRecord,
    spec: RewardSpec,
    state: RewardState | None = None,
    *,
    spans: SpansMode = "record",
    scorer: EpisodeScorer | None = None,
) -> EpisodeScore:
    """Score one finished episode (``docs/rewards.md`` §1-§14). Pure: no I/O, no mutation of inputs.

    Args:
        record: The episode record (transcript, gold answers, spans, calls, pool).
        spec: The reward spec.
        state: The reward state before this episode; ``None`` means a fresh default state over the record's
            listed models.
        spans: ``"record"`` reads ``information_spans``; ``"infer"`` takes the information blocks of the
            block scan (for foreign logs) and flags the score ``spans_inferred``.
        scorer: A compiled :class:`EpisodeScorer` of ``spec`` to reuse (faster for many episodes).

    Returns:
        The :class:`EpisodeScore`, with ``state_after`` the updated copy of ``state``.

    Raises:
        InvalidData: the record lacks ``information_spans`` (with ``spans="record"``), lacks both ``calls``
            and ``raw_cost`` while the cost weight is non-zero, or its listed models differ from the state's.
        RewardComponentError: a component returned a bad value.
    """
    sc = scorer if scorer is not None and scorer.spec is spec else EpisodeScorer(spec)
    state = sc.default_state(record.pool.listed) if state is None else state
    after = state.copy()
    result = sc.score(record, after, spans=spans, update=True)
    return _with_state(result, after)


def _with_state(score: EpisodeScore, state: RewardState) -> EpisodeScore:
    import dataclasses

    return dataclasses.replace(score, state_after=state)


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
    """Re-score a logged run: fold the scorer over the records, threading one state.

    Without ``batches``, records are scored in order with episode-mode updates. With ``batches`` (lists of
    record indices that partition the records), episodes are scored batch by batch in the given order and
    after each batch ``update_batch`` applies the batch-mode updates (a no-op for components in episode
    mode). Scores carry ``state_after=None``; the final state is returned.

    Args:
        records: The episode records, in scoring order.
        spec: The reward spec.
        state: The initial state (not mutated); ``None`` means fresh over the first record's listed models.
        batches: Optional rollout-batch boundaries.
        spans: As for :func:`score_episode`.

    Returns:
        ``(scores in record order, final state)``.

    Raises:
        InvalidConfig: if ``batches`` does not partition the indices.
    """
    order = _scoring_order(len(records), batches)
    scorer = EpisodeScorer(spec)
    if state is None:
        current = scorer.default_state(records[0].pool.listed if records else ())
    else:
        current = state.copy()
    scores: list[EpisodeScore | None] = [None] * len(records)
    for batch in order:
        for i in batch:
            scores[i] = scorer.score(records[i], current, spans=spans, update=True)
        if batches is not None:
            current.update_batch([records[i] for i in batch], spec)
    return [s for s in scores if s is not None], current
