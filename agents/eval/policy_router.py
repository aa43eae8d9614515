"""Trained token policies as routers for ``recal-gym eval --router checkpoint:<dir>``.

:func:`load_router` accepts three directory formats:

* a **learner checkpoint** (``manifest.json`` + ``state-<step>.pt``, :mod:`agents.grpo.checkpoint`), e.g.
  ``<run>/checkpoint`` (the last RL step) or ``<run>/warmstart`` (the warm-started weights). The
  manifest's config says how to rebuild the policy (``tiny``: rebuilt from its seed; ``smollm2``: the
  cached conversion; a directory: itself) and its env and sampling settings;
* a **run directory** (``recal-gym train --out``): its ``checkpoint/``;
* an **exported policy** (``<run>/policy``, written by :func:`export_policy` at the end of every
  ``recal-gym train``): a transformers ``save_pretrained`` directory (LoRA adapters merged) with its
  tokenizer and ``policy.json`` (format, version and the training config). Any transformers causal-LM
  directory with such a ``policy.json`` works.

The router plays the policy's own turns. Its episodes run with the env settings it was trained with
(``max_routed_turns``, the per-turn token budget ``max_new_tokens``, ``max_obs_tokens``,
``max_start_length``, the policy tokenizer as token counter: :meth:`PolicyRouter.env_kwargs`); the
question set, pool and reward come from the evaluation. Decoding is greedy by default (top-k = 1);
``sample=True`` samples at the training temperature (or ``temperature``) with its top-p/top-k, from a
generator seeded by ``seed``. Sampling runs the way the training sampler did: the config's precision
(``auto``: bf16 autocast where the CPU has native bf16, ``docs/learner.md`` §6), KV-cache mode and
logits mode, so a checkpoint is evaluated as the policy it was trained as (fp32 weights, bf16 compute).

:meth:`PolicyRouter.play_batch` plays many episodes at once in a :class:`~envs.vector.RouterQAVectorEnv`
(batched generation, one pool batch per turn); ``reset``/``act`` play one episode at a time, so the
router also fits anything that takes a :class:`~agents.eval.baselines.Router`.
"""

from __future__ import annotations

import copy
import json
import tempfile
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch

from agents.grpo.checkpoint import find_checkpoint, is_checkpoint, read_checkpoint, read_manifest
from agents.grpo.config import TrainConfig
from agents.grpo.engines import HFEngine, SamplingParams
from agents.grpo.rollout import TextCodec, Turn, play
from recal_gym.errors import CorruptCheckpoint, InvalidConfig

__all__ = ["POLICY_FILE", "POLICY_FORMAT", "PolicyRouter", "export_policy", "load_router"]

POLICY_FILE = "policy.json"
"""Marker file of an exported policy directory."""
POLICY_FORMAT = "recal-gym-policy"
"""``policy.json["format"]``."""
_VERSION = 1


class PolicyRouter:
    """A causal-LM policy that routes RouterQA questions the way it was trained to.

    Args:
        model: The policy (eval mode; not trained here).
        tokenizer: Its tokenizer.
        config: The training config (env limits, sampling settings).
        sample: Sample instead of greedy decoding.
        temperature: Sampling temperature override (implies nothing unless ``sample``).
        seed: Seed of the sampling generator.
        name: Display name in tables.
    """

    def __init__(
        self,
        model: torch.nn.Module,
        tokenizer: Any,
        config: TrainConfig,
        *,
        sample: bool = False,
        temperature: float | None = None,
        seed: int = 0,
        name: str = "policy",
    ) -> None:
        """Bind the policy and its decoding settings."""
        if temperature is not None and not temperature > 0:
            raise InvalidConfig(f"temperature={temperature!r} must be > 0")
        self.model = model.eval()
        self.codec = TextCodec(tokenizer)
        self.config = config
        self.name = name
        self.engine = HFEngine.from_config(self.model, tokenizer, config)
        if sample:
            self.params = SamplingParams(
                max_new_tokens=config.max_new_tokens,
                temperature=config.temperature if temperature is None else float(temperature),
                top_p=config.top_p,
                top_k=config.top_k,
            )
        else:  # top-k = 1 is argmax decoding in every engine
            self.params = SamplingParams(max_new_tokens=config.max_new_tokens, top_k=1)
        self.generator = torch.Generator().manual_seed(seed)
        self._ctx: list[int] = []
        self._last: list[int] | None = None

    def env_kwargs(self) -> dict[str, Any]:
        """RouterQA arguments that reproduce the training env's limits and token counting."""
        cfg = self.config
        return {
            "max_routed_turns": cfg.max_routed_turns,
            "max_turn_tokens": cfg.max_new_tokens,
            "max_obs_length": cfg.max_obs_tokens,
            "max_start_length": cfg.max_start_length,
            "token_counter": self.codec.tokenizer,
        }

    # ------------------------------------------------------------------ one episode at a time
    def reset(self, prompt: str, info: dict[str, Any]) -> None:
        """Start an episode from the env's prompt."""
        self._ctx = self.codec.prompt_ids(prompt)
        self._last = None

    @torch.no_grad()
    def act(self, observation: str, info: dict[str, Any]) -> str:
        """Keep the last turn's kept ids and the observation, then generate the next turn."""
        if self._last is not None:
            self._ctx += self.codec.kept_prefix(self._last, int(info["kept_chars"])) + self.codec.encode(observation)
        sample = self.engine.generate([self._ctx], self.params, self.generator)[0]
        self._last = list(sample.ids)
        return self.codec.decode(sample.ids)

    # ------------------------------------------------------------------ batched
    @torch.no_grad()
    def play_batch(self, env: Any, question_ids: Sequence[str]) -> list[dict[str, Any]]:
        """Play one episode per question in a vector env (``num_envs >= len(question_ids)``).

        Returns:
            The terminal infos, each with the episode's ``"reward"`` added.
        """

        def act(live: list[int], trajs: list[Any]) -> list[Turn]:
            samples = self.engine.generate([trajs[i].ids for i in live], self.params, self.generator)
            return [Turn(self.codec.decode(s.ids), list(s.ids), list(s.logprobs)) for s in samples]

        trajs = play(env, question_ids, self.codec, act)
        return [{**t.info, "reward": t.reward} for t in trajs]


