"""SB3 models as text routers: the router acts in RouterQA exactly as the model does in the discrete env."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
import torch
from stable_baselines3 import PPO

from agents.adapters.sb3_router import load_router, save_router, sidecar_path
from agents.cli import main
from agents.eval.evaluation import run_episode
from envs.discrete import HashingFeaturizer, RouterQADiscreteEnv
from envs.router_qa import RouterQAEnv
from recal_gym.errors import InvalidConfig


@pytest.fixture(autouse=True)
def one_thread() -> Iterator[None]:
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


def _train(tmp_path: Path, algo=PPO, **env_kwargs) -> tuple[Path, RouterQADiscreteEnv]:
    env = RouterQADiscreteEnv(featurizer=HashingFeaturizer(dim=32, seed=3), max_routed_turns=2, **env_kwargs)
    model = algo("MlpPolicy", env, n_steps=64, batch_size=32, n_epochs=2, seed=0, device="cpu")
    model.learn(total_timesteps=256)  # a few hundred steps: enough to get a non-trivial policy file
    return save_router(model, tmp_path / "ppo_router", env), env


@pytest.fixture(scope="module")
def trained(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, RouterQADiscreteEnv]:
    return _train(tmp_path_factory.mktemp("sb3"))


def _discrete_transcript(env: RouterQADiscreteEnv, model, qid: str) -> str:
    obs, _ = env.reset(options={"question_id": qid})
    done = False
    while not done:
        action, _ = model.predict(obs, deterministic=True)
        obs, _, term, trunc, _ = env.step(int(action))
        done = term or trunc
    record = env.text_env.last_episode_record()
    assert record is not None
    return record.transcript


def test_router_replays_the_discrete_policy_in_the_text_env(trained) -> None:
    path, env = trained
    router = load_router(path)
    assert router.env_kwargs() == {"max_routed_turns": 2}
    text_env = RouterQAEnv(**router.env_kwargs())
    ids = text_env.questions.ids()[:12]
    for qid in ids:
        info = run_episode(text_env, router, qid)
        assert info["episode_record"]["transcript"] == _discrete_transcript(env, router.model, qid), qid
    sidecar = json.loads(sidecar_path(path).read_text())
    assert sidecar["featurizer"] == {"kind": "hashing", "dim": 32, "ngrams": 2, "seed": 3}
    assert sidecar["models"] == list(env.models) and sidecar["algorithm"] == "stable_baselines3.ppo.ppo:PPO"


def test_eval_cli_runs_an_sb3_zip(trained, tmp_path: Path, capsys) -> None:
    path, _ = trained
    js = tmp_path / "r.json"
    assert main(["eval", "--n", "3", "--no-progress", "--no-files", "--json", str(js), "--router", f"sb3:{path}"]) == 0
    assert "| sb3:ppo_router.zip | all | 6 |" in capsys.readouterr().out
    overall = json.loads(js.read_text())[0]["overall"]
    assert overall["n"] == 6 and 0.0 <= overall["em"] <= 1.0


def test_maskable_ppo_gets_its_action_masks(tmp_path: Path) -> None:
    sb3_contrib = pytest.importorskip("sb3_contrib")
    path, env = _train(tmp_path, algo=sb3_contrib.MaskablePPO)
    router = load_router(path)
    assert router._masked
    text_env = RouterQAEnv(**router.env_kwargs())
    for qid in text_env.questions.ids()[:4]:
        info = run_episode(text_env, router, qid)
        assert info["episode_record"]["transcript"] == _masked_transcript(env, router.model, qid)


def _masked_transcript(env: RouterQADiscreteEnv, model, qid: str) -> str:
    obs, _ = env.reset(options={"question_id": qid})
    done = False
    while not done:
        action, _ = model.predict(obs, deterministic=True, action_masks=env.action_masks())
        obs, _, term, trunc, _ = env.step(int(action))
        done = term or trunc
    record = env.text_env.last_episode_record()
    assert record is not None
    return record.transcript


def test_a_zip_without_its_sidecar_is_refused(trained, tmp_path: Path) -> None:
    path, _ = trained
    lone = tmp_path / "lone.zip"
    lone.write_bytes(path.read_bytes())
    with pytest.raises(InvalidConfig, match=r"no sidecar lone\.router\.json"):
        load_router(lone)
    with pytest.raises(InvalidConfig, match="temperature"):
        load_router(path, temperature=0.5)


def test_sampled_actions_follow_the_seed(trained) -> None:
    path, _ = trained
    text_env = RouterQAEnv(max_routed_turns=2)
    ids = text_env.questions.ids()[:6]
    runs = []
    for _ in range(2):
        router = load_router(path, sample=True, seed=5)
        runs.append([run_episode(text_env, router, q)["episode_record"]["transcript"] for q in ids])
    assert runs[0] == runs[1]
    assert np.all([isinstance(t, str) for t in runs[0]])
