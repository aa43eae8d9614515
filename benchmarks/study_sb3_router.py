"""Learning study: SB3 routers on RouterQADiscrete-v0 against single-model, random and oracle routers.

Trains PPO (and MaskablePPO when sb3-contrib is installed) on the train split of the embedded questions
for several seeds, then evaluates every router on the held-out split (deterministic policies, one
episode per question) and writes JSON under ``benchmarks/results/``::

    python benchmarks/study_sb3_router.py --seeds 0 1 2 --budget 20000 --out benchmarks/results/study_sb3_router.json

Routers: ``single:<model>`` (ask one model, answer), ``uniform_random`` (uniform over the K + 1 actions),
``masked_random`` (uniform over :meth:`action_masks`), ``oracle`` (per question, the cheapest model whose
single-call episode is correct; answer at once when none is) and the learned policies.
"""

from __future__ import annotations

import argparse
import json
import platform
import subprocess
import sys
import time
from collections.abc import Callable, Sequence
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path
from typing import Any

import gymnasium as gym
import numpy as np
import torch

from agents.adapters.sb3 import DISCRETE_ENV_ID, make_router_vec_env
from envs.discrete import RouterQADiscreteEnv
from recal_gym.data import load_questions, train_test_split
from recal_gym.types import QARow

Policy = Callable[[np.ndarray, RouterQADiscreteEnv], int]


def _episode(env: RouterQADiscreteEnv, qid: str, policy: Policy) -> dict[str, float]:
    obs, _ = env.reset(options={"question_id": qid})
    while True:
        obs, r, term, trunc, info = env.step(policy(obs, env))
        if term or trunc:
            return {"reward": r, "em": info["em"], "raw_cost": info["raw_cost"], "n_calls": info["n_calls"]}


def evaluate(rows: Sequence[QARow], policy: Policy) -> dict[str, float]:
    """Mean reward, EM, cost and calls of ``policy`` over one episode per row (a fresh env)."""
    env = RouterQADiscreteEnv(list(rows))
    eps = [_episode(env, r.question_id, policy) for r in rows]
    return {k: float(np.mean([e[k] for e in eps])) for k in eps[0]}


def single(k: int) -> Policy:
    """Ask model k once, then answer."""
    return lambda obs, env: k if env.action_masks()[k] else env.answer_action


def oracle(rows: Sequence[QARow]) -> dict[str, float]:
    """Per question: the cheapest model whose single-call episode is correct (else answer at once)."""
    probe = RouterQADiscreteEnv(list(rows))
    choice: dict[str, int] = {}
    for row in rows:
        runs = [(k, _episode(probe, row.question_id, single(k))) for k in range(len(probe.models))]
        correct = [(e["raw_cost"], k) for k, e in runs if e["em"] >= 1.0]
        choice[row.question_id] = min(correct)[1] if correct else probe.answer_action
    env = RouterQADiscreteEnv(list(rows))
    eps = [_episode(env, r.question_id, single(choice[r.question_id])) for r in rows]
    return {k: float(np.mean([e[k] for e in eps])) for k in eps[0]}


def train(algo: str, train_rows: Sequence[QARow], seed: int, budget: int) -> Any:
    """Train ``algo`` on the train split and return the model."""
    venv = make_router_vec_env(4, seed=seed, env_kwargs={"dataset": list(train_rows)})
    common = {"seed": seed, "device": "cpu", "verbose": 0, "n_steps": 128, "batch_size": 128, "learning_rate": 1e-3}
    if algo == "ppo":
        from stable_baselines3 import PPO

        model = PPO("MlpPolicy", venv, ent_coef=0.01, **common)
    else:
        from sb3_contrib import MaskablePPO

        model = MaskablePPO("MlpPolicy", venv, ent_coef=0.01, **common)
    model.learn(budget)
    venv.close()
    return model


