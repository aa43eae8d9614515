"""The simulated candidate pool: the offline default backend, calibrated to Router-R1's Table 4.

``docs/pools.md`` §3. Each routed query is matched to a *target* of the episode's question
(0 = the question itself, 1..K = its gold sub-questions) by content-word F1. On a matched target,
model m is correct iff ``√ρ·z_t + √(1−ρ)·ε_{t,m} < Φ⁻¹(p(m, d))``, so its marginal accuracy is
exactly ``p(m, d)`` while ρ couples the models' errors. Correct replies state a gold answer; wrong
ones abstain or state a distractor of the same answer type; unrelated queries get a reply that
contains no gold answer of the episode. Reply length is log-normal around the profile's mean tokens
and ``completion_tokens`` equals it, so single-model cost reproduces the published cost.

Every draw comes from a generator seeded by SHA-256 of
``"{pool_seed}|{question_id}|{target}|{model}|{purpose}"``: outcomes depend only on (seed, question,
target, model) and never on call order, process or worker.

**Per-call reply noise** (``SimulatedConfig.reply_noise`` = η, default 0). With probability η a matched
call's correctness is an independent Bernoulli(p(m, d)) draw instead of the latent outcome above, so the
marginal accuracy stays exactly ``p(m, d)`` while repeated episodes on one question stop agreeing. The
noise draw is keyed on (pool seed, question, target, model, ``CallRequest.call_seed``,
``CallRequest.turn``) with purpose ``"noise:{call_seed}:{turn}"``; an env sets ``call_seed`` from its
``reset(options={"call_seed": s})`` (default 0), so a caller that varies it per episode gets fresh,
reproducible noise independent of call order. With η = 0 no noise draw is made and every reply is
byte-identical to the noiseless pool.

Example:
    >>> from recal_gym.pools.options import PoolOptions
    >>> from recal_gym.pools.spec import default_pool_spec
    >>> from recal_gym.types import CallRequest, QARow
    >>> spec = default_pool_spec()
    >>> pool = SimulatedBackend.from_spec(spec, spec.models, PoolOptions(seed=0))
    >>> row = QARow(question_id="nq/0", question="Who wrote Hamlet?", golden_answers=("Shakespeare",),
    ...             data_source="nq")
    >>> res = pool.call_batch([CallRequest(model=spec.names[0], query="who wrote hamlet", question=row)])
    >>> res[0].ok and res[0].completion_tokens >= 8
    True
"""

from __future__ import annotations

import dataclasses
import hashlib
import math
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass
from statistics import NormalDist

import numpy as np

from recal_gym.errors import InvalidConfig, UnknownModel, close_matches_hint
from recal_gym.pools.options import PoolOptions, SimulatedConfig
from recal_gym.pools.replies import (
    ABSTAIN_LINE,
    STOP_WORDS,
    UNRELATED_LINE,
    DistractorBank,
    build_bank,
    compose_reply,
    extract_stated_answer,
    gold_tokens,
    pick_distractor,
    statement,
)
from recal_gym.pools.spec import PoolModel, PoolSpec
from recal_gym.rewards.answer_metrics import contains_answer, normalize_answer
from recal_gym.types import CallRequest, CallResult, QARow

__all__ = [
    "SimulatedBackend",
    "Target",
    "content_words",
    "extract_stated_answer",
    "keyed_generator",
    "match_target",
    "question_targets",
    "similarity",
]

SHARED_MODEL = "*"
"""Model field of the keyed hash for draws shared by all models (difficulty, shared distractor)."""
_MIN_TOKENS = 8
_MAX_TOKENS = 512
DEFAULT_TTFT_S = 0.5
"""Simulated time to first token of a model without latency figures (seconds)."""
DEFAULT_TOKENS_PER_S = 50.0
"""Simulated output tokens per second of a model without latency figures."""
_COUNTERS = ("calls", "correct", "wrong", "abstain", "distractor", "unrelated", "failed")


@dataclass(frozen=True, slots=True, kw_only=True)
class Target:
    """One answerable target of a question: the question itself (index 0) or a gold sub-question."""

    index: int
    """0 for the question, k for the k-th sub-question of the decomposition (1-based)."""
    text: str
    """The question or sub-question text."""
    golden_answers: tuple[str, ...]
    """Its accepted answers."""


