"""Construction options of pools and of the simulated backend."""

from __future__ import annotations

import math
import os
from dataclasses import dataclass
from typing import Literal

from recal_gym.errors import InvalidConfig

__all__ = ["MAX_RETRIES_LIMIT", "PoolOptions", "ReplayUnrecorded", "SimulatedConfig"]

ReplayUnrecorded = Literal["fail", "nearest"]
_REPLAY_UNRECORDED: tuple[str, ...] = ("fail", "nearest")
MAX_RETRIES_LIMIT = 20
"""Largest accepted ``PoolOptions.max_retries`` (the backoff doubles per retry: ``2**20`` is already ~12 days
at ``backoff_s=1``)."""


def _int_in_range(owner: str, name: str, value: object, lo: int, hi: int) -> None:
    if isinstance(value, bool) or not isinstance(value, int) or not (lo <= value <= hi):
        raise InvalidConfig(f"{owner}.{name} must be an int in [{lo}, {hi}], got {value!r}")


def _in_range(owner: str, name: str, value: float, lo: float, hi: float) -> None:
    # ints are exact and finite (math.isfinite would overflow on a 400-digit one); floats must be finite
    if (
        isinstance(value, bool)
        or not isinstance(value, int | float)
        or not (isinstance(value, int) or math.isfinite(value))
    ):
        raise InvalidConfig(f"{owner}.{name} must be a finite number, got {value!r}")
    if not (lo <= value <= hi):
        raise InvalidConfig(f"{owner}.{name} must be in [{lo}, {hi}], got {value!r}")


@dataclass(frozen=True, slots=True, kw_only=True)
class SimulatedConfig:
    """Settings of the simulated pool (``docs/pools.md`` §3; project defaults)."""

    accuracy_scale: float = 1.0
    """Multiplies every published EM before clipping to [0.001, 0.999]."""
    difficulty_correlation: float = 0.5
    """ρ: how strongly models' errors correlate through the shared latent difficulty."""
    abstain_rate: float = 0.2
    """Probability that a wrong reply abstains instead of stating a distractor."""
    shared_distractor: float = 0.5
    """Probability that a wrong reply uses the target's shared distractor."""
    length_sigma: float = 0.35
    """σ of the log-normal reply length around the profile's mean tokens."""
    relevance_threshold: float = 0.5
    """θ: minimum content-word F1 between query and target text to count as related."""
    failure_rate: float = 0.0
    """Probability of an injected ``call_failed`` outcome (for testing)."""
    reply_noise: float = 0.0
    """η: probability that a matched call's correctness is a fresh Bernoulli(p(m, d)) draw keyed on the
    episode's ``call_seed`` and turn instead of the deterministic latent outcome (marginals stay p)."""

    def __post_init__(self) -> None:
        """Validate every field."""
        _in_range("SimulatedConfig", "accuracy_scale", self.accuracy_scale, 0.0, 1000.0)
        _in_range("SimulatedConfig", "difficulty_correlation", self.difficulty_correlation, 0.0, 1.0)
        _in_range("SimulatedConfig", "abstain_rate", self.abstain_rate, 0.0, 1.0)
        _in_range("SimulatedConfig", "shared_distractor", self.shared_distractor, 0.0, 1.0)
        _in_range("SimulatedConfig", "length_sigma", self.length_sigma, 0.0, 5.0)
        _in_range("SimulatedConfig", "relevance_threshold", self.relevance_threshold, 0.0, 1.0)
        _in_range("SimulatedConfig", "failure_rate", self.failure_rate, 0.0, 1.0)
        _in_range("SimulatedConfig", "reply_noise", self.reply_noise, 0.0, 1.0)


@dataclass(frozen=True, slots=True, kw_only=True)
class PoolOptions:
    """Options shared by every backend of a pool."""

    seed: int = 0
    """Pool seed: simulated and replay outcomes are keyed hashes of (seed, question, target, model)."""
    cache_path: str | os.PathLike[str] = ""
    """Opt-in on-disk response cache (SQLite); ``""`` disables it."""
    timeout_s: float = 60.0
    """Per-attempt timeout of live calls."""
    max_retries: int = 3
    """Retries after the first attempt on timeouts, 429 and 5xx; an int in [0, 20]."""
    backoff_s: float = 0.5
    """Base of the jittered exponential backoff between retries."""
    max_concurrency: int = 16
    """Maximum in-flight requests of an async backend; an int in [1, 4096]."""
    max_response_bytes: int = 4 * 2**20
    """Largest response body an HTTP backend reads (decoded bytes, default 4 MiB); a longer body fails the
    call with the label ``too_large`` instead of being read, spliced or cached. An int in [1 KiB, 1 GiB]."""
    replay_unrecorded: ReplayUnrecorded = "fail"
    """What the replay backend does with a query that was not recorded for the question and model:
    ``"fail"`` (default) fails the call with the label ``unrecorded`` (``<information>None</information>``);
    ``"nearest"`` answers with the recorded query of that question and model most similar to it
    (content-word F1 > 0), and fails it as ``unrecorded`` when none shares a content word."""
    simulated: SimulatedConfig = SimulatedConfig()
    """Settings of the simulated backend."""

    def __post_init__(self) -> None:
        """Validate every field."""
        if isinstance(self.seed, bool) or not isinstance(self.seed, int):
            raise InvalidConfig(f"PoolOptions.seed must be an int, got {self.seed!r}")
        if not isinstance(self.cache_path, str | os.PathLike):
            raise InvalidConfig(
                f"PoolOptions.cache_path must be a path string ('' disables the cache), got {self.cache_path!r}"
            )
        _in_range("PoolOptions", "timeout_s", self.timeout_s, 1e-3, 3600.0)
        _in_range("PoolOptions", "backoff_s", self.backoff_s, 0.0, 60.0)
        _int_in_range("PoolOptions", "max_retries", self.max_retries, 0, MAX_RETRIES_LIMIT)
        _int_in_range("PoolOptions", "max_concurrency", self.max_concurrency, 1, 4096)
        _int_in_range("PoolOptions", "max_response_bytes", self.max_response_bytes, 1024, 2**30)
        if self.replay_unrecorded not in _REPLAY_UNRECORDED:
            raise InvalidConfig(
                f"PoolOptions.replay_unrecorded must be one of {list(_REPLAY_UNRECORDED)}, "
                f"got {self.replay_unrecorded!r}"
            )
        if not isinstance(self.simulated, SimulatedConfig):
            raise InvalidConfig(f"PoolOptions.simulated must be a SimulatedConfig, got {self.simulated!r}")
