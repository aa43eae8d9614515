"""Named structures that cross module boundaries.

Questions (:class:`QARow`), pool entries (:class:`PoolModel`, :class:`AliasRule`,
:class:`NameTable`), candidate calls (:class:`CallRequest`, :class:`CallResult`,
:class:`CallRecord`) and the finished episode (:class:`EpisodeRecord`, ``docs/protocol.md`` §13).
All are frozen dataclasses; collections inside them are tuples so they hash and never alias.
"""

from __future__ import annotations

import sys
from dataclasses import dataclass
from typing import Any, Literal, TypedDict

if sys.version_info >= (3, 11):
    from typing import NotRequired
else:  # pragma: no cover - Python 3.10
    from typing_extensions import NotRequired

from recal_gym.errors import InvalidData

__all__ = [
    "MAX_CALL_TOKENS",
    "AliasRule",
    "CallRecord",
    "CallRequest",
    "CallResult",
    "EpisodeRecord",
    "NameMatching",
    "NameTable",
    "QARow",
    "RouteOutcome",
    "RouterQAInfo",
    "SubQuestion",
]

MAX_CALL_TOKENS = 10_000_000
"""Largest token count (prompt or completion) one call may report; a larger one is malformed usage."""

NameMatching = Literal["exact", "lenient", "router-r1"]
RouteOutcome = Literal["", "executed", "unknown_model", "call_failed", "not_executed_final_turn"]


@dataclass(frozen=True, slots=True, kw_only=True)
class SubQuestion:
    """One node of a gold decomposition: a sub-question and its answers."""

    question: str
    """The sub-question text."""
    golden_answers: tuple[str, ...]
    """Accepted answers (non-empty)."""


@dataclass(frozen=True, slots=True, kw_only=True)
class QARow:
    """One question of a dataset (``docs/protocol.md`` §10)."""

    question_id: str
    """Stable id, unique across datasets (``"{data_source}/{index}"`` when a source has none)."""
    question: str
    """The preprocessed question text (stripped, ends with ``?``, tags neutralised)."""
    golden_answers: tuple[str, ...]
    """Accepted answers, kept as given; normalised only when scored."""
    data_source: str
    """Dataset name, used for grouping statistics and per-dataset normalisation."""
    decomposition: tuple[SubQuestion, ...] = ()
    """Gold sub-questions in dependency order, when known."""
    hops: int = 1
    """Number of reasoning hops (1 for single-hop rows)."""

    def __post_init__(self) -> None:
        """Validate the row (a data error is raised at load time, never later)."""
        if not self.question_id:
            raise InvalidData("QARow.question_id must be a non-empty string")
        if not self.question.strip():
            raise InvalidData(f"QARow {self.question_id!r}: question is empty after stripping")
        if not self.golden_answers or not all(isinstance(a, str) for a in self.golden_answers):
            raise InvalidData(
                f"QARow {self.question_id!r}: golden_answers must be a non-empty list of strings, "
                f"got {self.golden_answers!r}"
            )
        if not self.data_source:
            raise InvalidData(f"QARow {self.question_id!r}: data_source must be a non-empty string")


@dataclass(frozen=True, slots=True, kw_only=True)
class AliasRule:
    """An ordered keyword rule of the lenient resolver (``docs/protocol.md`` §8)."""

    keywords: tuple[str, ...]
    """Lower-case keywords that must all occur in the requested name."""
    model: str | None
    """Target display name, or ``None`` for "unknown"."""


