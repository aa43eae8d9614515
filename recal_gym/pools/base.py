"""The backend protocol, the backend registry and the :class:`Pool` that routes calls to backends."""

from __future__ import annotations

import importlib
from collections.abc import Callable, Mapping, Sequence
from typing import Protocol, cast, runtime_checkable

from recal_gym.errors import BackendError, InvalidConfig, close_matches_hint
from recal_gym.pools.options import PoolOptions
from recal_gym.pools.registry import BACKEND_ENTRY_POINTS, register_backend
from recal_gym.pools.spec import PoolModel, PoolSpec, load_pool_spec
from recal_gym.types import MAX_CALL_TOKENS, CallRequest, CallResult, QARow

__all__ = [
    "BACKEND_ENTRY_POINTS",
    "MAX_CALL_TOKENS",
    "Backend",
    "BackendFactory",
    "Pool",
    "build_pool",
    "register_backend",
    "result_problem",
]


def result_problem(result: object) -> str:
    """Why ``result`` cannot be used as a successful call, or ``""`` when it can.

    Backends are trusted for types but not for the numbers a server reports, and the environment and
    the response cache check every result with this before using it, so a broken or third-party
    backend cannot put an absurd cost into an episode or crash a step.

    Args:
        result: What a backend returned for one request.

    Returns:
        ``"bad_result"`` (not a :class:`~recal_gym.types.CallResult`, or ``text`` not a ``str``),
        ``"bad_usage"`` (a token count that is not an int in ``[0, MAX_CALL_TOKENS]``) or ``""``.
    """
    if not isinstance(result, CallResult) or not isinstance(result.text, str):
        return "bad_result"
    for tokens in (result.completion_tokens, result.prompt_tokens):
        if isinstance(tokens, bool) or not isinstance(tokens, int) or not (0 <= tokens <= MAX_CALL_TOKENS):
            return "bad_usage"
    return ""


@runtime_checkable
class Backend(Protocol):
    """Serves calls for some models of a pool. Batched: one call per env turn (or vector turn).

    Implementations never raise for a failed call: they return ``CallResult(ok=False, error=...)``
    after their bounded retries. They raise only for programmer errors (e.g. a request for a
    model they do not serve).
    """

    def call_batch(self, requests: Sequence[CallRequest]) -> list[CallResult]:
        """Answer every request, in order."""
        ...

    def metrics(self) -> dict[str, float]:
        """Running counters (calls, failures, retries, cache hits, ...), flat float values."""
        ...

    def attach_questions(self, rows: Sequence[QARow]) -> None:
        """Receive the environment's question set (the simulated pool draws distractors from it).

        Live backends ignore it.
        """
        ...

    def close(self) -> None:
        """Release connections, engines and files (idempotent)."""
        ...


BackendFactory = Callable[[PoolSpec, Sequence[PoolModel], PoolOptions], Backend]
"""``factory(spec, models, options)`` builds a backend serving ``models`` of ``spec``."""


def _load_factory(name: str) -> BackendFactory:
    if name not in BACKEND_ENTRY_POINTS:
        raise InvalidConfig(
            f"unknown backend {name!r}; registered: {sorted(BACKEND_ENTRY_POINTS)}"
            + close_matches_hint(name, BACKEND_ENTRY_POINTS)
        )
    module_name, attr = BACKEND_ENTRY_POINTS[name].split(":")
    try:
        module = importlib.import_module(module_name)
    except ImportError as exc:
        raise BackendError(
            f"backend {name!r} needs an optional dependency that is not installed ({exc}); "
            "see the README section 'Use real models' for the pip extra to install"
        ) from exc
    cls = getattr(module, attr)
    return cls.from_spec  # type: ignore[no-any-return]


class Pool:
    """A pool of candidate models served by one or more backends.

    Args:
        spec: The pool description.
        backends: Backend name -> backend serving every model of ``spec`` with that backend.

    Example:
        >>> from recal_gym.pools import build_pool, default_pool_spec
        >>> pool = build_pool(default_pool_spec())
        >>> pool.spec.names[0]
        'Qwen2.5-7B-Instruct'
    """

    def __init__(self, spec: PoolSpec, backends: Mapping[str, Backend]) -> None:
        """Bind ``spec`` to its backends."""
        missing = sorted({m.backend for m in spec.models} - set(backends))
        if missing:
            raise InvalidConfig(f"pool {spec.name!r}: no backend given for {missing}")
        self.spec = spec
        self.backends = dict(backends)
        self._backend_of = {m.name: m.backend for m in spec.models}
        self._closed = False

    def call_batch(self, requests: Sequence[CallRequest]) -> list[CallResult]:
        """Send every request to its model's backend (one batch per backend) and keep the order.

        Raises:
            UnknownModel: a request names a model outside the pool (a programmer error: the
                environment only sends resolved names).
        """
        by_backend: dict[str, list[int]] = {}
        for i, req in enumerate(requests):
            if req.model not in self._backend_of:
                self.spec.model(req.model)  # raises UnknownModel with close matches
            by_backend.setdefault(self._backend_of[req.model], []).append(i)
        results: list[CallResult | None] = [None] * len(requests)
        for name, idx in by_backend.items():
            answers = self.backends[name].call_batch([requests[i] for i in idx])
            if len(answers) != len(idx):
                raise BackendError(f"backend {name!r} returned {len(answers)} results for {len(idx)} requests")
            for i, res in zip(idx, answers, strict=True):
                results[i] = res
        return cast("list[CallResult]", results)  # every slot was filled (a backend's None stays visible)

    def call(self, request: CallRequest) -> CallResult:
        """Answer one request (a batch of one)."""
        return self.call_batch([request])[0]

    def attach_questions(self, rows: Sequence[QARow]) -> None:
        """Give every backend the question set (see :meth:`Backend.attach_questions`)."""
        for backend in self.backends.values():
            backend.attach_questions(rows)

    def metrics(self) -> dict[str, float]:
        """Flat counters of every backend, keyed ``pool/<backend>/<counter>``."""
        out: dict[str, float] = {}
        for name, backend in self.backends.items():
            for key, value in backend.metrics().items():
                out[f"pool/{name}/{key}"] = float(value)
        return out

    def close(self) -> None:
        """Close every backend (idempotent)."""
        if self._closed:
            return
        self._closed = True
        for backend in self.backends.values():
            backend.close()


def build_pool(
    spec: PoolSpec | str | Mapping[str, object] | None = None,
    options: PoolOptions | None = None,
) -> Pool:
    """Build a :class:`Pool` from a pool description.

    Args:
        spec: A :class:`PoolSpec`, a profile name, a pool file path or mapping; ``None`` is the
            offline default (six simulated Router-R1 models).
        options: Seed, cache, timeouts and simulated-pool settings.

    Returns:
        The pool, with one backend per backend name used by its models. With
        ``options.cache_path`` set, every backend is wrapped in the on-disk response cache.
    """
    from recal_gym.pools.spec import default_pool_spec

    pool_spec = default_pool_spec() if spec is None else load_pool_spec(spec)  # type: ignore[arg-type]
    opts = options or PoolOptions()
    backends: dict[str, Backend] = {}
    for name in dict.fromkeys(m.backend for m in pool_spec.models):
        models = [m for m in pool_spec.models if m.backend == name]
        backend = _load_factory(name)(pool_spec, models, opts)
        if opts.cache_path:
            from recal_gym.pools.cache import CachedBackend, ResponseCache

            backend = CachedBackend(backend, ResponseCache(opts.cache_path), models)
        backends[name] = backend
    return Pool(pool_spec, backends)
