"""A scripted policy over token contexts, shared by the TRL and verl adapter tests.

The script reads the decoded context (chat-templated prompt, then the episode so far): after an
``<information>`` splice it answers with the reply's stated answer; before, it routes, answers or breaks the
format, chosen per question by ``kinds`` (0 route, 1 answer, 2 junk; default answer).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch

from agents.eval.baselines import answer_from_reply, question_from_prompt
from agents.grpo.engines import Sample, SamplingParams
from agents.grpo.rollout import TextCodec

MODELS = ("Mixtral-8x22B-Instruct", "Qwen2.5-7B-Instruct")
LOGPROB = -0.25


def turn_text(context: str, kinds: dict[str, int]) -> str:
    """The scripted turn for a decoded context."""
    prompt, _, so_far = context.partition("\nassistant\n")  # the chat-templated prompt, then the episode
    question = question_from_prompt(prompt)
    if "<information>" in so_far:
        return f"<think>ok</think><answer> {answer_from_reply(so_far) or 'x'} </answer>"
    kind = kinds.get(question, 1)
    if kind == 0:
        return f"<think>ask</think><search> {MODELS[len(so_far) % 2]}:{question} </search> and text after the stop"
    if kind == 1:
        return "<think>easy</think><answer> x </answer>"
    return "no tags at all"


class ScriptedEngine:
    """A GenerationEngine sampling scripted turns (log-prob ``LOGPROB`` per token); ``log`` maps context → ids."""

    def __init__(self, tokenizer: Any, kinds: dict[str, int] | None = None) -> None:
        self.codec = TextCodec(tokenizer)
        self.kinds = kinds or {}
        self.log: dict[tuple[int, ...], list[int]] = {}

    def sample(self, context: Sequence[int], max_new_tokens: int) -> list[int]:
        ids = self.codec.encode(turn_text(self.codec.decode(context), self.kinds))[:max_new_tokens]
        self.log[tuple(context)] = ids
        return ids

    def generate(
        self, contexts: Sequence[Sequence[int]], params: SamplingParams, generator: torch.Generator
    ) -> list[Sample]:
        out = []
        for ctx in contexts:
            ids = self.sample(ctx, params.max_new_tokens)
            out.append(Sample(ids, [LOGPROB] * len(ids)))
        return out

    def sync_weights(self, model: torch.nn.Module) -> None:
        pass
