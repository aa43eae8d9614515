"""Models: the config-built tiny policy, offline asset preparation (SmolLM2) and query featurisers."""

from __future__ import annotations

__all__: list[str] = []
