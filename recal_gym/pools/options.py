"""Construction options of pools and of the simulated backend."""

from __future__ import annotations

import math
from dataclasses import dataclass

from recal_gym.errors import InvalidConfig

__all__ = ["PoolOptions", "SimulatedConfig"]


def _in_range(owner: str, name: str, value: float, lo: float, hi: float) -> None:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
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
    cache_path: str = ""
    """Opt-in on-disk response cache (SQLite); ``""`` disables it."""
    timeout_s: float = 60.0
    """Per-attempt timeout of live calls."""
    max_retries: int = 3
    """Retries after the first attempt on timeouts, 429 and 5xx."""
    backoff_s: float = 0.5
    """Base of the jittered exponential backoff between retries."""
    max_concurrency: int = 16
    """Maximum in-flight requests of an async backend."""
    simulated: SimulatedConfig = SimulatedConfig()
    """Settings of the simulated backend."""

    def __post_init__(self) -> None:
        """Validate every field."""
        if isinstance(self.seed, bool) or not isinstance(self.seed, int):
            raise InvalidConfig(f"PoolOptions.seed must be an int, got {self.seed!r}")
        _in_range("PoolOptions", "timeout_s", self.timeout_s, 1e-3, 3600.0)
        _in_range("PoolOptions", "backoff_s", self.backoff_s, 0.0, 60.0)
        if not isinstance(self.max_retries, int) or self.max_retries < 0:
            raise InvalidConfig(f"PoolOptions.max_retries must be an int >= 0, got {self.max_retries!r}")
        if not isinstance(self.max_concurrency, int) or self.max_concurrency < 1:
            raise InvalidConfig(f"PoolOptions.max_concurrency must be an int >= 1, got {self.max_concurrency!r}")
