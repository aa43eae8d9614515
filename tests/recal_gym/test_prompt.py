"""The router prompt: every variant holds the protocol's eight elements in order (``docs/protocol.md`` §3)."""

from __future__ import annotations

import pytest

from recal_gym.errors import InvalidConfig
from recal_gym.pools import default_pool_spec
from recal_gym.prompt import PROMPT_VARIANTS, first_sentence, render_router_prompt
from recal_gym.tokens import WordPunctCounter

MODELS = default_pool_spec().listed
QUESTION = "Who wrote the novel Emma?"


def _in_order(text: str, parts: list[str]) -> list[int]:
    """Indices of ``parts`` in ``text``, each searched after the previous one (-1 when missing)."""
    out, start = [], 0
    for part in parts:
        i = text.find(part, start)
        out.append(i)
        start = i + len(part) if i >= 0 else start
    return out


@pytest.mark.parametrize("variant", PROMPT_VARIANTS)
def test_every_variant_holds_the_eight_elements_in_protocol_order(variant) -> None:
    prompt = render_router_prompt(MODELS, QUESTION, variant=variant)
    names = ", ".join(m.name for m in MODELS)
    elements = [
        "<think>",  # 1 task: reason inside think first
        "<search> LLM-Name:Your-Query </search>",  # 2 routing syntax
        f"[{names}]",  # 3 strict rules: the bracketed list in pool order, then the placeholders
        "Your-Query",
        "<information> and </information>",  # 5 replies
        *[f"\n\n{m.name}:" for m in MODELS],  # 6 one NAME:DESCRIPTOR paragraph per model, blank-line separated
        "<answer> Beijing </answer>",  # 7 answer rule with its example
        f"Question: {QUESTION}\n\n",  # 8 the question, last
    ]
    assert -1 not in _in_order(prompt, elements)
    assert prompt.endswith(f"Question: {QUESTION}\n\n")
    assert "Before each call" in prompt  # 4 deliberation
    assert "Never leave the answer tags empty" in prompt
    assert "never" in prompt.lower() and "placeholder" in prompt  # never emit the placeholder form literally
    for m in MODELS:  # no space after the colon of a descriptor paragraph
        assert f"\n{m.name}:{m.descriptor.strip()[:10]}" in prompt


def test_compact_shortens_descriptors_to_their_first_sentence_and_keeps_display_names() -> None:
    full = render_router_prompt(MODELS, QUESTION)
    compact = render_router_prompt(MODELS, QUESTION, variant="compact")
    for m in MODELS:
        assert f"\n{m.name}:{first_sentence(m.descriptor)}\n" in compact
        assert m.descriptor.strip() in full
        if first_sentence(m.descriptor) != m.descriptor.strip():
            assert m.descriptor.strip() not in compact
    count = WordPunctCounter().count
    assert count(compact) < 0.8 * count(full)


def test_compact_with_prices_appends_the_price_to_the_short_descriptor() -> None:
    compact = render_router_prompt(MODELS, QUESTION, variant="compact", descriptor_fields=("descriptor", "price"))
    m = MODELS[0]
    assert f"{m.name}:{first_sentence(m.descriptor)} Price: {m.price_per_1m_output:g} USD per 1M" in compact


@pytest.mark.parametrize(
    ("text", "first"),
    [
        ("One sentence only", "One sentence only"),
        ("Meta's 8B model (v3.1). Fast and general.", "Meta's 8B model (v3.1)."),
        ("Version 0.3 model. Compact! Fast?", "Version 0.3 model."),
        ("Strong in maths. 128K context.", "Strong in maths. 128K context."),  # a digit does not start a sentence
        ("  Padded.  Then more.", "Padded."),
    ],
)
def test_first_sentence(text: str, first: str) -> None:
    assert first_sentence(text) == first


def test_unknown_variant_is_rejected_with_the_allowed_set() -> None:
    with pytest.raises(
        InvalidConfig, match=r"prompt_variant must be one of \['qwen', 'llama', 'compact'\], got 'tiny'"
    ):
        render_router_prompt(MODELS, QUESTION, variant="tiny")  # type: ignore[arg-type]