def question_targets(row: QARow) -> tuple[Target, ...]:
    """Return the targets of ``row``: the question, then its decomposition's sub-questions in order."""
    subs = (
        Target(index=k, text=s.question, golden_answers=s.golden_answers) for k, s in enumerate(row.decomposition, 1)
    )
    return (Target(index=0, text=row.question, golden_answers=row.golden_answers), *subs)


def content_words(text: str) -> tuple[str, ...]:
    """Normalised tokens of ``text`` minus stop-words (all tokens when every one is a stop-word).

    Example: ``"Who is the director of Jaws?"`` -> ``("director", "jaws")``.
    """
    tokens = normalize_answer(text).split()
    content = tuple(t for t in tokens if t not in STOP_WORDS)
    return content or tuple(tokens)


def similarity(a: Sequence[str], b: Sequence[str]) -> float:
    """Token-level F1 of two token multisets: ``2c / (|a| + |b|)`` with c the multiset overlap; 0 if empty."""
    common = sum((Counter(a) & Counter(b)).values())
    return 0.0 if common == 0 else 2.0 * common / (len(a) + len(b))


def match_target(query: str, targets: Sequence[Target], threshold: float) -> int | None:
    """Return the index of the target the query asks about, or ``None`` when it is unrelated.

    The best content-word F1 (:func:`similarity` of :func:`content_words`) wins if it is ``>= threshold``
    and positive; ties go to the lowest index.

    Args:
        query: The routed query.
        targets: The question's targets (:func:`question_targets`).
        threshold: θ, ``SimulatedConfig.relevance_threshold``.
    """
    q = content_words(query)
    best, best_sim = None, 0.0
    for t in targets:
        sim = similarity(q, content_words(t.text))
        if sim > best_sim:
            best, best_sim = t.index, sim
    return best if best is not None and best_sim >= threshold else None


def keyed_generator(
    pool_seed: int, question_id: str, target: int | str, model: str, purpose: str
) -> np.random.Generator:
    """Return a PCG64 generator seeded by SHA-256 of ``"{pool_seed}|{question_id}|{target}|{model}|{purpose}"``.

    Python's salted ``hash()`` is never used, so draws agree across processes and machines. The key is
    encoded as UTF-8 with ``surrogatepass``: a lone surrogate in a routed query (possible in any Python
    ``str``) hashes deterministically instead of raising.
    """
    key = f"{pool_seed}|{question_id}|{target}|{model}|{purpose}".encode("utf-8", "surrogatepass")
    return np.random.Generator(np.random.PCG64(int.from_bytes(hashlib.sha256(key).digest(), "big")))


@dataclass(frozen=True, slots=True)
class _Figures:
    """Simulation figures of one (model, profile) cell."""

    p: float
    threshold: float  # Φ⁻¹(p)
    mean_tokens: float


@dataclass(frozen=True, slots=True)
class _Draws:
    """The per-(target, model) uniform and normal draws, in their fixed order."""

    fail: float
    abstain: float
    shared: float
    eps: float
    eta: float


