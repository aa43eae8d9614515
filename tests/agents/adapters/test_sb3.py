from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import gymnasium as gym
import numpy as np
import pytest
import torch
from stable_baselines3 import A2C, DQN, PPO
from stable_baselines3.common.logger import KVWriter, Logger

from agents.adapters.sb3 import DISCRETE_ENV_ID, EpisodeMetrics, RouterMetricsCallback, make_router_vec_env
from envs.calibration_wrapper import CalibrationConfig
from envs.discrete import RouterQADiscreteEnv
from recal_gym.rewards import BUILTIN_COMPONENTS as COMPONENTS
from recal_gym.rewards import make_spec


@pytest.fixture(autouse=True)
def registered() -> Iterator[str]:
    added = DISCRETE_ENV_ID not in gym.registry
    if added:
        gym.register(id=DISCRETE_ENV_ID, entry_point="envs.discrete:RouterQADiscreteEnv")
    yield DISCRETE_ENV_ID
    if added:
        del gym.registry[DISCRETE_ENV_ID]


@pytest.fixture(autouse=True)
def one_thread() -> Iterator[None]:
    # Tiny MLPs: thread hand-off costs more than it saves, and results are then independent of the host.
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


class Capture(KVWriter):
    def __init__(self) -> None:
        self.rows: list[dict[str, Any]] = []

    def write(self, key_values: dict[str, Any], key_excluded: dict[str, Any], step: int = 0) -> None:
        self.rows.append(dict(key_values))


def _info(source: str, em: float, answer: float, cost: float, calls: dict[str, float]) -> dict[str, Any]:
    comps = dict.fromkeys(COMPONENTS, 0.0) | {"answer": answer, "cost": cost}
    return {
        "scored": True,
        "reward_components": comps,
        "reward_weights": make_spec("recal").weights_dict(),
        "em": em,
        "f1": em,
        "format_ok": True,
        "raw_cost": 10.0 * sum(calls.values()),
        "n_calls": sum(calls.values()),
        "calls_per_model": calls,
        "data_source": source,
    }


def test_episode_metrics_oracle() -> None:
    m = EpisodeMetrics()
    m.add({"scored": False})
    m.add(_info("a", 1.0, 1.0, 0.5, {"x": 1.0, "y": 0.0}), agent_reward=2.0)
    m.add(_info("b", 0.0, 0.0, 0.0, {"x": 0.0, "y": 2.0}))
    s = m.summary()
    assert len(m) == 2 and s["episode/count"] == 2.0
    assert s["reward/answer/mean"] == 0.5 and s["reward/cost/mean"] == 0.25
    assert s["reward/total/mean"] == pytest.approx((1.0 + 0.05) / 2)
    assert s["reward/agent/mean"] == pytest.approx((2.0 + 0.0) / 2)
    assert s["dataset/a/em"] == 1.0 and s["dataset/b/em"] == 0.0 and s["dataset/a/count"] == 1.0
    assert s["dataset/b/raw_cost"] == 20.0 and s["calls/y"] == 1.0 and s["episode/n_calls"] == 1.5
    m.clear()
    assert m.summary() == {}


def _train(algo: type, steps: int, **kwargs: Any) -> tuple[RouterMetricsCallback, Capture]:
    venv = make_router_vec_env(2, seed=0, calibration=kwargs.pop("calibration", None))
    model = algo("MlpPolicy", venv, seed=0, device="cpu", verbose=0, **kwargs)
    capture = Capture()
    model.set_logger(Logger(folder=None, output_formats=[capture]))
    cb = RouterMetricsCallback()
    model.learn(steps, callback=cb, log_interval=1)
    venv.close()
    return cb, capture


