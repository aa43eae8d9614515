"""Re-scoring logged runs under other reward specs (``docs/rewards.md`` §14.6, ``recal-gym rescore``).

Logs are JSONL files of episodes, one JSON object per line: ``recal-gym eval`` writes
``<out>/episodes.jsonl`` (key ``run`` = the router), ``recal-gym train`` writes ``<run>/episodes.jsonl``
(key ``step`` = the RL step). A line is either a bare episode record (``info["episode_record"]``) or
``{"record": ..., "run": ..., "step": ..., "reward": ..., "components": ..., "reward_spec_hash": ...}``.

:func:`rescore_log` replays every run from a fresh reward state (as ``recal-gym eval`` and the learner
start), in log order, with batch-mode state updates at step boundaries, so re-scoring a log under the
spec it was recorded with reproduces every logged reward and component bit for bit. A training log (lines
with ``step``) is replayed with every spec in batch update mode, as the learner scored it. Between specs it
counts the episodes whose reward changed sign, and those whose rank inside their group (episodes of the
same run, step and question: a GRPO group) changed.
"""

from __future__ import annotations

import itertools
import json
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from recal_gym.errors import InvalidConfig, InvalidData
from recal_gym.rewards.scoring import EpisodeScore, rescore
from recal_gym.rewards.spec import RewardSpec
from recal_gym.types import EpisodeRecord

__all__ = [
    "EPISODE_LOG",
    "LoggedEpisode",
    "RescoreReport",
    "SpecResult",
    "episode_log_line",
    "format_rescore",
    "read_episode_log",
    "rescore_log",
]

EPISODE_LOG = "episodes.jsonl"
"""File name of the episode log inside an eval output or training run directory."""


@dataclass(frozen=True, slots=True, kw_only=True)
class LoggedEpisode:
    """One logged episode."""

    record: EpisodeRecord
    """The episode record."""
    run: str = ""
    """The run it belongs to (a router of an eval, ``""`` for a training run)."""
    step: int | None = None
    """RL step (a batch of the reward state's batch-mode updates), ``None`` for eval logs."""
    reward: float | None = None
    """The reward the episode was given online, if logged."""
    components: dict[str, float] | None = None
    """The gated components given online, if logged."""
    spec_hash: str = ""
    """Hash of the spec it was scored under online, if logged."""


def episode_log_line(
    info: Mapping[str, Any], reward: float, *, run: str = "", step: int | None = None
) -> dict[str, Any]:
    """The JSON object of one log line from a terminal ``info`` (``docs/protocol.md`` §12).

    Raises:
        InvalidData: ``info`` is not a terminal step (no ``episode_record``).
    """
    if "episode_record" not in info:
        raise InvalidData(f"info of question {info.get('question_id')!r} is not terminal: no episode_record")
    line: dict[str, Any] = {
        "run": run,
        "reward": float(reward),
        "components": dict(info["reward_components"]),
        "reward_spec_hash": str(info.get("reward_spec_hash", "")),
        "record": info["episode_record"],
    }
    if step is not None:
        line["step"] = int(step)
    return line


def _parse_line(obj: Any, where: str) -> LoggedEpisode:
    if not isinstance(obj, Mapping):
        raise InvalidData(f"{where}: a log line must be a JSON object (an episode record or {{'record': ...}})")
    body = obj.get("record", obj)
    if not isinstance(body, Mapping):
        raise InvalidData(f"{where}: 'record' must be an episode record object")
    try:
        record = EpisodeRecord.from_dict(dict(body))
    except (InvalidData, KeyError, TypeError, ValueError) as exc:
        raise InvalidData(f"{where}: not an episode record ({exc})") from None
    step = obj.get("step")
    reward = obj.get("reward")
    comps = obj.get("components")
    if step is not None and (isinstance(step, bool) or not isinstance(step, int)):
        raise InvalidData(f"{where}: 'step' must be an integer, got {step!r}")
    return LoggedEpisode(
        record=record,
        run=str(obj.get("run", "")),
        step=step,
        reward=None if reward is None else float(reward),
        components=None if comps is None else {str(k): float(v) for k, v in dict(comps).items()},
        spec_hash=str(obj.get("reward_spec_hash", "")),
    )


