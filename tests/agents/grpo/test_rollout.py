"""Rollouts as token sequences: masks, exact ids, kept prefixes, engines (``docs/learner.md`` §6)."""

from __future__ import annotations

from collections.abc import Sequence

import pytest
import torch

from agents.grpo.engines import HFEngine, Sample, SamplingParams, common_prefix_length, token_logprobs
from agents.grpo.losses import token_policy_loss
from agents.grpo.rollout import TextCodec, collect_rollouts
from agents.models.tiny_model import build_tiny_model, load_tiny_tokenizer
from envs.router_qa import RouterQAEnv
from recal_gym.data import load_questions
from recal_gym.errors import InvalidConfig
from recal_gym.pools import build_pool
from recal_gym.pools.options import PoolOptions
from recal_gym.rewards import make_spec

torch.set_num_threads(2)

PARAMS = SamplingParams(max_new_tokens=8)


@pytest.fixture(scope="module")
def tiny(tmp_path_factory: pytest.TempPathFactory):
    from transformers import AutoModelForCausalLM

    path = build_tiny_model(tmp_path_factory.mktemp("tiny"), max_position_embeddings=8192)
    tok = load_tiny_tokenizer(path)
    model = AutoModelForCausalLM.from_pretrained(path, local_files_only=True).eval()
    return model, tok


@pytest.fixture(scope="module")
def questions():
    return load_questions("embedded")


def _envs(tok, questions, n: int) -> list[RouterQAEnv]:
    pool = build_pool(None, PoolOptions(seed=0))
    spec = make_spec("recal", update_mode="batch")
    return [
        RouterQAEnv(questions, pool=pool, reward=spec, max_routed_turns=1, max_start_length=4096, token_counter=tok)
        for _ in range(n)
    ]


class ScriptedEngine:
    """Returns fixed id lists per turn and records every context it was given."""

    def __init__(self, turns: Sequence[Sequence[int]]) -> None:
        self.turns = [list(t) for t in turns]
        self.contexts: list[list[list[int]]] = []

    def generate(self, contexts, params, generator):
        self.contexts.append([list(c) for c in contexts])
        k = len(self.contexts) - 1
        return [Sample(self.turns[k], [-1.0] * len(self.turns[k])) for _ in contexts]

    def sync_weights(self, model) -> None:
        pass


def _byte_ids(tok, text: str) -> list[int]:
    """Spell ``text`` with byte tokens only (tags as bytes, not as their single special ids)."""
    ids: list[int] = []
    for ch in text:
        ids.extend(tok.convert_tokens_to_ids(list(tok.backend_tokenizer.pre_tokenizer.pre_tokenize_str(ch)[0][0])))
    return ids


def _route_then_answer(tok, codec: TextCodec, question: str):
    turn1 = codec.encode(f"<think>ask</think>\n<search> Qwen2.5-7B-Instruct:{question} </search>")
    turn2 = codec.encode("<think>ok</think>\n<answer> x </answer>")
    return turn1, turn2


def test_information_tokens_are_masked_and_get_zero_gradient(tiny, questions) -> None:
    model, tok = tiny
    codec = TextCodec(tok)
    qid = questions.ids()[0]
    t1, t2 = _route_then_answer(tok, codec, questions.by_id(qid).question)
    envs = _envs(tok, questions, 2)
    engine = ScriptedEngine([t1, t2])
    batch = collect_rollouts(
        envs, engine, codec, [qid, qid], [0, 0], PARAMS, torch.Generator(), source_names=questions.datasets()
    )
    info_open = tok.convert_tokens_to_ids("<information>")
    info_close = tok.convert_tokens_to_ids("</information>")
    row, mask = batch.ids[0], batch.loss_mask[0]
    start = int((row == info_open).nonzero()[0])
    end = int((row == info_close).nonzero()[0])
    assert mask[start : end + 1].sum() == 0  # the whole splice, tags included
    assert mask.sum() == len(t1) + len(t2)  # exactly the sampled turns
    assert batch.records[0]["information_spans"]  # the env did splice a reply
    # gradient with respect to masked log-prob entries is exactly zero
    logp, _ = token_logprobs(model, batch.ids, batch.attn_mask)
    logp.retain_grad()
    out = token_policy_loss(
        logp, logp.detach(), torch.tensor([1.0, -1.0]), batch.loss_mask,
        clip_low=0.2, clip_high=0.28, dual_clip=None, kl_coef=0.0, kl_estimator="k3",
        loss_agg="token-mean", l_norm=None,
    )  # fmt: skip
    out.loss.backward()
    assert torch.isfinite(out.loss)
    grad = logp.grad
    assert torch.all(grad[batch.loss_mask == 0] == 0)
    assert torch.all(grad[0][batch.loss_mask[0] == 1] != 0)


