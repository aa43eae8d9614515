"""RouterQA episodes for verl's agent loop, written against verl's shapes but not against verl itself.

verl (0.8) runs one ``AgentLoopBase.run`` coroutine per sample: it generates with
``server_manager.generate(request_id=..., prompt_ids=..., sampling_params=...)`` (a ``TokenOutput`` with
``token_ids`` and ``log_probs``) and returns an ``AgentLoopOutput`` (``prompt_ids``, ``response_ids``,
``response_mask`` with 1 on LLM tokens and 0 on tool tokens, ``response_logprobs``, ``num_turns``,
``extra_fields``). :class:`RouterQAEpisodes` plays one RouterQA episode in exactly that form, with the same
bookkeeping as the ``agents`` learner and the TRL rollout (``docs/learner.md`` §6): generate a turn (stop at
``</search>``/``</answer>``), step the env with its text, keep the sampled ids the env kept, splice the
observation's ids (mask 0), repeat. The candidate call of a routing turn goes through ``call`` (verl: the
:class:`~agents.adapters.verl_tools.RouteTool`) or the env's own pool. The terminal rewards go into
``extra_fields[EPISODE_KEY]``; verl merges ``extra_fields`` into the reward function's ``extra_info``
(``tool_extra_fields``), where :mod:`agents.adapters.verl_reward` returns them as ``score`` plus
``raw_<component>`` keys.

:func:`routerqa_verl_rows` writes the dataset rows verl's ``RLHFDataset`` reads (``data_source``, ``prompt``,
``reward_model.ground_truth``, ``extra_info.question_id``, ``agent_name``).
"""

from __future__ import annotations

import asyncio
import dataclasses
import json
import threading
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from agents.grpo.rollout import TextCodec
from recal_gym.errors import InvalidConfig, InvalidData, close_matches_hint
from recal_gym.types import CallRequest, CallResult

__all__ = [
    "EPISODE_KEY",
    "STOP_STRINGS",
    "EpisodeOutput",
    "RouterQAEnvConfig",
    "RouterQAEpisodes",
    "episode_fields",
    "routerqa_verl_rows",
]

EPISODE_KEY = "routerqa"
"""Key of the terminal episode summary in the agent loop's ``extra_fields`` (and the reward's ``extra_info``)."""

STOP_STRINGS: tuple[str, ...] = ("</search>", "</answer>")
"""A turn ends at the first of these (verl/vLLM ``stop``, with the stop string kept in the output)."""

Generate = Callable[[list[int], dict[str, Any]], Awaitable[tuple[list[int], list[float] | None]]]
"""``(context ids, sampling params) -> (sampled ids, their log-probs or None)``, e.g. over verl's server."""

Call = Callable[[CallRequest], Awaitable[CallResult]]
"""Answer one routed query (the route tool)."""


