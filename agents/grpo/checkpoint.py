"""Atomic, verified learner checkpoints (``docs/learner.md`` §4.6).

A checkpoint is a directory holding

* ``state-<step>.pt``: the learner's ``state_dict()`` (``torch.save``), and
* ``manifest.json``: the commit record: format and version, the state file's name, byte size and
  SHA-256, the step, the run's :class:`~agents.grpo.config.TrainConfig` as a dict, and the run
  metadata (torch version, thread count) that the determinism contract depends on.

Writing is crash-safe: the state goes to a temporary file in the same directory, is flushed and
``fsync``-ed and renamed into place; then the manifest is written the same way. Replacing the
manifest is the commit point, and older state files are deleted only after it. A crash at any moment
leaves the previous checkpoint readable. Reading checks the manifest and the state file's size and
SHA-256, so a torn or altered checkpoint raises :class:`~recal_gym.errors.CorruptCheckpoint` instead of
loading garbage.

This module imports torch lazily (the CLI reads manifests without it).
"""

from __future__ import annotations

import hashlib
import json
import os
import tempfile
from collections.abc import Mapping
from pathlib import Path
from typing import Any, BinaryIO

from recal_gym.errors import CorruptCheckpoint

__all__ = [
    "FORMAT",
    "MANIFEST",
    "VERSION",
    "find_checkpoint",
    "is_checkpoint",
    "read_checkpoint",
    "read_manifest",
    "write_checkpoint",
]

MANIFEST = "manifest.json"
"""File name of a checkpoint's manifest."""
FORMAT = "recal-gym-learner-checkpoint"
"""``manifest["format"]`` of a learner checkpoint."""
VERSION = 1
"""``manifest["version"]`` written by this release."""
_CHUNK = 1 << 22


class _HashingWriter:
    """A write-only binary file that hashes and counts what passes through."""

    def __init__(self, fh: BinaryIO) -> None:
        self.fh = fh
        self.sha = hashlib.sha256()
        self.size = 0

    def write(self, data: bytes) -> int:
        view = memoryview(data)
        self.sha.update(view)
        self.size += view.nbytes
        return self.fh.write(view)

    def flush(self) -> None:
        self.fh.flush()


def _fsync_dir(directory: Path) -> None:
    fd = os.open(directory, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _atomic_write(directory: Path, name: str, write: Any) -> tuple[str, int]:
    """Write ``directory/name`` via a synced temporary file and ``os.replace``; return (sha256, size)."""
    fd, tmp = tempfile.mkstemp(prefix=f".{name}.", suffix=".tmp", dir=directory)
    try:
        with os.fdopen(fd, "wb") as fh:
            writer = _HashingWriter(fh)
            write(writer)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, directory / name)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return writer.sha.hexdigest(), writer.size


def write_checkpoint(
    directory: str | Path, state: Mapping[str, Any], *, step: int, config: Mapping[str, Any], meta: Mapping[str, Any]
) -> Path:
    """Write ``state`` as a checkpoint in ``directory`` (created if missing), crash-safely.

    Args:
        directory: The checkpoint directory.
        state: The learner's ``state_dict()``.
        step: RL steps done (names the state file; recorded in the manifest).
        config: ``TrainConfig.to_dict()`` of the run.
        meta: Run metadata recorded as is (e.g. ``{"torch": "2.13.0", "threads": 1}``).

    Returns:
        The manifest's path.
    """
    import torch

    out = Path(directory)
    out.mkdir(parents=True, exist_ok=True)
    name = f"state-{int(step):07d}.pt"
    sha, size = _atomic_write(out, name, lambda fh: torch.save(dict(state), fh))
    manifest = {
        "format": FORMAT,
        "version": VERSION,
        "file": name,
        "bytes": size,
        "sha256": sha,
        "step": int(step),
        "config": dict(config),
        "meta": dict(meta),
    }
    text = json.dumps(manifest, indent=2, sort_keys=True, default=str).encode()
    _atomic_write(out, MANIFEST, lambda fh: fh.write(text))
    _fsync_dir(out)
    for old in out.glob("state-*.pt"):  # only after the commit point: a crash keeps the old state readable
        if old.name != name:
            old.unlink(missing_ok=True)
    return out / MANIFEST


def read_manifest(directory: str | Path) -> dict[str, Any]:
    """Read and check a checkpoint's manifest (not the state file).

    Raises:
        CorruptCheckpoint: no manifest, unreadable JSON, or a wrong format/version or missing field.
    """
    path = Path(directory) / MANIFEST
    if not path.is_file():
        raise CorruptCheckpoint(f"{str(directory)!r} is not a learner checkpoint: it has no {MANIFEST}")
    try:
        manifest = json.loads(path.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise CorruptCheckpoint(f"checkpoint manifest {str(path)!r} is not valid JSON ({exc})") from None
    if not isinstance(manifest, dict) or manifest.get("format") != FORMAT:
        raise CorruptCheckpoint(f"{str(path)!r} is not a {FORMAT} manifest")
    if manifest.get("version") != VERSION:
        raise CorruptCheckpoint(
            f"checkpoint {str(directory)!r} has format version {manifest.get('version')!r}; "
            f"this release reads {VERSION}"
        )
    missing = [k for k in ("file", "bytes", "sha256", "step", "config", "meta") if k not in manifest]
    if missing:
        raise CorruptCheckpoint(f"checkpoint manifest {str(path)!r} lacks field(s) {missing}")
    return manifest


def _sha256(path: Path) -> str:
    sha = hashlib.sha256()
    with path.open("rb") as fh:
        while chunk := fh.read(_CHUNK):
            sha.update(chunk)
    return sha.hexdigest()


def read_checkpoint(directory: str | Path) -> tuple[dict[str, Any], dict[str, Any]]:
    """Verify and load a checkpoint; return ``(state, manifest)``.

    Raises:
        CorruptCheckpoint: the manifest is bad, or the state file is missing, has the wrong size or
            the wrong SHA-256 (a torn or altered write).
    """
    import torch

    manifest = read_manifest(directory)
    path = Path(directory) / str(manifest["file"])
    if not path.is_file():
        raise CorruptCheckpoint(f"checkpoint {str(directory)!r}: state file {manifest['file']!r} is missing")
    size = path.stat().st_size
    if size != manifest["bytes"]:
        raise CorruptCheckpoint(
            f"checkpoint {str(directory)!r}: {manifest['file']} has {size} bytes, the manifest says "
            f"{manifest['bytes']} (torn write?)"
        )
    if _sha256(path) != manifest["sha256"]:
        raise CorruptCheckpoint(f"checkpoint {str(directory)!r}: {manifest['file']} fails its SHA-256 check")
    return torch.load(path, weights_only=False, map_location="cpu"), manifest


def is_checkpoint(directory: str | Path) -> bool:
    """Whether ``directory`` holds a checkpoint manifest."""
    return (Path(directory) / MANIFEST).is_file()


def find_checkpoint(path: str | Path) -> Path:
    """The checkpoint directory of ``path``: itself, or ``path/checkpoint`` for a run directory.

    Raises:
        CorruptCheckpoint: neither holds a manifest.
    """
    p = Path(path)
    for candidate in (p, p / "checkpoint"):
        if is_checkpoint(candidate):
            return candidate
    raise CorruptCheckpoint(
        f"{str(path)!r} is neither a learner checkpoint nor a run directory with checkpoint/{MANIFEST}"
    )
