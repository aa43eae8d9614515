"""RouterQADiscrete-v0: RouterQA with a fixed-size observation and a discrete action (``docs/protocol.md`` §14).

Stable-baselines3 cannot handle text spaces, so this env wraps :class:`~envs.router_qa.RouterQAEnv` behind a
``Box`` observation (query features + turn state) and a ``Discrete(K + 1)`` action: route the question to
listed model ``k``, or answer with the best reply so far. Query features come from any object that satisfies
:class:`QueryFeaturizer`; the default, :class:`HashingFeaturizer`, needs no model. A MiniLM featuriser lives in
``agents.models.featurizers`` (it needs torch, which ``envs`` never imports).
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Protocol, runtime_checkable

import gymnasium as gym
import numpy as np
from gymnasium import spaces

from envs.router_qa import RouterQAEnv
from recal_gym.errors import InvalidAction, InvalidConfig, ResetNeeded
from recal_gym.pools.replies import answer_from_splice
from recal_gym.rewards.answer_metrics import normalize_answer
from recal_gym.rewards.presets import make_spec

__all__ = [
    "FLAT_INFO_KEYS",
    "HashingFeaturizer",
    "QueryFeaturizer",
    "RouterQADiscreteEnv",
    "best_answer",
    "flat_info_keys",
    "reply_answer",
]

def flat_info_keys(components: Sequence[str]) -> tuple[str, ...]:
    """Flat ``float`` keys of every step's ``info`` for a spec's components (meaningful on the terminal step).

    For ``Monitor(info_keywords=...)``: ``reward_<k>`` per gated component, then ``em``, ``f1``, ``raw_cost``,
    ``n_calls`` and ``format_ok_f`` (``format_ok`` as 0.0/1.0). An env's own keys are
    :attr:`RouterQADiscreteEnv.flat_info_keys`.
    """
    return (*(f"reward_{k}" for k in components), "em", "f1", "raw_cost", "n_calls", "format_ok_f")


FLAT_INFO_KEYS: tuple[str, ...] = flat_info_keys(make_spec("recal").names)
""":func:`flat_info_keys` of the default ``recal`` spec."""

_TOKEN_RE = re.compile(r"[a-z0-9]+")


@runtime_checkable
class QueryFeaturizer(Protocol):
    """Maps question texts to fixed-size feature vectors with every entry in [-1, 1]."""

    @property
    def dim(self) -> int:
        """Feature size D."""
        ...

    def __call__(self, texts: Sequence[str]) -> np.ndarray:
        """Return ``(len(texts), D)`` float32 features in [-1, 1] (deterministic per text)."""
        ...


@dataclass(frozen=True, slots=True, kw_only=True)
class HashingFeaturizer:
    """Signed feature hashing of lower-cased word n-grams, L2-normalised (no model, no vocabulary).

    Each n-gram (n = 1..``ngrams``) is hashed with BLAKE2b keyed by ``seed`` (never Python's salted
    ``hash``), so features agree across processes. Bucket = h mod D, sign = one bit of h. The summed
    vector is divided by its L2 norm, so every entry lies in [-1, 1] (an empty text gives zeros).

    Example:
        >>> f = HashingFeaturizer(dim=16)
        >>> f(["Who wrote Emma?"]).shape
        (1, 16)
    """

    dim: int = 64
    """Feature size D."""
    ngrams: int = 2
    """Largest n-gram length."""
    seed: int = 0
    """Hash key; different seeds give independent hash functions."""

    def __post_init__(self) -> None:
        """Validate the fields."""
        for name, low in (("dim", 1), ("ngrams", 1), ("seed", 0)):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < low:
                raise InvalidConfig(f"HashingFeaturizer.{name}={value!r}: must be an int >= {low}")

    def _vector(self, text: str) -> np.ndarray:
        tokens = _TOKEN_RE.findall(text.lower())
        out = np.zeros(self.dim, dtype=np.float64)
        key = self.seed.to_bytes(8, "little")
        for n in range(1, self.ngrams + 1):
            for i in range(len(tokens) - n + 1):
                gram = " ".join(tokens[i : i + n]).encode("utf-8", "surrogatepass")
                h = int.from_bytes(hashlib.blake2b(gram, digest_size=8, key=key).digest(), "little")
                out[h % self.dim] += 1.0 if (h >> 63) & 1 else -1.0
        norm = float(np.sqrt(np.sum(out * out)))
        return out / norm if norm > 0.0 else out

    def __call__(self, texts: Sequence[str]) -> np.ndarray:
        """Return ``(len(texts), dim)`` float32 features in [-1, 1]."""
        rows = [self._vector(t) for t in texts]
        return np.stack(rows).astype(np.float32) if rows else np.zeros((0, self.dim), dtype=np.float32)


def reply_answer(observation: str) -> str | None:
    """Return the answer stated by an information splice, or ``None`` (see ``answer_from_splice``)."""
    return answer_from_splice(observation)


def best_answer(answers: Sequence[str]) -> str | None:
    """The most frequent answer after SQuAD normalisation; ties go to the earliest. ``None`` if empty."""
    counts: dict[str, int] = {}
    first: dict[str, str] = {}
    for a in answers:
        key = normalize_answer(a)
        counts[key] = counts.get(key, 0) + 1
        first.setdefault(key, a)
    if not counts:
        return None
    top = max(counts.values())
    return next(first[k] for k in counts if counts[k] == top)


@dataclass(slots=True)
class _Turns:
    """Per-episode bookkeeping of the discrete wrapper (private)."""

    question: str
    asked: np.ndarray
    answers: list[str]
    last_has_answer: bool = False
    done: bool = False


class RouterQADiscreteEnv(gym.Env[np.ndarray, np.int64]):
    r"""RouterQA with a ``Box`` observation and a ``Discrete(K + 1)`` action, for stable-baselines3.

    ## Description
    Each step chooses one of K listed pool models to ask the episode's question, or answers. The env
    writes the text turn for the choice (``<think>…</think>`` + ``<search> model:question </search>``, or
    ``<answer> best </answer>``) and plays it in an inner :class:`~envs.router_qa.RouterQAEnv`, so the
    dynamics, the candidate pool and the reward are exactly RouterQA's. "Best reply so far" is the most
    frequent stated answer among the replies received (:func:`best_answer`), ``"unknown"`` if none.

    ## Action Space
    ``Discrete(K + 1)``: ``k < K`` routes to ``env.models[k]``; ``K`` answers. :meth:`action_masks`
    (sb3-contrib's MaskablePPO) allows routes only while routing turns remain, and hides models already
    asked (``mask_repeats``); answering is always allowed.

    ## Observation Space
    ``Box(D + K + 3,)`` float32: the question's features (D entries in [-1, 1]); then, in [0, 1], the
    fraction of turns used ``turn / (max_routed_turns + 1)``, the cost so far ``c / (c + cost_scale)``
    (c in µ$), K flags for models already asked, and whether the last reply stated an answer.

    ## Rewards
    RouterQA's scalar (a Python ``float``): 0.0 before the terminal step. ``info`` carries the text env's
    keys plus :data:`FLAT_INFO_KEYS` as flat Python floats.

    ## Starting State
    As RouterQA: a question drawn with the seeded generator; ``options={"question_id": q}`` or
    ``{"dataset": d}`` restrict it.

    ## Episode End
    ``terminated`` on the answer action. ``truncated`` as RouterQA (a route on the final, non-routing turn
    ends the episode without an answer, which fails the format check).

    ## Arguments
    See :meth:`__init__`.

    ## Version History
    * v0: initial version.

    Example:
        >>> env = RouterQADiscreteEnv()
        >>> obs, info = env.reset(seed=0)
        >>> obs.shape == env.observation_space.shape
        True
        >>> obs, r, term, trunc, info = env.step(env.answer_action)
        >>> term, type(r)
        (True, <class 'float'>)
    """

    metadata = {"render_modes": ["ansi", "rgb_array"], "render_fps": 1}  # noqa: RUF012 - Gymnasium's convention

    def __init__(
        self,
        dataset: Any = None,
        *,
        featurizer: QueryFeaturizer | None = None,
        cost_scale: float = 100.0,
        mask_repeats: bool = True,
        text_env: RouterQAEnv | None = None,
        render_mode: str | None = None,
        **text_env_kwargs: Any,
    ) -> None:
        """Build the env.

        Args:
            dataset: As :class:`~envs.router_qa.RouterQAEnv` (ignored when ``text_env`` is given).
            featurizer: Query featuriser (default :class:`HashingFeaturizer` with D = 64).
            cost_scale: µ$ at which the cost feature reaches 0.5.
            mask_repeats: Hide already-asked models in :meth:`action_masks`.
            text_env: A built RouterQA env to wrap (then ``dataset`` and ``text_env_kwargs`` must be empty).
            render_mode: ``None``, ``"ansi"`` or ``"rgb_array"``: the inner env's prompt + transcript as text or
                as a drawn frame (``"rgb_array"`` is what stable-baselines3's ``make_vec_env`` asks for).
            **text_env_kwargs: Passed to :class:`~envs.router_qa.RouterQAEnv` (``pool``, ``reward``, …).

        Raises:
            InvalidConfig: a bad argument.
        """
        if isinstance(cost_scale, bool) or not isinstance(cost_scale, int | float) or not cost_scale > 0:
            raise InvalidConfig(f"cost_scale={cost_scale!r}: must be a number > 0")
        if not isinstance(mask_repeats, bool):
            raise InvalidConfig(f"mask_repeats={mask_repeats!r}: must be a bool")
        featurizer = HashingFeaturizer() if featurizer is None else featurizer
        if not isinstance(featurizer, QueryFeaturizer) or not isinstance(featurizer.dim, int) or featurizer.dim < 1:
            raise InvalidConfig(
                f"featurizer={featurizer!r}: must implement QueryFeaturizer (an int `dim` >= 1 and __call__)"
            )
        if text_env is not None and (dataset is not None or text_env_kwargs):
            raise InvalidConfig("text_env is given: dataset and the RouterQAEnv keyword arguments must be left out")
        if render_mode is not None and render_mode not in self.metadata["render_modes"]:
            modes = self.metadata["render_modes"]
            raise InvalidConfig(f"render_mode must be None or one of {modes}, got {render_mode!r}")
        self.render_mode = render_mode
        self.text_env = (
            text_env if text_env is not None else RouterQAEnv(dataset, render_mode=render_mode, **text_env_kwargs)
        )
        self._owns_text_env = text_env is None
        self.featurizer = featurizer
        self.cost_scale = float(cost_scale)
        self.mask_repeats = mask_repeats
        self.models: tuple[str, ...] = tuple(m.name for m in self.text_env.pool.spec.listed)
        self.flat_info_keys: tuple[str, ...] = flat_info_keys(self.text_env.reward_spec.names)
        """This env's flat terminal ``info`` keys (for ``Monitor(info_keywords=...)``)."""
        self.answer_action = len(self.models)
        self._features: dict[str, np.ndarray] = {}
        d, k = int(featurizer.dim), len(self.models)
        low = np.concatenate([-np.ones(d), np.zeros(k + 3)]).astype(np.float32)
        self.observation_space = spaces.Box(low=low, high=np.ones(d + k + 3, dtype=np.float32), dtype=np.float32)
        self.action_space = spaces.Discrete(k + 1)
        self._turns: _Turns | None = None
        self._info: dict[str, Any] = {}

    # ------------------------------------------------------------------ observation
    def _question_features(self, question_id: str, question: str) -> np.ndarray:
        cached = self._features.get(question_id)
        if cached is None:
            out = np.asarray(self.featurizer([question]), dtype=np.float32)
            if out.shape != (1, self.featurizer.dim) or not np.all(np.isfinite(out)):
                raise InvalidConfig(
                    f"featurizer returned shape {out.shape} (or non-finite values); expected (1, {self.featurizer.dim})"
                )
            cached = np.clip(out[0], -1.0, 1.0)
            self._features[question_id] = cached
        return cached

    def _observation(self, info: dict[str, Any]) -> np.ndarray:
        t = self._state
        turns = float(info["turn"]) / float(self.text_env.max_routed_turns + 1)
        cost = float(info["raw_cost"])
        state = np.concatenate(
            [
                [min(turns, 1.0), cost / (cost + self.cost_scale)],
                t.asked,
                [1.0 if t.last_has_answer else 0.0],
            ]
        )
        feats = self._question_features(str(info["question_id"]), t.question)
        return np.concatenate([feats, state.astype(np.float32)]).astype(np.float32)

    @property
    def _state(self) -> _Turns:
        if self._turns is None:
            raise ResetNeeded("call reset() first")
        return self._turns

    @staticmethod
    def _flat(info: dict[str, Any]) -> dict[str, Any]:
        comps = info["reward_components"]
        flat: dict[str, Any] = {f"reward_{k}": float(v) for k, v in comps.items()}
        flat.update(
            em=float(info["em"]),
            f1=float(info["f1"]),
            raw_cost=float(info["raw_cost"]),
            n_calls=float(info["n_calls"]),
            format_ok_f=1.0 if info["format_ok"] else 0.0,
            is_success=bool(info["scored"] and info["em"] >= 1.0),
        )
        return {**info, **flat}

    # ------------------------------------------------------------------ Gymnasium API
    def reset(self, *, seed: int | None = None, options: dict[str, Any] | None = None) -> tuple[np.ndarray, dict]:
        """Start an episode (``options`` as RouterQA's ``reset``)."""
        super().reset(seed=seed)
        _, info = self.text_env.reset(seed=seed, options=options)
        row = self.text_env.questions.by_id(str(info["question_id"]))
        self._turns = _Turns(question=row.question, asked=np.zeros(len(self.models)), answers=[])
        self._info = self._flat(info)
        return self._observation(info), self._info

    def step(self, action: int | np.integer) -> tuple[np.ndarray, float, bool, bool, dict[str, Any]]:
        """Route to ``models[action]`` or answer (``action == answer_action``).

        Raises:
            InvalidAction: ``action`` is not an integer in ``[0, K]``.
            ResetNeeded: the episode has ended or never started.
        """
        a = self._check_action(action)
        t = self._state
        if t.done:
            raise ResetNeeded("call reset() before step(): the episode has ended")
        if a < self.answer_action:
            model = self.models[a]
            text = f"<think>I will ask {model}.</think>\n<search> {model}:{t.question} </search>"
        else:
            text = f"<think>I have what I need.</think>\n<answer> {best_answer(t.answers) or 'unknown'} </answer>"
        obs_text, reward, terminated, truncated, info = self.text_env.step(text)
        if a < self.answer_action:
            t.asked[a] = 1.0
            stated = reply_answer(obs_text)
            t.last_has_answer = stated is not None
            if stated is not None:
                t.answers.append(stated)
        t.done = bool(terminated or truncated)
        self._info = self._flat(info)
        return self._observation(info), float(reward), bool(terminated), bool(truncated), self._info

    def _check_action(self, action: Any) -> int:
        if isinstance(action, np.ndarray) and action.size == 1:
            action = action.reshape(()).item()
        if isinstance(action, bool) or not isinstance(action, int | np.integer):
            raise InvalidAction(f"RouterQADiscrete actions are ints in [0, {self.answer_action}], got {action!r}")
        if not 0 <= int(action) <= self.answer_action:
            raise InvalidAction(f"action {int(action)} is outside [0, {self.answer_action}] (K={len(self.models)})")
        return int(action)

    def action_masks(self) -> np.ndarray:
        """``(K + 1,)`` bool: actions worth taking now (MaskablePPO's hook). Answering is always allowed."""
        t = self._state
        routes_left = float(self._info.get("routed_turns_left", 0.0)) > 0.0 and not t.done
        mask = np.full(self.answer_action + 1, routes_left, dtype=bool)
        if self.mask_repeats:
            mask[: self.answer_action] &= t.asked == 0.0
        mask[self.answer_action] = True
        return mask

    def render(self) -> str | np.ndarray | None:  # type: ignore[override]
        """The inner env's prompt + transcript: ``str`` (``"ansi"``), RGB frame (``"rgb_array"``) or ``None``."""
        return self.text_env.render() if self.render_mode is not None else None

    def close(self) -> None:
        """Close the inner env if this env built it (idempotent)."""
        if self._owns_text_env:
            self.text_env.close()
        super().close()