def read_episode_log(path: str | Path) -> list[LoggedEpisode]:
    """Read an episode log: a JSONL file, or a directory holding ``episodes.jsonl``.

    Raises:
        InvalidConfig: the path does not exist, is not a JSONL file, or the directory has no log.
        InvalidData: a malformed line (the message names the file and the line number).
    """
    p = Path(path)
    if p.is_dir():
        p = p / EPISODE_LOG
        if not p.is_file():
            raise InvalidConfig(
                f"{str(path)!r} holds no {EPISODE_LOG}; pass a run directory of `recal-gym train`, an output "
                "directory of `recal-gym eval`, or a JSONL file of episode records"
            )
    elif not p.is_file():
        raise InvalidConfig(f"episode log {str(p)!r} does not exist")
    elif p.suffix != ".jsonl":
        raise InvalidConfig(f"episode log {str(p)!r} must be a .jsonl file (one episode per line) or a directory")
    episodes = []
    with p.open("rb") as fh:
        for lineno, raw in enumerate(fh, 1):
            if not raw.strip():
                continue
            where = f"episode log {str(p)!r} line {lineno}"
            try:
                obj = json.loads(raw.decode("utf-8"))
            except (UnicodeDecodeError, json.JSONDecodeError, RecursionError) as exc:
                raise InvalidData(f"{where}: not valid UTF-8 JSON ({exc})") from None
            episodes.append(_parse_line(obj, where))
    if not episodes:
        raise InvalidData(f"episode log {str(p)!r} holds no episode")
    return episodes


@dataclass(frozen=True, slots=True, kw_only=True)
class SpecResult:
    """The re-scored log under one spec."""

    name: str
    """The spec's name."""
    hash: str
    """The spec's content hash."""
    components: tuple[str, ...]
    """Its components, in fold order."""
    table: dict[str, dict[str, float]]
    """``{dataset (and "all"): {"n", "reward", <component>: mean gated value ...}}``."""
    rewards: tuple[float, ...]
    """Every episode's reward, in log order."""
    online_mismatches: int | None = None
    """With the log's own spec (same hash): episodes whose offline reward or components differ from the
    logged ones (0 = exact re-scoring); ``None`` otherwise."""