@dataclass(frozen=True, slots=True, kw_only=True)
class RouterQAEnvConfig:
    """The RouterQA env of the verl agent loop and reward function (one YAML mapping, same keys everywhere).

    Raises:
        InvalidConfig: a field outside its range.
    """

    dataset: str = "embedded"
    """Question source (``"embedded"``, ``"embedded:<name>"`` or a JSONL/Parquet path)."""
    reward: str = "recal"
    """Reward spec preset or spec file; built in ``"batch"`` update mode (see :class:`RouterQAEpisodes`)."""
    pool: str = ""
    """Candidate pool: ``""`` = the six simulated Router-R1 models, else a profile name or pool file."""
    pool_seed: int = 0
    """Seed of a simulated pool."""
    max_routed_turns: int = 1
    """Routing turns before the final turn."""
    max_turn_tokens: int = 512
    """Sampled tokens per turn (the env's per-turn clip, in policy tokens)."""
    max_obs_length: int = 600
    """Cap of one information splice, in policy tokens."""
    max_start_length: int = 4096
    """Prompt cap, in policy tokens."""

    def __post_init__(self) -> None:
        """Validate."""
        for name in ("pool_seed", "max_routed_turns", "max_turn_tokens", "max_obs_length", "max_start_length"):
            value = getattr(self, name)
            low = 0 if name in ("pool_seed", "max_routed_turns") else 1
            if isinstance(value, bool) or not isinstance(value, int) or value < low:
                raise InvalidConfig(f"RouterQAEnvConfig.{name}={value!r} must be an int >= {low}")
        for name in ("dataset", "reward", "pool"):
            if not isinstance(getattr(self, name), str):
                raise InvalidConfig(f"RouterQAEnvConfig.{name}={getattr(self, name)!r} must be a string")

    @classmethod
    def from_mapping(cls, mapping: Mapping[str, Any] | None, where: str = "env") -> RouterQAEnvConfig:
        """Build from a YAML/Hydra mapping; unknown keys are an error naming ``where`` and the allowed keys."""
        data = dict(mapping or {})
        known = [f.name for f in dataclasses.fields(cls)]
        unknown = sorted(set(data) - set(known))
        if unknown:
            raise InvalidConfig(
                f"{where}: unknown key(s) {unknown}; allowed: {known}.{close_matches_hint(unknown[0], known)}"
            )
        return cls(**data)

    def build_env(self, tokenizer: Any, pool: Any = None) -> Any:
        """A RouterQA env (``token_counter`` = the policy tokenizer); ``pool`` shares a built pool."""
        from envs.router_qa import RouterQAEnv
        from recal_gym.pools.options import PoolOptions
        from recal_gym.rewards import make_spec

        return RouterQAEnv(
            self.dataset,
            pool=pool if pool is not None else (self.pool or None),
            pool_options=PoolOptions(seed=self.pool_seed),
            reward=make_spec(self.reward, update_mode="batch"),
            max_routed_turns=self.max_routed_turns,
            max_turn_tokens=self.max_turn_tokens,
            max_obs_length=self.max_obs_length,
            max_start_length=self.max_start_length,
            token_counter=tokenizer,
        )


@dataclass(frozen=True, slots=True, kw_only=True)
class EpisodeOutput:
    """One episode as verl's ``AgentLoopOutput`` wants it, plus the reward summary."""

    prompt_ids: list[int]
    """The env prompt under the chat template."""
    response_ids: list[int]
    """Kept policy ids and splice ids, in order (at most ``response_length``)."""
    response_mask: list[int]
    """1 on policy ids, 0 on splice ids."""
    response_logprobs: list[float]
    """Sampler log-probs on policy ids (0.0 where the server gave none), 0.0 on splice ids."""
    num_turns: int
    """Policy turns plus observations (verl counts user, assistant and tool turns)."""
    episode: dict[str, Any]
    """:func:`episode_fields` of the terminal info (JSON-ready)."""


def episode_fields(info: Mapping[str, Any], *, length_capped: bool = False) -> dict[str, Any]:
    """The JSON-ready reward summary of a terminal RouterQA ``info`` (what the reward function reads).

    Keys: ``score`` (the env's scalar), ``raw``/``gated`` (component → value), ``weights``,
    ``data_source``, ``question_id``, ``em``, ``f1``, ``format_ok``, ``n_calls``, ``raw_cost``, ``turns``,
    ``termination``, ``spec_hash`` and ``length_capped`` (the response budget ran out).

    Raises:
        InvalidData: ``info`` is not a terminal (scored) RouterQA info.
    """
    if not info.get("scored", False):
        raise InvalidData(f"episode_fields: info of question {info.get('question_id')!r} is not terminal")
    return {
        "score": float(info["reward"]) if "reward" in info else None,
        "raw": {k: float(v) for k, v in info["reward_components_raw"].items()},
        "gated": {k: float(v) for k, v in info["reward_components"].items()},
        "weights": {k: float(v) for k, v in info["reward_weights"].items()},
        "data_source": str(info["data_source"]),
        "question_id": str(info["question_id"]),
        "em": float(info["em"]),
        "f1": float(info["f1"]),
        "format_ok": float(bool(info["format_ok"])),
        "n_calls": float(info["n_calls"]),
        "raw_cost": float(info["raw_cost"]),
        "turns": float(info["turn"]),
        "termination": str(info["termination"]),
        "spec_hash": str(info.get("reward_spec_hash", "")),
        "length_capped": bool(length_capped),
    }


