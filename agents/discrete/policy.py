"""A small MLP categorical policy over ``RouterQADiscrete-v0``'s ``Box`` features, with action masks.

The network maps an observation ``(…, D)`` to logits ``(…, A)``; the pure functions below apply the
env's action mask (``env.action_masks()``) before any probability is formed, so a masked action has
probability exactly 0 and is never sampled, and its log-prob never enters a loss.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor, nn
from torch.nn.utils import skip_init

__all__ = ["MLPPolicy", "greedy_actions", "masked_log_probs", "sample_actions", "taken_log_prob_and_entropy"]


class MLPPolicy(nn.Module):
    """``num_layers`` tanh layers of width ``hidden_size``, then a linear head to A logits.

    Weights are orthogonal (gain √2 for hidden layers, 0.01 for the head, so the initial policy is
    close to uniform over the allowed actions), biases 0, all drawn from ``generator``: two policies
    built with equally seeded generators are identical, and no global RNG is touched.

    Args:
        obs_dim: D, the observation size.
        n_actions: A, the number of discrete actions.
        hidden_size: Width of each hidden layer.
        num_layers: Number of hidden layers (>= 1).
        generator: Source of the initial weights.
    """

    def __init__(
        self, obs_dim: int, n_actions: int, *, hidden_size: int, num_layers: int, generator: torch.Generator
    ) -> None:
        """Build and initialise the network."""
        super().__init__()
        layers: list[nn.Module] = []
        width = obs_dim
        # skip_init: nn.Linear's own init would draw from the global RNG; every weight comes from `generator`.
        for _ in range(num_layers):
            layers += [skip_init(nn.Linear, width, hidden_size), nn.Tanh()]
            width = hidden_size
        self.body = nn.Sequential(*layers)
        self.head = skip_init(nn.Linear, width, n_actions)
        with torch.no_grad():
            for module in (*layers, self.head):
                if isinstance(module, nn.Linear):
                    gain = 0.01 if module is self.head else math.sqrt(2.0)
                    nn.init.orthogonal_(module.weight, gain=gain, generator=generator)
                    module.bias.zero_()

    def forward(self, obs: Tensor) -> Tensor:
        """Logits ``(…, A)`` float32 of observations ``(…, D)`` float32."""
        return self.head(self.body(obs))


def masked_log_probs(logits: Tensor, mask: Tensor) -> Tensor:
    """Log-softmax over the allowed actions; ``-inf`` on masked ones.

    Args:
        logits: ``(…, A)`` float.
        mask: ``(…, A)`` bool, True = allowed; every row must allow at least one action.

    Returns:
        ``(…, A)`` log-probabilities (exactly ``-inf`` where ``mask`` is False).
    """
    neg_inf = torch.full((), -math.inf, dtype=logits.dtype)
    return torch.log_softmax(torch.where(mask, logits, neg_inf), dim=-1)


def sample_actions(logits: Tensor, mask: Tensor, generator: torch.Generator) -> Tensor:
    """Sample one allowed action per row: ``(B,)`` int64 from logits and mask ``(B, A)``."""
    probs = masked_log_probs(logits, mask).exp()  # masked entries are exactly 0
    return torch.multinomial(probs, 1, generator=generator).squeeze(-1)


def greedy_actions(logits: Tensor, mask: Tensor) -> Tensor:
    """The most likely allowed action per row (ties go to the lowest index): ``(B,)`` int64."""
    return masked_log_probs(logits, mask).argmax(dim=-1)


def taken_log_prob_and_entropy(logits: Tensor, mask: Tensor, actions: Tensor) -> tuple[Tensor, Tensor]:
    """Log-prob of the taken actions and the masked policy's entropy.

    Args:
        logits: ``(N, T, A)`` float.
        mask: ``(N, T, A)`` bool (padded steps must allow at least one action).
        actions: ``(N, T)`` int64 taken actions (any allowed value at padded steps).

    Returns:
        ``(logp (N, T), entropy (N, T))``; entropy sums ``-p·log p`` over allowed actions only.
    """
    logp_all = masked_log_probs(logits, mask)
    logp = logp_all.gather(-1, actions.unsqueeze(-1)).squeeze(-1)
    # Zero the masked log-probs *before* the product: 0·(−inf) would be NaN, and a NaN inside an
    # unselected `where` branch still poisons the gradient.
    safe = torch.where(mask, logp_all, torch.zeros((), dtype=logits.dtype))
    entropy = -(logp_all.exp() * safe).sum(dim=-1)
    return logp, entropy
