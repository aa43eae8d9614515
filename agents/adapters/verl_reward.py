"""verl custom reward function: score a verl response with RouterQA's reward spec (``docs/rewards.md``).

verl calls ``compute_score(data_source, solution_str, ground_truth, extra_info=None, **kwargs)`` once per
response (``custom_reward_function.path``/``name``); a returned dict must hold ``"score"`` and may hold more
keys, which verl's reward manager keeps per sample in ``reward_extra_info`` (hence in
``DataProto.non_tensor_batch``). :class:`RouterQAReward` returns

- ``score``: the env's scalar reward;
- ``raw_<component>`` for every component of the reward spec (what ``agents.adapters.verl.recal_kwargs_from_batch``
  hands to the ``recal`` estimator), and ``gated_<component>``;
- ``em``, ``f1``, ``format_ok``, ``n_calls``, ``episode_cost`` (the episode's raw cost in dollars: not
  ``raw_cost``, which is the ``cost`` component's key), ``turns`` and ``length_capped`` (floats, for verl's
  validation metrics).

Two sources of the episode:

1. **The ``routerqa_agent`` loop** (:mod:`agents.adapters.verl_tools`) played the whole episode and put its
   summary into ``extra_fields["routerqa"]``; verl merges extra fields into ``extra_info`` (``tool_extra_fields``),
   so the rewards are read, not recomputed, and ``solution_str`` is not parsed.
2. **Any other rollout** (verl's single-turn loop): ``solution_str`` is played as the first turn of the
   question's episode in a RouterQA env (``extra_info["question_id"]``), later turns empty, like the TRL scorer.
   verl decodes with ``skip_special_tokens=True``, so a tokenizer whose protocol tags are special tokens loses
   them here; use the agent loop for such tokenizers.

Point verl at a module-level instance (``examples/verl/routerqa_reward.py`` holds
``compute_score = RouterQAReward(RouterQAEnvConfig(...))``). ``ground_truth`` is not read: the env holds the
golden answers of every question.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from agents.adapters.verl_episode import EPISODE_KEY, RouterQAEnvConfig, episode_fields
from recal_gym.errors import InvalidData

__all__ = ["RouterQAReward", "reward_dict"]

_SCALARS = {
    "em": "em",
    "f1": "f1",
    "format_ok": "format_ok",
    "n_calls": "n_calls",
    "raw_cost": "episode_cost",
    "turns": "turns",
}
"""Episode summary key → reward-dict key (``raw_cost`` would clash with the ``cost`` component's ``raw_cost``)."""


def reward_dict(episode: Mapping[str, Any]) -> dict[str, float]:
    """The reward dict verl expects, from an episode summary (:func:`~agents.adapters.verl_episode.episode_fields`).

    Raises:
        InvalidData: the summary lacks a key (not written by ``episode_fields``).
    """
    try:
        out = {"score": float(episode["score"])}
        out.update({f"raw_{k}": float(v) for k, v in episode["raw"].items()})
        out.update({f"gated_{k}": float(v) for k, v in episode["gated"].items()})
        out.update({key: float(episode[k]) for k, key in _SCALARS.items()})
        out["length_capped"] = float(bool(episode["length_capped"]))
    except (KeyError, TypeError) as exc:
        raise InvalidData(f"extra_info[{EPISODE_KEY!r}] is not a RouterQA episode summary (missing {exc})") from None
    return out


class RouterQAReward:
    """verl ``compute_score`` for RouterQA (see the module docstring).

    Args:
        config: The env settings (same keys as the route tool's config); used only for responses that did not
            come from the ``routerqa_agent`` loop.
        tokenizer: Token counter of that env (the policy tokenizer; ``None`` counts words, which only changes
            the per-turn and splice caps).

    Attributes:
        env: The RouterQA env, built on the first response that needs it.
    """

    def __init__(self, config: RouterQAEnvConfig | None = None, *, tokenizer: Any = None) -> None:
        """Keep the settings; the env is built lazily."""
        self.config = config or RouterQAEnvConfig()
        self.tokenizer = tokenizer
        self.env: Any = None

    def _play(self, question_id: str, solution_str: str) -> dict[str, Any]:
        """Play ``solution_str`` as the first turn of the question's episode (later turns empty)."""
        if self.env is None:
            self.env = self.config.build_env(self.tokenizer)
        self.env.reset(options={"question_id": question_id})
        turn = solution_str
        while True:
            _, reward, terminated, truncated, info = self.env.step(turn)
            if terminated or truncated:
                return episode_fields({**info, "reward": reward})
            turn = ""

    def __call__(
        self,
        data_source: str,
        solution_str: str,
        ground_truth: Any = None,
        extra_info: Mapping[str, Any] | None = None,
        **kwargs: Any,
    ) -> dict[str, float]:
        """Score one verl response; return ``{"score": ..., "raw_<component>": ..., ...}``.

        Args:
            data_source: The row's ``data_source`` (checked against the question's dataset).
            solution_str: The decoded response.
            ground_truth: The row's ``reward_model.ground_truth`` (not read).
            extra_info: The row's ``extra_info`` merged with the agent loop's extra fields.
            **kwargs: verl's further keywords (``reward_router_address``, ...), ignored.

        Raises:
            InvalidData: neither an episode summary nor ``question_id`` in ``extra_info``, a multi-turn response
                (``extra_info["num_turns"] > 2``) without a summary, or a ``data_source`` that is not the
                question's dataset.
        """
        extra = dict(extra_info or {})
        episode = extra.get(EPISODE_KEY)
        if episode is None:
            turns = extra.get("num_turns")
            if turns is not None and int(turns) > 2:
                raise InvalidData(
                    f"a {int(turns)}-turn response without extra_info[{EPISODE_KEY!r}]: multi-turn RouterQA rollouts "
                    "must come from the routerqa_agent loop (its summary reaches extra_info through verl's "
                    "tool_extra_fields); replaying the decoded text would score the wrong episode"
                )
            qid = extra.get("question_id")
            if qid is None:
                raise InvalidData(
                    f"extra_info has neither {EPISODE_KEY!r} (the routerqa_agent loop's summary) nor 'question_id'; "
                    f"build the rows with routerqa_verl_rows (keys present: {sorted(extra)})"
                )
            episode = self._play(str(qid), str(solution_str))
        if str(episode.get("data_source")) != str(data_source):
            raise InvalidData(
                f"data_source {data_source!r} is not the dataset {episode.get('data_source')!r} of question "
                f"{episode.get('question_id')!r}"
            )
        return reward_dict(episode)
