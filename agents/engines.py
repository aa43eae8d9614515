"""Rollout engines: sample policy turns from token-id contexts (``recal.md`` §6).

Every engine satisfies :class:`GenerationEngine`: it takes a batch of token-id contexts and returns,
per row, the sampled ids (cut after the first stop string or EOS, inclusive) and their log-probs
under the sampling distribution at temperature T. Nothing is re-tokenised.

- :class:`HFEngine` runs a transformers causal LM with a KV cache. The rows of a RouterQA batch share
  a long prompt prefix (the router instructions), so the prefix is encoded once and its cache
  repeated over the batch; with the byte-level ``tiny`` tokenizer this makes sampling several times
  faster than ``generate`` over left-padded rows. Randomness comes only from the caller's
  ``torch.Generator``.
- :class:`VLLMEngine` imports vLLM lazily and pulls the trainer's weights after each update.

:func:`token_logprobs` is the training forward: log-probs of the taken tokens on the exact ids, with
the same shared-prefix trick (mathematically the plain forward; tests compare both).
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, NamedTuple, Protocol

import torch
from torch import Tensor

from recal_gym.errors import InvalidConfig

__all__ = [
    "GenerationEngine",
    "HFEngine",
    "Sample",
    "SamplingParams",
    "VLLMEngine",
    "common_prefix_length",
    "token_logprobs",
]

logger = logging.getLogger(__name__)

_MIN_SHARED_PREFIX = 16
"""Below this many shared tokens the plain forward is used (the cache bookkeeping is not worth it)."""
_STOP_WINDOW = 32
"""Tokens decoded at the tail of a row to detect a stop string."""


@dataclass(frozen=True, slots=True, kw_only=True)
class SamplingParams:
    """Sampling settings passed explicitly to every engine (``recal.md`` §6.3)."""

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


def common_prefix_length(rows: Sequence[Sequence[int]]) -> int:
    """Length of the longest prefix shared by every row."""
    if not rows:
        return 0
    first = rows[0]
    n = min(len(r) for r in rows)
    for row in rows[1:]:
        k = 0
        limit = min(n, len(row))
        while k < limit and row[k] == first[k]:
            k += 1
        n = k
    return n


def _out_cache(out: Any) -> Any:
    cache = getattr(out, "cache", None)
    return out.past_key_values if cache is None else cache


def _logits_with_prefix(model: torch.nn.Module, ids: Tensor, attn: Tensor, p: int) -> tuple[Tensor, Tensor]:
    """Return (prefix logits (1, p, V), suffix logits (N, T - p, V)) for rows sharing ids[:, :p]."""
    n, t = ids.shape
    pre = model(input_ids=ids[:1, :p], use_cache=True)
    cache = _out_cache(pre)
    cache.batch_repeat_interleave(n)
    positions = torch.arange(p, t).unsqueeze(0).expand(n, t - p)  # (N, T - p)
    mask = torch.cat([torch.ones(n, p, dtype=attn.dtype), attn[:, p:]], dim=1)  # (N, T)
    suf = model(input_ids=ids[:, p:], attention_mask=mask, position_ids=positions, cache=cache)
    return pre.logits, suf.logits


def token_logprobs(
    model: torch.nn.Module,
    ids: Tensor,
    attn: Tensor,
    *,
    temperature: float = 1.0,
    with_entropy: bool = False,
    share_prefix: bool = True,
) -> tuple[Tensor, Tensor | None]:
    """Log-probs of the taken tokens, log_softmax(logits / T)[ids], on exactly ``ids``.

    Args:
        model: A causal LM.
        ids: ``(N, T)`` int64 token ids, right-padded.
        attn: ``(N, T)`` 0/1 attention mask (1 on every real token).
        temperature: T of the sampler.
        with_entropy: Also return the per-position entropy of the tempered distribution.
        share_prefix: Encode the prefix shared by all rows once (same values up to float rounding).

    Returns:
        ``(logp, entropy)``, both ``(N, T)`` float32; position t scores token t given tokens < t
        (position 0 holds 0). ``entropy`` is None unless requested.
    """
    n, _t = ids.shape
    lengths = attn.sum(dim=1)
    p = common_prefix_length(ids.tolist()) if share_prefix and n > 1 else 0
    p = min(p, int(lengths.min()) - 1)
    if p >= _MIN_SHARED_PREFIX:
        pre, suf = _logits_with_prefix(model, ids, attn, p)
        logits = torch.cat([pre.expand(n, -1, -1), suf], dim=1)[:, :-1]  # (N, T - 1, V)
    else:
        logits = model(input_ids=ids, attention_mask=attn).logits[:, :-1]
    logz = torch.log_softmax(logits.float() / temperature, dim=-1)
    taken = logz.gather(-1, ids[:, 1:].unsqueeze(-1)).squeeze(-1)  # (N, T - 1)
    zero = torch.zeros(n, 1, dtype=taken.dtype)
    logp = torch.cat([zero, taken], dim=1)
    if not with_entropy:
        return logp, None
    ent = -(logz.exp() * logz).sum(-1)
    return logp, torch.cat([zero, ent], dim=1)


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
    """

    def __init__(self, model: torch.nn.Module, tokenizer: Any) -> None:
        """Bind the model and tokenizer."""
        self.model = model
        self.tokenizer = tokenizer
        self.eos_ids = {int(tokenizer.eos_token_id)} if tokenizer.eos_token_id is not None else set()

    def sync_weights(self, model: torch.nn.Module) -> None:
        """Use ``model`` for sampling (the same object in the usual set-up)."""
        self.model = model

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
            pre = self.model(input_ids=torch.tensor([list(contexts[0][:p])]), use_cache=True)
            cache = _out_cache(pre)
            cache.batch_repeat_interleave(n)
        attn = torch.cat([torch.ones(n, p, dtype=torch.long), sattn], dim=1)
        positions = torch.arange(p, p + width).unsqueeze(0).expand(n, width)
        out = self.model(input_ids=suf, attention_mask=attn, position_ids=positions, cache=cache, use_cache=True)
        last = (lengths - p - 1).clamp(min=0)
        logits = out.logits[torch.arange(n), last]  # (N, V)
        return logits, _out_cache(out), attn, lengths.clone()

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
        n = len(contexts)
        if n == 0:
            return []
        logits, cache, attn, positions = self._prefill(contexts)
        samples = [Sample([], []) for _ in range(n)]
        active = [True] * n
        for _ in range(params.max_new_tokens):
            scaled = _filter(logits.float() / params.temperature, params.top_k, params.top_p)
            logz = torch.log_softmax(scaled, dim=-1)
            tok = torch.multinomial(logz.exp(), 1, generator=generator)  # (N, 1)
            lp = logz.gather(-1, tok).squeeze(-1)
            for i in range(n):
                if active[i]:
                    samples[i].ids.append(int(tok[i]))
                    samples[i].logprobs.append(float(lp[i]))
                    active[i] = not self._stopped(samples[i].ids, params.stop_strings)
            if not any(active):
                break
            attn = torch.cat([attn, torch.ones(n, 1, dtype=attn.dtype)], dim=1)
            out = self.model(
                input_ids=tok, attention_mask=attn, position_ids=positions.unsqueeze(1), cache=cache, use_cache=True
            )
            positions = positions + 1
            cache = _out_cache(out)
            logits = out.logits[:, -1]
        return samples


