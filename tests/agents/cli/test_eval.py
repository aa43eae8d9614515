"""Tests for ``recal-gym eval`` (agents.cli): printed tables, written files and the router hooks."""

from __future__ import annotations

import csv
import json
import re
import sys
import types
from pathlib import Path

import pytest

from agents.cli import main
from agents.eval.baselines import SingleModelRouter

SMALL = ["eval", "--n", "3", "--no-progress"]
MIXTRAL = "single:Mixtral-8x22B-Instruct"


def run(capsys, *args: str) -> str:
    assert main([*SMALL, *args]) == 0
    return capsys.readouterr().out


def test_eval_prints_tables_and_writes_every_file(tmp_path, capsys):
    out = tmp_path / "eval"
    text = run(capsys, "--out", str(out), "--router", "random", "--router", "prompt", "--router", "oracle",
               "--router", MIXTRAL)  # fmt: skip
    assert "| router | dataset | n | EM | F1 | cost (µ$) | calls/q | format err | reward |" in text
    assert "| oracle | all | 6 |" in text
    assert "AIQ of EM over mean cost per question" in text
    assert "| hull of all runs |" in text and "Zero router" in text
    for name in ("table.md", "table.csv", "reports.json", "pareto.png", "per_dataset_em.png"):
        assert (out / name).is_file(), name
    assert (out / "pareto.png").read_bytes()[:4] == b"\x89PNG"
    assert (out / "per_dataset_em.png").read_bytes()[:4] == b"\x89PNG"
    payload = json.loads((out / "reports.json").read_text())
    assert [r["router"] for r in payload["reports"]] == ["random", "prompt", "oracle", MIXTRAL]
    assert [p["router"] for p in payload["summary"]["routers"]] == ["random", "prompt", "oracle", MIXTRAL]
    oracle = payload["reports"][2]["overall"]
    assert oracle["em"] >= payload["reports"][3]["overall"]["em"]
    rows = list(csv.DictReader((out / "table.csv").open()))
    assert len(rows) == 4 * 3  # two datasets + all, per router
    md = (out / "table.md").read_text()
    assert md.startswith("| router | dataset |") and "| Pareto | AIQ |" in md


def test_no_files_writes_nothing_and_json_flag_still_works(tmp_path, capsys):
    out = tmp_path / "eval"
    js = tmp_path / "r.json"
    text = run(capsys, "--out", str(out), "--no-files", "--json", str(js), "--router", "direct")
    assert "| direct | all | 6 |" in text
    assert not out.exists()
    assert json.loads(js.read_text())[0]["router"] == "direct"


def test_rewards_do_not_depend_on_router_order(tmp_path, capsys):
    run(capsys, "--no-files", "--json", str(tmp_path / "a.json"), "--router", MIXTRAL)
    run(capsys, "--no-files", "--json", str(tmp_path / "b.json"), "--router", "random", "--router", MIXTRAL)
    alone = json.loads((tmp_path / "a.json").read_text())[0]
    after = json.loads((tmp_path / "b.json").read_text())[1]
    assert alone == after


def test_unknown_router_exits_with_the_choices(capsys):
    assert main([*SMALL, "--no-files", "--router", "best"]) == 2
    assert re.fullmatch(
        r"recal-gym eval: unknown router 'best' — use .*oracle.*sb3:<path\.zip>.*\n", capsys.readouterr().err
    )


def test_sb3_hook_loads_a_router_from_the_plugin_module(monkeypatch, tmp_path, capsys):
    seen = []

    def load_router(path: str, **options) -> SingleModelRouter:
        seen.append((path, options))
        return SingleModelRouter(model="Mistral-7B-Instruct", name="sb3:fake")

    fake = types.ModuleType("agents.adapters.sb3_router")
    fake.load_router = load_router  # type: ignore[attr-defined]
    monkeypatch.setitem(sys.modules, "agents.adapters.sb3_router", fake)
    (tmp_path / "model.zip").write_bytes(b"")
    text = run(capsys, "--no-files", "--router", f"sb3:{tmp_path / 'model.zip'}", "--seed", "4")
    assert seen == [(str(tmp_path / "model.zip"), {"sample": False, "temperature": None, "seed": 4})]
    assert "| sb3:fake | all | 6 |" in text


