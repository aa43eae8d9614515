"""Tests for agents.eval.evaluation, the baselines and agents.eval.plots on a small simulated RouterQA env."""

from __future__ import annotations

import csv
import io
import json

import pytest

from agents.eval.baselines import (
    DirectRouter,
    OracleRouter,
    PromptOnlyRouter,
    RandomRouter,
    SingleModelRouter,
    descriptors_from_prompt,
    question_from_prompt,
)
from agents.eval.evaluation import (
    DatasetReport,
    EvalReport,
    evaluate,
    format_csv,
    format_summary,
    format_table,
    run_episode,
    summarise,
)
from agents.eval.plots import plot_pareto, plot_per_dataset
from envs.router_qa import RouterQAEnv
from recal_gym.data.sampling import sample_per_dataset
from recal_gym.errors import InvalidConfig
from recal_gym.pools import build_pool, default_pool_spec
from recal_gym.pools.options import PoolOptions
from recal_gym.pools.replies import extract_stated_answer
from recal_gym.prompt import render_router_prompt
from recal_gym.rewards.answer_metrics import exact_match
from recal_gym.types import CallRequest

MODELS = tuple(m.name for m in default_pool_spec().listed)


@pytest.fixture(scope="module")
def env() -> RouterQAEnv:
    return RouterQAEnv("embedded", pool_options=PoolOptions(seed=0))


@pytest.fixture(scope="module")
def ids(env: RouterQAEnv) -> list[str]:
    return [r.question_id for r in sample_per_dataset(env.questions.rows, 12, seed=0)]


def report(name: str, cost: float, em: float, sources: tuple[str, ...] = ("a", "b")) -> EvalReport:
    def row(source: str) -> DatasetReport:
        return DatasetReport(
            data_source=source, n=2, em=em, f1=em, cost=cost, calls=1.0, format_error_rate=0.0, reward=em
        )

    return EvalReport(router=name, rows=tuple(row(s) for s in sources), overall=row("all"))


# ----------------------------------------------------------------------------------------------
# Baselines on the simulated pool
# ----------------------------------------------------------------------------------------------


@pytest.mark.parametrize("model", ["Mixtral-8x22B-Instruct", "Qwen2.5-7B-Instruct"])
def test_single_model_em_equals_the_pools_stated_answer_rate(env, ids, model):
    pool = build_pool(None, PoolOptions(seed=0))  # an independent copy of the same deterministic pool
    pool.attach_questions(env.questions.rows)
    hits = []
    for qid in ids:
        prompt, _ = env.reset(options={"question_id": qid})
        row = env.questions.by_id(qid)
        reply = pool.call(CallRequest(model=model, query=question_from_prompt(prompt), question=row))
        stated = extract_stated_answer(reply.text) if reply.ok else None
        hits.append(exact_match(stated or "unknown", row.golden_answers))
    rep = evaluate(env, SingleModelRouter(model=model), ids)
    assert rep.overall.em == pytest.approx(sum(hits) / len(hits), abs=1e-12)
    assert rep.overall.calls == 1.0
    assert rep.overall.n == len(ids)
    assert rep.router == f"single:{model}"


def test_random_router_is_deterministic_under_its_seed(env, ids):
    def chosen(seed: int) -> tuple[list[str], EvalReport]:
        router = RandomRouter(models=MODELS, seed=seed)
        infos = [run_episode(env, router, qid) for qid in ids]
        models = [m for i in infos for m, k in i["calls_per_model"].items() for _ in range(int(k))]
        return models, evaluate(env, RandomRouter(models=MODELS, seed=seed), ids)

    models_a, rep_a = chosen(3)
    models_b, rep_b = chosen(3)
    models_c, _ = chosen(4)
    assert models_a == models_b
    assert rep_a.overall.em == rep_b.overall.em and rep_a.overall.cost == rep_b.overall.cost
    assert models_a != models_c  # 24 uniform draws over 6 models: a different seed gives another sequence
    assert len(models_a) == len(ids)


