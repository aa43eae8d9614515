"""The README's discrete-learner recipe runs as written (with one training step instead of 30)."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

README = Path(__file__).resolve().parents[3] / "README.md"


@pytest.mark.slow  # trains one step and evaluates 323 held-out questions (a few seconds on an idle machine)
def test_readme_recipe_runs() -> None:
    text = README.read_text(encoding="utf-8")
    section = text.split("## Train a discrete router", 1)[1]
    code = re.search(r"```python\n(.*?)```", section, flags=re.S)
    assert code is not None
    source = code.group(1)
    assert "steps=30" in source
    scope: dict = {}
    exec(compile(source.replace("steps=30", "steps=1"), str(README), "exec"), scope)
    assert scope["learner"].step_count == 1 and "episode/em" in scope["metrics"]
    assert len(scope["episodes"]) == len(scope["test"]) and all(e.info["scored"] for e in scope["episodes"])
