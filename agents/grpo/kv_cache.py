"""A preallocated KV cache for the HF sampling loop (``docs/learner.md`` §6).

transformers' ``DynamicCache`` appends each decoded token with ``torch.cat``, which copies the whole
cache of every layer at every token: on SmolLM2 with a 32-row batch and a 700-token prompt that copy
was 76 % of :meth:`~agents.grpo.engines.HFEngine.generate`'s time. :func:`preallocate` swaps the
layers of a *prefilled* ``DynamicCache`` for :class:`PreallocatedLayer` objects whose keys and values
live in buffers sized for the context plus the new tokens; an update writes the new token's keys in
place and returns a view of the filled part, so the per-token cost no longer grows with the context.

The values the attention sees are the same tensors (a view instead of a fresh concatenation), so
sampling is unchanged (tests compare ids and log-probs with the dynamic cache). The cache object
stays a ``DynamicCache``, so transformers' mask creation and layer bookkeeping work unchanged across
the 5.19-5.24 API range; only the plain full-attention layers are swapped (sliding-window or other
special layers keep their own update). The buffers are written in place, so the cache is for
``torch.no_grad`` sampling only, never for a forward that is differentiated.

Why not transformers' ``StaticCache``: it allocates its buffers lazily from the batch of its first
update and cannot repeat a batch-1 prefix over the rows (no ``batch_repeat_interleave``), which the
shared-prefix prefill needs, and every decoding step then attends over the whole ``max_cache_len``.
"""

from __future__ import annotations

from typing import Any

from torch import Tensor
from transformers.cache_utils import DynamicLayer

__all__ = ["PreallocatedLayer", "preallocate"]


class PreallocatedLayer(DynamicLayer):
    """One layer's keys and values in buffers with room for more tokens (a drop-in ``DynamicLayer``).

    Args:
        keys: ``(N, H, L, D_k)`` keys already cached (copied into the buffer).
        values: ``(N, H, L, D_v)`` values already cached.
        capacity: Tokens the buffer holds (≥ L); an update past it doubles the buffer once.
    """

    def __init__(self, keys: Tensor, values: Tensor, capacity: int) -> None:
        """Copy ``keys``/``values`` into buffers of ``capacity`` tokens."""
        super().__init__()
        self.length = int(keys.shape[-2])
        self._kbuf = self._alloc(keys, max(capacity, self.length))
        self._vbuf = self._alloc(values, max(capacity, self.length))
        self.dtype, self.device = keys.dtype, keys.device
        self.is_initialized = True
        self._expose()

    @staticmethod
    def _alloc(src: Tensor, capacity: int) -> Tensor:
        buf = src.new_empty((*src.shape[:-2], capacity, src.shape[-1]))
        buf[..., : src.shape[-2], :] = src
        return buf

    def _expose(self) -> tuple[Tensor, Tensor]:
        """Point ``keys``/``values`` (read by transformers) at the filled part of the buffers; return them."""
        keys, values = self._kbuf[..., : self.length, :], self._vbuf[..., : self.length, :]
        self.keys, self.values = keys, values
        return keys, values

    @property
    def capacity(self) -> int:
        """Tokens the buffers hold."""
        return int(self._kbuf.shape[-2])

    def update(self, key_states: Tensor, value_states: Tensor, *args: Any, **kwargs: Any) -> tuple[Tensor, Tensor]:
        """Write the new keys/values after the cached ones; return views of everything cached.

        Args:
            key_states: ``(N, H, t, D_k)`` new keys.
            value_states: ``(N, H, t, D_v)`` new values.
            *args: Ignored (transformers passes cache kwargs in some releases).
            **kwargs: Ignored.

        Returns:
            ``(keys, values)``, ``(N, H, L + t, D)`` views of the buffers.
        """
        end = self.length + int(key_states.shape[-2])
        if end > self.capacity:  # rare: more tokens than planned; grow once instead of per token
            keys, values = self._expose()
            self._kbuf = self._alloc(keys, max(end, 2 * self.capacity))
            self._vbuf = self._alloc(values, max(end, 2 * self.capacity))
        self._kbuf[..., self.length : end, :] = key_states
        self._vbuf[..., self.length : end, :] = value_states
        self.length = end
        return self._expose()

    def get_seq_length(self) -> int:
        """Tokens cached."""
        return self.length

    def _unsupported(self, *args: Any, **kwargs: Any) -> None:
        raise NotImplementedError(
            "PreallocatedLayer only supports update(); convert the cache after prefix repetition/selection"
        )

    crop = batch_repeat_interleave = batch_select_indices = reset = _unsupported  # type: ignore[assignment]


def preallocate(cache: Any, extra_tokens: int) -> int:
    """Swap the plain layers of a prefilled ``DynamicCache`` for :class:`PreallocatedLayer`, in place.

    Args:
        cache: A transformers ``DynamicCache`` after the prefill (its rows already repeated).
        extra_tokens: Tokens that will still be appended (e.g. ``max_new_tokens``).

    Returns:
        The number of layers swapped (layers of other types, e.g. sliding-window ones, are kept).
    """
    swapped = 0
    layers = getattr(cache, "layers", None)
    if layers is None:
        return 0
    for i, layer in enumerate(layers):
        keys, values = getattr(layer, "keys", None), getattr(layer, "values", None)
        if type(layer) is DynamicLayer and keys is not None and values is not None and keys.numel():
            layers[i] = PreallocatedLayer(keys, values, int(keys.shape[-2]) + int(extra_tokens))
            swapped += 1
    return swapped
