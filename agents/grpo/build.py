"""Build a learner from a config: policy weights and tokenizer, the vector env, engine, reference.

:func:`build_env` assembles what the learner rolls out in, as a :class:`TrainEnv`: the question set
and the pool, built here (so the learner never reads them back out of an env), a batch-mode reward
spec and one :class:`~recal_gym.rewards.state.RewardState` the learner owns and the
:class:`~envs.vector.RouterQAVectorEnv` shares, so the sub-envs' candidate calls go out as one
``pool.call_batch`` per turn.
"""

from __future__ import annotations

import copy
import logging
from pathlib import Path
from typing import Any, NamedTuple

import torch

from agents.grpo.config import TrainConfig
from agents.grpo.distributed import DistContext
from agents.grpo.engines import GenerationEngine
from agents.grpo.learner import Learner
from recal_gym.data import QuestionSet
from recal_gym.data.sampling import train_test_split
from recal_gym.pools import Pool
from recal_gym.rewards.spec import RewardSpec
from recal_gym.rewards.state import RewardState

__all__ = [
    "TrainEnv",
    "build_env",
    "build_envs",
    "build_learner",
    "env_limits",
    "load_policy",
    "policy_dir",
    "pool_options",
    "split_question_ids",
]

logger = logging.getLogger(__name__)


class TrainEnv(NamedTuple):
    """What the learner rolls out in (built by :func:`agents.grpo.build.build_env`)."""

    env: Any
    """A :class:`~envs.vector.RouterQAVectorEnv` (used through ``reset``/``step`` only)."""
    questions: QuestionSet
    """The question set the env serves (the learner draws its training split from it)."""
    models: tuple[str, ...]
    """The pool's listed models, in prompt order."""
    spec: RewardSpec
    """The env's reward spec (batch update mode)."""
    reward_state: RewardState
    """The reward state the env scores with, shared by its sub-envs; the learner updates it in place."""


def split_question_ids(questions: QuestionSet, heldout_fraction: float, seed: int) -> tuple[list[str], list[str]]:
    """(training ids, held-out ids), sorted; stratified by dataset (``train_test_split``). No hold-out at 0."""
    if heldout_fraction <= 0.0:
        return sorted(questions.ids()), []
    train, test = train_test_split(questions.rows, heldout_fraction, seed)
    return sorted(r.question_id for r in train), sorted(r.question_id for r in test)


def policy_dir(config: TrainConfig, work_dir: str | Path) -> Path:
    """The local directory holding the policy's weights (built or converted on first use).

    ``tiny`` is config-built under ``work_dir`` (head size 64 when the vLLM engine samples, which
    vLLM's CPU attention needs); ``smollm2`` is the cached conversion of the offline asset; anything
    else is ``config.policy`` itself, a local directory (nothing is fetched from a hub).
    """
    if config.policy == "tiny":
        from agents.models.tiny_model import build_tiny_model

        out = Path(work_dir) / "tiny-policy"
        if config.engine == "vllm":
            return build_tiny_model(
                out,
                hidden_size=128,
                num_heads=2,
                num_kv_heads=2,
                intermediate_size=256,
                max_position_embeddings=8192,
                seed=config.seed,
            )
        return build_tiny_model(out, seed=config.seed, max_position_embeddings=8192)
    if config.policy == "smollm2":
        from agents.models.assets_prepare import prepare_smollm2

        return prepare_smollm2()  # converts the GGUF once into the cache; later calls are no-ops
    return Path(config.policy)


def load_policy(config: TrainConfig, work_dir: str | Path) -> tuple[torch.nn.Module, Any]:
    """Load the policy (see :func:`policy_dir`) and its tokenizer; wrap with LoRA if asked."""
    from transformers import AutoModelForCausalLM, AutoTokenizer

    path = policy_dir(config, work_dir)
    tokenizer: Any
    if config.policy == "tiny":
        from agents.models.tiny_model import load_tiny_tokenizer

        tokenizer = load_tiny_tokenizer(path)
    else:
        tokenizer = AutoTokenizer.from_pretrained(path, local_files_only=True)
    model: Any = AutoModelForCausalLM.from_pretrained(path, local_files_only=True, dtype=torch.float32)
    if config.lora_rank > 0:
        from recal_gym.optional import require

        peft = require("peft", feature="LoRA (TrainConfig.lora_rank > 0)")
        LoraConfig, get_peft_model = peft.LoraConfig, peft.get_peft_model
        lora = LoraConfig(r=config.lora_rank, lora_alpha=2 * config.lora_rank, target_modules="all-linear")
        model = get_peft_model(model, lora)
    model.eval()
    return model, tokenizer


