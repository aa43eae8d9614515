"""Tiny causal language models built from a config, never downloaded.

Unit tests, the ``tiny`` preset and the vLLM integration tests need a real model directory that
``from_pretrained(path, local_files_only=True)`` can load, but the machine has no model hub. This module
builds one from a config in well under a second: a pure byte-level BPE tokenizer (no merges, so it
round-trips any Unicode text) whose protocol tags (``<search>``, ``<answer>``, ...) are single special
tokens, and a randomly initialised Llama, Qwen2 or GPT-2 of a few hundred kilobytes.

The weights are a pure function of ``seed``: the build forks the torch RNG, so no global random state
leaks into the caller.

Reload the tokenizer with :func:`load_tiny_tokenizer` (or ``AutoTokenizer`` for ``llama``/``gpt2``).
For ``qwen2`` directories transformers 5 ignores the saved tokenizer class and rebuilds a
``Qwen2Tokenizer``, which adds an NFC normaliser and a 268th token (``<|endoftext|>``), so
``AutoTokenizer`` no longer round-trips every string there.

Example:
    >>> from agents.models.tiny_model import build_tiny_model
    >>> path = build_tiny_model("/tmp/tiny")  # doctest: +SKIP
    >>> AutoModelForCausalLM.from_pretrained(path, local_files_only=True)  # doctest: +SKIP
"""

from __future__ import annotations

from pathlib import Path
from typing import Literal

import torch
from tokenizers import Tokenizer, decoders, models, pre_tokenizers
from transformers import AutoConfig, AutoModelForCausalLM, PretrainedConfig, PreTrainedTokenizerFast

from recal_gym.errors import InvalidConfig

__all__ = [
    "BOS_TOKEN",
    "EOS_TOKEN",
    "PAD_TOKEN",
    "PROTOCOL_SPECIALS",
    "TINY_CHAT_TEMPLATE",
    "TinyArch",
    "build_tiny_model",
    "build_tiny_tokenizer",
    "build_vllm_tiny_model",
    "byte_symbols",
    "load_tiny_tokenizer",
]

TinyArch = Literal["llama", "qwen2", "gpt2"]
"""Architectures :func:`build_tiny_model` can build."""

PAD_TOKEN = "<|pad|>"
"""Padding token (id 256, the first special after the 256 byte tokens)."""

BOS_TOKEN = "<|bos|>"
"""Beginning-of-sequence token; opens every chat rendering."""

EOS_TOKEN = "<|eos|>"
"""End-of-sequence token; closes every chat turn and stops generation."""

PROTOCOL_SPECIALS: tuple[str, ...] = (
    PAD_TOKEN,
    BOS_TOKEN,
    EOS_TOKEN,
    "<think>",
    "</think>",
    "<search>",
    "</search>",
    "<information>",
    "</information>",
    "<answer>",
    "</answer>",
)
"""Special tokens of the tiny tokenizer, in id order (ids 256..266); each encodes to one token id."""

TINY_CHAT_TEMPLATE = (
    "{{- bos_token -}}"
    "{%- for message in messages -%}"
    "{{- message['role'] + '\\n' + message['content'] + eos_token + '\\n' -}}"
    "{%- endfor -%}"
    "{%- if add_generation_prompt -%}{{- 'assistant\\n' -}}{%- endif -%}"
)
"""Jinja chat template: ``<|bos|>`` once, then ``{role}\\n{content}<|eos|>\\n`` per message, then
``assistant\\n`` when ``add_generation_prompt`` is true. One user message renders as
``<|bos|>user\\n{content}<|eos|>\\nassistant\\n``."""


