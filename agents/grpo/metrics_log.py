"""One metrics writer with several sinks: JSONL, TensorBoard and stdout (``docs/style.md`` §9).

Metrics are one flat ``dict[str, float]`` per step with namespaced keys (``reward/answer/mean``,
``loss/policy``, ``time/update_s``). :class:`MetricsWriter` fans each record out to its sinks.
TensorBoard is imported lazily and skipped with a log message when unavailable.
"""

from __future__ import annotations

import json
import logging
import math
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any, Protocol, TextIO

__all__ = ["JSONLSink", "MetricsSink", "MetricsWriter", "StreamSink", "TensorBoardSink", "read_jsonl"]

logger = logging.getLogger(__name__)


class MetricsSink(Protocol):
    """Receives one flat record per step."""

    def write(self, step: int, metrics: Mapping[str, float]) -> None:
        """Record ``metrics`` at ``step``."""
        ...

    def close(self) -> None:
        """Flush and release resources."""
        ...


def _clean(value: float) -> float | None:
    value = float(value)
    return value if math.isfinite(value) else None


class JSONLSink:
    """Append one JSON object per step (``{"step": k, **metrics, **tags}``); non-finite values become null.

    ``tags`` are constant string fields written on every line (e.g. ``reward_spec_hash``), so a
    record stays attributable when lines of several runs are mixed.
    """

    def __init__(self, path: str | Path, *, append: bool = False, tags: Mapping[str, str] | None = None) -> None:
        """Open ``path`` (truncate unless ``append``)."""
        self.tags = dict(tags or {})
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._fh: TextIO = self.path.open("a" if append else "w")

    def write(self, step: int, metrics: Mapping[str, float]) -> None:
        """Write one line and flush it."""
        record: dict[str, Any] = {"step": int(step)}
        record.update({k: _clean(v) for k, v in metrics.items()})
        record.update(self.tags)
        self._fh.write(json.dumps(record, sort_keys=True) + "\n")
        self._fh.flush()

    def close(self) -> None:
        """Close the file."""
        if not self._fh.closed:
            self._fh.close()


class TensorBoardSink:
    """Scalars to TensorBoard event files (``torch.utils.tensorboard``, imported lazily)."""

    def __init__(self, log_dir: str | Path, *, purge_step: int | None = None) -> None:
        """Create the writer; ``purge_step`` drops earlier events at that step and later.

        A resumed run passes its checkpoint's step, so records a killed run wrote past it vanish.

        Raises:
            MissingDependency: ``tensorboard`` is not installed (an ``ImportError`` naming the ``train`` extra).
        """
        from recal_gym.optional import require

        require("tensorboard", feature="TensorBoard logging")
        from torch.utils.tensorboard import SummaryWriter

        self._writer = SummaryWriter(log_dir=str(log_dir), purge_step=purge_step or None)

    def write(self, step: int, metrics: Mapping[str, float]) -> None:
        """Add every finite scalar."""
        for key, value in metrics.items():
            if math.isfinite(float(value)):
                self._writer.add_scalar(key, float(value), global_step=int(step))
        self._writer.flush()

    def close(self) -> None:
        """Close the event file."""
        self._writer.close()


class StreamSink:
    """A one-line summary of selected keys to a logger (the CLI passes a stdout-backed one)."""

    def __init__(self, keys: Sequence[str], *, log: logging.Logger | None = None) -> None:
        """Show ``keys`` (those present) on each step."""
        self.keys = tuple(keys)
        self._log = log or logger

    def write(self, step: int, metrics: Mapping[str, float]) -> None:
        """Log the summary line."""
        parts = [f"{k}={float(metrics[k]):.4g}" for k in self.keys if k in metrics]
        self._log.info("step %d %s", step, " ".join(parts))

    def close(self) -> None:
        """Nothing to release."""


class MetricsWriter:
    """Fan one flat record out to every sink; keep the records in memory too."""

    def __init__(self, sinks: Sequence[MetricsSink] = ()) -> None:
        """Use ``sinks``."""
        self.sinks = list(sinks)
        self.history: list[dict[str, float]] = []

    def write(self, step: int, metrics: Mapping[str, float]) -> None:
        """Record ``metrics`` at ``step`` in every sink."""
        flat = {str(k): float(v) for k, v in metrics.items()}
        self.history.append({"step": float(step), **flat})
        for sink in self.sinks:
            sink.write(step, flat)

    def close(self) -> None:
        """Close every sink."""
        for sink in self.sinks:
            sink.close()


def read_jsonl(path: str | Path) -> list[dict[str, Any]]:
    """Read a metrics JSONL file back into a list of records."""
    with Path(path).open() as fh:
        return [json.loads(line) for line in fh if line.strip()]
