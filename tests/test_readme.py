"""The README's first-screen recipes run as written."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

tomllib = pytest.importorskip("tomllib")  # Python >= 3.11
README = (Path(__file__).resolve().parents[1] / "README.md").read_text(encoding="utf-8")
PYPROJECT = tomllib.loads((Path(__file__).resolve().parents[1] / "pyproject.toml").read_text(encoding="utf-8"))


def _block(language: str, containing: str) -> str:
    blocks = re.findall(rf"```{language}\n(.*?)```", README, flags=re.DOTALL)
    matching = [b for b in blocks if containing in b]
    assert matching, f"no {language} block containing {containing!r}"
    return matching[0]


def test_the_first_python_example_plays_a_well_formed_episode() -> None:
    namespace: dict = {}
    exec(_block("python", "RandomAgent.for_env"), namespace)  # the README's own example
    assert namespace["done"] and namespace["info"]["format_ok"] and namespace["info"]["termination"] == "answer"


def test_the_install_table_names_extras_that_exist() -> None:
    extras = set(PYPROJECT["project"]["optional-dependencies"])
    named = set(re.findall(r'"recal-gym\[([a-z0-9-]+)\]"', README))
    assert {"train", "sb3"} <= named and named <= extras


def test_the_two_repository_commands_are_the_scripts_ci_runs() -> None:
    block = _block("bash", "scripts/main.sh")
    assert "bash scripts/main.sh" in block and "bash scripts/test.sh" in block
    ci = (Path(__file__).resolve().parents[1] / ".ci" / "run").read_text(encoding="utf-8")
    assert "bash scripts/test.sh" in ci


def test_the_add_a_component_example_runs_as_written() -> None:
    from recal_gym.rewards import unregister_component

    code = _block("python", "@register_component(")
    assert len(code.strip().splitlines()) < 15  # the bound for adding a component
    namespace: dict = {}
    try:
        exec(code, namespace)
        env = namespace["env"]
        env.reset(seed=0)
        _, reward, terminated, _, info = env.step("<think>x</think><answer> Paris </answer>")
        assert terminated and info["reward_components_raw"]["short_answer"] == 1.0
        assert info["reward_spec_hash"] == namespace["spec"].hash
        from recal_gym.rewards import fold_reward

        assert reward == fold_reward(info["reward_components"], info["reward_weights"])
    finally:
        unregister_component("short_answer")
