"""``recal-gym eval --router <module>:<factory>``: a user's router evaluated like the built-ins."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from agents.adapters.routers import (
    FactorySpec,
    NamedRouter,
    is_factory_spec,
    load_factory_router,
    parse_factory_spec,
)
from agents.cli import main
from recal_gym.errors import UsageError

ROOT = Path(__file__).resolve().parents[3]
MIXTRAL = "Mixtral-8x22B-Instruct"
SMALL = ["eval", "--n", "3", "--no-progress", "--no-plots"]

ROUTERS_PY = textwrap.dedent(
    '''
    """A user's routers, defined outside recal-gym (only the Router protocol is shared)."""

    from agents.eval.baselines import answer_from_reply, question_from_prompt


    class AskOnce:
        """Ask one model once, then answer with the answer stated in its reply."""

        def __init__(self, model, name):
            self.model, self.name, self.question = model, name, ""

        def reset(self, prompt, info):
            self.question = question_from_prompt(prompt)

        def act(self, observation, info):
            if info.get("turn", 0.0) == 0.0:
                return f"<think>I will ask {self.model}.</think>\\n<search> {self.model}:{self.question} </search>"
            answer = answer_from_reply(observation) or "unknown"
            return f"<think>I have what I need.</think>\\n<answer> {answer} </answer>"


    class Anonymous:
        def reset(self, prompt, info):
            pass

        def act(self, observation, info):
            return "<think>no idea</think>\\n<answer> unknown </answer>"


    def make_router(model="Mixtral-8x22B-Instruct", name="mine"):
        return AskOnce(model, name)


    def make_anonymous():
        return Anonymous()


    def not_a_router():
        return 42


    NOT_CALLABLE = 3
    '''
)


@pytest.fixture
def plugin_dir(tmp_path: Path) -> Path:
    pkg = tmp_path / "plugins" / "userpkg"
    pkg.mkdir(parents=True)
    (pkg / "__init__.py").write_text("")
    (pkg / "routers.py").write_text(ROUTERS_PY)
    return tmp_path / "plugins"


@pytest.fixture
def on_path(plugin_dir: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.syspath_prepend(str(plugin_dir))
    for name in [m for m in sys.modules if m == "userpkg" or m.startswith("userpkg.")]:
        monkeypatch.delitem(sys.modules, name)
    return plugin_dir


def _cli(args: list[str], pythonpath: list[Path], cwd: Path) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(str(p) for p in pythonpath)}
    return subprocess.run(
        [sys.executable, "-m", "agents.cli", *args], cwd=cwd, env=env, capture_output=True, text=True, timeout=300
    )


# ----------------------------------------------------------------------------- through the CLI, in a subprocess
def test_eval_runs_a_user_router_like_a_builtin(plugin_dir: Path, tmp_path: Path) -> None:
    out = tmp_path / "eval"
    spec = 'userpkg.routers:make_router?name="mine"'
    proc = _cli(
        [*SMALL, "--out", str(out), "--router", spec, "--router", f"single:{MIXTRAL}"], [ROOT, plugin_dir], tmp_path
    )
    assert proc.returncode == 0, proc.stderr
    assert "| mine | all | 6 |" in proc.stdout
    assert "AIQ of EM over mean cost per question" in proc.stdout
    payload = json.loads((out / "reports.json").read_text())
    mine, single = payload["reports"]
    assert mine["router"] == "mine" and payload["summary"]["routers"][0]["router"] == "mine"
    # The user's router behaves exactly as SingleModelRouter, so every aggregate matches.
    assert mine["overall"] == single["overall"] and mine["datasets"] == single["datasets"]
    episodes = [json.loads(line) for line in (out / "episodes.jsonl").read_text().splitlines()]
    assert sum(e["run"] == "mine" for e in episodes) == 6


def test_the_module_is_found_in_the_current_directory(plugin_dir: Path, tmp_path: Path) -> None:
    proc = _cli([*SMALL, "--no-files", "--router", "userpkg.routers:make_anonymous"], [ROOT], plugin_dir)
    assert proc.returncode == 0, proc.stderr
    assert "| userpkg.routers:make_anonymous | all | 6 |" in proc.stdout  # no name: the spec names the row


def test_a_missing_module_is_one_line_exit_2(tmp_path: Path) -> None:
    proc = _cli([*SMALL, "--no-files", "--router", "nosuchpkg.routers:make_router"], [ROOT], tmp_path)
    assert proc.returncode == 2
    assert proc.stderr.count("\n") == 1 and "Traceback" not in proc.stderr
    assert "no module named 'nosuchpkg.routers'" in proc.stderr


# ----------------------------------------------------------------------------- in process
@pytest.mark.parametrize(
    ("spec", "message"),
    [
        ("userpkg.routers:make_ruoter", r"userpkg\.routers has no attribute 'make_ruoter'.*make_router"),
        ("userpkg.routers:NOT_CALLABLE", "is a int, not a callable"),
        ("userpkg.routers:not_a_router", r"returned a int without reset\(\) and act\(\)"),
        ("userpkg.routers:make_router?colour=1", r"cannot be called with \{'colour': 1\}.*signature is"),
        ("userpkg.routers:make_router?seed", "is not key=value"),
        ("userpkg.nope:make_router", "no module named 'userpkg.nope'"),
    ],
)
def test_bad_plugins_exit_2_with_one_line(on_path: Path, capsys: pytest.CaptureFixture[str], spec: str, message: str):
    assert main([*SMALL, "--no-files", "--router", spec]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith(f"recal-gym eval: --router {spec}: ")
    assert re.search(message, err), err


def test_a_dependency_missing_inside_the_plugin_is_named(on_path: Path) -> None:
    (on_path / "userpkg" / "broken.py").write_text("import nosuchdependency\n\ndef make():\n    return None\n")
    with pytest.raises(UsageError, match=r"importing userpkg\.broken failed.*'nosuchdependency'"):
        load_factory_router("userpkg.broken:make")


def test_loaded_routers_keep_their_name_or_get_the_spec(on_path: Path) -> None:
    named = load_factory_router(f'userpkg.routers:make_router?model="{MIXTRAL}"&name="x"')
    assert named.name == "x" and named.model == MIXTRAL
    anonymous = load_factory_router("userpkg.routers:make_anonymous")
    assert isinstance(anonymous, NamedRouter) and anonymous.name == "userpkg.routers:make_anonymous"
    assert anonymous.act("", {}) == "<think>no idea</think>\n<answer> unknown </answer>"
    assert anonymous.reset.__self__ is anonymous and callable(anonymous.router.reset)
    anonymous.router.env_kwargs = lambda: {"max_routed_turns": 2}  # an optional capability shows through
    assert anonymous.env_kwargs() == {"max_routed_turns": 2}
    with pytest.raises(AttributeError, match="play_batch"):
        anonymous.play_batch  # noqa: B018


@pytest.mark.parametrize(
    ("spec", "expected"),
    [
        ("mypkg.routers:make_router", True),
        ("mod:Cls.create", True),
        ("mod:f?a=1&b=x", True),
        ("single:Mixtral-8x22B-Instruct", False),
        ("single:all", False),
        ("sb3:/tmp/model.zip", False),
        ("checkpoint:runs/x", False),
        ("random", False),
        ("my-pkg:f", False),
        ("mod:", False),
        ("mod:1f", False),
    ],
)
def test_plugin_specs_are_told_apart_from_builtin_kinds(spec: str, expected: bool) -> None:
    assert is_factory_spec(spec) is expected


def test_arguments_are_json_or_strings() -> None:
    parsed = parse_factory_spec('m.n:f?a=3&b=0.5&c=true&d=["x",1]&e=plain&f="q"')
    assert parsed == FactorySpec(
        module="m.n", attribute="f", kwargs={"a": 3, "b": 0.5, "c": True, "d": ["x", 1], "e": "plain", "f": "q"}
    )
    with pytest.raises(UsageError, match="given twice"):
        parse_factory_spec("m:f?a=1&a=2")
    with pytest.raises(UsageError, match=r"not a <dotted\.module>:<factory>"):
        parse_factory_spec("single:x")