def byte_symbols() -> list[str]:
    """The byte-level symbol of every byte value 0..255, in byte order (GPT-2's printable remapping).

    Printable Latin-1 bytes stand for themselves; the other 68 bytes map, in byte order, to
    ``chr(256)``, ``chr(257)``, ... This is the alphabet of ``tokenizers``' ``ByteLevel``
    pre-tokenizer, but in a fixed order: ``ByteLevel.alphabet()`` returns it in hash-set order, which
    changes from process to process (a tokenizer built from it gave different ids in every run).
    """
    printable = {*range(ord("!"), ord("~") + 1), *range(ord("¡"), ord("¬") + 1), *range(ord("®"), ord("ÿ") + 1)}
    symbols, extra = [], 0
    for b in range(256):
        if b in printable:
            symbols.append(chr(b))
        else:
            symbols.append(chr(256 + extra))
            extra += 1
    return symbols


def build_tiny_tokenizer() -> PreTrainedTokenizerFast:
    """Build the pure byte-level BPE tokenizer with the protocol tags as single special tokens.

    The vocabulary is the 256 byte-level symbols (id ``b`` is byte ``b``, :func:`byte_symbols`; no merges,
    so every Unicode string round-trips losslessly) followed by :data:`PROTOCOL_SPECIALS` (ids 256..266):
    267 tokens in all.
    The tokenizer adds no BOS/EOS on ``encode``; the chat template (:data:`TINY_CHAT_TEMPLATE`) writes
    them explicitly.

    Returns:
        A fast tokenizer with ``bos/eos/pad`` set and ``chat_template`` set.
    """
    byte_vocab = {symbol: i for i, symbol in enumerate(byte_symbols())}
    backend = Tokenizer(models.BPE(vocab=byte_vocab, merges=[]))
    backend.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=True)
    backend.decoder = decoders.ByteLevel()
    backend.add_special_tokens(list(PROTOCOL_SPECIALS))
    tokenizer = PreTrainedTokenizerFast(
        tokenizer_object=backend,
        bos_token=BOS_TOKEN,
        eos_token=EOS_TOKEN,
        pad_token=PAD_TOKEN,
        clean_up_tokenization_spaces=False,
    )
    tokenizer.chat_template = TINY_CHAT_TEMPLATE
    return tokenizer


def _validate_shape(
    *, hidden_size: int, num_heads: int, num_kv_heads: int, num_layers: int, intermediate_size: int
) -> None:
    """Raise :class:`InvalidConfig` when the requested shape cannot form a model."""
    for name, value in (
        ("hidden_size", hidden_size),
        ("num_heads", num_heads),
        ("num_kv_heads", num_kv_heads),
        ("num_layers", num_layers),
        ("intermediate_size", intermediate_size),
    ):
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            raise InvalidConfig(f"{name}={value!r} is invalid: must be a positive int")
    if hidden_size % num_heads:
        raise InvalidConfig(f"hidden_size={hidden_size} is invalid: must be divisible by num_heads={num_heads}")
    if num_heads % num_kv_heads:
        raise InvalidConfig(f"num_kv_heads={num_kv_heads} is invalid: must divide num_heads={num_heads}")


def _tiny_config(
    arch: TinyArch,
    tokenizer: PreTrainedTokenizerFast,
    *,
    hidden_size: int,
    num_heads: int,
    num_kv_heads: int,
    num_layers: int,
    intermediate_size: int,
    max_position_embeddings: int,
) -> PretrainedConfig:
    """Return the transformers config of one tiny architecture (tied embeddings, tokenizer ids)."""
    ids = {
        "vocab_size": len(tokenizer),
        "bos_token_id": tokenizer.bos_token_id,
        "eos_token_id": tokenizer.eos_token_id,
        "pad_token_id": tokenizer.pad_token_id,
        "tie_word_embeddings": True,
    }
    if arch == "gpt2":  # GPT-2 has no grouped-query attention; num_kv_heads is not used.
        return AutoConfig.for_model(
            "gpt2",
            n_embd=hidden_size,
            n_head=num_heads,
            n_layer=num_layers,
            n_inner=intermediate_size,
            n_positions=max_position_embeddings,
            **ids,
        )
    if arch in ("llama", "qwen2"):
        return AutoConfig.for_model(
            arch,
            hidden_size=hidden_size,
            num_attention_heads=num_heads,
            num_key_value_heads=num_kv_heads,
            num_hidden_layers=num_layers,
            intermediate_size=intermediate_size,
            max_position_embeddings=max_position_embeddings,
            **ids,
        )
    raise InvalidConfig(f"arch={arch!r} is invalid: must be one of ('llama', 'qwen2', 'gpt2')")