def test_checkpoint_hook_names_the_missing_module(monkeypatch, tmp_path, capsys):
    monkeypatch.setitem(sys.modules, "agents.eval.policy_router", None)  # import fails with ModuleNotFoundError
    assert main([*SMALL, "--no-files", "--router", f"checkpoint:{tmp_path}"]) == 2
    assert "needs the module agents.eval.policy_router, which is not installed" in capsys.readouterr().err


def test_checkpoint_hook_names_the_missing_function(monkeypatch, tmp_path, capsys):
    monkeypatch.setitem(sys.modules, "agents.eval.policy_router", types.ModuleType("agents.eval.policy_router"))
    assert main([*SMALL, "--no-files", "--router", f"checkpoint:{tmp_path}"]) == 2
    assert "agents.eval.policy_router.load_router(path)" in capsys.readouterr().err


# ---------------------------------------------------------------------- trained policies
QUIET = ["--no-progress", "--no-tensorboard", "--no-plot", "--threads", "1"]


@pytest.fixture(scope="module")
def trained_run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A tiny run made by ``recal-gym train`` (shortened): checkpoint/, warmstart/ and policy/."""
    out = tmp_path_factory.mktemp("run")
    args = ["train", "--preset", "tiny", "--steps", "2", "--warmstart-steps", "30", "--warmstart-batch", "8",
            "--questions-per-step", "2", "--group-size", "4", "--out", str(out), *QUIET]  # fmt: skip
    assert main(args) == 0
    return out


@pytest.mark.slow
def test_eval_runs_trained_checkpoints_through_the_cli(trained_run: Path, tmp_path: Path, capsys) -> None:
    js = tmp_path / "r.json"
    routers = [f"checkpoint:{trained_run}", f"checkpoint:{trained_run}/warmstart", f"checkpoint:{trained_run}/policy"]
    text = run(capsys, "--no-files", "--json", str(js), "--eval-batch", "4",
               *[a for r in routers for a in ("--router", r)], "--router", "random")  # fmt: skip
    reports = json.loads(js.read_text())
    assert [r["router"] for r in reports] == [*routers, "random"]
    assert f"| checkpoint:{trained_run} | all | 6 |" in text
    assert reports[0]["overall"] == reports[2]["overall"]  # the last checkpoint and the exported policy agree
    assert all(r["overall"]["n"] == 6 for r in reports)


class _ScriptedEngine:
    """Routes on the first turn and answers on the next; records every context it is given."""

    def __init__(self, codec) -> None:
        self.codec = codec
        self.contexts: list[list[int]] = []

    def generate(self, contexts, params, generator):
        from agents.grpo.engines import Sample

        out = []
        for c in contexts:
            self.contexts.append(list(c))
            routed = "<think>ZZ</think>" in self.codec.decode(c)
            text = (
                "<think>b</think><answer> Paris </answer>"
                if routed
                else ("<think>ZZ</think><search> Qwen2.5-7B-Instruct: capital of France </search> tail")
            )
            ids = self.codec.encode(text)
            out.append(Sample(ids, [-1.0] * len(ids)))
        return out

    def sync_weights(self, model) -> None:
        pass


@pytest.mark.slow
def test_batched_and_one_at_a_time_play_build_the_same_contexts(trained_run: Path) -> None:
    """Kept prefixes, observations and final infos agree between ``act`` and ``play_batch``."""
    from agents.eval.evaluation import run_episode
    from agents.eval.policy_router import load_router
    from envs.router_qa import RouterQAEnv
    from envs.vector import RouterQAVectorEnv

    router = load_router(trained_run)
    kwargs = {**router.env_kwargs(), "max_turn_tokens": 256}  # room for the scripted byte-level route
    env = RouterQAEnv(**kwargs)
    ids = list(env.questions.ids()[::200])[:6]
    router.engine = one = _ScriptedEngine(router.codec)
    seq = [run_episode(env, router, q) for q in ids]
    venv = RouterQAVectorEnv(4, dataset=env.questions, pool=env.pool, **kwargs)
    router.engine = many = _ScriptedEngine(router.codec)
    bat = [i for s in (0, 4) for i in router.play_batch(venv, ids[s : s + 4])]
    assert sorted(one.contexts) == sorted(many.contexts)
    assert len(one.contexts) == 12 and all(i["n_calls"] == 1.0 for i in seq)
    for a, b in zip(seq, bat, strict=True):
        assert a["episode_record"]["transcript"] == b["episode_record"]["transcript"]
        assert (a["em"], a["raw_cost"], a["format_ok"]) == (b["em"], b["raw_cost"], b["format_ok"])
    assert "tail" not in router.codec.decode(one.contexts[1])  # the cut tail never reaches the next context


@pytest.mark.slow
def test_sampling_flags_reach_the_policy(trained_run: Path, tmp_path: Path, capsys) -> None:
    from agents.eval.policy_router import load_router

    assert load_router(trained_run).params.top_k == 1  # greedy by default
    sampled = load_router(trained_run, sample=True, temperature=0.7)
    assert (sampled.params.temperature, sampled.params.top_k) == (0.7, 0)
    outs = []
    for name in ("a", "b"):
        js = tmp_path / f"{name}.json"
        run(capsys, "--no-files", "--json", str(js), "--router", f"checkpoint:{trained_run}", "--temperature", "1.5")
        outs.append(json.loads(js.read_text()))
    assert outs[0] == outs[1]  # sampled evaluation repeats under the same --seed


@pytest.mark.slow
def test_checkpoint_router_samples_like_the_training_sampler(trained_run: Path) -> None:
    """The engine takes precision, KV cache and logits mode from the run's config (bf16 where trained so)."""
    import dataclasses

    import torch

    from agents.eval.policy_router import PolicyRouter, load_router
    from agents.grpo.precision import resolve_precision

    base = load_router(trained_run)
    assert base.engine.precision == resolve_precision(base.config.precision)
    cfg = dataclasses.replace(base.config, precision="bf16", kv_cache="dynamic", logits="all")
    bf16 = PolicyRouter(base.model, base.codec.tokenizer, cfg)
    assert (bf16.engine.precision, bf16.engine.kv_cache, bf16.engine.logits) == ("bf16", "dynamic", "all")
    ctx = base.codec.encode("<think>q</think>")
    seen: list[torch.dtype] = []
    hook = base.model.get_output_embeddings().register_forward_hook(lambda m, i, o: seen.append(o.dtype))
    try:
        bf16.engine.generate([ctx], bf16.params, torch.Generator().manual_seed(0))
    finally:
        hook.remove()
    assert seen and seen[0] == torch.bfloat16  # the head ran under bf16 autocast


