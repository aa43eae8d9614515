"""RouterQA-v0: multi-round LLM routing as a Gymnasium text environment (``docs/protocol.md``)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import Any, Literal

import gymnasium as gym
import numpy as np

from envs.spaces import FreeText
from recal_gym.data import QuestionSet, load_questions
from recal_gym.errors import InvalidAction, InvalidConfig, ResetNeeded, UnknownName, close_matches_hint
from recal_gym.pools import Pool, PoolSpec, build_pool
from recal_gym.pools.base import result_problem
from recal_gym.pools.options import PoolOptions
from recal_gym.prompt import DescriptorField, PromptVariant, render_router_prompt
from recal_gym.protocol import QuerySplit, cut_action, neutralise, parse_action, scrub_surrogates
from recal_gym.resolver import resolve_model
from recal_gym.rewards.presets import make_spec
from recal_gym.rewards.scoring import EpisodeScore, EpisodeScorer
from recal_gym.rewards.spec import RewardSpec
from recal_gym.rewards.state import RewardState
from recal_gym.tokens import TokenCounter, TokenizerCounter, WordPunctCounter
from recal_gym.types import CallRecord, CallRequest, CallResult, EpisodeRecord, NameMatching, QARow

__all__ = ["PendingCall", "RouterQAEnv"]

ObsTruncation = Literal["content", "splice"]
_OPEN, _CLOSE = "\n\n<information>", "</information>\n\n"
_NONE_SPLICE = _OPEN + "None" + _CLOSE
_RESET_OPTIONS = ("question_id", "dataset", "call_seed")
CHARS_PER_TOKEN_BOUND = 8
"""Character bound per token unit: actions are clipped to ``max_turn_chars`` (default
``8 * max_turn_tokens``) and reply contents to ``8 * max_obs_length`` characters, so text without token
boundaries (a 10 MB run of letters counts as one word) cannot enter the transcript whole."""


def _question_set(dataset: str | Sequence[QARow] | QuestionSet | None) -> QuestionSet:
    if dataset is None:
        return load_questions("embedded")
    if isinstance(dataset, QuestionSet):
        return dataset
    if isinstance(dataset, str):
        return load_questions(dataset)
    rows = list(dataset)
    if not rows or not all(isinstance(r, QARow) for r in rows):
        raise InvalidConfig(
            "dataset must be None, 'embedded[:name]', a .jsonl/.parquet path, a QuestionSet or a non-empty "
            f"sequence of QARow; got {type(dataset).__name__}"
        )
    return QuestionSet(rows)


@dataclass(frozen=True, slots=True)
class PendingCall:
    """A candidate call an env turn is waiting for (see :meth:`RouterQAEnv.begin_step`)."""

    request: CallRequest


@dataclass(slots=True)
class _Episode:
    """Mutable bookkeeping of the running episode (private)."""

    row: QARow
    prompt: str
    call_seed: int = 0
    transcript: str = ""
    turn: int = 0
    spans: list[tuple[int, int]] = field(default_factory=list)
    calls: list[CallRecord] = field(default_factory=list)
    counts: dict[str, float] = field(default_factory=dict)
    calls_per_model: dict[str, float] = field(default_factory=dict)
    raw_cost: float = 0.0
    latency_s: float = 0.0
    transcript_tokens: int = 0
    done: bool = False

    def copy(self) -> _Episode:
        """A copy sharing no container (the snapshot a failed step restores)."""
        spans, calls, counts, per_model = list(self.spans), list(self.calls), dict(self.counts), self.calls_per_model
        return replace(self, spans=spans, calls=calls, counts=counts, calls_per_model=dict(per_model))


class RouterQAEnv(gym.Env[str, str]):
    r"""Answer a question by thinking, routing sub-queries to candidate LLMs, and answering.

    ## Description
    The Router-R1 multi-round routing protocol (arXiv 2506.09033) as a text environment. Each step
    is one policy turn: the env clips it, cuts it after the first ``</search>`` (else the first
    ``</answer>``), parses the first ``search``/``answer`` block, calls the routed candidate model
    and appends its neutralised reply inside ``<information>`` tags. Candidate text can never forge
    tags, route, or end the episode.

    ## Action Space
    :class:`~envs.spaces.FreeText`: any ``str`` (one decoded policy turn). A non-``str`` raises
    :class:`~recal_gym.errors.InvalidAction` (a ``TypeError``).

    ## Observation Space
    :class:`~envs.spaces.FreeText`. ``reset`` returns the router prompt (a user message, no chat
    template applied); ``step`` returns the text appended to the transcript in that step (``""``
    if none), e.g. ``"\n\n<information>...</information>\n\n"``.

    ## Rewards
    ``0.0`` on non-terminal steps. On the terminal step, the scalar of the reward spec (presets
    ``"recal"``, the default, and ``"router-r1"``; ``docs/rewards.md``), which equals
    ``sum(info["reward_weights"][k] * info["reward_components"][k])`` folded in key order
    ``format, answer, info, route, balance, cost``, bit for bit.

    ## Starting State
    A question drawn uniformly from the dataset with ``self.np_random``; ``reset(options=
    {"question_id": q})`` pins the question (GRPO groups), ``{"dataset": d}`` restricts the draw and
    ``{"call_seed": s}`` (an int, default 0) is passed on in every call of the episode
    (``CallRequest.call_seed``): it keys the simulated pool's per-call reply noise.

    ## Episode End
    ``terminated`` on an answer. ``truncated`` after the final (non-routing) turn without an answer
    (``max_routed_turns + 1`` steps) or when the transcript reaches ``max_transcript_tokens``.

    ## Failures
    A failed, malformed or out-of-range call result is a ``call_failed`` route labelled in
    ``info["call_error"]``; lone surrogates in actions and replies become U+FFFD. Only ``InvalidAction``
    and ``ResetNeeded`` are raised on purpose; if a backend bug raises inside a step, the episode is
    restored to its state before the step and the env stays usable.

    ## Arguments
    See :meth:`__init__`.

    ## Version History
    * v0: initial version (Router-R1 training-loop protocol with recal-gym's documented deviations).

    Example:
        >>> import gymnasium as gym, recal_gym
        >>> env = gym.make("RouterQA-v0")
        >>> prompt, info = env.reset(seed=0)
        >>> obs, r, term, trunc, info = env.step("<think>easy</think><answer> Paris </answer>")
        >>> term, info["termination"]
        (True, 'answer')
    """

    metadata = {"render_modes": ["ansi", "rgb_array"], "render_fps": 1}  # noqa: RUF012 - Gymnasium convention

    def __init__(
        self,
        dataset: str | Sequence[QARow] | QuestionSet | None = None,
        *,
        pool: str | PoolSpec | Pool | Mapping[str, Any] | None = None,
        pool_options: PoolOptions | None = None,
        reward: str | RewardSpec | Mapping[str, Any] = "recal",
        reward_state: RewardState | None = None,
        max_routed_turns: int = 4,
        max_turn_tokens: int = 1024,
        max_obs_length: int = 600,
        max_start_length: int = 2048,
        max_transcript_tokens: int = 4096,
        max_turn_chars: int | None = None,
        token_counter: TokenCounter | Any | None = None,
        name_matching: NameMatching | None = None,
        query_split: QuerySplit = "first-colon",
        obs_truncation: ObsTruncation = "content",
        prompt_variant: PromptVariant = "qwen",
        descriptor_fields: Sequence[DescriptorField] = ("descriptor",),
        render_mode: str | None = None,
    ) -> None:
        """Build the environment.

        Args:
            dataset: ``None`` (all embedded FanOutQA-derived datasets), ``"embedded:<name>"``, a
                JSONL/Parquet path, a sequence of :class:`~recal_gym.types.QARow` or a
                :class:`~recal_gym.data.QuestionSet`.
            pool: ``None`` (six simulated Router-R1 models), a profile name, a pool file path or
                mapping, a :class:`~recal_gym.pools.PoolSpec`, or a built
                :class:`~recal_gym.pools.Pool` (shared, not closed by this env).
            pool_options: Seed, cache, timeouts and simulated settings when the env builds the pool.
            reward: ``"recal"`` (default), ``"router-r1"`` or a :class:`RewardSpec`.
            reward_state: Balance EMA and cost window; pass one object to several envs to share it.
                ``None`` creates a fresh default state.
            max_routed_turns: Routing turns before the final, non-routing turn (Router-R1: 4).
            max_turn_tokens: Per-turn clip of the action, in token-counter units.
            max_obs_length: Cap of one information splice.
            max_start_length: Cap of the prompt, checked for every question at construction.
            max_transcript_tokens: Cap of the transcript; reaching it truncates the episode.
            max_turn_chars: Per-turn clip of the action in characters, applied before the token clip
                (``None``: ``8 * max_turn_tokens``). Sets ``info["action_clipped"]`` like the token clip.
            token_counter: A :class:`~recal_gym.tokens.TokenCounter`, or a tokenizer with
                ``encode``/``decode`` (wrapped), or ``None`` (words and punctuation).
            name_matching: ``"lenient"``, ``"exact"`` or ``"router-r1"``; ``None`` picks
                ``"router-r1"`` for the ``router-r1`` reward preset and ``"lenient"`` otherwise.
            query_split: ``"first-colon"`` (default) or ``"router-r1"``.
            obs_truncation: ``"content"`` (default, keeps ``</information>``) or ``"splice"``.
            prompt_variant: ``"qwen"`` (Router-R1's prompt), ``"llama"`` or ``"compact"`` (the same
                elements in terser wording with first-sentence descriptors, ~25 % fewer tokens; a
                documented deviation from Router-R1 for small CPU policies, ``recal_gym.prompt``).
            descriptor_fields: ``("descriptor",)`` or ``("descriptor", "price")``.
            render_mode: ``None``, ``"ansi"`` (prompt + transcript as a ``str``) or ``"rgb_array"`` (the
                same text drawn as a ``(600, 800, 3)`` uint8 frame, with matplotlib).

        Raises:
            InvalidConfig: a bad argument, or a prompt longer than ``max_start_length``.
        """
        self._check_limits(max_routed_turns, max_turn_tokens, max_obs_length, max_start_length, max_transcript_tokens)
        max_turn_chars = CHARS_PER_TOKEN_BOUND * max_turn_tokens if max_turn_chars is None else max_turn_chars
        if isinstance(max_turn_chars, bool) or not isinstance(max_turn_chars, int) or max_turn_chars < 1:
            raise InvalidConfig(f"max_turn_chars must be None or an int >= 1, got {max_turn_chars!r}")
        if obs_truncation not in ("content", "splice"):
            raise InvalidConfig(f"obs_truncation must be 'content' or 'splice', got {obs_truncation!r}")
        if query_split not in ("first-colon", "router-r1"):
            raise InvalidConfig(f"query_split must be 'first-colon' or 'router-r1', got {query_split!r}")
        if render_mode is not None and render_mode not in self.metadata["render_modes"]:
            modes = self.metadata["render_modes"]
            raise InvalidConfig(f"render_mode must be None or one of {modes}, got {render_mode!r}")
        self.render_mode = render_mode
        self.questions = _question_set(dataset)
        self._owns_pool = not isinstance(pool, Pool)
        self.pool = pool if isinstance(pool, Pool) else build_pool(pool, pool_options)  # type: ignore[arg-type]
        self.pool.attach_questions(self.questions.rows)
        self.reward_spec = make_spec(reward)
        self._scorer = EpisodeScorer(self.reward_spec)
        self.reward_spec_hash = self._scorer.spec_hash
        if name_matching is None:
            name_matching = "router-r1" if self.reward_spec.name == "router-r1" else "lenient"
        self.name_table = self.pool.spec.name_table(name_matching)
        self.reward_state = reward_state or RewardState.default(self.reward_spec, self.name_table.listed)
        self.reward_state.check(self.reward_spec, self.name_table.listed, where="RouterQAEnv(reward_state=...)")
        self.counter: TokenCounter = (
            WordPunctCounter()
            if token_counter is None
            else token_counter
            if isinstance(token_counter, TokenCounter)
            else TokenizerCounter(token_counter)
        )
        self.max_routed_turns = max_routed_turns
        self.max_turn_tokens = max_turn_tokens
        self.max_obs_length = max_obs_length
        self.max_start_length = max_start_length
        self.max_transcript_tokens = max_transcript_tokens
        self.max_turn_chars = max_turn_chars
        self.query_split: QuerySplit = query_split
        self.obs_truncation: ObsTruncation = obs_truncation
        self.prompt_variant: PromptVariant = prompt_variant
        self.descriptor_fields = tuple(descriptor_fields)
        self._listed = self.pool.spec.listed
        self._check_prompt_lengths()
        self.observation_space = FreeText()
        self.action_space = FreeText()
        self._ep: _Episode | None = None
        self._last_record: EpisodeRecord | None = None
        self._pending: tuple[_Episode, dict[str, Any]] | None = None

    # ------------------------------------------------------------------ construction helpers
    @staticmethod
    def _check_limits(*values: int) -> None:
        names = ("max_routed_turns", "max_turn_tokens", "max_obs_length", "max_start_length", "max_transcript_tokens")
        for name, value in zip(names, values, strict=True):
            if (
                isinstance(value, bool)
                or not isinstance(value, int)
                or value < (0 if name == "max_routed_turns" else 1)
            ):
                raise InvalidConfig(f"{name} must be an int >= {0 if name == 'max_routed_turns' else 1}, got {value!r}")
        if values[2] < 8:
            raise InvalidConfig(f"max_obs_length must be >= 8 to hold the information tags, got {values[2]!r}")

    def _prompt(self, row: QARow) -> str:
        return render_router_prompt(
            self._listed, row.question, variant=self.prompt_variant, descriptor_fields=self.descriptor_fields
        )

    def _check_prompt_lengths(self) -> None:
        if not self.questions.rows:
            raise InvalidConfig("dataset holds no questions; give a dataset with at least one row")
        longest = max(self.questions.rows, key=lambda r: len(r.question))
        n = self.counter.count(self._prompt(longest))
        if n > self.max_start_length:
            raise InvalidConfig(
                f"the prompt for question {longest.question_id!r} has {n} tokens > max_start_length="
                f"{self.max_start_length}; raise the limit or shorten descriptors (Router-R1 silently "
                "left-cut the prompt, losing its instructions)"
            )

    @property
    def _episode(self) -> _Episode:
        if self._ep is None:
            raise ResetNeeded("call reset() first")
        return self._ep

    # ------------------------------------------------------------------ Gymnasium API
    def reset(self, *, seed: int | None = None, options: dict[str, Any] | None = None) -> tuple[str, dict[str, Any]]:
        """Start an episode; see the class docstring for ``options``.

        Raises:
            ValueError: unknown option keys, or a ``question_id`` outside ``dataset``.
            KeyError: an unknown ``question_id`` or ``dataset`` (with close matches).
        """
        super().reset(seed=seed)
        opts = dict(options or {})
        row = self._pick_row(opts)
        self._ep = _Episode(row=row, prompt=self._prompt(row), call_seed=self._call_seed(opts))
        self._ep.calls_per_model = {name: 0.0 for name in self.pool.spec.names}
        self._ep.counts = dict.fromkeys(
            ("n_route_attempts", "n_calls", "n_failed_calls", "n_unknown_model", "n_invalid_actions"), 0.0
        )
        self._pending = None
        return self._ep.prompt, self._info(step=None, score=None)

    @staticmethod
    def _call_seed(options: dict[str, Any]) -> int:
        seed = options.get("call_seed", 0)
        if isinstance(seed, bool) or not isinstance(seed, int):
            raise ValueError(f"reset option call_seed must be an int, got {seed!r}")
        return int(seed)

    def _pick_row(self, options: dict[str, Any]) -> QARow:
        unknown = sorted(set(options) - set(_RESET_OPTIONS))
        if unknown:
            raise ValueError(f"unknown reset option(s) {unknown}; allowed: {list(_RESET_OPTIONS)}")
        qid, dataset = options.get("question_id"), options.get("dataset")
        if dataset is not None and dataset not in self.questions.datasets():
            raise UnknownName(
                f"dataset {dataset!r} is not in this env; datasets: {list(self.questions.datasets())}"
                + close_matches_hint(str(dataset), self.questions.datasets())
            )
        if qid is not None:
            row = self.questions.by_id(str(qid))
            if dataset is not None and row.data_source != dataset:
                raise ValueError(
                    f"question_id {qid!r} belongs to dataset {row.data_source!r}, not to the requested {dataset!r}"
                )
            return row
        ids = self.questions.ids(dataset)
        return self.questions.by_id(ids[int(self.np_random.integers(len(ids)))])

    def step(self, action: str) -> tuple[str, float, bool, bool, dict[str, Any]]:
        """Take one policy turn; see the class docstring (raises as :meth:`begin_step`)."""
        pending = self.begin_step(action)
        try:
            result = None if pending is None else self.pool.call(pending.request)
        except BaseException:  # a backend bug: undo the half-taken step, then let it surface
            self.abort_step()
            raise
        return self.finish_step(result)

    def abort_step(self) -> None:
        """Undo a pending :meth:`begin_step` (e.g. after ``pool.call_batch`` raised); no-op if none is pending."""
        if self._pending is not None:
            self._ep = self._pending[0]
            self._pending = None

    def begin_step(self, action: str) -> PendingCall | None:
        """First half of :meth:`step`: clip, cut, parse and resolve; return the call to make, if any.

        A vector env can gather the pending calls of all its sub-envs, answer them with one
        ``pool.call_batch`` and then call :meth:`finish_step` on each.

        Raises:
            InvalidAction: ``action`` is not a ``str``.
            ResetNeeded: the episode has ended or ``reset`` was never called.
        """
        if not isinstance(action, str):
            raise InvalidAction(f"RouterQA actions are str (one decoded policy turn), got {type(action).__name__}")
        if self._ep is None or self._ep.done:
            raise ResetNeeded("call reset() before step(): the episode has ended or never started")
        if self._pending is not None:
            raise ResetNeeded("begin_step() was called twice without finish_step() or abort_step()")
        snapshot = self._ep.copy()
        try:
            return self._begin(scrub_surrogates(action[: self.max_turn_chars]), len(action), snapshot)
        except BaseException:
            self._ep = snapshot
            raise

    def _begin(self, action: str, length: int, snapshot: _Episode) -> PendingCall | None:
        ep = self._episode
        ep.turn += 1
        clipped = length > len(action)
        if self.counter.count(action) > self.max_turn_tokens:
            action, clipped = self.counter.truncate(action, self.max_turn_tokens), True
        kept, cut = cut_action(action)
        parsed = parse_action(kept, self.query_split)
        step: dict[str, Any] = {
            "kept": kept,
            "cut": cut,
            "parsed": parsed,
            "action_clipped": clipped,
            "discarded_chars": float(length - len(kept)),
            "model": "",
            "route_outcome": "",
        }
        pending = None
        if parsed.kind == "route":
            ep.counts["n_route_attempts"] += 1.0
            if ep.turn > self.max_routed_turns:
                step["route_outcome"] = "not_executed_final_turn"
            else:
                model = resolve_model(parsed.name, self.name_table)
                if model is None:
                    step["route_outcome"] = "unknown_model"
                else:
                    step["model"] = model
                    request = CallRequest(
                        model=model, query=parsed.query, question=ep.row, call_seed=ep.call_seed, turn=ep.turn
                    )
                    pending = PendingCall(request)
        elif parsed.kind != "answer":
            ep.counts["n_invalid_actions"] += 1.0
        self._pending = (snapshot, step)
        return pending

    def finish_step(self, result: CallResult | None) -> tuple[str, float, bool, bool, dict[str, Any]]:
        """Second half of :meth:`step`: splice the call's result, check the limits and score.

        Args:
            result: The answer to the :class:`PendingCall` returned by :meth:`begin_step`
                (``None`` when it returned none).
        """
        if self._pending is None or self._ep is None:
            raise ResetNeeded("finish_step() needs a preceding begin_step()")
        snapshot, step = self._pending
        self._pending = None
        try:
            return self._finish(step, result)
        except BaseException:  # a bug: never leave a half-finished step behind
            self._ep = snapshot
            raise

    def _finish(self, step: dict[str, Any], result: CallResult | None) -> tuple[str, float, bool, bool, dict[str, Any]]:
        ep = self._episode
        obs = self._execute(step, result)
        start = len(ep.transcript) + len(step["kept"])
        ep.transcript += step["kept"] + obs
        if step.get("span") is not None:
            s, e = step["span"]
            ep.spans.append((start + s, start + e))
        terminated = step["parsed"].kind == "answer"
        termination = "answer" if terminated else ""
        truncated = False
        ep.transcript_tokens = self.counter.count(ep.transcript)  # once per step; _info reuses it
        if ep.transcript_tokens >= self.max_transcript_tokens:
            ep.transcript = self.counter.truncate(ep.transcript, self.max_transcript_tokens)
            ep.transcript_tokens = self.counter.count(ep.transcript)
            ep.spans = [(s, min(e, len(ep.transcript))) for s, e in ep.spans if s < len(ep.transcript)]
            truncated, termination = not terminated, termination or "transcript_limit"
        if not (terminated or truncated) and ep.turn > self.max_routed_turns:
            truncated, termination = True, "turn_limit"
        score = None
        if terminated or truncated:
            ep.done = True
            score = self._score(termination)
        step["termination"] = termination
        reward = 0.0 if score is None else score.reward
        return obs, reward, terminated, truncated, self._info(step=step, score=score)

    def _execute(self, step: dict[str, Any], result: CallResult | None) -> str:
        ep = self._episode
        step.update(
            obs_truncated=False,
            reply_neutralised=False,
            call_tokens=0.0,
            call_cost=0.0,
            call_latency=0.0,
            span=None,
            call_error="",
        )
        outcome = step["route_outcome"]
        if step["parsed"].kind != "route" or outcome == "not_executed_final_turn":
            if outcome:
                self._record_call(step, "not_executed_final_turn", 0, 0.0)
            return ""
        if outcome == "unknown_model":
            ep.counts["n_unknown_model"] += 1.0
            self._record_call(step, "unknown_model", 0, 0.0)
            return _NONE_SPLICE
        model = self.pool.spec.model(step["model"])
        ep.counts["n_calls"] += 1.0
        ep.calls_per_model[model.name] += 1.0
        problem = "no_result" if result is None else result_problem(result)
        if problem or result is None or not result.ok:
            ep.counts["n_failed_calls"] += 1.0
            step["route_outcome"] = "call_failed"
            step["call_error"] = problem or str(result.error if result is not None else "") or "failed"
            self._record_call(step, "call_failed", 0, 0.0)
            return _NONE_SPLICE
        content, step["reply_neutralised"] = neutralise(scrub_surrogates(result.text.strip()))
        max_chars = CHARS_PER_TOKEN_BOUND * self.max_obs_length
        splice, span, truncated = self._splice(content[:max_chars])
        step["obs_truncated"] = truncated or len(content) > max_chars
        tokens = result.completion_tokens
        cost = tokens * model.price_per_1m_output
        ep.raw_cost += cost
        latency = result.latency_s
        if latency is not None:
            ep.latency_s += float(latency)
        step.update(
            route_outcome="executed",
            call_tokens=float(tokens),
            call_cost=float(cost),
            call_latency=0.0 if latency is None else float(latency),
            span=span,
        )
        self._record_call(step, "executed", tokens, cost, latency)
        return splice

    def _splice(self, content: str) -> tuple[str, tuple[int, int] | None, bool]:
        """Return (splice, content span inside it, truncated?) under the observation cap ``T``."""
        full = _OPEN + content + _CLOSE
        if self.counter.count(full) <= self.max_obs_length:
            return full, (len(_OPEN), len(_OPEN) + len(content)), False
        if self.obs_truncation == "splice":
            cut = self.counter.truncate(full, self.max_obs_length)
            end = max(len(_OPEN), min(len(cut), len(_OPEN) + len(content)))
            return cut, ((len(_OPEN), end) if len(cut) > len(_OPEN) else None), True
        budget = self.max_obs_length - self.counter.count(_OPEN) - self.counter.count(_CLOSE)
        while True:  # shrink until the whole splice fits (token counts need not be additive)
            kept = self.counter.truncate(content, budget)
            full = _OPEN + kept + _CLOSE
            if self.counter.count(full) <= self.max_obs_length or budget <= 0:
                return full, (len(_OPEN), len(_OPEN) + len(kept)), True
            budget -= 1

    def _record_call(
        self, step: dict[str, Any], outcome: str, tokens: int, cost: float, latency: float | None = None
    ) -> None:
        ep = self._episode
        price = self.pool.spec.model(step["model"]).price_per_1m_output if step["model"] else 0.0
        ep.calls.append(
            CallRecord(
                turn=ep.turn,
                requested_model=step["parsed"].name,
                model=step["model"],
                outcome=outcome,  # type: ignore[arg-type]
                completion_tokens=tokens,
                price_per_1m=price,
                cost=cost,
                latency_s=latency,
            )
        )

    def _score(self, termination: str) -> EpisodeScore:
        ep = self._episode
        self._last_record = EpisodeRecord(
            question_id=ep.row.question_id,
            data_source=ep.row.data_source,
            question=ep.row.question,
            golden_answers=ep.row.golden_answers,
            transcript=ep.transcript,
            information_spans=tuple(ep.spans),
            calls=tuple(ep.calls),
            raw_cost=ep.raw_cost,
            termination=termination,
            pool=self.name_table,
        )
        # In place: sub-envs may share this state object (batch-mode states ignore the update).
        score = self._scorer.score(self._last_record, self.reward_state, update=True)
        return score

    def _info(self, *, step: dict[str, Any] | None, score: EpisodeScore | None) -> dict[str, Any]:
        ep = self._episode
        s = step or {}
        parsed = s.get("parsed")
        zeros = dict.fromkeys(self._scorer.names, 0.0)
        info: dict[str, Any] = {
            "question_id": ep.row.question_id,
            "data_source": ep.row.data_source,
            "turn": float(ep.turn),
            "routed_turns_left": float(max(0, self.max_routed_turns - ep.turn)),
            "action_kind": parsed.kind if parsed else "",
            "parse_error": parsed.parse_error if parsed else "",
            "cut": s.get("cut", ""),
            "kept_chars": float(len(s.get("kept", ""))),
            "discarded_chars": s.get("discarded_chars", 0.0),
            "action_clipped": bool(s.get("action_clipped", False)),
            "obs_truncated": bool(s.get("obs_truncated", False)),
            "reply_neutralised": bool(s.get("reply_neutralised", False)),
            "requested_model": parsed.name if parsed else "",
            "model": s.get("model", ""),
            "route_outcome": s.get("route_outcome", ""),
            "call_error": s.get("call_error", ""),
            "call_completion_tokens": s.get("call_tokens", 0.0),
            "call_cost": s.get("call_cost", 0.0),
            "call_latency_s": s.get("call_latency", 0.0),
            **ep.counts,
            "calls_per_model": dict(ep.calls_per_model),
            "raw_cost": float(ep.raw_cost),
            "latency_s": float(ep.latency_s),
            "reward_components": dict(score.components) if score else dict(zeros),
            "reward_components_raw": dict(score.components_raw) if score else dict(zeros),
            "reward_gates": dict(score.gates) if score else dict(zeros),
            "reward_weights": dict(self._scorer.weights),
            "reward_spec_hash": self.reward_spec_hash,
            "scored": score is not None,
            "em": score.em if score else 0.0,
            "f1": score.f1 if score else 0.0,
            "format_ok": bool(score.format_ok) if score else False,
            "has_answer": bool(score.has_answer) if score else False,
            "format_error": score.format_error if score else "",
            "answer": score.answer if score else "",
            "termination": s.get("termination", ""),
            "transcript_tokens": float(ep.transcript_tokens),
        }
        if score is not None and self._last_record is not None:
            info["episode_record"] = self._last_record.to_dict()
        return info

    # ------------------------------------------------------------------ extras
    def render(self) -> str | np.ndarray | None:  # type: ignore[override]
        """Prompt + transcript: a ``str`` in ``"ansi"`` mode, an RGB frame in ``"rgb_array"`` mode, else ``None``.

        Raises:
            MissingDependency: ``"rgb_array"`` without matplotlib (``pip install matplotlib``).
        """
        if self.render_mode is None:
            return None
        text = "" if self._ep is None else self._ep.prompt + self._ep.transcript
        if self.render_mode == "rgb_array":
            from envs.rendering import text_frame

            return text_frame(text)
        return text

    def last_episode_record(self) -> EpisodeRecord | None:
        """The record of the last scored episode (a frozen dataclass), or ``None``."""
        return self._last_record

    def reward_state_dict(self) -> dict[str, Any]:
        """The reward state's ``state_dict()`` (for checkpoints and batch-mode learners)."""
        return self.reward_state.state_dict()

    def load_reward_state(self, state: Mapping[str, Any]) -> None:
        """Load a reward ``state_dict()`` in place (a learner pushes batch-mode updates this way)."""
        self.reward_state.load_state_dict(dict(state))

    def close(self) -> None:
        """Close the pool if this env built it (idempotent)."""
        if self._owns_pool:
            self.pool.close()
        super().close()
