"""A prefix encoded once per optimiser step gives the plain gradients (``docs/learner.md`` §6)."""

from __future__ import annotations

import pytest
import torch

from agents.grpo.logprobs import token_logprobs
from agents.grpo.precision import autocast
from agents.grpo.prefix import encode_prefix, prefix_length
from agents.models.tiny_model import build_tiny_model, load_tiny_tokenizer

torch.set_num_threads(1)


@pytest.fixture(scope="module", params=["llama", "gpt2"])
def model(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory):
    from transformers import AutoModelForCausalLM

    path = build_tiny_model(tmp_path_factory.mktemp(request.param), arch=request.param, max_position_embeddings=512)
    load_tiny_tokenizer(path)
    return AutoModelForCausalLM.from_pretrained(path, local_files_only=True).eval()


def _rows(prefix_len: int, tails: tuple[int, ...]) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Rows sharing ``prefix_len`` tokens; ``needed`` marks random positions of each tail."""
    g = torch.Generator().manual_seed(0)
    prefix = torch.randint(0, 256, (prefix_len,), generator=g)
    width = prefix_len + max(tails)
    ids = torch.zeros(len(tails), width, dtype=torch.long)
    attn = torch.zeros_like(ids)
    for i, n in enumerate(tails):
        ids[i, : prefix_len + n] = torch.cat([prefix, torch.randint(0, 256, (n,), generator=g)])
        attn[i, : prefix_len + n] = 1
    needed = (torch.rand(ids.shape, generator=g) < 0.6) & attn.bool()
    needed[:, : prefix_len + 2] = False
    return ids, attn, needed


def _grads(model) -> list[torch.Tensor]:
    return [p.grad.clone() for p in model.parameters() if p.grad is not None]


def _loss(logp: torch.Tensor, needed: torch.Tensor) -> torch.Tensor:
    weights = torch.linspace(-1.0, 2.0, logp.shape[1])  # any fixed linear functional of the log-probs
    return (logp * needed * weights).sum()


def _plain(model, ids, attn, needed) -> tuple[torch.Tensor, list[torch.Tensor]]:
    model.zero_grad(set_to_none=True)
    logp, _ = token_logprobs(model, ids, attn, needed=needed)
    _loss(logp, needed).backward()
    return logp.detach(), _grads(model)


def _shared(model, ids, attn, needed, micro: int) -> tuple[torch.Tensor, list[torch.Tensor]]:
    model.zero_grad(set_to_none=True)
    prefix = encode_prefix(model, ids, attn, needed)
    assert prefix is not None and prefix.length == 40
    parts = []
    for s in range(0, ids.shape[0], micro):
        sl = slice(s, s + micro)
        logp, _ = token_logprobs(model, ids[sl], attn[sl], needed=needed[sl], prefix=prefix)
        _loss(logp, needed[sl]).backward()
        parts.append(logp.detach())
    prefix.backward()
    return torch.cat(parts), _grads(model)


def test_shared_prefix_micro_batches_give_the_full_batch_gradients(model) -> None:
    ids, attn, needed = _rows(40, (7, 12, 3, 9))
    ref_lp, ref_grads = _plain(model, ids, attn, needed)
    for micro in (1, 2):
        lp, grads = _shared(model, ids, attn, needed, micro)
        torch.testing.assert_close(lp[needed], ref_lp[needed], rtol=1e-5, atol=1e-5)
        assert len(grads) == len(ref_grads)
        for a, b in zip(grads, ref_grads, strict=True):
            torch.testing.assert_close(a, b, rtol=1e-4, atol=1e-6)


def test_shared_prefix_under_bf16_autocast_is_close_to_the_plain_bf16_update(model) -> None:
    ids, attn, needed = _rows(40, (7, 12, 3, 9))
    with autocast("bf16"):
        ref_lp, _ = token_logprobs(model, ids, attn, needed=needed)
        prefix = encode_prefix(model, ids, attn, needed)
        assert prefix is not None
        lp, _ = token_logprobs(model, ids[:2], attn[:2], needed=needed[:2], prefix=prefix)
    torch.testing.assert_close(lp[needed[:2]], ref_lp[:2][needed[:2]].detach(), rtol=5e-2, atol=5e-2)


def test_rows_without_the_prefix_fall_back_to_their_own_forward(model) -> None:
    ids, attn, needed = _rows(40, (7, 12, 3, 9))
    prefix = encode_prefix(model, ids[:2], attn[:2], needed[:2])
    assert prefix is not None
    other = ids.clone()
    other[:, 5] = (other[:, 5] + 1) % 256  # a different prefix: the shared one must not be used
    assert not prefix.matches(other, attn, needed)
    with torch.no_grad():
        lp, _ = token_logprobs(model, other, attn, needed=needed, prefix=prefix)
        ref, _ = token_logprobs(model, other, attn, needed=needed)
    torch.testing.assert_close(lp, ref, rtol=1e-5, atol=1e-5)


def test_prefix_length_stops_before_scored_positions_and_skips_short_prefixes() -> None:
    ids, attn, needed = _rows(40, (7, 12))
    assert prefix_length(ids, attn, needed) == 40
    needed[1, 30] = True  # a scored token inside the shared part: it is scored from the hidden state at 29
    assert prefix_length(ids, attn, needed) == 29
    needed[0, 10] = True
    assert prefix_length(ids, attn, needed) == 0  # 9 shared tokens are not worth sharing