def test_training_ids_are_the_generation_contexts_even_when_text_reencodes_differently(tiny, questions) -> None:
    _, tok = tiny
    codec = TextCodec(tok)
    qid = questions.ids()[3]
    turn = _byte_ids(tok, "<think>hm</think>\n<answer> y </answer>")  # tags spelled as bytes
    assert codec.encode(codec.decode(turn)) != turn  # re-encoding would change the ids
    engine = ScriptedEngine([turn])
    envs = _envs(tok, questions, 1)
    batch = collect_rollouts(
        envs, engine, codec, [qid], [0], PARAMS, torch.Generator(), source_names=questions.datasets()
    )
    context = engine.contexts[0][0]
    row = batch.ids[0][batch.attn_mask[0] == 1].tolist()
    assert row == context + turn  # exactly the sampler's context followed by the sampled ids
    assert batch.format_ok[0] == 1.0  # the env read the decoded text with its tags
    assert batch.loss_mask[0, len(context) :].sum() == len(turn)


def test_tail_after_the_cut_is_dropped_from_ids_and_context(tiny, questions) -> None:
    _, tok = tiny
    codec = TextCodec(tok)
    qid = questions.ids()[5]
    question = questions.by_id(qid).question
    turn1 = codec.encode(f"<think>a</think>\n<search> Gemma-2-27B-Instruct:{question} </search> junk tail")
    turn2 = codec.encode("<think>b</think>\n<answer> z </answer>")
    engine = ScriptedEngine([turn1, turn2])
    batch = collect_rollouts(
        _envs(tok, questions, 1), engine, codec, [qid], [0], PARAMS, torch.Generator(),
        source_names=questions.datasets(),
    )  # fmt: skip
    kept = turn1[: turn1.index(tok.convert_tokens_to_ids("</search>")) + 1]
    first_ctx, second_ctx = engine.contexts[0][0], engine.contexts[1][0]
    assert second_ctx[: len(first_ctx) + len(kept)] == first_ctx + kept
    assert "junk" not in codec.decode(second_ctx[len(first_ctx) :])
    assert batch.loss_mask[0].sum() == len(kept) + len(turn2)


def test_shared_prefix_forward_equals_plain_forward(tiny) -> None:
    model, _ = tiny
    g = torch.Generator().manual_seed(0)
    prefix = torch.randint(0, 256, (40,), generator=g)
    rows = [torch.cat([prefix, torch.randint(0, 256, (n,), generator=g)]) for n in (5, 9, 3)]
    ids = torch.zeros(3, 49, dtype=torch.long)
    attn = torch.zeros(3, 49, dtype=torch.long)
    for i, r in enumerate(rows):
        ids[i, : len(r)], attn[i, : len(r)] = r, 1
    with torch.no_grad():
        shared, ent_s = token_logprobs(model, ids, attn, temperature=0.7, with_entropy=True)
        plain, ent_p = token_logprobs(model, ids, attn, temperature=0.7, with_entropy=True, share_prefix=False)
    on = attn.bool()
    torch.testing.assert_close(shared[on], plain[on], rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(ent_s[on], ent_p[on], rtol=1e-5, atol=1e-5)


def test_hf_engine_is_seeded_and_its_logprobs_match_the_training_forward(tiny) -> None:
    model, tok = tiny
    engine = HFEngine(model, tok)
    ctxs = [[*list(range(30)), 40, 41], [*list(range(30)), 50], [*list(range(30)), 60, 61, 62]]
    a = engine.generate(ctxs, PARAMS, torch.Generator().manual_seed(3))
    b = engine.generate(ctxs, PARAMS, torch.Generator().manual_seed(3))
    assert [s.ids for s in a] == [s.ids for s in b]
    for ctx, s in zip(ctxs, a, strict=True):
        assert 1 <= len(s.ids) <= PARAMS.max_new_tokens
        ids = torch.tensor([ctx + s.ids])
        with torch.no_grad():
            lp, _ = token_logprobs(model, ids, torch.ones_like(ids))
        torch.testing.assert_close(lp[0, len(ctx) :], torch.tensor(s.logprobs), rtol=1e-4, atol=1e-4)


def test_hf_engine_stops_after_a_stop_string(tiny) -> None:
    model, tok = tiny
    engine = HFEngine(model, tok)
    stop = tok.convert_tokens_to_ids("</answer>")
    assert engine._stopped([1, 2, stop], ("</search>", "</answer>"))
    assert not engine._stopped([1, 2, 3], ("</search>", "</answer>"))
    assert engine._stopped([1, int(tok.eos_token_id)], ())


def test_common_prefix_length() -> None:
    assert common_prefix_length([[1, 2, 3], [1, 2, 4], [1, 2]]) == 2
    assert common_prefix_length([[5], [6]]) == 0
    assert common_prefix_length([]) == 0


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"max_new_tokens": 0}, "max_new_tokens"),
        ({"max_new_tokens": 4, "temperature": 0.0}, "temperature"),
        ({"max_new_tokens": 4, "top_p": 1.5}, "top_p"),
        ({"max_new_tokens": 4, "top_k": -1}, "top_k"),
    ],
)
def test_sampling_params_validation(kwargs, match) -> None:
    with pytest.raises(InvalidConfig, match=match):
        SamplingParams(**kwargs)


def test_vllm_engine_imports_vllm_lazily_with_an_install_hint(tiny) -> None:
    import importlib.util

    from agents.grpo.engines import VLLMEngine

    if importlib.util.find_spec("vllm") is not None:
        pytest.skip("vLLM is installed; the engine is exercised by the integration tests")
    with pytest.raises(ImportError, match="pip install"):
        VLLMEngine("/nonexistent", tiny[1])
