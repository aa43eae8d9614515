"""The router prompt (``docs/protocol.md`` §3) and the candidate prompt (§9), generated from the pool.

The wording is recal-gym's own; the content and order of the elements follow the protocol, so a
policy trained on Router-R1's prompt meets the same instructions. The placeholders ``LLM-Name`` and
``Your-Query`` are part of the contract (parse rule P1, format rule F8).

Variants: ``"qwen"`` (default, Router-R1's prompt), ``"llama"`` (adds the rule against printing the
``<think> ... </think>`` placeholder) and ``"compact"``, a **deviation from Router-R1's prompt** for
small CPU policies: the same eight elements in the same order, in terser wording, with each model's
descriptor cut to its first sentence (:func:`first_sentence`). Display names are unchanged, so routes
resolve and score exactly as with the full prompt. Under SmolLM2's chat template it averages 525 tokens
instead of 691 over the embedded questions with the default pool (prompt encoding is a large share of a CPU
learner step).
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from typing import Literal

from recal_gym.errors import InvalidConfig
from recal_gym.pools.spec import PoolModel

__all__ = [
    "CANDIDATE_INSTRUCTION",
    "PROMPT_VARIANTS",
    "DescriptorField",
    "PromptVariant",
    "first_sentence",
    "render_candidate_prompt",
    "render_router_prompt",
]

PromptVariant = Literal["qwen", "llama", "compact"]
"""Router prompt wordings (see the module docstring)."""
PROMPT_VARIANTS: tuple[PromptVariant, ...] = ("qwen", "llama", "compact")
"""Every :data:`PromptVariant`, in documentation order."""
DescriptorField = Literal["descriptor", "price"]

CANDIDATE_INSTRUCTION = (
    "You are one of several expert models a coordinator can consult. Do your best either to answer "
    "the sub-question below directly, with a brief explanation, or to give context that helps answer "
    "it. If you cannot help, say so plainly and suggest consulting another model. Stay concise and on "
    "topic, ideally well under 512 tokens."
)
"""Fixed instruction placed before every routed query (``docs/protocol.md`` §9)."""


def render_candidate_prompt(query: str) -> str:
    """Return the single user message sent to a candidate model for ``query``."""
    return f"{CANDIDATE_INSTRUCTION}\n\nSub-question: {query}"


_SENTENCE_END = re.compile(r"(?<=[.!?])\s+(?=[A-Z])")


def first_sentence(text: str) -> str:
    """The first sentence of ``text``: up to the first ``.``, ``!`` or ``?`` followed by a space and a capital.

    Example:
        >>> first_sentence("Meta's 8B model (v3.1). Fast and general.")
        "Meta's 8B model (v3.1)."
    """
    return _SENTENCE_END.split(text.strip(), maxsplit=1)[0]


def _descriptor_paragraph(model: PoolModel, fields: Sequence[DescriptorField], compact: bool) -> str:
    text = first_sentence(model.descriptor) if compact else model.descriptor.strip()
    if "price" in fields:
        text += f" Price: {model.price_per_1m_output:g} USD per 1M output tokens."
    return f"{model.name}:{text}"


def render_router_prompt(
    models: Sequence[PoolModel],
    question: str,
    *,
    variant: PromptVariant = "qwen",
    descriptor_fields: Sequence[DescriptorField] = ("descriptor",),
) -> str:
    """Render the router's user message for one question.

    Args:
        models: The listed pool models, in pool order.
        question: The preprocessed question (ends with ``?``, tags neutralised).
        variant: ``"qwen"`` (default), ``"llama"`` (adds the rule against printing the
            ``<think> ... </think>`` placeholder) or ``"compact"`` (terse wording, first-sentence
            descriptors; a documented deviation from Router-R1, see the module docstring).
        descriptor_fields: ``("descriptor",)`` (Router-R1: no prices) or
            ``("descriptor", "price")``.

    Returns:
        The prompt text: task, routing syntax, strict rules, deliberation, replies, descriptors,
        answer rule, and the question last followed by two newlines.

    Raises:
        InvalidConfig: on an unknown variant or descriptor field, or no models.
    """
    if variant not in PROMPT_VARIANTS:
        raise InvalidConfig(f"prompt_variant must be one of {list(PROMPT_VARIANTS)}, got {variant!r}")
    bad = [f for f in descriptor_fields if f not in ("descriptor", "price")]
    if bad or "descriptor" not in descriptor_fields:
        raise InvalidConfig(
            f"descriptor_fields must contain 'descriptor' and may add 'price', got {list(descriptor_fields)!r}"
        )
    if not models:
        raise InvalidConfig("the router prompt needs at least one listed pool model")
    names = ", ".join(m.name for m in models)
    descriptors = "\n\n".join(_descriptor_paragraph(m, descriptor_fields, variant == "compact") for m in models)
    if variant == "compact":
        return _compact_prompt(names, descriptors, question)
    llama_rule = (
        " Do not print the placeholder '<think> ... </think>' itself; write your actual reasoning inside the tags."
        if variant == "llama"
        else ""
    )
    return (
        "Answer the question below. Reason inside <think> and </think> before anything else, and "
        "again every time new information arrives.\n"
        "If you lack some knowledge, you may consult a model from the pool by writing "
        "<search> LLM-Name:Your-Query </search>.\n"
        f"Routing rules: replace LLM-Name with the exact name of one model from [{names}], and "
        "Your-Query with a concrete question that helps answer the original one. Never paste a "
        "model description into a search and never write the placeholder form literally."
        f"{llama_rule}\n"
        "Before each call, explain inside <think> why outside information is needed and which model "
        "suits the query.\n"
        "The reply will be placed between <information> and </information>. You may try different "
        "models and call a model more than once.\n\n"
        "Available models:\n\n"
        f"{descriptors}\n\n"
        "When you need nothing more, write the final answer inside <answer> and </answer>, without "
        "any explanation, for example <answer> Beijing </answer>. Never leave the answer tags empty.\n\n"
        f"Question: {question}\n\n"
    )


def _compact_prompt(names: str, descriptors: str, question: str) -> str:
    """The ``compact`` variant: the eight protocol elements (``docs/protocol.md`` §3) in terse wording."""
    return (
        "Answer the question. Reason inside <think> and </think> first and whenever new information arrives.\n"
        "If knowledge is missing, consult a model: <search> LLM-Name:Your-Query </search>.\n"
        f"Rules: LLM-Name is the exact name of one model from [{names}]; Your-Query is a concrete question "
        "that helps answer the original one. Never paste a description into a search or write the placeholder "
        "form literally.\n"
        "Before each call, say inside <think> why outside information is needed and which model suits.\n"
        "Replies arrive between <information> and </information>; you may try several models and call one "
        "more than once.\n\n"
        "Models:\n\n"
        f"{descriptors}\n\n"
        "When done, give only the final answer inside <answer> and </answer>, e.g. <answer> Beijing </answer>. "
        "Never leave the answer tags empty.\n\n"
        f"Question: {question}\n\n"
    )
