"""Tests for agents.models.tiny_model: config-built tiny models and the byte-level protocol tokenizer."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from transformers import AutoModelForCausalLM, AutoTokenizer

from agents.models.tiny_model import (
    BOS_TOKEN,
    EOS_TOKEN,
    PAD_TOKEN,
    PROTOCOL_SPECIALS,
    build_tiny_model,
    build_tiny_tokenizer,
    build_vllm_tiny_model,
    byte_symbols,
    load_tiny_tokenizer,
)
from recal_gym.errors import InvalidConfig

VOCAB = 256 + len(PROTOCOL_SPECIALS)


@pytest.fixture(scope="module")
def llama_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The default tiny Llama, built once per module."""
    return build_tiny_model(tmp_path_factory.mktemp("tiny-llama"))


@pytest.fixture(scope="module")
def tokenizer(llama_dir: Path):
    """The tiny tokenizer reloaded with AutoTokenizer."""
    return AutoTokenizer.from_pretrained(llama_dir, local_files_only=True)


@pytest.fixture(scope="module")
def model(llama_dir: Path):
    """The tiny Llama reloaded with AutoModelForCausalLM."""
    return AutoModelForCausalLM.from_pretrained(llama_dir, local_files_only=True)


def _state(path: Path) -> dict[str, torch.Tensor]:
    return AutoModelForCausalLM.from_pretrained(path, local_files_only=True).state_dict()


def test_specials_are_the_protocol_tags() -> None:
    """The specials are pad/bos/eos plus the eight protocol tags, all distinct."""
    assert PROTOCOL_SPECIALS[:3] == (PAD_TOKEN, BOS_TOKEN, EOS_TOKEN)
    assert {"<think>", "</think>", "<search>", "</search>", "<answer>", "</answer>"} <= set(PROTOCOL_SPECIALS)
    assert {"<information>", "</information>"} <= set(PROTOCOL_SPECIALS)
    assert len(set(PROTOCOL_SPECIALS)) == len(PROTOCOL_SPECIALS) == 11


def test_build_returns_path_and_reloads(llama_dir: Path, model, tokenizer) -> None:
    """The saved folder reloads offline with the documented sizes and ids."""
    assert llama_dir.is_dir()
    assert (llama_dir / "config.json").is_file()
    assert len(tokenizer) == VOCAB
    assert model.config.vocab_size == VOCAB
    assert model.config.model_type == "llama"
    assert (tokenizer.bos_token, tokenizer.eos_token, tokenizer.pad_token) == (
        BOS_TOKEN,
        EOS_TOKEN,
        PAD_TOKEN,
    )
    assert model.config.eos_token_id == tokenizer.eos_token_id
    assert model.config.pad_token_id == tokenizer.pad_token_id
    assert sum(p.numel() for p in model.parameters()) == 91_136  # docs/assets.md section 4.1


def test_each_protocol_tag_is_one_token(tokenizer) -> None:
    """Every protocol tag encodes to exactly one id, in order after the 256 bytes."""
    ids = []
    for tag in PROTOCOL_SPECIALS:
        encoded = tokenizer.encode(tag, add_special_tokens=False)
        assert len(encoded) == 1, tag
        ids.append(encoded[0])
    assert ids == list(range(256, VOCAB))
    text = "<think>plan</think><search>Paris</search><answer>France</answer>"
    encoded = tokenizer.encode(text, add_special_tokens=False)
    assert len(encoded) == 6 + len("plan") + len("Paris") + len("France")


@settings(max_examples=200, deadline=None)
@given(text=st.text(max_size=64))
def test_tokenizer_round_trips_unicode(tokenizer, text: str) -> None:
    """Any Unicode text round-trips, one token per UTF-8 byte."""
    ids = tokenizer.encode(text, add_special_tokens=False)
    assert all(0 <= i < VOCAB for i in ids)
    assert tokenizer.decode(ids) == text
    if not any(tag in text for tag in PROTOCOL_SPECIALS):
        assert len(ids) == len(text.encode("utf-8"))  # pure byte level: one token per byte


@settings(max_examples=50, deadline=None)
@given(parts=st.lists(st.one_of(st.text(max_size=8), st.sampled_from(PROTOCOL_SPECIALS[3:])), max_size=6))
def test_round_trip_with_tags_mixed_in(tokenizer, parts: list[str]) -> None:
    """Text mixing protocol tags and arbitrary text round-trips."""
    text = "".join(parts)
    assert tokenizer.decode(tokenizer.encode(text, add_special_tokens=False)) == text


def test_token_ids_are_byte_values_in_every_process() -> None:
    """Id b is byte b, whatever the process (``ByteLevel.alphabet()`` is in hash-set order per process)."""
    code = (
        "from agents.models.tiny_model import build_tiny_tokenizer; "
        "print(build_tiny_tokenizer().encode('Hi é~', add_special_tokens=False))"
    )
    runs = {
        subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.strip()
        for _ in range(3)
    }
    assert runs == {str(list("Hi é~".encode()))}
    assert len(set(byte_symbols())) == 256


def test_encode_adds_no_specials(tokenizer) -> None:
    """Plain encoding adds no BOS/EOS; the chat template writes them."""
    assert tokenizer("ab")["input_ids"] == tokenizer.encode("ab", add_special_tokens=False)