class SimulatedBackend:
    """Serves the simulated candidate models of a pool (``docs/pools.md`` §3).

    Args:
        spec: The pool (its ``dataset_profile_map`` resolves data sources to profile datasets).
        models: The entries this backend serves.
        options: ``seed`` keys every draw; ``simulated`` holds ρ, θ, σ and the other rates.

    Raises:
        InvalidConfig: a served model has no ``profile_em``/``mean_tokens`` for a profile named in the
            pool's ``dataset_profile_map`` (e.g. the unseen Router-R1 models, which need explicit ``p``).
    """

    def __init__(self, spec: PoolSpec, models: Sequence[PoolModel], options: PoolOptions) -> None:
        """Check every served model's figures and set up the counters."""
        self._spec = spec
        self._models = {m.name: m for m in models}
        self._seed = options.seed
        self._cfg: SimulatedConfig = options.simulated
        self._map = dict(spec.dataset_profile_map)
        self._bank: DistractorBank = {}
        self._counts = dict.fromkeys(_COUNTERS, 0)
        needed = sorted(set(self._map.values()))
        for m in models:
            if not m.profile_em:
                raise InvalidConfig(
                    f"simulated pool: model {m.name!r} has no figures (profile_em) for profile "
                    f"{needed[0] if needed else 'any'!r}; a model without published figures needs explicit "
                    "'profile_em' (p per profile dataset) and 'mean_tokens' entries in the pool file"
                )
            for profile in needed:
                self._figures(m.name, profile)

    @classmethod
    def from_spec(cls, spec: PoolSpec, models: Sequence[PoolModel], options: PoolOptions) -> SimulatedBackend:
        """Build the backend for ``models`` of ``spec`` (the :data:`~recal_gym.pools.base.BackendFactory`)."""
        return cls(spec, models, options)

    # ----------------------------------------------------------------------------------- profiles
    def profile_of(self, row: QARow, target: int = 0) -> str:
        """Profile dataset of a target of ``row``.

        Target 0 uses the data source's mapping, else ``single_hop_default`` (``hops == 1``) or
        ``multi_hop_default``; sub-questions use ``sub_question_default``. Without any mapping the
        data source itself is the profile.
        """
        own = self._spec.profile_for(row.data_source)
        if own is None:
            default_key = "single_hop_default" if row.hops == 1 else "multi_hop_default"
            own = self._map.get(default_key, row.data_source)
        if target == 0:
            return own
        return self._map.get("sub_question_default", own)

    def _figures(self, model: str, profile: str) -> _Figures:
        entry = self._models.get(model)
        if entry is None:
            raise UnknownModel(
                f"simulated backend does not serve model {model!r}; it serves {sorted(self._models)}"
                + close_matches_hint(model, self._models)
            )
        em = entry.em_by_dataset.get(profile)
        tokens = entry.tokens_by_dataset.get(profile)
        if em is None or tokens is None:
            missing = "profile_em" if em is None else "mean_tokens"
            raise InvalidConfig(
                f"simulated pool: model {model!r} has no {missing} for profile {profile!r}; "
                f"known profiles: {sorted(entry.em_by_dataset)}. Give explicit figures in the pool file"
            )
        p = min(max(em * self._cfg.accuracy_scale, 0.001), 0.999)
        return _Figures(p=p, threshold=NormalDist().inv_cdf(p), mean_tokens=tokens)

    def probability(self, model: str, row: QARow, target: int = 0) -> float:
        """Correctness probability ``p(m, d)`` of ``model`` on a target of ``row``."""
        return self._figures(model, self.profile_of(row, target)).p

    # ---------------------------------------------------------------------------------- protocol
    def attach_questions(self, rows: Sequence[QARow]) -> None:
        """Store the distractor bank of ``rows`` (gold answers per data source and answer type)."""
        self._bank = build_bank(rows)

    def call_batch(self, requests: Sequence[CallRequest]) -> list[CallResult]:
        """Answer every request, in order (each one independently of the others).

        Raises:
            UnknownModel: a request names a model this backend does not serve.
            InvalidConfig: the model has no figures for the target's profile.
        """
        return [self._timed(req, self._call(req)) for req in requests]

    def call(self, request: CallRequest) -> CallResult:
        """Answer one request."""
        return self._timed(request, self._call(request))

    def latency(self, model: str, completion_tokens: int) -> float:
        """Simulated seconds of a call: ``ttft + completion_tokens / tokens_per_s`` (``docs/pools.md`` §3).

        The model's ``latency_ttft_s``/``latency_tokens_per_s`` (project defaults in the Router-R1 profile:
        Router-R1 publishes no latency), else :data:`DEFAULT_TTFT_S` and :data:`DEFAULT_TOKENS_PER_S`.
        """
        entry = self._models[model]
        ttft = DEFAULT_TTFT_S if entry.latency_ttft_s is None else float(entry.latency_ttft_s)
        tps = DEFAULT_TOKENS_PER_S if entry.latency_tokens_per_s is None else float(entry.latency_tokens_per_s)
        return ttft + completion_tokens / tps

    def _timed(self, req: CallRequest, result: CallResult) -> CallResult:
        if not result.ok:
            return result
        return dataclasses.replace(result, latency_s=self.latency(req.model, result.completion_tokens))

    def metrics(self) -> dict[str, float]:
        """Counters: calls, correct, wrong (abstain + distractor), abstain, distractor, unrelated, failed."""
        return {k: float(v) for k, v in self._counts.items()}

    def close(self) -> None:
        """Nothing to release."""

    # ---------------------------------------------------------------------------------- internals
    def _length(self, eta: float, fig: _Figures, model: str) -> int:
        """``L = round(T·exp(σ·η − σ²/2))`` clipped to [8, min(512, max_tokens)]."""
        sigma = self._cfg.length_sigma
        hi = min(_MAX_TOKENS, self._models[model].max_tokens)
        raw = round(fig.mean_tokens * math.exp(sigma * eta - sigma * sigma / 2.0))
        return int(min(max(raw, min(_MIN_TOKENS, hi)), hi))

    def _call(self, req: CallRequest) -> CallResult:
        row = req.question
        targets = question_targets(row)
        all_golds = tuple(g for t in targets for g in t.golden_answers)
        forbidden = gold_tokens(all_golds)
        index = match_target(req.query, targets, self._cfg.relevance_threshold)
        self._counts["calls"] += 1
        if index is None:
            return self._unrelated(req, all_golds, forbidden)
        target = targets[index]
        fig = self._figures(req.model, self.profile_of(row, index))
        rng = keyed_generator(self._seed, row.question_id, index, req.model, "call")
        u = rng.random(3)
        n = rng.standard_normal(2)
        d = _Draws(fail=float(u[0]), abstain=float(u[1]), shared=float(u[2]), eps=float(n[0]), eta=float(n[1]))
        if d.fail < self._cfg.failure_rate:
            self._counts["failed"] += 1
            return CallResult(ok=False, error="injected_failure")
        length = self._length(d.eta, fig, req.model)
        shared_rng = keyed_generator(self._seed, row.question_id, index, SHARED_MODEL, "target")
        z = float(shared_rng.standard_normal())
        rho = self._cfg.difficulty_correlation
        correct = math.sqrt(rho) * z + math.sqrt(1.0 - rho) * d.eps < fig.threshold
        if self._cfg.reply_noise > 0.0:  # η = 0 makes no extra draw: replies stay byte-identical
            correct = self._noisy_outcome(req, index, fig.p, correct)
        if correct:
            self._counts["correct"] += 1
            text = compose_reply(
                statement(target.golden_answers[0]), target.text, length, forbidden, rng, scrub_first_line=False
            )
            return CallResult(ok=True, text=text, completion_tokens=length)
        self._counts["wrong"] += 1
        distractor = None
        if d.abstain >= self._cfg.abstain_rate:
            use_shared = d.shared < self._cfg.shared_distractor
            bank = self._bank.get(row.data_source, {})
            distractor = pick_distractor(target.golden_answers, all_golds, bank, shared_rng if use_shared else rng)
        if distractor is not None:
            text = compose_reply(statement(distractor), target.text, length, forbidden, rng, scrub_first_line=False)
            # Template words could complete a gold only in pathological cases; abstain then.
            if not contains_answer(text, target.golden_answers):
                self._counts["distractor"] += 1
                return CallResult(ok=True, text=text, completion_tokens=length)
        self._counts["abstain"] += 1
        text = compose_reply(ABSTAIN_LINE, target.text, length, forbidden, rng, scrub_first_line=True)
        return CallResult(ok=True, text=text, completion_tokens=length)

    def _noisy_outcome(self, req: CallRequest, target: int, p: float, latent: bool) -> bool:
        """With probability η a fresh Bernoulli(p) outcome keyed on (call_seed, turn), else ``latent``."""
        purpose = f"noise:{req.call_seed}:{req.turn}"
        u = keyed_generator(self._seed, req.question.question_id, target, req.model, purpose).random(2)
        return bool(u[1] < p) if u[0] < self._cfg.reply_noise else latent

    def _unrelated(self, req: CallRequest, all_golds: tuple[str, ...], forbidden: frozenset[str]) -> CallResult:
        """Uninformative reply to a query that matches no target; it never contains a gold answer."""
        row = req.question
        key = "unrelated:" + " ".join(normalize_answer(req.query).split())
        rng = keyed_generator(self._seed, row.question_id, "none", req.model, key)
        u = rng.random(1)
        eta = float(rng.standard_normal())
        if float(u[0]) < self._cfg.failure_rate:
            self._counts["failed"] += 1
            return CallResult(ok=False, error="injected_failure")
        self._counts["unrelated"] += 1
        length = self._length(eta, self._figures(req.model, self.profile_of(row, 0)), req.model)
        text = compose_reply(UNRELATED_LINE, req.query, length, forbidden, rng, scrub_first_line=True)
        if contains_answer(text, all_golds):  # only via neutralisation artefacts; fall back to no restatement
            text = compose_reply(UNRELATED_LINE, "", length, forbidden, rng, scrub_first_line=True)
        return CallResult(ok=True, text=text, completion_tokens=length)