def export_policy(model: torch.nn.Module, tokenizer: Any, config: TrainConfig, directory: str | Path) -> Path:
    """Write ``model`` (LoRA merged), ``tokenizer`` and ``policy.json`` to ``directory``; returns it."""
    out = Path(directory)
    out.mkdir(parents=True, exist_ok=True)
    plain: Any = model
    if hasattr(model, "merge_and_unload"):  # a peft wrapper: save the merged weights, keep training's copy
        wrapper: Any = copy.deepcopy(model)
        plain = wrapper.merge_and_unload()
    plain.save_pretrained(out)
    tokenizer.save_pretrained(out)
    meta = {"format": POLICY_FORMAT, "version": _VERSION, "config": config.to_dict()}
    (out / POLICY_FILE).write_text(json.dumps(meta, indent=2, sort_keys=True, default=str))
    return out


def _read_policy_json(directory: Path) -> TrainConfig:
    try:
        meta = json.loads((directory / POLICY_FILE).read_text())
    except json.JSONDecodeError as exc:
        raise InvalidConfig(f"{str(directory / POLICY_FILE)!r} is not valid JSON ({exc})") from None
    if meta.get("format") != POLICY_FORMAT or meta.get("version") != _VERSION:
        raise InvalidConfig(
            f"{str(directory / POLICY_FILE)!r} is not a {POLICY_FORMAT} v{_VERSION} file "
            f"(format={meta.get('format')!r}, version={meta.get('version')!r})"
        )
    return TrainConfig.from_dict(meta["config"])


def _load_exported(directory: Path) -> tuple[torch.nn.Module, Any, TrainConfig]:
    from transformers import AutoModelForCausalLM, AutoTokenizer

    config = _read_policy_json(directory)
    tokenizer: Any
    if config.policy == "tiny":
        from agents.models.tiny_model import load_tiny_tokenizer

        tokenizer = load_tiny_tokenizer(directory)
    else:
        tokenizer = AutoTokenizer.from_pretrained(directory, local_files_only=True)
    model = AutoModelForCausalLM.from_pretrained(directory, local_files_only=True, dtype=torch.float32)
    return model, tokenizer, config


def _load_checkpoint(directory: Path) -> tuple[torch.nn.Module, Any, TrainConfig]:
    from agents.grpo.build import load_policy

    config = TrainConfig.from_dict(read_manifest(directory)["config"])
    with tempfile.TemporaryDirectory(prefix="recal-gym-policy-") as work:  # tiny is rebuilt here, then loaded
        model, tokenizer = load_policy(config, work)
    state, _ = read_checkpoint(directory)
    model.load_state_dict(state["model"])
    return model, tokenizer, config


def load_router(
    path: str | Path, *, sample: bool = False, temperature: float | None = None, seed: int = 0
) -> PolicyRouter:
    """Load a trained policy as a router (see the module docstring for the accepted directories).

    Args:
        path: A learner checkpoint, a run directory or an exported policy directory.
        sample: Sample instead of greedy decoding.
        temperature: Sampling temperature (with ``sample``); default the training temperature.
        seed: Seed of the sampling generator.

    Raises:
        CorruptCheckpoint: ``path`` holds none of the formats, or a torn checkpoint.
        InvalidConfig: a bad ``policy.json`` or ``temperature``.
    """
    p = Path(path)
    if (p / POLICY_FILE).is_file():
        model, tokenizer, config = _load_exported(p)
    elif is_checkpoint(p) or is_checkpoint(p / "checkpoint"):
        model, tokenizer, config = _load_checkpoint(find_checkpoint(p))
    else:
        raise CorruptCheckpoint(
            f"checkpoint:{path}: not a learner checkpoint (manifest.json), a run directory (checkpoint/) "
            f"or an exported policy ({POLICY_FILE})"
        )
    return PolicyRouter(
        model, tokenizer, config, sample=sample, temperature=temperature, seed=seed, name=f"checkpoint:{path}"
    )
