"""The shared per-episode view that every reward component reads (``docs/rewards.md`` §14.1).

:class:`EpisodeView` wraps a finished :class:`~recal_gym.types.EpisodeRecord` with everything scoring parses
from it, each computed at most once and shared by every component: one block scan, one format check, the
answer, EM/F1, the information blocks, route counts, cost and latency. :class:`Resolver` caches model-name
resolution per pool name table.
"""

from __future__ import annotations

import itertools
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from recal_gym.errors import InvalidData
from recal_gym.protocol import Block, last_answer, scan_block_pairs, scan_blocks
from recal_gym.resolver import resolve_model
from recal_gym.rewards.answer_metrics import exact_match_normalized, f1_normalized, normalize_answer
from recal_gym.rewards.format_rules import FormatResult, check_format_pairs
from recal_gym.types import EpisodeRecord, NameTable

if TYPE_CHECKING:
    from recal_gym.rewards.spec import RewardSpec

__all__ = ["COUNTED_OUTCOMES", "EpisodeView", "GoldNormalizer", "Resolver"]

COUNTED_OUTCOMES: tuple[str, ...] = ("executed", "call_failed")
"""Route outcomes that count as routed calls (routes in routing turns)."""


class Resolver:
    """Model-name resolution for one pool's name table, with a per-name cache (explicit, per pool).

    Scoring resolves every search block's NAME (format rule F9, the route component, route counts of
    foreign logs); a log re-scores the same few names thousands of times.
    """

    __slots__ = ("_cache", "table")

    def __init__(self, table: NameTable) -> None:
        """Wrap ``table`` with an empty cache."""
        self.table = table
        self._cache: dict[str, str | None] = {}

    def __call__(self, name: str) -> str | None:
        """``resolve_model(name, table)``, cached."""
        try:
            return self._cache[name]
        except KeyError:
            found = self._cache[name] = resolve_model(name, self.table)
            return found


class GoldNormalizer:
    """The SQuAD-normalised gold answers of each question, cached by the gold tuple (explicit, bounded).

    A training run scores every question many times (G rollouts a step, many steps); the scorer normalises
    each question's gold answers once. The cache holds at most ``max_size`` questions and is emptied when
    full, so its memory stays bounded; it never changes a value.
    """

    __slots__ = ("_cache", "max_size")

    def __init__(self, max_size: int = 65536) -> None:
        """An empty cache of at most ``max_size`` questions."""
        self.max_size = max_size
        self._cache: dict[tuple[str, ...], tuple[str, ...]] = {}

    def __call__(self, golden: tuple[str, ...]) -> tuple[str, ...]:
        """``tuple(normalize_answer(g) for g in golden)``, cached (an unhashable sequence is not cached)."""
        try:
            return self._cache[golden]
        except KeyError:
            if len(self._cache) >= self.max_size:
                self._cache.clear()
            found = self._cache[golden] = tuple(normalize_answer(g) for g in golden)
            return found
        except TypeError:  # e.g. a list of gold answers in a hand-built record
            return tuple(normalize_answer(g) for g in golden)