def test_oracle_beats_every_single_model_at_no_more_than_the_cheapest_correct_cost(env, ids):
    oracle = OracleRouter(models=MODELS)
    for qid in ids:
        singles = {m: run_episode(env, SingleModelRouter(model=m), qid) for m in MODELS}
        info = run_episode(env, oracle, qid)
        correct = [i["raw_cost"] for i in singles.values() if i["em"] == 1.0]
        assert info["em"] == (1.0 if correct else 0.0)
        assert info["raw_cost"] == (min(correct) if correct else min(i["raw_cost"] for i in singles.values()))
        assert info["n_calls"] == 1.0
        assert singles[info["oracle_model"]]["raw_cost"] == info["raw_cost"]
    rep = evaluate(env, oracle, ids)
    for m in MODELS:
        single = evaluate(env, SingleModelRouter(model=m), ids)
        assert rep.overall.em >= single.overall.em
        for o_row, s_row in zip(rep.rows, single.rows, strict=True):
            assert o_row.em >= s_row.em


def test_oracle_leaves_the_reward_state_as_its_chosen_episode_would(env, ids):
    start = env.reward_state_dict()
    info = run_episode(env, OracleRouter(models=MODELS), ids[0])
    after_oracle = env.reward_state_dict()
    env.load_reward_state(start)
    alone = run_episode(env, SingleModelRouter(model=info["oracle_model"]), ids[0])
    assert env.reward_state_dict() == after_oracle
    assert alone["reward"] == info["reward"]


def test_oracle_cannot_act_through_the_text_api():
    oracle = OracleRouter(models=MODELS)
    with pytest.raises(InvalidConfig, match="evaluation mode"):
        oracle.reset("prompt", {})
    with pytest.raises(InvalidConfig, match="run_episode"):
        oracle.act("", {})


@pytest.mark.parametrize("cls", [OracleRouter, PromptOnlyRouter])
def test_routers_need_models(cls):
    with pytest.raises(InvalidConfig, match="at least one model"):
        cls(models=[])


def test_prompt_router_rule():
    spec = default_pool_spec()
    router = PromptOnlyRouter(models=MODELS)

    def prompt(question: str, models=spec.listed) -> str:
        return render_router_prompt(models, question)

    # Keyword overlap: only Mixtral's descriptor mentions French; Qwen's and Mixtral's mention coding.
    assert router.choose(prompt("Which French novelist wrote Germinal?")) == "Mixtral-8x22B-Instruct"
    assert router.choose(prompt("Which multilingual coding tool did Alibaba's team build?")) == "Qwen2.5-7B-Instruct"
    # No overlap: the largest stated parameter count (Mixtral: 141B total).
    assert router.choose(prompt("Who painted the Mona Lisa?")) == "Mixtral-8x22B-Instruct"
    without = [m for m in spec.listed if not m.name.startswith("Mixtral")]
    names = [m.name for m in without]
    assert PromptOnlyRouter(models=names).choose(prompt("Who painted it?", without)) == "LLaMA-3.1-70B-Instruct"
    found = descriptors_from_prompt(prompt("Q?"), [*MODELS, "absent"])
    assert found["absent"] == ""
    assert found["Gemma-2-27B-Instruct"] == spec.model("Gemma-2-27B-Instruct").descriptor.strip()


def test_prompt_router_routes_to_its_choice(env, ids):
    router = PromptOnlyRouter(models=MODELS)
    for qid in ids:
        prompt, _ = env.reset(options={"question_id": qid})
        choice = router.choose(prompt)
        info = run_episode(env, router, qid)
        assert info["calls_per_model"][choice] == 1.0
        assert info["n_calls"] == 1.0


def test_direct_router_costs_nothing(env, ids):
    rep = evaluate(env, DirectRouter(), ids)
    assert rep.overall.cost == 0.0
    assert rep.overall.calls == 0.0


# ----------------------------------------------------------------------------------------------
# Tables and the cost-quality summary
# ----------------------------------------------------------------------------------------------


