"""bf16 autocast over fp32 master weights, and the stale-cast pitfall (``docs/learner.md`` §10.2)."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from agents.grpo.precision import autocast, cpu_has_native_bf16, resolve_precision
from recal_gym.errors import InvalidConfig

torch.set_num_threads(1)

_ONEDNN_BF16 = bool(torch.ops.mkldnn._is_mkldnn_bf16_supported())


def _cpuinfo(tmp_path: Path, flags: str) -> Path:
    path = tmp_path / f"cpuinfo-{len(flags)}"
    path.write_text(f"processor\t: 0\nvendor_id\t: Test\nflags\t\t: {flags}\n\nprocessor\t: 1\nflags\t\t: {flags}\n")
    return path


@pytest.mark.skipif(not _ONEDNN_BF16, reason="oneDNN has no bf16 on this CPU")
def test_auto_is_bf16_only_with_native_bf16_instructions(tmp_path: Path) -> None:
    native = _cpuinfo(tmp_path, "fpu sse2 avx2 avx512f avx512bw avx512_bf16")
    emulated = _cpuinfo(tmp_path, "fpu sse2 avx2 avx512f avx512bw")
    assert cpu_has_native_bf16(native) and resolve_precision("auto", cpuinfo=native) == "bf16"
    assert not cpu_has_native_bf16(emulated) and resolve_precision("auto", cpuinfo=emulated) == "fp32"
    assert resolve_precision("fp32", cpuinfo=native) == "fp32"
    assert resolve_precision("bf16", cpuinfo=emulated) == "bf16"  # an explicit choice is kept


def test_unknown_precision_is_rejected() -> None:
    with pytest.raises(InvalidConfig, match=r"precision='fp16' is not one of \['fp32', 'bf16', 'auto'\]"):
        resolve_precision("fp16")  # type: ignore[arg-type]


def test_bf16_context_casts_matmuls_and_keeps_fp32_weights_and_grads() -> None:
    lin = torch.nn.Linear(8, 4)
    x = torch.randn(3, 8)
    with autocast("fp32"):
        assert lin(x).dtype == torch.float32
    with autocast("bf16"):
        y = lin(x)
    assert y.dtype == torch.bfloat16
    y.float().sum().backward()
    assert lin.weight.dtype == torch.float32 and lin.weight.grad is not None
    assert lin.weight.grad.dtype == torch.float32


def _two_sgd_steps(per_step: bool) -> tuple[torch.Tensor, torch.Tensor]:
    """Two SGD steps on a linear model under bf16; returns (outputs at step 1, outputs at step 2)."""
    g = torch.Generator().manual_seed(0)
    lin = torch.nn.Linear(16, 16)
    with torch.no_grad():
        lin.weight.copy_(torch.randn(16, 16, generator=g))
        lin.bias.copy_(torch.randn(16, generator=g))
    opt = torch.optim.SGD(lin.parameters(), lr=0.5)
    x = torch.randn(4, 16, generator=g)
    outs = []

    def step() -> None:
        out = lin(x)
        outs.append(out.detach().float())
        out.float().pow(2).mean().backward()
        opt.step()
        opt.zero_grad()

    if per_step:
        for _ in range(2):
            with autocast("bf16"):
                step()
    else:
        with autocast("bf16"):  # the pitfall: one context around both optimiser steps
            step()
            step()
    return outs[0], outs[1]


def test_one_context_around_two_optimiser_steps_reuses_stale_bf16_weights() -> None:
    first, second = _two_sgd_steps(per_step=False)
    assert torch.equal(first, second)  # the update is invisible: the cached bf16 weights were reused
    first, second = _two_sgd_steps(per_step=True)
    assert not torch.equal(first, second)  # per-step contexts see the updated weights