def test_split_flags_pick_held_out_questions(capsys, tmp_path: Path) -> None:
    from recal_gym.data import load_questions
    from recal_gym.data.sampling import train_test_split

    js = tmp_path / "r.json"
    run(capsys, "--no-files", "--json", str(js), "--router", "direct", "--split", "heldout",
        "--heldout-fraction", "0.1", "--split-seed", "3", "--n", "1000")  # fmt: skip
    _, test = train_test_split(load_questions("embedded").rows, 0.1, 3)
    assert json.loads(js.read_text())[0]["overall"]["n"] == len(test)
    capsys.readouterr()
    assert main([*SMALL, "--no-files", "--router", "direct", "--split", "heldout"]) == 2
    assert "--split heldout needs --heldout-fraction in (0, 1)" in capsys.readouterr().err


def test_bad_policy_flags_are_one_line_errors(capsys) -> None:
    assert main([*SMALL, "--no-files", "--router", "direct", "--temperature", "-1"]) == 2
    assert "--temperature must be > 0" in capsys.readouterr().err
    with pytest.raises(SystemExit) as stop:
        main([*SMALL, "--no-files", "--router", "direct", "--eval-batch", "0"])
    assert stop.value.code == 2
    assert "argument --eval-batch: must be an integer >= 1, got 0" in capsys.readouterr().err


def test_checkpoint_router_names_the_accepted_formats(tmp_path: Path, capsys) -> None:
    assert main([*SMALL, "--no-files", "--router", f"checkpoint:{tmp_path}"]) == 2
    err = capsys.readouterr().err
    assert re.search(r"not a learner checkpoint.*run directory.*policy\.json", err), err