def test_csv_and_markdown_tables(env, ids):
    reports = [evaluate(env, SingleModelRouter(model=m), ids) for m in MODELS[:2]]
    rows = list(csv.DictReader(io.StringIO(format_csv(reports))))
    assert len(rows) == sum(len(r.rows) + 1 for r in reports)
    assert [r["data_source"] for r in rows[:3]] == ["fanoutqa_multi", "fanoutqa_single", "all"]
    assert float(rows[2]["em"]) == reports[0].overall.em
    assert float(rows[2]["cost"]) == reports[0].overall.cost
    assert rows[5]["router"] == f"single:{MODELS[1]}"
    table = format_table(reports).splitlines()
    assert table[0].startswith("| router | dataset | n | EM | F1 | cost")
    assert len(table) == 2 + len(rows)
    assert f"| single:{MODELS[0]} | all | {len(ids)} |" in table[4]


def test_summary_hand_case():
    reports = [
        report("single:a", cost=1.0, em=0.2),
        report("single:b", cost=3.0, em=0.6),
        report("random", cost=2.0, em=0.3),
        report("oracle", cost=2.0, em=0.8),
    ]
    s = summarise(reports)
    assert s.cost_range == (1.0, 3.0)
    assert [p.on_frontier for p in s.points] == [True, False, False, True]
    assert [p.aiq for p in s.points] == pytest.approx([0.2, 0.0, 0.15, 0.4])
    assert s.aiq_zero == pytest.approx(0.4)  # segment (1, .2)–(3, .6): mean height .4
    assert s.aiq_all == pytest.approx((0.5 * (0.2 + 0.8) + 0.8) / 2)  # (1,.2)→(2,.8), then flat
    text = format_summary(s)
    assert "| oracle | 2.0 | 0.800 | yes | 0.400 |" in text
    assert "Zero router" in text and "hull of all runs" in text
    payload = json.loads(json.dumps(s.to_dict()))
    assert payload["routers"][3]["router"] == "oracle" and payload["aiq_zero"] == pytest.approx(0.4)


def test_summary_without_single_runs_and_bad_input():
    s = summarise([report("random", cost=2.0, em=0.3)], quality="f1")
    assert s.aiq_zero is None
    assert s.points[0].aiq == 0.3  # one run: degenerate range, AIQ = its quality
    assert "Zero router" not in format_summary(s)
    with pytest.raises(InvalidConfig, match="at least one report"):
        summarise([])
    with pytest.raises(InvalidConfig, match="quality"):
        summarise([report("x", 1.0, 0.1)], quality="accuracy")  # type: ignore[arg-type]


def test_report_json_round_trip(env, ids):
    rep = evaluate(env, SingleModelRouter(model=MODELS[0]), ids)
    data = json.loads(json.dumps(rep.to_dict()))
    assert data["router"] == rep.router
    assert data["overall"]["em"] == rep.overall.em
    assert [d["data_source"] for d in data["datasets"]] == [r.data_source for r in rep.rows]


# ----------------------------------------------------------------------------------------------
# Plots
# ----------------------------------------------------------------------------------------------


def test_plots_are_written_as_png(tmp_path):
    reports = [report("single:a", 1.0, 0.2), report("single:b", 3.0, 0.6), report("oracle", 2.0, 0.8)]
    pareto = plot_pareto(reports, tmp_path / "sub" / "pareto.png")
    bars = plot_per_dataset(reports, tmp_path / "bars.png")
    for path in (pareto, bars):
        data = path.read_bytes()
        assert data[:8] == b"\x89PNG\r\n\x1a\n"
        assert len(data) > 5000


def test_calls_per_model_shows_the_model_choice(env, ids):
    single = evaluate(env, SingleModelRouter(model="Mixtral-8x22B-Instruct"), ids).overall
    assert single.calls_per_model == {"Mixtral-8x22B-Instruct": 1.0}
    spread = evaluate(env, RandomRouter(models=list(default_pool_spec().names), seed=1), ids).overall
    assert len(spread.calls_per_model) > 1
    assert sum(spread.calls_per_model.values()) == pytest.approx(spread.calls)
    assert evaluate(env, DirectRouter(), ids).overall.calls_per_model == {}
