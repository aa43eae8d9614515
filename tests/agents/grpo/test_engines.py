"""Samplers and the training forward on tiny models: the fast paths equal the plain ones (``docs/learner.md`` §6)."""

from __future__ import annotations

import pytest
import torch
from transformers.cache_utils import DynamicLayer, DynamicSlidingWindowLayer

from agents.grpo.engines import HFEngine, SamplingParams, sample_tokens
from agents.grpo.kv_cache import PreallocatedLayer, preallocate
from agents.grpo.logprobs import split_causal_lm, token_logprobs
from agents.models.tiny_model import build_tiny_model, load_tiny_tokenizer
from recal_gym.errors import InvalidConfig

torch.set_num_threads(1)


def _load(path, arch: str):
    from transformers import AutoModelForCausalLM

    built = build_tiny_model(path, arch=arch, max_position_embeddings=1024)  # type: ignore[arg-type]
    return AutoModelForCausalLM.from_pretrained(built, local_files_only=True).eval(), load_tiny_tokenizer(built)


@pytest.fixture(scope="module", params=["llama", "qwen2", "gpt2"])
def tiny(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory):
    return _load(tmp_path_factory.mktemp(f"tiny-{request.param}"), request.param)


@pytest.fixture(scope="module")
def llama(tmp_path_factory: pytest.TempPathFactory):
    return _load(tmp_path_factory.mktemp("tiny-llama"), "llama")


