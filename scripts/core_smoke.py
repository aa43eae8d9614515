"""The env and eval path of a core-only install: no torch, no extras, and no attempt to import them.

Run by ``scripts/check_core.sh`` in a venv holding ``pip install recal-gym`` alone (and again in the
dev venv, where torch *is* installed, to prove the path never even tries). An import hook records
every module import attempted while it runs; the check fails if a heavy optional package was asked
for, whether or not it is installed:

1. ``gym.make("RouterQA-v0")`` and one episode played by the scripted :class:`recal_gym.RandomAgent`;
2. ``gym.make("RouterQADiscrete-v0")`` and one episode;
3. ``recal-gym eval --n 5 --no-progress`` in-process (``agents.cli.main``): tables, reports and
   plots (matplotlib is a core dependency).

Usage: ``python scripts/core_smoke.py OUT_DIR``; prints one JSON line of facts.
"""

from __future__ import annotations

import importlib.abc
import json
import sys
from collections.abc import Sequence
from pathlib import Path
from types import ModuleType
from typing import Any

FORBIDDEN = ("torch", "transformers", "stable_baselines3", "sb3_contrib", "trl", "peft", "accelerate", "vllm")
"""Top-level packages the env and eval path must never ask for."""


class ImportAudit(importlib.abc.MetaPathFinder):
    """Records the top-level name of every import attempt that reaches the finders (finds nothing itself)."""

    def __init__(self) -> None:
        """Start with an empty record."""
        self.attempted: set[str] = set()

    def find_spec(self, fullname: str, path: Sequence[str] | None, target: ModuleType | None = None) -> None:
        """Record ``fullname``'s top-level package; let the real finders do the work."""
        self.attempted.add(fullname.split(".")[0])


def _episode(env: Any, agent: Any) -> dict[str, Any]:
    obs, info = env.reset(seed=0)
    agent.reset(obs, info)
    obs, done = "", False
    while not done:
        obs, _reward, terminated, truncated, info = env.step(agent.act(obs, info))
        done = terminated or truncated
    return dict(info)


def main(out_dir: str) -> int:
    """Run the three checks; print facts as JSON; return 1 if a forbidden import was attempted."""
    audit = ImportAudit()
    already = sorted(m for m in FORBIDDEN if m in sys.modules)
    sys.meta_path.insert(0, audit)
    import gymnasium as gym

    import recal_gym
    from agents.cli import main as cli

    env = gym.make("RouterQA-v0")
    info = _episode(env, recal_gym.RandomAgent.for_env(env, seed=0))
    env.close()
    denv = gym.make("RouterQADiscrete-v0")
    denv.reset(seed=0)
    _obs, _r, d_term, _trunc, _ = denv.step(0)
    _obs, _r, d_term, _trunc, d_info = denv.step(denv.unwrapped.answer_action)
    denv.close()
    code = cli(["eval", "--n", "5", "--no-progress", "--out", str(Path(out_dir) / "eval")])
    sys.meta_path.remove(audit)
    asked = sorted(audit.attempted & set(FORBIDDEN))
    facts = {
        "routerqa_termination": info["termination"],
        "routerqa_format_ok": info["format_ok"],
        "discrete_terminated": bool(d_term),
        "discrete_em": d_info["em"],
        "eval_exit": code,
        "eval_files": sorted(p.name for p in (Path(out_dir) / "eval").iterdir()),
        "forbidden_import_attempts": asked,
        "forbidden_already_imported": already,
        "torch_in_sys_modules": "torch" in sys.modules,
    }
    print(json.dumps(facts))
    ok = info["termination"] == "answer" and d_term and code == 0 and not asked and not facts["torch_in_sys_modules"]
    return 0 if ok else 1


if __name__ == "__main__":
    if len(sys.argv) != 2:
        sys.exit("usage: python scripts/core_smoke.py OUT_DIR")
    sys.exit(main(sys.argv[1]))