class RouterQAEpisodes:
    """Plays RouterQA episodes for verl's agent loop from a pool of reusable envs (see the module docstring).

    Envs are built on demand (one per concurrently running episode) and reused; they share one candidate
    pool. The reward spec runs in ``"batch"`` update mode and nothing updates it here, so every episode is
    scored from the same reward state (the initial one, or one you load into :attr:`envs`): the score of a
    response does not depend on which verl worker or in which order it was scored.

    Args:
        config: The env settings.
        tokenizer: The policy tokenizer (verl's ``self.tokenizer``).
        pool: A built candidate pool to share (e.g. the route tool's); ``None`` builds one from ``config``.
    """

    def __init__(self, config: RouterQAEnvConfig, tokenizer: Any, *, pool: Any = None) -> None:
        """Build the first env (which checks the dataset, the pool and every prompt's length)."""
        self.config = config
        self.codec = TextCodec(getattr(tokenizer, "tokenizer", tokenizer))
        first = config.build_env(self.codec.tokenizer, pool)
        self.pool = first.pool
        self.envs: list[Any] = [first]
        self._idle: list[Any] = [first]
        self._pool_lock = threading.Lock()  # envs share one pool; its backends need not be thread-safe

    def _take(self) -> Any:
        if self._idle:
            return self._idle.pop()
        env = self.config.build_env(self.codec.tokenizer, self.pool)
        env.load_reward_state(self.envs[0].reward_state_dict())
        self.envs.append(env)
        return env

    def _params(self, sampling_params: Mapping[str, Any], budget: int) -> dict[str, Any]:
        params = dict(sampling_params)
        stops = [s for s in params.get("stop", None) or [] if s not in STOP_STRINGS]
        params.update(
            stop=[*STOP_STRINGS, *stops],
            include_stop_str_in_output=True,
            max_tokens=min(int(params.get("max_tokens", budget) or budget), self.config.max_turn_tokens, budget),
        )
        return params

    async def play(
        self,
        question_id: str,
        generate: Generate,
        *,
        sampling_params: Mapping[str, Any],
        response_length: int,
        call: Call | None = None,
    ) -> EpisodeOutput:
        """Play the episode of ``question_id``.

        When the response budget (``response_length`` tokens) runs out before the episode ends, the remaining
        turns are empty (the env's turn limit then ends the episode) and ``episode["length_capped"]`` is True.

        Args:
            question_id: The question (verl: the dataset row's ``extra_info.question_id``).
            generate: Samples one turn from a context (verl: ``server_manager.generate``).
            sampling_params: verl's sampling params; ``stop``, ``include_stop_str_in_output`` and ``max_tokens``
                are set per turn.
            response_length: verl's ``rollout.response_length``.
            call: Answers routing turns (the route tool); ``None`` uses the env's pool.

        Raises:
            KeyError: an unknown ``question_id`` (with close matches).
        """
        env = self._take()
        try:
            return await self._play(env, question_id, generate, sampling_params, response_length, call)
        finally:
            self._idle.append(env)

    async def _turn(self, env: Any, text: str, call: Call | None) -> tuple[str, float, bool, bool, dict[str, Any]]:
        """Step ``env`` with ``text``; a routing call goes through ``call`` when given."""
        if call is None:

            def step() -> tuple[str, float, bool, bool, dict[str, Any]]:
                with self._pool_lock:
                    return env.step(text)  # type: ignore[no-any-return]

            return await asyncio.to_thread(step)  # a live pool blocks; keep the event loop free
        pending = env.begin_step(text)
        try:
            result = None if pending is None else await call(pending.request)
        except BaseException:
            env.abort_step()
            raise
        return env.finish_step(result)  # type: ignore[no-any-return]

    async def _play(
        self,
        env: Any,
        question_id: str,
        generate: Generate,
        sampling_params: Mapping[str, Any],
        response_length: int,
        call: Call | None,
    ) -> EpisodeOutput:
        codec = self.codec
        prompt, _ = env.reset(options={"question_id": str(question_id)})
        prompt_ids = codec.prompt_ids(prompt)
        ids: list[int] = []
        mask: list[int] = []
        logps: list[float] = []
        turns, capped, done = 0, False, False
        while not done:
            budget = response_length - len(ids)
            if budget > 0:
                sampled, lp = await generate(prompt_ids + ids, self._params(sampling_params, budget))
                sampled = list(sampled)[:budget]
            else:
                sampled, lp, capped = [], None, True
            obs, reward, terminated, truncated, info = await self._turn(env, codec.decode(sampled), call)
            kept = codec.kept_prefix(sampled, int(info["kept_chars"])) if sampled else []
            splice = codec.encode(obs)[: max(0, response_length - len(ids) - len(kept))] if obs else []
            ids += kept + splice
            mask += [1] * len(kept) + [0] * len(splice)
            logps += [float(x) for x in (list(lp) if lp else [0.0] * len(kept))[: len(kept)]]
            logps += [0.0] * len(splice)
            turns += 1 + (1 if splice else 0)
            done = bool(terminated or truncated)
        summary = episode_fields({**info, "reward": reward}, length_capped=capped)
        return EpisodeOutput(
            prompt_ids=prompt_ids,
            response_ids=ids,
            response_mask=mask,
            response_logprobs=logps,
            num_turns=turns + 1,  # + the user prompt, as verl counts
            episode=summary,
        )


