"""Run a router on RouterQA and report per-dataset quality and cost.

Metrics per data source: EM, F1, mean raw cost (µ$), calls per question, format-error rate and the
mean scalar reward, as ``recal-gym eval`` prints them.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from typing import Any

from agents.baselines import Router
from envs.router_qa import RouterQAEnv

__all__ = ["DatasetReport", "EvalReport", "evaluate", "format_table", "run_episode"]


@dataclass(frozen=True, slots=True)
class DatasetReport:
    """Aggregates of one data source."""

    data_source: str
    n: int
    em: float
    f1: float
    cost: float
    calls: float
    format_error_rate: float
    reward: float


@dataclass(frozen=True, slots=True)
class EvalReport:
    """Per-dataset rows plus the question-weighted overall row."""

    router: str
    rows: tuple[DatasetReport, ...]
    overall: DatasetReport

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready form."""
        return {
            "router": self.router,
            "datasets": [_asdict(r) for r in self.rows],
            "overall": _asdict(self.overall),
        }


def _asdict(r: DatasetReport) -> dict[str, Any]:
    return {k: getattr(r, k) for k in DatasetReport.__slots__}  # type: ignore[attr-defined]


def run_episode(env: RouterQAEnv, router: Router, question_id: str) -> dict[str, Any]:
    """Play one episode of ``router`` on ``question_id``; return the terminal info."""
    obs, info = env.reset(options={"question_id": question_id})
    router.reset(obs, info)
    observation = ""
    while True:
        observation, reward, terminated, truncated, info = env.step(router.act(observation, info))
        if terminated or truncated:
            info["reward"] = reward
            return info


def _aggregate(name: str, infos: Sequence[dict[str, Any]]) -> DatasetReport:
    n = len(infos)

    def mean(f: Callable[[dict[str, Any]], float]) -> float:
        return sum(f(i) for i in infos) / n if n else 0.0

    return DatasetReport(
        data_source=name,
        n=n,
        em=mean(lambda i: i["em"]),
        f1=mean(lambda i: i["f1"]),
        cost=mean(lambda i: i["raw_cost"]),
        calls=mean(lambda i: i["n_calls"]),
        format_error_rate=mean(lambda i: 0.0 if i["format_ok"] else 1.0),
        reward=mean(lambda i: i["reward"]),
    )


def evaluate(
    env: RouterQAEnv,
    router: Router,
    question_ids: Iterable[str],
    *,
    progress: Callable[[int], None] | None = None,
) -> EvalReport:
    """Evaluate ``router`` on the given questions of ``env``.

    Args:
        env: The (unwrapped) environment.
        router: Any object with ``reset(prompt, info)`` and ``act(observation, info) -> str``.
        question_ids: Questions to play, each once.
        progress: Called with 1 after each episode (the CLI passes a progress bar's ``update``).

    Returns:
        Per-dataset and overall aggregates.
    """
    by_source: dict[str, list[dict[str, Any]]] = {}
    for qid in question_ids:
        info = run_episode(env, router, qid)
        by_source.setdefault(info["data_source"], []).append(info)
        if progress is not None:
            progress(1)
    rows = tuple(_aggregate(k, v) for k, v in sorted(by_source.items()))
    overall = _aggregate("all", [i for v in by_source.values() for i in v])
    return EvalReport(router=getattr(router, "name", type(router).__name__), rows=rows, overall=overall)


def format_table(reports: Sequence[EvalReport]) -> str:
    """Render reports as one Markdown table (a row per router and data source)."""
    lines = [
        "| router | dataset | n | EM | F1 | cost (µ$) | calls/q | format err | reward |",
        "|---|---|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for rep in reports:
        for r in (*rep.rows, rep.overall):
            lines.append(
                f"| {rep.router} | {r.data_source} | {r.n} | {r.em:.3f} | {r.f1:.3f} | {r.cost:.1f} | "
                f"{r.calls:.2f} | {r.format_error_rate:.3f} | {r.reward:.3f} |"
            )
    return "\n".join(lines)
