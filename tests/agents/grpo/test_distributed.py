"""Data parallelism: 2 gloo processes give the 1-process update on the same global batch (§7.4)."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp

from agents.grpo.config import preset
from agents.grpo.distributed import DistContext, all_gather_cat, shard
from agents.grpo.learner import Learner, build_envs
from agents.grpo.rollout import RolloutBatch
from recal_gym.errors import InvalidConfig

CFG = dataclasses.replace(preset("tiny"), questions_per_step=2, group_size=4, micro_batch_size=2, warmstart_batch=8)
LR = 0.05


def _learner(model_dir: Path, ctx: DistContext) -> Learner:
    from transformers import AutoModelForCausalLM

    from agents.models.tiny_model import load_tiny_tokenizer

    tok = load_tiny_tokenizer(model_dir)
    model = AutoModelForCausalLM.from_pretrained(model_dir, local_files_only=True)
    envs = build_envs(CFG, tok, max(CFG.batch_size // ctx.world_size, CFG.warmstart_batch))
    learner = Learner(CFG, model=model, tokenizer=tok, envs=envs, ctx=ctx)
    learner.optimizer = torch.optim.SGD(learner.trainable, lr=LR)  # linear in the gradient: compare updates
    return learner


def _rows(batch: RolloutBatch, rows: slice) -> RolloutBatch:
    def cut(name: str, value):
        if name in ("source_names", "weights", "names"):
            return value
        return value.select(rows) if name == "rewards" else value[rows]

    return RolloutBatch(**{name: cut(name, getattr(batch, name)) for name in RolloutBatch._fields})


def _result(learner: Learner, metrics: dict[str, float]) -> dict:
    return {
        "params": {n: p.detach().clone() for n, p in learner.model.named_parameters()},
        "grads": {n: p.grad.clone() for n, p in learner.model.named_parameters()},
        "metrics": metrics,
        "calibration": learner.calibration.state_dict(),
    }


def _worker(rank: int, world: int, tmp: str) -> None:
    torch.set_num_threads(1)
    root = Path(tmp)
    dist.init_process_group("gloo", init_method=f"file://{root / 'init'}", rank=rank, world_size=world)
    try:
        ctx = DistContext(rank=rank, world_size=world)
        learner = _learner(root / "model", ctx)
        batch: RolloutBatch = torch.load(root / "batch.pt", weights_only=False)
        n = batch.ids.shape[0] // world
        metrics = learner.update(_rows(batch, slice(rank * n, (rank + 1) * n)))  # whole groups per rank
        torch.save(_result(learner, metrics), root / f"rank{rank}.pt")
    finally:
        dist.destroy_process_group()


@pytest.mark.slow
def test_two_gloo_processes_equal_one_process(tmp_path: Path) -> None:
    from agents.models.tiny_model import build_tiny_model

    build_tiny_model(tmp_path / "model", max_position_embeddings=8192)
    single = _learner(tmp_path / "model", DistContext())
    batch = single.demos(8)
    batch = batch._replace(group=torch.arange(8) // 4)  # two groups of 4: one per rank
    assert batch.scalar.unique().numel() > 1
    torch.save(batch, tmp_path / "batch.pt")
    ref = _result(single, single.update(batch))
    mp.spawn(_worker, args=(2, str(tmp_path)), nprocs=2, join=True)
    got = [torch.load(tmp_path / f"rank{r}.pt", weights_only=False) for r in range(2)]
    for name, g in ref["grads"].items():
        torch.testing.assert_close(got[0]["grads"][name], g, rtol=1e-4, atol=1e-7)
        torch.testing.assert_close(got[0]["params"][name], ref["params"][name], rtol=1e-5, atol=1e-7)
        assert torch.equal(got[0]["params"][name], got[1]["params"][name])  # ranks stay in lockstep
    for key, value in ref["metrics"].items():
        if not key.startswith("policy/grad_norm"):
            assert got[0]["metrics"][key] == pytest.approx(value, rel=1e-4, abs=1e-6), key
    assert got[0]["calibration"] == got[1]["calibration"]
    cal, ref_cal = got[0]["calibration"], ref["calibration"]
    assert cal["sigma_bar"] == pytest.approx(ref_cal["sigma_bar"], rel=1e-6, abs=1e-9)
    assert cal["moments"].keys() == ref_cal["moments"].keys()
    for name, row in ref_cal["moments"].items():
        assert cal["moments"][name] == pytest.approx(row, rel=1e-5, abs=1e-7)


def test_single_process_helpers_are_identities() -> None:
    ctx = DistContext()
    x = torch.arange(6.0).reshape(3, 2)
    assert torch.equal(all_gather_cat(x, ctx), x)
    assert shard([1, 2, 3, 4], DistContext(rank=1, world_size=2)) == [3, 4]
    with pytest.raises(InvalidConfig, match="evenly"):
        shard([1, 2, 3], DistContext(rank=0, world_size=2))
    with pytest.raises(InvalidConfig, match="rank"):
        DistContext(rank=2, world_size=2)