def routerqa_verl_rows(
    env: Any, question_ids: Sequence[str] | None = None, *, agent_name: str = "routerqa_agent", split: str = "train"
) -> list[dict[str, Any]]:
    """Rows for verl's ``RLHFDataset`` (write them with ``pandas.DataFrame(rows).to_parquet(path)``).

    Each row: ``data_source``, ``prompt`` (one user message: the RouterQA prompt), ``ability="routing"``,
    ``reward_model={"style": "rule", "ground_truth": <JSON list of golden answers>}``, ``extra_info``
    (``question_id``, ``index``, ``split`` and ``tools_kwargs``, which binds the route tool's instances to the
    question under verl's ``tool_agent`` loop) and ``agent_name`` (verl's per-row agent-loop selector).

    Args:
        env: A RouterQA env (its prompts become the rows' prompts).
        question_ids: Questions to include (default: every question, sorted).
        agent_name: The registered agent loop (``routerqa_agent`` plays whole episodes).
        split: Recorded in ``extra_info.split``.
    """
    unwrapped = getattr(env, "unwrapped", env)
    ids = sorted(unwrapped.questions.ids()) if question_ids is None else list(question_ids)
    rows = []
    for index, qid in enumerate(ids):
        prompt, info = env.reset(options={"question_id": str(qid)})
        golden = list(unwrapped.questions.by_id(str(qid)).golden_answers)
        rows.append(
            {
                "data_source": str(info["data_source"]),
                "prompt": [{"role": "user", "content": prompt}],
                "ability": "routing",
                "reward_model": {"style": "rule", "ground_truth": json.dumps(golden, ensure_ascii=False)},
                "extra_info": {
                    "question_id": str(info["question_id"]),
                    "index": index,
                    "split": split,
                    "tools_kwargs": {"route": {"create_kwargs": {"question_id": str(info["question_id"])}}},
                },
                "agent_name": agent_name,
            }
        )
    return rows