@dataclass(frozen=True, slots=True, kw_only=True)
class NameTable:
    """Everything model-name resolution needs; recorded in every episode record."""

    names: tuple[str, ...]
    """Display names of every pool model (listed or not), in pool order."""
    listed: tuple[str, ...]
    """Display names shown in the prompt, in pool order (the balance component's M models)."""
    exact_aliases: tuple[tuple[str, str], ...] = ()
    """``(alias, display name)`` pairs matched after case-folding (API ids and declared aliases)."""
    alias_rules: tuple[AliasRule, ...] = ()
    """Ordered keyword rules of the lenient and ``router-r1`` resolvers."""
    name_matching: NameMatching = "lenient"
    """Which resolver to use."""

    def to_dict(self) -> dict[str, Any]:
        """Return a JSON-ready dict (the record's ``pool`` field)."""
        return {
            "names": list(self.names),
            "listed": list(self.listed),
            "exact_aliases": [list(p) for p in self.exact_aliases],
            "name_matching": self.name_matching,
            "alias_rules": [{"keywords": list(r.keywords), "model": r.model} for r in self.alias_rules],
        }

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> NameTable:
        """Inverse of :meth:`to_dict`."""
        return cls(
            names=tuple(d["names"]),
            listed=tuple(d.get("listed", d["names"])),
            exact_aliases=tuple((str(a), str(n)) for a, n in d.get("exact_aliases", ())),
            alias_rules=tuple(
                AliasRule(keywords=tuple(r["keywords"]), model=r["model"]) for r in d.get("alias_rules", ())
            ),
            name_matching=d.get("name_matching", "lenient"),
        )


@dataclass(frozen=True, slots=True, kw_only=True)
class CallRequest:
    """One routed query to one pool model."""

    model: str
    """Resolved display name of the pool model."""
    query: str
    """The routed sub-query (already parsed from the policy's search block)."""
    question: QARow
    """The episode's question (simulated and replay pools key their outcomes on it)."""
    call_seed: int = 0
    """The episode's ``reset(options={"call_seed": s})``; keys the simulated pool's per-call noise."""
    turn: int = 0
    """The 1-based policy turn that made the call (0 outside an env); keys the per-call noise."""


@dataclass(frozen=True, slots=True, kw_only=True)
class CallResult:
    """What a backend returned for one :class:`CallRequest`."""

    ok: bool
    """False when the call failed after retries (``route_outcome="call_failed"``)."""
    text: str = ""
    """The candidate's reply (raw, before neutralisation)."""
    completion_tokens: int = 0
    """Output tokens as the backend's usage reports them."""
    prompt_tokens: int = 0
    """Input tokens as the backend's usage reports them."""
    error: str = ""
    """Short failure label when ``ok`` is False (``"timeout"``, ``"http_500"``, ...)."""
    attempts: int = 1
    """Number of attempts made (retries included)."""
    cached: bool = False
    """True when served from a response cache."""
    latency_s: float | None = None
    """Seconds the call took (simulated pools: their latency model; replay: the recorded value; live
    backends: the successful attempt's wall time). ``None`` when unknown."""


@dataclass(frozen=True, slots=True, kw_only=True)
class CallRecord:
    """One route of an episode as the offline scorer sees it (``docs/protocol.md`` §13)."""

    turn: int
    requested_model: str
    model: str
    outcome: RouteOutcome
    completion_tokens: int
    price_per_1m: float
    cost: float
    latency_s: float | None = None
    """Seconds the call took, ``None`` when unknown (old logs, foreign transcripts)."""

    def to_dict(self) -> dict[str, Any]:
        """Return a JSON-ready dict."""
        return {
            "turn": self.turn,
            "requested_model": self.requested_model,
            "model": self.model,
            "outcome": self.outcome,
            "completion_tokens": self.completion_tokens,
            "price_per_1m": self.price_per_1m,
            "cost": self.cost,
            "latency_s": self.latency_s,
        }


