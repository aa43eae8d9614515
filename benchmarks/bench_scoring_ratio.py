"""Cost of scoring an episode, in units of one block-scan regex pass over the same transcript.

Issue target (``docs/rewards.md`` §14.6): ``score_episode`` costs at most 4 scan passes with the
``router-r1`` preset and 6 with ``recal`` (median over a few thousand transcripts). The peer is a lean
Router-R1-style format + EM check (``check_format`` then ``exact_match`` of the last answer: no spec, no
components, no state). Every function is timed on the same transcript, interleaved, and each transcript's
cost is the minimum over rounds (robust to a loaded machine), so the ratios are measured side by side.
The reference ``scan`` is ``scan_blocks`` (the protocol's block scan, building ``Block`` objects); the
scorer's own shared scan, ``scan_block_pairs`` (the same regex pass returning ``(tag, content)`` tuples),
is timed too (``scan_pairs``), so the JSON shows how much of the budget that one pass takes.

Transcripts are real RouterQA episodes: embedded questions, the simulated pool, and scripted routers
(direct answers, one or several routes to random or fixed models, malformed turns). The reward state is
warm (a full 1000-value cost window), the steady state of training.

Run: ``python benchmarks/bench_scoring_ratio.py --out benchmarks/results/scoring_ratio.json``
(``--episodes 300`` for a quick run).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np

from agents.eval.baselines import DirectRouter, RandomRouter, SingleModelRouter
from agents.eval.evaluation import run_episode
from envs.router_qa import RouterQAEnv
from recal_gym.protocol import last_answer, scan_block_pairs, scan_blocks
from recal_gym.rewards import EpisodeScorer, RewardState, make_spec
from recal_gym.rewards.answer_metrics import exact_match
from recal_gym.rewards.format_rules import check_format
from recal_gym.types import EpisodeRecord

TARGETS = {"router-r1": 4.0, "recal": 6.0}


class _Malformed:
    """A router whose turns are often malformed (format failures, unknown names, no answer)."""

    name = "malformed"

    def __init__(self, seed: int) -> None:
        self.rng = np.random.default_rng(seed)

    def reset(self, prompt: str, info: dict) -> None:
        self.q = prompt.rsplit("Question: ", 1)[-1].strip()

    def act(self, observation: str, info: dict) -> str:
        turns = [
            f"<think>hm</think><search> NoSuchModel: {self.q} </search>",
            f"<search> Mixtral-8x22B-Instruct: {self.q} </search>",
            "<think></think><answer>maybe</answer>",
            "I think the answer is Paris.",
            f"<think>x</think><think>y</think><answer> {self.q[:10]} </answer>",
        ]
        return str(turns[int(self.rng.integers(len(turns)))])


def _records(n: int, seed: int) -> list[EpisodeRecord]:
    env = RouterQAEnv(reward="recal", max_routed_turns=4)
    models = [m.name for m in env.pool.spec.listed]
    rng = np.random.default_rng(seed)
    ids = env.questions.ids()
    routers: list = [
        DirectRouter(),
        RandomRouter(models=models, seed=seed, max_calls=1),
        RandomRouter(models=models, seed=seed + 1, max_calls=3),
        *(SingleModelRouter(model=m) for m in models),
        _Malformed(seed),
    ]
    out = []
    for i in range(n):
        router = routers[i % len(routers)]
        run_episode(env, router, ids[int(rng.integers(len(ids)))])
        rec = env.last_episode_record()
        assert rec is not None
        out.append(rec)
    return out


def _min_time(fn: Callable[[], object], reps: int) -> float:
    start = time.perf_counter()
    for _ in range(reps):
        fn()
    return (time.perf_counter() - start) / reps


def _warm(spec_name: str, records: list[EpisodeRecord]) -> tuple[EpisodeScorer, RewardState]:
    scorer = EpisodeScorer(make_spec(spec_name))
    state = scorer.default_state(records[0].pool.listed)
    for rec in records[:1000]:  # fill the cost window: training's steady state
        scorer.score(rec, state, update=True)
    return scorer, state


def measure(records: list[EpisodeRecord], rounds: int, budget_s: float) -> dict:
    """Per-transcript minimum times of every function (interleaved), and their ratios to the scan."""
    r1, r1_state = _warm("router-r1", records)
    rc, rc_state = _warm("recal", records)
    fns: dict[str, Callable[[EpisodeRecord], object]] = {
        "scan": lambda r: scan_blocks(r.transcript),
        "scan_pairs": lambda r: scan_block_pairs(r.transcript),
        "lean_format_em": lambda r: (
            check_format(r.transcript, r.pool),
            exact_match(last_answer(r.transcript), r.golden_answers),
        ),
        "router-r1": lambda r: r1.score(r, r1_state, update=True),
        "recal": lambda r: rc.score(r, rc_state, update=True),
    }
    times: dict[str, list[float]] = {k: [] for k in fns}
    for rec in records:
        base = _min_time(lambda rec=rec: fns["scan"](rec), 3)
        reps = max(2, min(200, int(budget_s / max(base * 12, 1e-9))))
        best = dict.fromkeys(fns, float("inf"))
        for _ in range(rounds):
            for name, fn in fns.items():
                best[name] = min(best[name], _min_time(lambda rec=rec, fn=fn: fn(rec), reps))
        for name in fns:
            times[name].append(best[name])
    scan = np.array(times["scan"])
    out: dict = {"median_us": {k: float(np.median(v)) * 1e6 for k, v in times.items()}, "ratio_to_scan": {}}
    for name in ("scan_pairs", "lean_format_em", "router-r1", "recal"):
        ratio = np.array(times[name]) / scan
        q25, q50, q75 = (float(x) for x in np.percentile(ratio, [25, 50, 75]))
        out["ratio_to_scan"][name] = {"median": q50, "p25": q25, "p75": q75}
    return out


def main() -> None:
    """Build transcripts, time, print and write the JSON."""
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--episodes", type=int, default=3000)
    p.add_argument("--rounds", type=int, default=3)
    p.add_argument("--budget-ms", type=float, default=2.0, help="time per function, round and transcript")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--out", type=Path, default=Path("benchmarks/results/scoring_ratio.json"))
    args = p.parse_args()
    started = time.time()
    records = _records(args.episodes, args.seed)
    lengths = [len(r.transcript) for r in records]
    result = measure(records, args.rounds, args.budget_ms / 1000.0)
    commit = subprocess.run(["git", "rev-parse", "HEAD"], capture_output=True, text=True, check=False).stdout.strip()
    payload = {
        "command": " ".join([sys.executable, *sys.argv]),
        "commit": commit,
        "machine": {"platform": platform.platform(), "cpus": os.cpu_count(), "load_avg": os.getloadavg()},
        "python_threads": 1,
        "episodes": args.episodes,
        "transcript_chars": {"median": statistics.median(lengths), "max": max(lengths)},
        "targets": TARGETS,
        **result,
        "meets_targets": {k: result["ratio_to_scan"][k]["median"] <= v for k, v in TARGETS.items()},
        "wall_s": time.time() - started,
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(payload, indent=2))
    print(json.dumps({k: payload[k] for k in ("ratio_to_scan", "median_us", "meets_targets")}, indent=2))


if __name__ == "__main__":
    main()