@dataclass(frozen=True, slots=True, kw_only=True)
class RescoreReport:
    """What ``recal-gym rescore`` prints and writes."""

    n: int
    """Episodes re-scored."""
    runs: tuple[str, ...]
    """Runs found in the log."""
    specs: tuple[SpecResult, ...]
    """One result per spec, in the order given."""
    changes: list[dict[str, Any]] = field(default_factory=list)
    """Per pair of specs ``(a, b)``: ``{"a", "b", "sign_changed", "rank_changed", "groups"}``."""

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready form."""
        return {
            "n": self.n,
            "runs": list(self.runs),
            "specs": [
                {
                    "name": s.name,
                    "hash": s.hash,
                    "components": list(s.components),
                    "table": s.table,
                    "online_mismatches": s.online_mismatches,
                }
                for s in self.specs
            ],
            "changes": self.changes,
        }


def _score_runs(episodes: Sequence[LoggedEpisode], spec: RewardSpec) -> list[EpisodeScore]:
    """Scores in log order: each run replayed from a fresh state, batch updates at step boundaries."""
    scores: list[EpisodeScore | None] = [None] * len(episodes)
    for run in dict.fromkeys(e.run for e in episodes):
        idx = [i for i, e in enumerate(episodes) if e.run == run]
        steps: dict[int | None, list[int]] = {}
        for j, i in enumerate(idx):
            steps.setdefault(episodes[i].step, []).append(j)
        batches = list(steps.values()) if any(k is not None for k in steps) else None
        out, _ = rescore([episodes[i].record for i in idx], spec, batches=batches)
        for i, s in zip(idx, out, strict=True):
            scores[i] = s
    return [s for s in scores if s is not None]


def _table(episodes: Sequence[LoggedEpisode], scores: Sequence[EpisodeScore]) -> dict[str, dict[str, float]]:
    by: dict[str, list[EpisodeScore]] = {}
    for e, s in zip(episodes, scores, strict=True):
        by.setdefault(e.record.data_source, []).append(s)
    by["all"] = list(scores)
    out: dict[str, dict[str, float]] = {}
    for source, group in by.items():
        row: dict[str, float] = {"n": float(len(group)), "reward": sum(s.reward for s in group) / len(group)}
        for k in group[0].components:
            row[k] = sum(s.components[k] for s in group) / len(group)
        out[source] = row
    return out


def _mismatches(episodes: Sequence[LoggedEpisode], scores: Sequence[EpisodeScore]) -> int:
    bad = 0
    for e, s in zip(episodes, scores, strict=True):
        reward_differs = e.reward is not None and e.reward != s.reward
        if reward_differs or (e.components is not None and e.components != s.components):
            bad += 1
    return bad


def _sign(x: float) -> int:
    return (x > 0) - (x < 0)


def _ranks(values: Sequence[float]) -> list[int]:
    """Competition rank of each value within its list (ties share the lower rank)."""
    return [sum(1 for w in values if w > v) for v in values]


def _changes(episodes: Sequence[LoggedEpisode], a: SpecResult, b: SpecResult) -> dict[str, Any]:
    groups: dict[tuple[str, int | None, str], list[int]] = {}
    for i, e in enumerate(episodes):
        groups.setdefault((e.run, e.step, e.record.question_id), []).append(i)
    rank_changed = 0
    for idx in groups.values():
        ra = _ranks([a.rewards[i] for i in idx])
        rb = _ranks([b.rewards[i] for i in idx])
        rank_changed += sum(1 for x, y in zip(ra, rb, strict=True) if x != y)
    sign_changed = sum(1 for x, y in zip(a.rewards, b.rewards, strict=True) if _sign(x) != _sign(y))
    return {
        "a": a.name,
        "b": b.name,
        "sign_changed": sign_changed,
        "rank_changed": rank_changed,
        "groups": len(groups),
        "multi_episode_groups": sum(1 for idx in groups.values() if len(idx) > 1),
    }


def rescore_log(episodes: Sequence[LoggedEpisode], specs: Sequence[RewardSpec]) -> RescoreReport:
    """Re-score a log under each spec; compare the specs pairwise (consecutive pairs).

    Args:
        episodes: The log (:func:`read_episode_log`).
        specs: One or more reward specs (in batch update mode for a training log, as the learner ran them).

    Raises:
        InvalidConfig: no spec given.
    """
    if not specs:
        raise InvalidConfig("rescore needs at least one reward spec (--reward)")
    if any(e.step is not None for e in episodes):
        # A training log: the learner scores in batch mode (updates at step boundaries), so replay that way.
        from recal_gym.rewards.presets import make_spec

        specs = [make_spec(s, update_mode="batch") for s in specs]
    results = []
    for spec in specs:
        scores = _score_runs(episodes, spec)
        same = [e for e in episodes if e.spec_hash == spec.hash]
        mismatch = _mismatches(episodes, scores) if same and len(same) == len(episodes) else None
        results.append(
            SpecResult(
                name=spec.name,
                hash=spec.hash,
                components=spec.names,
                table=_table(episodes, scores),
                rewards=tuple(s.reward for s in scores),
                online_mismatches=mismatch,
            )
        )
    changes = [_changes(episodes, a, b) for a, b in itertools.pairwise(results)]
    return RescoreReport(
        n=len(episodes), runs=tuple(dict.fromkeys(e.run for e in episodes)), specs=tuple(results), changes=changes
    )


def _fmt(x: float) -> str:
    return "nan" if math.isnan(x) else f"{x:.3f}"


def format_rescore(report: RescoreReport) -> str:
    """Markdown tables: per spec, a row per dataset with n, the reward and every component's mean."""
    lines = [f"re-scored {report.n} episodes ({len(report.runs)} run(s))", ""]
    for s in report.specs:
        check = "" if s.online_mismatches is None else f"; online vs offline: {s.online_mismatches} differ"
        lines += [f"### {s.name} ({s.hash}){check}", ""]
        header = ["dataset", "n", "reward", *s.components]
        lines.append("| " + " | ".join(header) + " |")
        lines.append("|---|" + "---:|" * (len(header) - 1))
        for source, row in s.table.items():
            cells = [source, str(int(row["n"])), _fmt(row["reward"]), *(_fmt(row[k]) for k in s.components)]
            lines.append("| " + " | ".join(cells) + " |")
        lines.append("")
    for c in report.changes:
        lines.append(
            f"{c['a']} -> {c['b']}: {c['sign_changed']} of {report.n} episodes changed sign; {c['rank_changed']} "
            f"changed rank within their group ({c['multi_episode_groups']} groups with more than one episode)"
        )
    return "\n".join(lines).rstrip() + "\n"