def _batch(prefix_len: int, tails: tuple[int, ...], seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    """Right-padded rows sharing ``prefix_len`` random tokens, then random tails of the given lengths."""
    g = torch.Generator().manual_seed(seed)
    prefix = torch.randint(0, 256, (prefix_len,), generator=g)
    width = prefix_len + max(tails)
    ids = torch.zeros(len(tails), width, dtype=torch.long)
    attn = torch.zeros(len(tails), width, dtype=torch.long)
    for i, n in enumerate(tails):
        row = torch.cat([prefix, torch.randint(0, 256, (n,), generator=g)])
        ids[i, : len(row)], attn[i, : len(row)] = row, 1
    return ids, attn


def _needed(attn: torch.Tensor, start: int, seed: int = 1) -> torch.Tensor:
    """A random subset of the real positions after ``start`` (like a loss mask over policy tokens)."""
    g = torch.Generator().manual_seed(seed)
    keep = torch.rand(attn.shape, generator=g) < 0.5
    keep[:, :start] = False
    return keep & attn.bool()


@pytest.mark.parametrize("share_prefix", [True, False])
def test_needed_positions_equal_the_full_logits_values_and_gradients(tiny, share_prefix: bool) -> None:
    model, _ = tiny
    assert split_causal_lm(model) is not None  # the fast path is the one under test
    ids, attn = _batch(40, (7, 12, 3))
    needed = _needed(attn, 38)

    def run(use_needed: bool) -> tuple[torch.Tensor, torch.Tensor, list[torch.Tensor]]:
        model.zero_grad(set_to_none=True)
        logp, ent = token_logprobs(
            model, ids, attn, temperature=0.7, with_entropy=True, share_prefix=share_prefix,
            needed=needed if use_needed else None,
        )  # fmt: skip
        assert ent is not None
        loss = (logp * needed).sum() + 0.1 * (ent * needed).sum()
        loss.backward()
        grads = [p.grad.clone() for p in model.parameters() if p.grad is not None]
        return logp.detach(), ent.detach(), grads

    full_lp, full_ent, full_grads = run(False)
    lp, ent, grads = run(True)
    torch.testing.assert_close(lp[needed], full_lp[needed], rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(ent[needed], full_ent[needed], rtol=1e-5, atol=1e-5)
    assert torch.all(lp[~needed] == 0) and torch.all(ent[~needed] == 0)
    assert len(grads) == len(full_grads) > 0
    for a, b in zip(grads, full_grads, strict=True):
        torch.testing.assert_close(a, b, rtol=1e-4, atol=1e-6)


def test_no_needed_position_gives_zeros_that_still_backpropagate(llama) -> None:
    model, _ = llama
    ids, attn = _batch(20, (4, 6))
    model.zero_grad(set_to_none=True)
    logp, _ = token_logprobs(model, ids, attn, needed=torch.zeros_like(attn, dtype=torch.bool))
    assert torch.all(logp == 0)
    logp.sum().backward()  # a micro-batch whose rows are all masked out must not break backward
    grads = [p.grad for p in model.parameters() if p.grad is not None]
    assert grads and all(torch.all(g == 0) for g in grads)


def test_models_with_transformed_logits_fall_back_to_the_full_forward(llama) -> None:
    model, _ = llama
    assert split_causal_lm(model) is not None
    model.config.final_logit_softcapping = 30.0  # as Gemma 2 declares; the split would skip the cap
    try:
        assert split_causal_lm(model) is None
        ids, attn = _batch(20, (5, 9))
        needed = _needed(attn, 18)
        with torch.no_grad():
            lp, _ = token_logprobs(model, ids, attn, needed=needed)
            full, _ = token_logprobs(model, ids, attn)
        torch.testing.assert_close(lp[needed], full[needed], rtol=1e-5, atol=1e-5)
    finally:
        model.config.final_logit_softcapping = None


def test_lora_wrapped_model_splits_and_matches(llama) -> None:
    peft = pytest.importorskip("peft")
    import copy

    model = peft.get_peft_model(
        copy.deepcopy(llama[0]),
        peft.LoraConfig(r=2, lora_alpha=4, target_modules="all-linear", init_lora_weights=False),
    )
    parts = split_causal_lm(model)
    assert parts is not None and any("lora" in n for n, _ in parts.decoder.named_parameters())
    ids, attn = _batch(30, (6, 4))
    needed = _needed(attn, 28)
    with torch.no_grad():
        lp, _ = token_logprobs(model, ids, attn, needed=needed)
        full, _ = token_logprobs(model, ids, attn)
    torch.testing.assert_close(lp[needed], full[needed], rtol=1e-5, atol=1e-5)


# ---------------------------------------------------------------------- the preallocated KV cache
def test_preallocated_layer_returns_what_concatenation_returns_and_grows_past_capacity() -> None:
    g = torch.Generator().manual_seed(0)
    k0, v0 = torch.randn(2, 3, 5, 4, generator=g), torch.randn(2, 3, 5, 6, generator=g)
    layer = PreallocatedLayer(k0, v0, capacity=7)
    ref_k, ref_v = k0, v0
    for t in (1, 1, 3, 1):  # the third update overflows the 7-token buffer
        k, v = torch.randn(2, 3, t, 4, generator=g), torch.randn(2, 3, t, 6, generator=g)
        got_k, got_v = layer.update(k, v)
        ref_k, ref_v = torch.cat([ref_k, k], dim=-2), torch.cat([ref_v, v], dim=-2)
        assert torch.equal(got_k, ref_k) and torch.equal(got_v, ref_v)
        assert layer.get_seq_length() == ref_k.shape[-2]
    assert layer.capacity >= 11
    with pytest.raises(NotImplementedError, match="only supports update"):
        layer.batch_repeat_interleave(2)


def test_preallocate_swaps_only_plain_full_attention_layers() -> None:
    from transformers.cache_utils import DynamicCache

    plain, sliding = DynamicLayer(), DynamicSlidingWindowLayer(sliding_window=4)
    for layer in (plain, sliding):
        layer.update(torch.ones(1, 2, 3, 4), torch.ones(1, 2, 3, 4))
    cache = DynamicCache()
    cache.layers = [plain, sliding]
    assert preallocate(cache, 8) == 1
    assert isinstance(cache.layers[0], PreallocatedLayer) and cache.layers[0].capacity == 11
    assert cache.layers[1] is sliding


# ---------------------------------------------------------------------- HFEngine
def test_inverse_cdf_sampler_matches_the_distribution_and_never_draws_cut_tokens() -> None:
    probs = torch.tensor([0.5, 0.0, 0.3, 0.15, 0.05, 0.0])  # zeros: tokens cut by top-k/top-p (-inf logits)
    n = 40_000
    logz = probs.log().expand(n, -1)
    draws = sample_tokens(logz, torch.Generator().manual_seed(0)).squeeze(1)
    assert draws.shape == (n,) and draws.dtype == torch.long
    counts = torch.bincount(draws, minlength=6).double()
    assert counts[1] == 0 and counts[5] == 0
    sigma = (n * probs.double() * (1 - probs.double())).sqrt()
    assert torch.all((counts - n * probs.double()).abs() <= 4 * sigma + 1e-9)  # within 4 sigma per token
    again = sample_tokens(logz, torch.Generator().manual_seed(0)).squeeze(1)
    assert torch.equal(draws, again)  # the generator is the only randomness


def test_sampler_edge_uniforms_stay_inside_the_support() -> None:
    logz = torch.tensor([[0.0, float("-inf"), float("-inf")], [float("-inf"), float("-inf"), 0.0]])
    for seed in range(20):
        tok = sample_tokens(logz, torch.Generator().manual_seed(seed)).squeeze(1)
        assert tok.tolist() == [0, 2]


_CONTEXTS = [[*range(30), 40, 41], [*range(30), 50], [*range(30), 60, 61, 62]]


@pytest.mark.parametrize("precision", ["fp32", "bf16"])
def test_preallocated_cache_and_needed_logits_sample_what_the_plain_loop_samples(tiny, precision: str) -> None:
    model, tok = tiny
    params = SamplingParams(max_new_tokens=12, stop_strings=("</answer>",))
    runs = {
        (cache, logits): HFEngine(model, tok, precision=precision, kv_cache=cache, logits=logits).generate(  # type: ignore[arg-type]
            _CONTEXTS, params, torch.Generator().manual_seed(5)
        )
        for cache in ("preallocated", "dynamic")
        for logits in ("needed", "all")
    }
    ref = runs["dynamic", "all"]  # the loop before the preallocated cache and the prefill split
    tol = 1e-5 if precision == "fp32" else 2e-2
    for samples in runs.values():
        assert [s.ids for s in samples] == [s.ids for s in ref]
        for s, r in zip(samples, ref, strict=True):
            torch.testing.assert_close(torch.tensor(s.logprobs), torch.tensor(r.logprobs), rtol=tol, atol=tol)


def test_preallocated_cache_keeps_stop_and_eos_handling(llama) -> None:
    model, tok = llama
    eos = int(tok.eos_token_id)
    gen = torch.Generator().manual_seed(0)
    with torch.no_grad():  # bias the head so that EOS is (almost) always sampled: rows end at once
        model.lm_head.weight[eos] += 50.0
    try:
        samples = HFEngine(model, tok).generate(_CONTEXTS, SamplingParams(max_new_tokens=10), gen)
    finally:
        with torch.no_grad():
            model.lm_head.weight[eos] -= 50.0
    assert [s.ids for s in samples] == [[eos]] * 3


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"precision": "fp16"}, "precision='fp16'"),
        ({"kv_cache": "static"}, "kv_cache='static'"),
        ({"logits": "some"}, "logits='some'"),
    ],
)
def test_hf_engine_rejects_unknown_modes(llama, kwargs, match: str) -> None:
    model, tok = llama
    with pytest.raises(InvalidConfig, match=match):
        HFEngine(model, tok, **kwargs)


def test_metric_only_entropy_has_no_graph_and_the_same_values(llama) -> None:
    model, _ = llama
    ids, attn = _batch(20, (5, 7))
    needed = _needed(attn, 18)
    lp, ent = token_logprobs(model, ids, attn, needed=needed, with_entropy=True, entropy_grad=False)
    lp2, ent2 = token_logprobs(model, ids, attn, needed=needed, with_entropy=True)
    assert ent is not None and ent2 is not None
    assert not ent.requires_grad and ent2.requires_grad and lp.requires_grad
    assert torch.equal(ent, ent2.detach()) and torch.equal(lp.detach(), lp2.detach())