class EpisodeView:
    """A finished episode with everything scoring parses from it, computed at most once.

    Components read these attributes; none of them mutates the record. Lazily computed values are
    cached on the view, so ``format``, ``route`` and the route counts share one block scan.

    Attributes:
        record: The episode record.
        spec: The reward spec being scored (built-in components read their settings from it).
        transcript: ``record.transcript``.
        golden_answers: ``record.golden_answers``.
        data_source: ``record.data_source``.
        question_id: ``record.question_id``.
        pool: The pool's name table (``record.pool``).
        spans_mode: ``"record"`` (information blocks from ``information_spans``) or ``"infer"``.
    """

    __slots__ = (
        "_answer",
        "_answer_norm",
        "_blocks",
        "_counts",
        "_em",
        "_f1",
        "_format",
        "_golds",
        "_golds_norm",
        "_info_texts",
        "_pairs",
        "_raw_cost",
        "_resolve",
        "data_source",
        "golden_answers",
        "pool",
        "question_id",
        "record",
        "spans_mode",
        "spec",
        "transcript",
    )

    _UNSET: Any = object()

    def __init__(
        self,
        record: EpisodeRecord,
        spec: RewardSpec,
        *,
        resolve: Callable[[str], str | None] | None = None,
        golds: Callable[[tuple[str, ...]], tuple[str, ...]] | None = None,
        spans: str = "record",
    ) -> None:
        """Wrap ``record`` (nothing is computed until a component asks).

        Args:
            record: The finished episode.
            spec: The reward spec being scored.
            resolve: NAME → display name or ``None`` (default: a fresh :class:`Resolver` of the pool).
            golds: Gold answers → normalised gold answers (default: normalise here; the scorer passes its
                :class:`GoldNormalizer`).
            spans: ``"record"`` or ``"infer"`` (where :attr:`info_texts` come from).
        """
        self.record = record
        self.spec = spec
        self.transcript = record.transcript
        self.golden_answers = record.golden_answers
        self.data_source = record.data_source
        self.question_id = record.question_id
        self.pool = record.pool
        self.spans_mode = spans
        self._resolve = resolve if resolve is not None else Resolver(record.pool)
        self._blocks: list[Block] | None = None
        self._pairs: list[tuple[str, str]] | None = None
        self._format: FormatResult | None = None
        self._answer: Any = EpisodeView._UNSET
        self._answer_norm: Any = EpisodeView._UNSET
        self._golds = golds
        self._golds_norm: tuple[str, ...] | None = None
        self._em: float | None = None
        self._f1: float | None = None
        self._info_texts: list[str] | None = None
        self._raw_cost: Any = EpisodeView._UNSET
        self._counts: dict[str, int] | None = None

    # ------------------------------------------------------------------ parsing (cached)
    @property
    def pairs(self) -> list[tuple[str, str]]:
        """``(tag, content)`` of every block of the transcript's block scan, computed once.

        The scan every built-in reads (``scan_block_pairs``, ``docs/protocol.md`` §4): the format check,
        the answer, the information blocks of a foreign log and its route counts.
        """
        if self._pairs is None:
            self._pairs = scan_block_pairs(self.transcript)
        return self._pairs

    @property
    def blocks(self) -> list[Block]:
        """The transcript's block scan with offsets (``scan_blocks``, ``docs/protocol.md`` §4), computed once.

        Built on first use (no built-in component reads it; :attr:`pairs` holds the same tags and contents).
        """
        if self._blocks is None:
            self._blocks = scan_blocks(self.transcript)
        return self._blocks

    @property
    def format(self) -> FormatResult:
        """The format rules F1-F9 (``docs/rewards.md`` §6) on the shared block scan."""
        if self._format is None:
            self._format = check_format_pairs(self.transcript, self.pairs, self._resolve)
        return self._format

    @property
    def format_ok(self) -> bool:
        """Every format rule passes."""
        return self.format.ok

    @property
    def answer(self) -> str:
        """The stripped content of the last answer block (``docs/rewards.md`` §2); ``""`` if none."""
        found = self._last_answer()
        return "" if found is None else found

    @property
    def has_answer(self) -> bool:
        """Whether the transcript holds an answer block."""
        return self._last_answer() is not None

    def _last_answer(self) -> str | None:
        if self._answer is EpisodeView._UNSET:
            # The answer-only scan equals the last answer block of the shared scan whenever every
            # "<answer>" string starts a block of that scan (then no answer hides inside another
            # block); otherwise fall back to the separate answer scan (Router-R1's behaviour).
            answers = [c for t, c in self.pairs if t == "answer"]
            if self.transcript.count("<answer>") == len(answers):
                self._answer = answers[-1].strip() if answers else None
            else:
                self._answer = last_answer(self.transcript)
        return self._answer  # type: ignore[no-any-return]

    @property
    def golden_normalized(self) -> tuple[str, ...]:
        """The gold answers after SQuAD normalisation (``docs/rewards.md`` §3), computed once."""
        if self._golds_norm is None:
            golds = self._golds
            if golds is None:
                self._golds_norm = tuple(normalize_answer(g) for g in self.golden_answers)
            else:
                self._golds_norm = golds(self.golden_answers)
        return self._golds_norm

    @property
    def answer_normalized(self) -> str | None:
        """The normalised final answer, ``None`` without one."""
        if self._answer_norm is EpisodeView._UNSET:
            found = self._last_answer()
            self._answer_norm = None if found is None else normalize_answer(found)
        return self._answer_norm  # type: ignore[no-any-return]

    @property
    def em(self) -> float:
        """Ungated exact match of the final answer (0.0 without one)."""
        if self._em is None:
            self._em = exact_match_normalized(self.answer_normalized, self.golden_normalized)
        return self._em

    @property
    def f1(self) -> float:
        """Ungated token F1 of the final answer (0.0 without one)."""
        if self._f1 is None:
            self._f1 = f1_normalized(self.answer_normalized, self.golden_normalized)
        return self._f1

    @property
    def info_texts(self) -> list[str]:
        """Contents of the information blocks the ``info`` component may read (``docs/rewards.md`` §5).

        Raises:
            InvalidData: the record has no ``information_spans`` (score with ``spans="infer"``) or a span
                lies outside the transcript.
        """
        if self._info_texts is None:
            self._info_texts = self._read_info_texts()
        return self._info_texts

    def _read_info_texts(self) -> list[str]:
        if self.spans_mode == "infer":  # a foreign log: every scanned information block except None splices
            return [c for t, c in self.pairs if t == "information" and c != "None"]
        spans = self.record.information_spans
        if spans is None:
            raise InvalidData(
                f"episode record {self.question_id!r} has no 'information_spans'; score a foreign log with "
                "spans='infer'"
            )
        n = len(self.transcript)
        texts = []
        for start, end in spans:
            if not 0 <= start <= end <= n:
                raise InvalidData(
                    f"episode record {self.question_id!r}: information span {(start, end)} is outside the "
                    f"transcript (length {n})"
                )
            texts.append(self.transcript[start:end])
        return texts

    # ------------------------------------------------------------------ calls, cost, latency
    @property
    def route_counts(self) -> dict[str, int]:
        """Routed calls per resolved model name (``docs/rewards.md`` §9).

        With ``calls``: routes with outcome ``executed`` or ``call_failed``, by resolved model. For a foreign
        log without ``calls``: search blocks whose NAME resolves and whose next block is an information
        block (the environment answered it).
        """
        if self._counts is None:
            counts: dict[str, int] = {}
            calls = self.record.calls
            if calls is not None:
                for call in calls:
                    if call.outcome in COUNTED_OUTCOMES and call.model:
                        counts[call.model] = counts.get(call.model, 0) + 1
            else:
                for (tag, content), (nxt, _) in itertools.pairwise(self.pairs):
                    if tag != "search" or nxt != "information" or ":" not in content:
                        continue
                    model = self._resolve(content.split(":", 1)[0])
                    if model is not None:
                        counts[model] = counts.get(model, 0) + 1
            self._counts = counts
        return self._counts

    @property
    def n_calls(self) -> int:
        """Number of routed calls (executed or failed; unknown names and final-turn routes excluded)."""
        return sum(self.route_counts.values())

    @property
    def raw_cost(self) -> float | None:
        """Σ ``completion_tokens × price`` of executed calls in µ$; the record's ``raw_cost`` without calls."""
        if self._raw_cost is EpisodeView._UNSET:
            calls = self.record.calls
            if calls is not None:
                total = 0.0
                for call in calls:
                    if call.outcome == "executed":
                        total = total + call.completion_tokens * call.price_per_1m
                self._raw_cost = total
            else:
                self._raw_cost = None if self.record.raw_cost is None else float(self.record.raw_cost)
        return self._raw_cost  # type: ignore[no-any-return]

    @property
    def latency_s(self) -> float | None:
        """Σ latency of executed calls in seconds; ``None`` when a call's latency is unknown."""
        calls = self.record.calls
        if calls is None:
            return None
        total = 0.0
        for call in calls:
            if call.outcome == "executed":
                if call.latency_s is None:
                    return None
                total = total + call.latency_s
        return total

    def weight(self, name: str) -> float:
        """The spec's weight of component ``name`` (0.0 if the spec has no such component)."""
        return self.spec.weight_of(name)