@dataclass(frozen=True, slots=True, kw_only=True)
class EpisodeRecord:
    """Everything the offline scorer needs about one finished episode (``docs/protocol.md`` §13)."""

    question_id: str
    data_source: str
    question: str
    golden_answers: tuple[str, ...]
    transcript: str
    """The transcript exactly as scored (cut to the transcript limit)."""
    information_spans: tuple[tuple[int, int], ...] | None
    """``(start, end)`` offsets of the *content* of each env-inserted information block of an
    executed call; ``None`` for foreign logs (score them with ``spans="infer"``)."""
    calls: tuple[CallRecord, ...] | None
    """Every route of the episode; ``None`` when only ``raw_cost`` is known."""
    raw_cost: float | None
    termination: str
    pool: NameTable
    protocol: str = "RouterQA-v0"

    def to_dict(self) -> dict[str, Any]:
        """Return the JSON-ready dict stored in ``info["episode_record"]``."""
        return {
            "protocol": self.protocol,
            "question_id": self.question_id,
            "data_source": self.data_source,
            "question": self.question,
            "golden_answers": list(self.golden_answers),
            "transcript": self.transcript,
            "information_spans": None
            if self.information_spans is None
            else [[int(s), int(e)] for s, e in self.information_spans],
            "calls": None if self.calls is None else [c.to_dict() for c in self.calls],
            "raw_cost": self.raw_cost,
            "termination": self.termination,
            "pool": self.pool.to_dict(),
        }

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> EpisodeRecord:
        """Build a record from :meth:`to_dict` output (or a JSON log line).

        Raises:
            InvalidData: if a required field is missing.
        """
        required = ("question_id", "data_source", "golden_answers", "transcript", "pool")
        missing = [k for k in required if k not in d]
        if missing:
            raise InvalidData(f"episode record is missing field(s) {missing}; required: {list(required)}")
        spans = d.get("information_spans")
        calls = d.get("calls")
        return cls(
            protocol=d.get("protocol", "RouterQA-v0"),
            question_id=str(d["question_id"]),
            data_source=str(d["data_source"]),
            question=str(d.get("question", "")),
            golden_answers=tuple(d["golden_answers"]),
            transcript=str(d["transcript"]),
            information_spans=None if spans is None else tuple((int(s), int(e)) for s, e in spans),
            calls=None
            if calls is None
            else tuple(
                CallRecord(
                    turn=int(c["turn"]),
                    requested_model=str(c["requested_model"]),
                    model=str(c["model"]),
                    outcome=c["outcome"],
                    completion_tokens=int(c["completion_tokens"]),
                    price_per_1m=float(c["price_per_1m"]),
                    cost=float(c["cost"]),
                    latency_s=None if c.get("latency_s") is None else float(c["latency_s"]),
                )
                for c in calls
            ),
            raw_cost=None if d.get("raw_cost") is None else float(d["raw_cost"]),
            termination=str(d.get("termination", "")),
            pool=d["pool"] if isinstance(d["pool"], NameTable) else NameTable.from_dict(d["pool"]),
        )


class RouterQAInfo(TypedDict):
    """The ``info`` dict of every ``RouterQA-v0`` step (``docs/protocol.md`` §12).

    One contract shared by the environment, the learner and the adapters. Scalars are Python ``float``
    (counts included), flags ``bool``, labels ``str``; the reward dicts are keyed by the reward spec's
    component names, in spec order. ``episode_record`` is present on the
    terminal step only.
    """

    question_id: str
    data_source: str
    turn: float
    routed_turns_left: float
    action_kind: str
    parse_error: str
    cut: str
    kept_chars: float
    discarded_chars: float
    action_clipped: bool
    obs_truncated: bool
    reply_neutralised: bool
    requested_model: str
    model: str
    route_outcome: str
    call_completion_tokens: float
    call_cost: float
    call_latency_s: float
    call_error: str
    n_route_attempts: float
    n_calls: float
    n_failed_calls: float
    n_unknown_model: float
    n_invalid_actions: float
    calls_per_model: dict[str, float]
    raw_cost: float
    latency_s: float
    reward_components: dict[str, float]
    reward_components_raw: dict[str, float]
    reward_gates: dict[str, float]
    reward_weights: dict[str, float]
    reward_spec_hash: str
    scored: bool
    em: float
    f1: float
    format_ok: bool
    has_answer: bool
    format_error: str
    answer: str
    termination: str
    transcript_tokens: float
    episode_record: NotRequired[dict[str, Any]]
