"""A prompt prefix encoded once per optimiser step and shared by its micro-batches (``docs/learner.md`` §6).

The rows of a RouterQA minibatch share the router instructions up to ``Question:`` (about 500 SmolLM2
tokens of a 600-token row). Gradient accumulation over micro-batches would otherwise encode that
prefix, forward and backward, once per micro-batch; one big micro-batch encodes it once but holds
every row's activations at the same time (6-7 GiB for 16 SmolLM2 rows).

:class:`PrefixKV` gets both: the prefix is encoded once (with its autograd graph) and its per-layer
keys and values are handed to each micro-batch as float32 leaf tensors. Each micro-batch's backward
accumulates the gradient with respect to those leaves, and :meth:`PrefixKV.backward` finally pushes
the accumulated gradient through the prefix graph once. By the chain rule the parameter gradients
are those of the plain per-micro-batch computation (tests compare them); memory is one prefix plus
one micro-batch.

Only positions after the prefix may be scored (they are: the prefix is prompt text). Models whose
cache has layers other than plain full attention (e.g. sliding windows) are not shared
(:func:`encode_prefix` returns None).
"""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor
from transformers.cache_utils import DynamicCache, DynamicLayer

from agents.grpo.logprobs import (
    MIN_SHARED_PREFIX,
    CausalLMParts,
    cache_kwarg,
    common_prefix_length,
    out_cache,
    split_causal_lm,
)

__all__ = ["PrefixKV", "encode_prefix", "prefix_length"]


class PrefixKV:
    """Keys and values of a shared prefix, differentiable through leaves (see the module docstring).

    Args:
        ids: ``(p,)`` int64 prefix token ids.
        model: The causal LM that encoded it.
        parts: Its decoder/head split (the decoder encoded the prefix), or None (the LM did).
        keys: Per layer ``(1, H_kv, p, D)`` keys, still attached to the prefix graph.
        values: Per layer ``(1, H_kv, p, D)`` values, likewise.
    """

    def __init__(
        self,
        ids: Tensor,
        model: torch.nn.Module,
        parts: CausalLMParts | None,
        keys: list[Tensor],
        values: list[Tensor],
    ) -> None:
        """Detach float32 leaves from the prefix's keys and values."""
        self.ids = ids
        self.model = model
        self.parts = parts
        self._graph = [*keys, *values]
        self._leaves = [t.detach().float().requires_grad_() for t in self._graph]
        self._layers = len(keys)

    @property
    def length(self) -> int:
        """Prefix length p."""
        return int(self.ids.shape[0])

    def matches(self, ids: Tensor, attn: Tensor, needed: Tensor) -> bool:
        """Whether rows ``ids`` start with the prefix, are longer than it and score nothing inside it."""
        p = self.length
        if ids.shape[1] <= p or int(attn.sum(dim=1).min()) <= p:
            return False
        if not torch.equal(ids[:, :p], self.ids.unsqueeze(0).expand(ids.shape[0], -1)):
            return False
        return not bool(needed[:, : p + 1].any())  # token t is scored from the hidden state at t - 1

    def suffix_forward(self, ids: Tensor, attn: Tensor) -> Tensor:
        """Forward ``ids[:, p:]`` on top of the prefix; returns hidden states (or logits) ``(N, T - p, ·)``."""
        n, t = ids.shape
        p = self.length
        positions = torch.arange(p, t).unsqueeze(0).expand(n, t - p)  # (N, T - p)
        mask = torch.cat([torch.ones(n, p, dtype=attn.dtype), attn[:, p:]], dim=1)  # (N, T)
        module: Any = self.model if self.parts is None else self.parts.decoder
        kw = cache_kwarg(self.model) if self.parts is None else self.parts.cache_kw
        out = module(input_ids=ids[:, p:], attention_mask=mask, position_ids=positions, **{kw: self.cache(n)})
        return out.logits if self.parts is None else out.last_hidden_state

    def cache(self, rows: int) -> DynamicCache:
        """A fresh KV cache holding the prefix for ``rows`` rows (gradients flow to the leaves)."""
        cache = DynamicCache()
        for i in range(self._layers):
            k, v = self._leaves[i], self._leaves[self._layers + i]
            dtype = self._graph[i].dtype
            cache.update(
                k.to(dtype).expand(rows, -1, -1, -1), v.to(dtype).expand(rows, -1, -1, -1), i
            )  # cat with the empty layer copies the rows
        return cache

    def backward(self) -> None:
        """Backpropagate the gradients accumulated on the leaves through the prefix graph (once)."""
        pairs = [(g, leaf.grad) for g, leaf in zip(self._graph, self._leaves, strict=True) if leaf.grad is not None]
        if pairs and self._graph[0].requires_grad:
            torch.autograd.backward([g for g, _ in pairs], [grad.to(g.dtype) for g, grad in pairs])
        self._graph, self._leaves = [], []


def prefix_length(ids: Tensor, attn: Tensor, needed: Tensor) -> int:
    """Longest prefix every row shares, shorter than every row and before every scored position.

    Returns:
        p, or 0 when below ``MIN_SHARED_PREFIX`` tokens (not worth sharing).
    """
    p = common_prefix_length(ids.tolist())
    p = min(p, int(attn.sum(dim=1).min()) - 1)
    scored = needed.bool().any(dim=0).nonzero()
    if scored.numel():
        p = min(p, int(scored[0]) - 1)
    return p if p >= MIN_SHARED_PREFIX else 0


def encode_prefix(model: torch.nn.Module, ids: Tensor, attn: Tensor, needed: Tensor) -> PrefixKV | None:
    """Encode the prefix shared by the rows of a minibatch (call under the step's autocast, with grad).

    Args:
        model: The policy (a causal LM, possibly peft-wrapped).
        ids: ``(N, T)`` int64 token ids of the whole minibatch.
        attn: ``(N, T)`` attention mask.
        needed: ``(N, T)`` positions the loss scores.

    Returns:
        The :class:`PrefixKV`, or None when the shared prefix is short or the cache is not plain
        full attention.
    """
    p = prefix_length(ids, attn, needed)
    if p == 0:
        return None
    parts = split_causal_lm(model)
    module: Any = model if parts is None else parts.decoder
    cache = out_cache(module(input_ids=ids[:1, :p], use_cache=True))
    layers = getattr(cache, "layers", None)
    if not layers or any(type(layer) is not DynamicLayer for layer in layers):
        return None
    return PrefixKV(ids[0, :p].clone(), model, parts, [la.keys for la in layers], [la.values for la in layers])
