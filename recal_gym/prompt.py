"""The router prompt (``docs/protocol.md`` §3) and the candidate prompt (§9), generated from the pool.

The wording is recal-gym's own; the content and order of the elements follow the protocol, so a
policy trained on Router-R1's prompt meets the same instructions. The placeholders ``LLM-Name`` and
``Your-Query`` are part of the contract (parse rule P1, format rule F8).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Literal

from recal_gym.errors import InvalidConfig
from recal_gym.pools.spec import PoolModel

__all__ = [
    "CANDIDATE_INSTRUCTION",
    "DescriptorField",
    "PromptVariant",
    "render_candidate_prompt",
    "render_router_prompt",
]

PromptVariant = Literal["qwen", "llama"]
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


def _descriptor_paragraph(model: PoolModel, fields: Sequence[DescriptorField]) -> str:
    text = model.descriptor.strip()
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
        variant: ``"qwen"`` (default) or ``"llama"`` (adds the rule against printing the
            ``<think> ... </think>`` placeholder).
        descriptor_fields: ``("descriptor",)`` (Router-R1: no prices) or
            ``("descriptor", "price")``.

    Returns:
        The prompt text: task, routing syntax, strict rules, deliberation, replies, descriptors,
        answer rule, and the question last followed by two newlines.

    Raises:
        InvalidConfig: on an unknown variant or descriptor field, or no models.
    """
    if variant not in ("qwen", "llama"):
        raise InvalidConfig(f"prompt_variant must be 'qwen' or 'llama', got {variant!r}")
    bad = [f for f in descriptor_fields if f not in ("descriptor", "price")]
    if bad or "descriptor" not in descriptor_fields:
        raise InvalidConfig(
            f"descriptor_fields must contain 'descriptor' and may add 'price', got {list(descriptor_fields)!r}"
        )
    if not models:
        raise InvalidConfig("the router prompt needs at least one listed pool model")
    names = ", ".join(m.name for m in models)
    llama_rule = (
        " Do not print the placeholder '<think> ... </think>' itself; write your actual reasoning inside the tags."
        if variant == "llama"
        else ""
    )
    descriptors = "\n\n".join(_descriptor_paragraph(m, descriptor_fields) for m in models)
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