@pytest.mark.parametrize(
    ("algo", "kwargs"),
    [
        (PPO, {"n_steps": 64, "batch_size": 64}),
        (A2C, {"n_steps": 16}),
        (DQN, {"learning_starts": 50, "buffer_size": 500, "train_freq": 4}),
    ],
)
def test_algorithms_train_and_the_callback_logs_components(algo: type, kwargs: dict[str, Any]) -> None:
    cb, capture = _train(algo, 256, **kwargs)
    assert cb.episodes_seen > 0
    keys = set(cb.last_summary)
    assert {f"reward/{k}/mean" for k in COMPONENTS} <= keys
    assert {"reward/total/mean", "episode/em", "episode/raw_cost", "episode/count"} <= keys
    assert any(k.startswith("dataset/fanoutqa_") for k in keys)
    assert all(np.isfinite(v) for v in cb.last_summary.values())
    assert any("reward/answer/mean" in row for row in capture.rows)


def test_maskable_ppo_trains_when_installed() -> None:
    contrib = pytest.importorskip("sb3_contrib")
    cb, _ = _train(contrib.MaskablePPO, 256, n_steps=64, batch_size=64)
    assert cb.episodes_seen > 0 and "episode/em" in cb.last_summary


def test_ppo_learns_on_the_calibrated_reward() -> None:
    cb, _ = _train(PPO, 256, n_steps=64, batch_size=64, calibration=CalibrationConfig())
    s = cb.last_summary
    assert s["reward/agent/mean"] != s["reward/total/mean"]  # the agent saw the calibrated reward


def _mean_reward(policy: Any, seeds: range) -> float:
    env = RouterQADiscreteEnv()
    total = []
    for s in seeds:
        obs, _ = env.reset(seed=s)
        done = False
        while not done:
            obs, r, term, trunc, _ = env.step(policy(obs, env))
            done = term or trunc
        total.append(r)
    return float(np.mean(total))


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_ppo_beats_a_uniform_random_router(seed: int) -> None:
    venv = make_router_vec_env(4, seed=seed)
    model = PPO("MlpPolicy", venv, seed=seed, n_steps=64, batch_size=64, learning_rate=1e-3, device="cpu")
    model.learn(2048)
    eval_seeds = range(10_000, 10_100)
    ppo = _mean_reward(lambda o, e: int(model.predict(o, deterministic=True)[0]), eval_seeds)
    rng = np.random.default_rng(seed)
    uniform = _mean_reward(lambda o, e: int(rng.integers(e.action_space.n)), eval_seeds)
    assert ppo > uniform + 0.2, (ppo, uniform)


def test_sb3s_own_make_vec_env_builds_the_discrete_env_like_any_gymnasium_env() -> None:
    """SB3 asks every env for render_mode="rgb_array"; the metadata lists it, so nothing warns or crashes."""
    import warnings

    from stable_baselines3.common.env_util import make_vec_env

    with warnings.catch_warnings():
        warnings.simplefilter("error")
        venv = make_vec_env("RouterQADiscrete-v0", n_envs=2, seed=0)
    obs = venv.reset()
    assert obs.shape == (2, *venv.observation_space.shape)
    obs, rewards, dones, infos = venv.step(np.array([0, 0]))
    assert rewards.dtype == np.float32 and not dones.any()
    frames = venv.get_images()
    assert len(frames) == 2 and all(f.ndim == 3 and f.shape[2] == 3 and f.dtype == np.uint8 for f in frames)
    venv.close()


def test_make_router_vec_env_needs_no_render_mode_workaround() -> None:
    venv = make_router_vec_env(1, seed=0)
    assert venv.get_attr("render_mode") == ["rgb_array"]  # SB3's default, now a supported mode
    venv.close()


def test_without_sb3_the_adapter_says_which_extra_to_install() -> None:
    import subprocess
    import sys

    code = (
        "import sys; sys.modules['stable_baselines3'] = None\n"
        "try:\n    import agents.adapters.sb3\nexcept ImportError as exc:\n    print(type(exc).__name__, exc)\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.strip()
    assert out == (
        "MissingDependency the stable-baselines3 adapter (agents.adapters.sb3) needs stable-baselines3, "
        'which is not installed — pip install "recal-gym[sb3]"'
    )
