"""Run a router on RouterQA and report per-dataset quality and cost.

Metrics per data source: EM, F1, mean raw cost (µ$), calls per question, format-error rate and the
mean scalar reward, as ``recal-gym eval`` prints them. Across routers, :func:`summarise` places each
run in the cost–quality plane: its Pareto status and RouterBench's AIQ (``agents.eval.pareto``).
"""

from __future__ import annotations

import csv
import io
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

from agents.eval.baselines import OracleRouter, Router, SingleModelRouter
from agents.eval.pareto import aiq, pareto_frontier
from envs.router_qa import RouterQAEnv
from recal_gym.errors import InvalidConfig

__all__ = [
    "ZERO_ROUTER_PREFIX",
    "CostQualitySummary",
    "DatasetReport",
    "EvalReport",
    "Quality",
    "RouterPoint",
    "evaluate",
    "format_csv",
    "format_summary",
    "format_table",
    "run_episode",
    "summarise",
]

Quality = Literal["em", "f1", "reward"]
"""The quality axis of the cost–quality plane (a :class:`DatasetReport` field)."""
ZERO_ROUTER_PREFIX = "single:"
"""Runs whose router name starts with this form RouterBench's *Zero router* (the single-model hull)."""
_CSV_FIELDS = ("router", "data_source", "n", "em", "f1", "cost", "calls", "format_error_rate", "reward")


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
    components: dict[str, float] = field(default_factory=dict)
    """Mean gated value of every reward component of the spec (``info["reward_components"]``)."""


@dataclass(frozen=True, slots=True)
class EvalReport:
    """Per-dataset rows plus the question-weighted overall row."""

    router: str
    rows: tuple[DatasetReport, ...]
    overall: DatasetReport
    reward_spec_hash: str = ""
    """Content hash of the reward spec the episodes were scored under (``RewardSpec.hash``)."""

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready form."""
        return {
            "router": self.router,
            "reward_spec_hash": self.reward_spec_hash,
            "datasets": [_asdict(r) for r in self.rows],
            "overall": _asdict(self.overall),
        }


def _asdict(r: DatasetReport) -> dict[str, Any]:
    out = {k: getattr(r, k) for k in DatasetReport.__slots__}  # type: ignore[attr-defined]
    out["components"] = dict(r.components)
    return out


def run_episode(env: RouterQAEnv, router: Router | OracleRouter, question_id: str) -> dict[str, Any]:
    """Play one episode of ``router`` on ``question_id``; return the terminal info (plus ``"reward"``).

    An :class:`~agents.eval.baselines.OracleRouter` is played as its documented evaluation mode: one
    single-model episode per model, keeping the cheapest correct one (its info gains
    ``"oracle_model"``).
    """
    if isinstance(router, OracleRouter):
        return _oracle_episode(env, router, question_id)
    obs, info = env.reset(options={"question_id": question_id})
    router.reset(obs, info)
    observation = ""
    while True:
        observation, reward, terminated, truncated, info = env.step(router.act(observation, info))
        if terminated or truncated:
            info["reward"] = reward
            return info


def _oracle_episode(env: RouterQAEnv, oracle: OracleRouter, question_id: str) -> dict[str, Any]:
    """Cheapest correct single-model episode (else the cheapest); the reward state keeps only its update."""
    start = env.reward_state_dict()
    best: tuple[tuple[bool, float, int], dict[str, Any], dict[str, Any]] | None = None
    for i, model in enumerate(oracle.models):
        env.load_reward_state(start)  # every candidate episode is scored from the same state
        info = run_episode(env, SingleModelRouter(model=model), question_id)
        key = (info["em"] < 1.0, float(info["raw_cost"]), i)
        if best is None or key < best[0]:
            best = (key, info, env.reward_state_dict())
    assert best is not None  # OracleRouter validates that models is non-empty
    env.load_reward_state(best[2])
    info = dict(best[1])
    info["oracle_model"] = oracle.models[best[0][2]]
    return info


def _component_mean(infos: Sequence[dict[str, Any]], name: str) -> float:
    return sum(float(i["reward_components"][name]) for i in infos) / len(infos)


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
        components={k: _component_mean(infos, k) for k in (infos[0]["reward_components"] if n else ())},
    )


def evaluate(
    env: RouterQAEnv,
    router: Router | OracleRouter,
    question_ids: Iterable[str],
    *,
    progress: Callable[[int], None] | None = None,
    on_episode: Callable[[dict[str, Any]], None] | None = None,
) -> EvalReport:
    """Evaluate ``router`` on the given questions of ``env``.

    Args:
        env: The (unwrapped) environment.
        router: Any object with ``reset(prompt, info)`` and ``act(observation, info) -> str``, or an
            :class:`~agents.eval.baselines.OracleRouter`.
        question_ids: Questions to play, each once.
        progress: Called with 1 after each episode (the CLI passes a progress bar's ``update``).
        on_episode: Called with each episode's terminal ``info`` (plus ``"reward"``), in play order (the CLI
            logs them for ``recal-gym rescore``).

    Returns:
        Per-dataset and overall aggregates.
    """
    by_source: dict[str, list[dict[str, Any]]] = {}
    for qid in question_ids:
        info = run_episode(env, router, qid)
        if on_episode is not None:
            on_episode(info)
        by_source.setdefault(info["data_source"], []).append(info)
        if progress is not None:
            progress(1)
    rows = tuple(_aggregate(k, v) for k, v in sorted(by_source.items()))
    overall = _aggregate("all", [i for v in by_source.values() for i in v])
    infos = [i for v in by_source.values() for i in v]
    return EvalReport(
        router=getattr(router, "name", type(router).__name__),
        rows=rows,
        overall=overall,
        reward_spec_hash=str(infos[0].get("reward_spec_hash", "")) if infos else "",
    )


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


def format_csv(reports: Sequence[EvalReport]) -> str:
    """Render reports as CSV: a header, then one row per router and data source (``all`` last per router)."""
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    names = list(dict.fromkeys(k for rep in reports for k in rep.overall.components))
    writer.writerow([*_CSV_FIELDS, *(f"reward_{k}" for k in names), "reward_spec_hash"])
    for rep in reports:
        for r in (*rep.rows, rep.overall):
            comps = [r.components.get(k, "") for k in names]
            writer.writerow([rep.router, *(getattr(r, k) for k in _CSV_FIELDS[1:]), *comps, rep.reward_spec_hash])
    return out.getvalue()


@dataclass(frozen=True, slots=True, kw_only=True)
class RouterPoint:
    """One run in the cost–quality plane (overall row of its report)."""

    router: str
    """Display name of the router."""
    cost: float
    """Mean raw cost per question (µ$)."""
    quality: float
    """The chosen quality (EM by default) over all questions."""
    on_frontier: bool
    """Whether no other run of the set is cheaper-or-equal and better-or-equal (one strictly)."""
    aiq: float
    """AIQ of this run alone over the run set's cost range: ``q·(c_hi − c)/(c_hi − c_lo)``."""