def test_chat_template_renders(tokenizer) -> None:
    """The chat template renders the documented strings."""
    user = [{"role": "user", "content": "Who wrote Emma?"}]
    prompt = tokenizer.apply_chat_template(user, tokenize=False, add_generation_prompt=True)
    assert prompt == "<|bos|>user\nWho wrote Emma?<|eos|>\nassistant\n"
    bare = tokenizer.apply_chat_template(user, tokenize=False, add_generation_prompt=False)
    assert bare == "<|bos|>user\nWho wrote Emma?<|eos|>\n"
    turns = [
        {"role": "system", "content": "Be brief."},
        {"role": "user", "content": "Hi"},
        {"role": "assistant", "content": "<answer>Hello</answer>"},
    ]
    rendered = tokenizer.apply_chat_template(turns, tokenize=False)
    assert rendered == "<|bos|>system\nBe brief.<|eos|>\nuser\nHi<|eos|>\nassistant\n<answer>Hello</answer><|eos|>\n"


def test_chat_template_tokenizes(tokenizer) -> None:
    """A tokenized chat starts with BOS and holds one EOS per message."""
    msgs = [{"role": "user", "content": "é"}]
    out = tokenizer.apply_chat_template(msgs, tokenize=True, add_generation_prompt=True, return_dict=True)
    ids = list(out["input_ids"])
    assert ids[0] == tokenizer.bos_token_id
    assert ids.count(tokenizer.eos_token_id) == 1
    assert tokenizer.decode(ids) == "<|bos|>user\né<|eos|>\nassistant\n"


def test_generate_works(model, tokenizer) -> None:
    """Greedy batched generation runs, stays in the vocabulary and is repeatable."""
    tokenizer.padding_side = "left"
    batch = tokenizer(["<think>", "a longer prompt"], return_tensors="pt", padding=True)
    out = model.generate(**batch, max_new_tokens=5, do_sample=False, pad_token_id=tokenizer.pad_token_id)
    assert out.shape[0] == 2
    assert batch["input_ids"].shape[1] < out.shape[1] <= batch["input_ids"].shape[1] + 5
    assert int(out.min()) >= 0
    assert int(out.max()) < VOCAB
    again = model.generate(**batch, max_new_tokens=5, do_sample=False, pad_token_id=tokenizer.pad_token_id)
    assert torch.equal(out, again)


def test_same_seed_identical_weights(tmp_path: Path, llama_dir: Path) -> None:
    """The same seed gives identical weights; another seed differs."""
    same = build_tiny_model(tmp_path / "same", seed=0)
    other = build_tiny_model(tmp_path / "other", seed=1)
    ref, twin, diff = _state(llama_dir), _state(same), _state(other)
    assert ref.keys() == twin.keys() == diff.keys()
    assert all(torch.equal(ref[k], twin[k]) for k in ref)
    assert any(not torch.equal(ref[k], diff[k]) for k in ref)


def test_build_does_not_touch_global_rng(tmp_path: Path) -> None:
    """Building leaves the caller's global torch RNG state untouched."""
    torch.manual_seed(123)
    before = torch.get_rng_state()
    build_tiny_model(tmp_path / "m", seed=7)
    assert torch.equal(torch.get_rng_state(), before)


@pytest.mark.parametrize("arch", ["llama", "qwen2", "gpt2"])
def test_architectures_build_and_run(tmp_path: Path, arch: str) -> None:
    """Each architecture builds, reloads and runs a forward pass."""
    path = build_tiny_model(tmp_path / arch, arch=arch, max_position_embeddings=128)
    model = AutoModelForCausalLM.from_pretrained(path, local_files_only=True)
    tok = load_tiny_tokenizer(path)
    assert model.config.model_type == arch
    assert len(tok) == VOCAB
    ids = torch.tensor([tok.encode("<search>x</search>")])
    logits = model(input_ids=ids).logits
    assert logits.shape == (1, 3, VOCAB)
    assert torch.isfinite(logits).all()
    text = "naïve <answer>ünï</answer> 日本"
    assert tok.decode(tok.encode(text)) == text


def test_vllm_tiny_model_shape(tmp_path: Path) -> None:
    """The vLLM model has head_dim 64, room for 1024 tokens and the chat template."""
    path = build_vllm_tiny_model(tmp_path / "v")
    cfg = AutoModelForCausalLM.from_pretrained(path, local_files_only=True).config
    assert cfg.hidden_size // cfg.num_attention_heads == 64
    assert cfg.max_position_embeddings >= 1024
    assert load_tiny_tokenizer(path).chat_template == build_tiny_tokenizer().chat_template


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"hidden_size": 65}, "hidden_size=65.*divisible by num_heads=4"),
        ({"num_kv_heads": 3}, "num_kv_heads=3.*must divide num_heads=4"),
        ({"num_layers": 0}, "num_layers=0.*positive int"),
        ({"intermediate_size": 2.5}, "intermediate_size=2.5.*positive int"),
        ({"max_position_embeddings": 0}, "max_position_embeddings=0.*positive int"),
        ({"arch": "mamba"}, "arch='mamba'.*llama"),
    ],
)
def test_bad_shapes_raise(tmp_path: Path, kwargs: dict, match: str) -> None:
    """Impossible shapes and unknown archs raise InvalidConfig naming field and rule."""
    with pytest.raises(InvalidConfig, match=match):
        build_tiny_model(tmp_path / "bad", **kwargs)
