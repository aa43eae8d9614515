r"""Short-sequence behaviour cloning for the ReCal study's tiny policy (warm start, stage A).

The env warm start (``Learner.warm_start``, ``docs/learner.md`` §10.3) trains on the full ~1,150-token
router prompt, so each step is slow, and a ~0.3 M-parameter byte-level policy does not learn to copy an
unseen question into its route within a CPU budget (measured: no related route after 150-300 steps).
Stage A therefore clones the same demonstrations on *short* sequences, the end of the prompt only::

    <|bos|>user\\nQuestion: {q}\\n<|eos|>\\nassistant\\n            (context, masked)
    <think>ask</think><search> {random model}:{q} </search>     (target)
    \\n\\n<information>The answer is {a}.\\nRegarding {q}</information>\\n\\n   (env text, masked)
    <think>ok</think><answer>{a}</answer>                      (target)

over the study's fixed question pool. Models are uniformly random and ``a`` is the gold answer or a
random other answer with equal probability, so the policy learns to route a question and to copy the
stated answer, and nothing about *which* model is right: that is left to RL.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import torch

from recal_gym.types import QARow

__all__ = ["clone_short_demos"]


def _example(row: QARow, names: Sequence[str], answers: Sequence[str], tokenizer: Any, rng: np.random.Generator):
    q = row.question
    a = row.golden_answers[0] if rng.random() < 0.5 else str(answers[int(rng.integers(len(answers)))])
    name = names[int(rng.integers(len(names)))]
    context = tokenizer.apply_chat_template(
        [{"role": "user", "content": f"Question: {q}\n"}], add_generation_prompt=True, tokenize=False
    )
    parts = (
        (context, 0.0),
        (f"<think>ask</think><search> {name}:{q} </search>", 1.0),
        (f"\n\n<information>The answer is {a}.\nRegarding {q}</information>\n\n", 0.0),
        (f"<think>ok</think><answer>{a}</answer>", 1.0),
    )
    ids: list[int] = []
    mask: list[float] = []
    for text, m in parts:
        enc = tokenizer.encode(text, add_special_tokens=False)
        ids += enc
        mask += [m] * len(enc)
    return ids, mask


def clone_short_demos(
    model: torch.nn.Module,
    tokenizer: Any,
    rows: Sequence[QARow],
    names: Sequence[str],
    *,
    steps: int,
    batch: int,
    lr: float,
    seed: int,
) -> list[float]:
    """Behaviour-clone short route-then-answer demonstrations; returns the per-step token-mean NLL.

    Args:
        model: The policy (trained in place).
        tokenizer: Its tokenizer (chat template, pad id).
        rows: Questions to demonstrate.
        names: Listed model names to route to (uniformly at random).
        steps: Optimiser steps.
        batch: Demonstrations per step.
        lr: AdamW learning rate.
        seed: Seed of the demonstration sampler.
    """
    rng = np.random.default_rng(seed)
    answers = [r.golden_answers[0] for r in rows]
    opt = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=lr)
    losses = []
    model.train()
    for _ in range(steps):
        examples = [_example(rows[int(rng.integers(len(rows)))], names, answers, tokenizer, rng) for _ in range(batch)]
        width = max(len(ids) for ids, _ in examples)
        ids = torch.full((batch, width), int(tokenizer.pad_token_id), dtype=torch.long)
        attn = torch.zeros((batch, width), dtype=torch.long)
        mask = torch.zeros((batch, width))
        for i, (e_ids, e_mask) in enumerate(examples):
            ids[i, : len(e_ids)] = torch.tensor(e_ids)
            attn[i, : len(e_ids)] = 1
            mask[i, : len(e_ids)] = torch.tensor(e_mask)
        logits = model(input_ids=ids, attention_mask=attn).logits[:, :-1].float()
        logp = torch.log_softmax(logits, dim=-1).gather(-1, ids[:, 1:, None])[..., 0]
        m = mask[:, 1:]
        loss = -(logp * m).sum() / m.sum()
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        losses.append(float(loss.detach()))
    model.eval()
    return losses