def pool_options(config: TrainConfig) -> Any:
    """The :class:`~recal_gym.pools.options.PoolOptions` of a run (seed and simulated reply noise)."""
    from recal_gym.pools.options import PoolOptions, SimulatedConfig

    return PoolOptions(seed=config.pool_seed, simulated=SimulatedConfig(reply_noise=float(config.reply_noise)))


def env_limits(config: TrainConfig, tokenizer: Any) -> dict[str, Any]:
    """The RouterQA keyword arguments a run's config sets: turn and token limits, token counter, prompt."""
    return {
        "max_routed_turns": config.max_routed_turns,
        "max_turn_tokens": config.max_new_tokens,
        "max_obs_length": config.max_obs_tokens,
        "max_start_length": config.max_start_length,
        "token_counter": tokenizer,
        "prompt_variant": config.prompt_variant,
    }


def build_env(config: TrainConfig, tokenizer: Any, num_envs: int, *, pool: Pool | None = None) -> TrainEnv:
    """A vector env of ``num_envs`` RouterQA sub-envs sharing one pool and one reward state.

    Args:
        config: The run configuration (dataset, pool, reward, limits).
        tokenizer: The policy tokenizer (the env's token counter).
        num_envs: Sub-envs (the most trajectories rolled out at once).
        pool: A built pool to use instead of ``config.pool`` (e.g. a recording or live pool).
    """
    from envs.vector import RouterQAVectorEnv
    from recal_gym.data import load_questions
    from recal_gym.pools import build_pool
    from recal_gym.rewards import make_spec

    questions = load_questions(config.dataset)
    built = pool if pool is not None else build_pool(config.pool or None, pool_options(config))
    spec = make_spec(config.reward_spec, update_mode="batch")
    models = tuple(m.name for m in built.spec.listed)
    state = RewardState.default(spec, models)
    env = RouterQAVectorEnv(
        num_envs,
        dataset=questions,
        pool=built,
        reward=spec,
        reward_state=state,
        **env_limits(config, tokenizer),
    )
    return TrainEnv(env=env, questions=questions, models=models, spec=spec, reward_state=state)


def build_learner(
    config: TrainConfig, work_dir: str | Path, *, ctx: DistContext | None = None, pool: Pool | None = None
) -> Learner:
    """Build policy, env, engine (and the frozen reference when ``loss.kl_coef`` > 0) into a :class:`Learner`."""
    ctx = ctx or DistContext()
    model, tokenizer = load_policy(config, work_dir)
    n_local = max(config.batch_size // ctx.world_size, config.warmstart_batch // ctx.world_size)
    train_env = build_env(config, tokenizer, max(1, n_local), pool=pool)
    ref = None
    if config.loss.kl_coef > 0.0:  # the reference is reset to the warm-started weights before RL
        ref = copy.deepcopy(model).eval()
        for p in ref.parameters():
            p.requires_grad_(False)
    engine: GenerationEngine | None = None
    if config.engine == "vllm":
        from agents.grpo.engines import VLLMEngine

        engine = VLLMEngine(str(policy_dir(config, work_dir)), tokenizer)
    logger.info("learner built: policy=%s sub-envs=%d models=%s", config.policy, n_local, list(train_env.models))
    learner = Learner(config, model=model, tokenizer=tokenizer, env=train_env, engine=engine, ctx=ctx, ref_model=ref)
    if config.init_checkpoint:
        learner.load_init_weights(config.init_checkpoint)
    return learner


def build_envs(config: TrainConfig, tokenizer: Any, count: int) -> list[Any]:
    """``count`` independent RouterQA envs sharing one question set and one pool (batch-mode rewards).

    Each env owns its reward state (the TRL rollout loads one state into all of them); the learner
    itself uses :func:`build_env`'s vector env and one shared state instead.
    """
    from envs.router_qa import RouterQAEnv
    from recal_gym.data import load_questions
    from recal_gym.pools import build_pool
    from recal_gym.rewards import make_spec

    questions = load_questions(config.dataset)
    pool = build_pool(config.pool or None, pool_options(config))
    spec = make_spec(config.reward_spec, update_mode="batch")
    return [
        RouterQAEnv(
            questions,
            pool=pool,
            reward=spec,
            **env_limits(config, tokenizer),
        )
        for _ in range(count)
    ]
