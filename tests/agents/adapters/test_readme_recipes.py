"""The README's "Plug in other RL agents" recipes run as written (step counts lowered)."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import torch

README = (Path(__file__).resolve().parents[3] / "README.md").read_text(encoding="utf-8")


def _python_block(containing: str) -> str:
    blocks = [b for b in re.findall(r"```python\n(.*?)```", README, flags=re.DOTALL) if containing in b]
    assert blocks, f"no python block of the README contains {containing!r}"
    return blocks[0]


def test_sb3s_own_make_vec_env_recipe_logs_the_router_metrics() -> None:
    code = _python_block('make_vec_env("RouterQADiscrete-v0"')
    assert "from stable_baselines3.common.env_util import make_vec_env" in code and "RouterMetricsCallback" in code
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        namespace: dict[str, Any] = {}
        exec(code.replace("20_000", "256").replace('PPO("MlpPolicy", env,', 'PPO("MlpPolicy", env, n_steps=64,'),
             namespace)  # fmt: skip
    finally:
        torch.set_num_threads(before)
    summary = namespace["callback"].last_summary
    assert {"reward/total/mean", "reward/answer/mean", "episode/em", "episode/count"} <= set(summary)
    assert any(k.startswith("dataset/") for k in summary) and namespace["callback"].episodes_seen > 0
