"""Mixed precision for the CPU learner: bf16 autocast over fp32 master weights (``docs/learner.md`` §10.2).

``precision="bf16"`` runs matrix multiplies (linear layers, attention, the output head) in bfloat16
under ``torch.autocast("cpu")`` while parameters, gradients and AdamW moments stay float32, and
log-probs are computed in float32 (``agents.grpo.logprobs``). On a CPU with native bf16 instructions
(AVX512-BF16 or AMX on x86, the BF16 extension on Arm) this about halves the time of a SmolLM2 step;
without them oneDNN emulates bf16 and it is no faster, which is why ``"auto"`` resolves to bf16 only
when :func:`cpu_has_native_bf16` says so. bf16 changes the numbers relative to fp32 (documented;
runs stay bit-identical run to run on one machine and thread count).

**Enter the context per forward call or per optimiser step, never around a multi-step loop.**
Autocast caches the bf16 copy of each float32 leaf weight until the *outermost* autocast context
exits. Inside one context spanning two optimiser steps the second forward silently reuses the
weights cast before the first step. The learner therefore enters :func:`autocast` once per
optimiser step (the micro-batches of one step share the cast, correctly, since the weights do not
change between them) and once per sampling call. ``tests/agents/grpo/test_precision.py`` shows the
stale-weight failure and checks the learner does not have it.
"""

from __future__ import annotations

import contextlib
import platform
from pathlib import Path
from typing import Literal

import torch

from agents.grpo.config import PrecisionName
from recal_gym.errors import InvalidConfig

__all__ = ["Precision", "autocast", "cpu_has_native_bf16", "resolve_precision"]

Precision = Literal["fp32", "bf16"]
"""A resolved precision."""

_BF16_FLAGS = frozenset({"avx512_bf16", "amx_bf16", "bf16"})
"""``/proc/cpuinfo`` flags of native bf16 arithmetic (x86 AVX512-BF16 and AMX, Arm BF16)."""


def _cpu_flags(cpuinfo: Path = Path("/proc/cpuinfo")) -> frozenset[str] | None:
    """CPU feature flags from ``/proc/cpuinfo`` (x86 ``flags``, Arm ``Features``); None off Linux."""
    try:
        text = cpuinfo.read_text()
    except OSError:
        return None
    for line in text.splitlines():
        key, sep, value = line.partition(":")
        if sep and key.strip() in ("flags", "Features"):
            return frozenset(value.split())
    return None


def cpu_has_native_bf16(cpuinfo: Path = Path("/proc/cpuinfo")) -> bool:
    """Whether this CPU runs bf16 matrix multiplies natively (not emulated).

    Args:
        cpuinfo: Where to read the CPU flags (Linux); elsewhere oneDNN's own bf16 check decides
            (on Apple silicon and other non-Linux hosts that check is the only signal available).

    Returns:
        True when oneDNN supports bf16 here and, on Linux, the CPU flags include a native bf16
        instruction set (``avx512_bf16``, ``amx_bf16`` or ``bf16``).
    """
    onednn = bool(torch.ops.mkldnn._is_mkldnn_bf16_supported())
    flags = _cpu_flags(cpuinfo)
    if flags is None:
        return onednn and platform.system() != "Linux"
    return onednn and bool(flags & _BF16_FLAGS)


def resolve_precision(name: PrecisionName, *, cpuinfo: Path = Path("/proc/cpuinfo")) -> Precision:
    """Resolve a config value to ``"fp32"`` or ``"bf16"`` (``"auto"``: bf16 iff :func:`cpu_has_native_bf16`).

    Raises:
        InvalidConfig: ``name`` is not one of ``fp32``, ``bf16``, ``auto``.
    """
    if name == "auto":
        return "bf16" if cpu_has_native_bf16(cpuinfo) else "fp32"
    if name not in ("fp32", "bf16"):
        raise InvalidConfig(f"precision={name!r} is not one of ['fp32', 'bf16', 'auto']")
    return name


def autocast(precision: Precision) -> contextlib.AbstractContextManager[object]:
    """The autocast context of ``precision`` on CPU (a no-op for fp32).

    Enter it per forward call or per optimiser step, never around several optimiser steps (see the
    module docstring).

    Args:
        precision: A resolved precision.

    Returns:
        ``torch.autocast("cpu", dtype=torch.bfloat16)`` for bf16, else a null context.
    """
    if precision == "bf16":
        return torch.autocast("cpu", dtype=torch.bfloat16)
    return contextlib.nullcontext()
