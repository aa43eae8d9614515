"""The masked MLP categorical policy: masks, sampling, greedy choice, entropy, gradients, seeding."""

from __future__ import annotations

import math

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from agents.discrete.policy import (
    MLPPolicy,
    greedy_actions,
    masked_log_probs,
    sample_actions,
    taken_log_prob_and_entropy,
)


def _policy(seed: int = 0, obs_dim: int = 5, n_actions: int = 4) -> MLPPolicy:
    return MLPPolicy(obs_dim, n_actions, hidden_size=8, num_layers=2, generator=torch.Generator().manual_seed(seed))


@settings(max_examples=60, deadline=None)
@given(
    mask_bits=st.lists(st.lists(st.booleans(), min_size=5, max_size=5), min_size=1, max_size=6),
    seed=st.integers(0, 2**16),
)
def test_masked_actions_are_never_sampled_and_have_zero_probability(mask_bits: list[list[bool]], seed: int) -> None:
    mask = torch.tensor(mask_bits)
    mask[:, -1] = True  # answering is always allowed in the env
    logits = torch.randn(mask.shape, generator=torch.Generator().manual_seed(seed)) * 5.0
    logp = masked_log_probs(logits, mask)
    assert torch.all(torch.isneginf(logp[~mask])) and torch.all(torch.isfinite(logp[mask]))
    assert torch.allclose(logp.exp().sum(dim=-1), torch.ones(mask.shape[0], dtype=logp.dtype))
    gen = torch.Generator().manual_seed(seed)
    draws = torch.stack([sample_actions(logits, mask, gen) for _ in range(200)])  # (200, B)
    assert bool(mask.gather(1, draws.T).all())
    assert bool(mask.gather(1, greedy_actions(logits, mask).unsqueeze(1)).all())


def test_greedy_picks_the_best_allowed_action_and_sampling_follows_the_probabilities() -> None:
    logits = torch.tensor([[3.0, 1.0, 0.0, -1.0]])
    assert greedy_actions(logits, torch.tensor([[True, True, True, True]])).item() == 0
    assert greedy_actions(logits, torch.tensor([[False, True, True, True]])).item() == 1
    mask = torch.tensor([[False, True, True, False]])
    gen = torch.Generator().manual_seed(0)
    draws = sample_actions(logits.expand(20_000, 4), mask.expand(20_000, 4), gen)
    p1 = math.exp(1.0) / (math.exp(1.0) + 1.0)  # renormalised over the two allowed actions
    share = float((draws == 1).double().mean())
    assert abs(share - p1) < 4 * math.sqrt(p1 * (1 - p1) / 20_000)


def test_entropy_oracle_and_gradients_stay_finite_under_masks() -> None:
    logits = torch.zeros(2, 1, 4, requires_grad=True)
    mask = torch.tensor([[[True, True, False, False]], [[True, True, True, True]]])
    actions = torch.tensor([[1], [3]])
    logp, ent = taken_log_prob_and_entropy(logits, mask, actions)
    assert torch.allclose(ent, torch.tensor([[math.log(2)], [math.log(4)]]))
    assert torch.allclose(logp, torch.tensor([[-math.log(2)], [-math.log(4)]]))
    (logp.sum() + ent.sum()).backward()
    assert logits.grad is not None and torch.all(torch.isfinite(logits.grad))
    assert torch.all(logits.grad[0, 0, 2:] == 0.0)  # masked logits get no gradient


def test_init_is_seeded_near_uniform_and_leaves_the_global_rng_alone() -> None:
    before = torch.random.get_rng_state()
    a, b, c = _policy(1), _policy(1), _policy(2)
    assert torch.equal(before, torch.random.get_rng_state())
    for pa, pb in zip(a.parameters(), b.parameters(), strict=True):
        assert torch.equal(pa, pb)
    assert not torch.equal(a.head.weight, c.head.weight)
    probs = masked_log_probs(a(torch.rand(10, 5)), torch.ones(10, 4, dtype=torch.bool)).exp()
    assert torch.allclose(probs, torch.full_like(probs, 0.25), atol=0.02)  # head gain 0.01


@pytest.mark.parametrize("shape", [(3, 5), (2, 4, 5)])
def test_forward_shapes(shape: tuple[int, ...]) -> None:
    assert _policy()(torch.rand(shape)).shape == (*shape[:-1], 4)
