"""Candidate-LLM pools: the pool description, backends behind one protocol, and the pool object."""

from __future__ import annotations

from recal_gym.pools.base import Backend, Pool, build_pool, register_backend
from recal_gym.pools.spec import PoolModel, PoolSpec, default_pool_spec, load_pool_spec

__all__ = [
    "Backend",
    "Pool",
    "PoolModel",
    "PoolSpec",
    "build_pool",
    "default_pool_spec",
    "load_pool_spec",
    "register_backend",
]