@dataclass(frozen=True, slots=True, kw_only=True)
class CostQualitySummary:
    """Pareto frontier and AIQ of a set of runs (``agents.eval.pareto`` conventions)."""

    quality: Quality
    """The quality axis."""
    points: tuple[RouterPoint, ...]
    """One entry per report, in report order."""
    cost_range: tuple[float, float]
    """``(min cost, max cost)`` over the runs: the common AIQ range."""
    aiq_all: float
    """AIQ of the non-decreasing convex hull of every run (the best mixture of the routers run)."""
    aiq_zero: float | None
    """AIQ of the hull of the single-model runs (RouterBench's Zero router); ``None`` without any."""

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready form."""
        return {
            "quality": self.quality,
            "cost_range": list(self.cost_range),
            "aiq_all": self.aiq_all,
            "aiq_zero": self.aiq_zero,
            "routers": [{k: getattr(p, k) for k in RouterPoint.__slots__} for p in self.points],  # type: ignore[attr-defined]
        }


def summarise(reports: Sequence[EvalReport], *, quality: Quality = "em") -> CostQualitySummary:
    """Place every run in the cost–quality plane: Pareto status and AIQ over the run set.

    Each report contributes its overall ``(cost, quality)``. All AIQs use the same cost range, the
    run set's ``(min cost, max cost)``, so they are comparable: a one-run router scores
    ``q·(c_hi − c)/(c_hi − c_lo)`` (R̃ is 0 below its cost), the Zero router is the hull of the
    ``single:`` runs and ``aiq_all`` the hull of all runs.

    Args:
        reports: The runs (at least one).
        quality: ``"em"`` (default), ``"f1"`` or ``"reward"``.

    Returns:
        The summary.

    Raises:
        InvalidConfig: no reports, or an unknown ``quality``.
    """
    if quality not in ("em", "f1", "reward"):
        raise InvalidConfig(f"quality must be 'em', 'f1' or 'reward', got {quality!r}")
    if not reports:
        raise InvalidConfig("summarise needs at least one report, got none")
    costs = [r.overall.cost for r in reports]
    quals = [float(getattr(r.overall, quality)) for r in reports]
    span = (min(costs), max(costs))
    front = set(pareto_frontier(list(zip(costs, quals, strict=True))).tolist())
    points = tuple(
        RouterPoint(router=r.router, cost=c, quality=q, on_frontier=i in front, aiq=aiq([c], [q], cost_range=span))
        for i, (r, c, q) in enumerate(zip(reports, costs, quals, strict=True))
    )
    zero = [i for i, r in enumerate(reports) if r.router.startswith(ZERO_ROUTER_PREFIX)]
    return CostQualitySummary(
        quality=quality,
        points=points,
        cost_range=span,
        aiq_all=aiq(costs, quals, cost_range=span),
        aiq_zero=aiq([costs[i] for i in zero], [quals[i] for i in zero], cost_range=span) if zero else None,
    )


def format_summary(summary: CostQualitySummary) -> str:
    """Render a summary as a Markdown table (a row per run, then the two hulls)."""
    q = summary.quality.upper() if summary.quality != "reward" else "reward"
    lo, hi = summary.cost_range
    lines = [
        f"AIQ of {q} over mean cost per question, cost range [{lo:.1f}, {hi:.1f}] µ$ (RouterBench, arXiv 2403.12031)",
        "",
        f"| router | cost (µ$) | {q} | Pareto | AIQ |",
        "|---|---:|---:|:---:|---:|",
    ]
    for p in summary.points:
        lines.append(
            f"| {p.router} | {p.cost:.1f} | {p.quality:.3f} | {'yes' if p.on_frontier else ''} | {p.aiq:.3f} |"
        )
    if summary.aiq_zero is not None:
        lines.append(f"| hull of single-model runs (Zero router) | | | | {summary.aiq_zero:.3f} |")
    lines.append(f"| hull of all runs | | | | {summary.aiq_all:.3f} |")
    return "\n".join(lines)