def learned_policy(model: Any, masked: bool) -> Policy:
    """Deterministic policy of a trained model (masked with the env's action masks for MaskablePPO)."""
    if masked:
        return lambda obs, env: int(model.predict(obs, deterministic=True, action_masks=env.action_masks())[0])
    return lambda obs, env: int(model.predict(obs, deterministic=True)[0])


def _provenance(argv: Sequence[str]) -> dict[str, Any]:
    try:
        commit = subprocess.run(["git", "rev-parse", "HEAD"], capture_output=True, text=True, check=True).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        commit = ""
    pkgs = ("numpy", "torch", "gymnasium", "stable_baselines3", "sb3_contrib")
    versions = {}
    for p in pkgs:
        try:
            versions[p] = version(p)
        except PackageNotFoundError:
            versions[p] = "missing"
    return {
        "command": " ".join([sys.executable, *argv]),
        "git_commit": commit,
        "python": platform.python_version(),
        "machine": f"{platform.platform()} {platform.machine()} ({torch.get_num_threads()} torch threads)",
        "versions": versions,
    }


def main(argv: Sequence[str] | None = None) -> dict[str, Any]:
    """Run the study and write the JSON; return the result dict."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--budget", type=int, default=20_000)
    parser.add_argument("--test-fraction", type=float, default=0.25)
    parser.add_argument("--algos", nargs="+", default=["ppo", "maskable_ppo"])
    parser.add_argument("--out", default="benchmarks/results/study_sb3_router.json")
    args = parser.parse_args(argv)
    torch.set_num_threads(1)
    if DISCRETE_ENV_ID not in gym.registry:  # until recal_gym registers it
        gym.register(id=DISCRETE_ENV_ID, entry_point="envs.discrete:RouterQADiscreteEnv")
    train_rows, test_rows = train_test_split(load_questions("embedded").rows, args.test_fraction, seed=0)
    models = RouterQADiscreteEnv().models
    t0 = time.perf_counter()
    baselines: dict[str, dict[str, float]] = {
        f"single:{m}": evaluate(test_rows, single(k)) for k, m in enumerate(models)
    }
    rng = np.random.default_rng(0)
    baselines["uniform_random"] = evaluate(test_rows, lambda o, e: int(rng.integers(e.action_space.n)))
    baselines["masked_random"] = evaluate(test_rows, lambda o, e: int(rng.choice(np.flatnonzero(e.action_masks()))))
    baselines["oracle"] = oracle(test_rows)
    learned: dict[str, dict[str, Any]] = {}
    for algo in args.algos:
        if algo == "maskable_ppo":
            try:
                import sb3_contrib  # noqa: F401
            except ImportError:
                continue
        per_seed = {}
        for seed in args.seeds:
            model = train(algo, train_rows, seed, args.budget)
            per_seed[str(seed)] = evaluate(test_rows, learned_policy(model, masked=algo == "maskable_ppo"))
        keys = next(iter(per_seed.values()))
        learned[algo] = {
            "per_seed": per_seed,
            "mean": {k: float(np.mean([s[k] for s in per_seed.values()])) for k in keys},
            "std": {k: float(np.std([s[k] for s in per_seed.values()], ddof=1)) for k in keys}
            if len(per_seed) > 1
            else {},
        }
    result = {
        "study": "sb3_router",
        "env": DISCRETE_ENV_ID,
        "split": {"train": len(train_rows), "test": len(test_rows), "test_fraction": args.test_fraction, "seed": 0},
        "budget_steps": args.budget,
        "seeds": args.seeds,
        "baselines": baselines,
        "learned": learned,
        "wall_s": time.perf_counter() - t0,
        "provenance": _provenance(sys.argv if argv is None else ["benchmarks/study_sb3_router.py", *argv]),
    }
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=2) + "\n")
    return result


if __name__ == "__main__":
    res = main()
    rows = [(k, v) for k, v in res["baselines"].items()] + [(k, v["mean"]) for k, v in res["learned"].items()]
    for name, m in rows:
        sys.stdout.write(f"{name:32s} reward={m['reward']:+.3f} em={m['em']:.3f} cost={m['raw_cost']:.1f}\n")