def build_tiny_model(
    path: str | Path,
    *,
    arch: TinyArch = "llama",
    hidden_size: int = 64,
    num_heads: int = 4,
    num_kv_heads: int = 2,
    num_layers: int = 2,
    intermediate_size: int = 128,
    max_position_embeddings: int = 2048,
    seed: int = 0,
) -> Path:
    """Build a randomly initialised tiny causal LM plus its tokenizer and save both to ``path``.

    The weights depend only on the arguments: initialisation runs inside
    ``torch.random.fork_rng`` seeded with ``seed``, so the caller's global RNG state is untouched and
    the same arguments give bit-identical weights.

    Args:
        path: Output directory (created if missing); reload it with
            ``from_pretrained(path, local_files_only=True)``.
        arch: Architecture to build.
        hidden_size: Model width; must be divisible by ``num_heads``.
        num_heads: Attention heads (head size is ``hidden_size // num_heads``).
        num_kv_heads: Key/value heads for grouped-query attention; must divide ``num_heads``
            (ignored by ``gpt2``).
        num_layers: Decoder layers.
        intermediate_size: MLP width.
        max_position_embeddings: Longest supported sequence.
        seed: Seed of the weight initialisation.

    Returns:
        ``path`` as a :class:`~pathlib.Path`.

    Raises:
        InvalidConfig: A size is not a positive int, the heads do not divide evenly, or ``arch`` is
            unknown.
    """
    _validate_shape(
        hidden_size=hidden_size,
        num_heads=num_heads,
        num_kv_heads=num_kv_heads,
        num_layers=num_layers,
        intermediate_size=intermediate_size,
    )
    if isinstance(max_position_embeddings, bool) or max_position_embeddings < 1:
        raise InvalidConfig(f"max_position_embeddings={max_position_embeddings!r} is invalid: must be a positive int")
    tokenizer = build_tiny_tokenizer()
    config = _tiny_config(
        arch,
        tokenizer,
        hidden_size=hidden_size,
        num_heads=num_heads,
        num_kv_heads=num_kv_heads,
        num_layers=num_layers,
        intermediate_size=intermediate_size,
        max_position_embeddings=max_position_embeddings,
    )
    out = Path(path)
    out.mkdir(parents=True, exist_ok=True)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        model = AutoModelForCausalLM.from_config(config, dtype=torch.float32)
    model.eval()
    model.save_pretrained(out)
    tokenizer.save_pretrained(out)
    return out


def build_vllm_tiny_model(path: str | Path, *, seed: int = 0) -> Path:
    """Build a tiny Llama whose head size (64) vLLM's CPU attention supports.

    Hidden size 128 with 2 heads (``head_dim`` 64), 2 key/value heads, 2 layers, MLP width 256 and
    2048 positions; about 1.5 MB on disk.

    Args:
        path: Output directory.
        seed: Seed of the weight initialisation.

    Returns:
        ``path`` as a :class:`~pathlib.Path`, ready for ``vllm serve``.
    """
    return build_tiny_model(
        path,
        arch="llama",
        hidden_size=128,
        num_heads=2,
        num_kv_heads=2,
        num_layers=2,
        intermediate_size=256,
        max_position_embeddings=2048,
        seed=seed,
    )


def load_tiny_tokenizer(path: str | Path) -> PreTrainedTokenizerFast:
    """Load the tokenizer saved by :func:`build_tiny_model` exactly as built, whatever the architecture.

    Unlike ``AutoTokenizer``, this never substitutes a model-specific tokenizer class (see the module
    docstring), so the vocabulary stays at 267 tokens and text round-trips losslessly.

    Args:
        path: A directory written by :func:`build_tiny_model`.

    Returns:
        The fast tokenizer, chat template included.
    """
    return PreTrainedTokenizerFast.from_pretrained(Path(path), local_files_only=True)