class VLLMEngine:
    """Sample with vLLM (the GPU preset); imported lazily, exercised only where vLLM is installed.

    After each optimiser step the learner calls :meth:`sync_weights`, which streams the trainer's
    parameters into the vLLM model through its ``load_weights`` hook.

    Args:
        model_path: Directory vLLM loads at start.
        tokenizer: The policy tokenizer (for EOS).
        gpu_memory_utilization: Passed to ``vllm.LLM``.
    """

    def __init__(self, model_path: str, tokenizer: Any, *, gpu_memory_utilization: float = 0.4) -> None:
        """Start the vLLM engine."""
        try:
            import vllm
        except ImportError as exc:  # pragma: no cover - depends on the machine
            raise ImportError("the vllm engine needs vLLM: pip install 'recal-gym[vllm]'") from exc
        self._vllm = vllm
        self.tokenizer = tokenizer
        self.llm = vllm.LLM(model=model_path, gpu_memory_utilization=gpu_memory_utilization, enable_prefix_caching=True)

    def sync_weights(self, model: torch.nn.Module) -> None:  # pragma: no cover - needs vLLM
        """Copy ``model``'s parameters into the vLLM workers (``load_weights``)."""
        weights = [(name, p.detach()) for name, p in model.state_dict().items()]

        def _load(worker: Any) -> None:
            worker.model_runner.model.load_weights(weights=weights)

        self.llm.collective_rpc(_load)

    def generate(
        self, contexts: Sequence[Sequence[int]], params: SamplingParams, generator: torch.Generator
    ) -> list[Sample]:  # pragma: no cover - needs vLLM
        """Sample one turn per context; the seed of each request is drawn from ``generator``."""
        from vllm.inputs import TokensPrompt

        seeds = torch.randint(0, 2**31 - 1, (len(contexts),), generator=generator).tolist()
        requests = [TokensPrompt(prompt_token_ids=list(c)) for c in contexts]
        sps = [
            self._vllm.SamplingParams(
                n=1,
                temperature=params.temperature,
                top_p=params.top_p,
                top_k=params.top_k if params.top_k > 0 else -1,
                max_tokens=params.max_new_tokens,
                stop=list(params.stop_strings),
                include_stop_str_in_output=True,
                logprobs=0,
                seed=int(s),
            )
            for s in seeds
        ]
        outputs = self.llm.generate(requests, sps, use_tqdm=False)
        samples = []
        for out in outputs:
            comp = out.outputs[0]
            lps = [float(d[t].logprob) for t, d in zip(comp.token_ids, comp.logprobs or [], strict=False)]
            samples.append(Sample(list(comp.token_ids), lps))
        return samples
