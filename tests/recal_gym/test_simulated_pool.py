"""Tests of the simulated candidate pool (recal_gym.pools.simulated, docs/pools.md §3)."""

from __future__ import annotations

import itertools
import json
import math
from dataclasses import replace
from importlib import resources

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from recal_gym.errors import InvalidConfig, UnknownModel
from recal_gym.pools import build_pool, default_pool_spec, load_pool_spec
from recal_gym.pools.options import PoolOptions, SimulatedConfig
from recal_gym.pools.replies import (
    ABSTAIN_LINE,
    UNRELATED_LINE,
    answer_type,
    build_bank,
    extract_stated_answer,
    statement,
)
from recal_gym.pools.simulated import (
    SimulatedBackend,
    content_words,
    keyed_generator,
    match_target,
    question_targets,
    similarity,
)
from recal_gym.protocol import TAG_STRINGS
from recal_gym.rewards.answer_metrics import contains_answer, exact_match, normalize_answer
from recal_gym.types import CallRequest, CallResult, QARow, SubQuestion

SPEC = default_pool_spec()
MODELS = SPEC.names
N_CALIB = 2000
Z99 = 2.5758293035489004  # two-sided 99 % normal quantile


def _gold(i: int) -> str:
    """Mixed answer types: entity, year, number, yes/no, date."""
    return (
        f"Entity{i} Holdings",
        str(1800 + i % 200),
        str(37 + i),
        "yes" if i % 2 else "no",
        f"{1 + i % 28} March 19{i % 90 + 10}",
    )[i % 5]


def make_rows(n: int, source: str, *, hops: int = 1, start: int = 0) -> list[QARow]:
    """Synthetic questions with unique content words; multi-hop rows get a two-step decomposition."""
    rows = []
    for i in range(start, start + n):
        decomposition: tuple[SubQuestion, ...] = ()
        if hops > 1:
            decomposition = (
                SubQuestion(question=f"Where was item{i} first founded?", golden_answers=(f"Town{i}",)),
                SubQuestion(question=f"Which river crosses town{i} centrally?", golden_answers=(_gold(i + 1),)),
            )
        rows.append(
            QARow(
                question_id=f"{source}/{i}",
                question=f"Which value is recorded for item{i} under category{i % 7}?",
                golden_answers=(_gold(i), f"alias{i}"),
                data_source=source,
                decomposition=decomposition,
                hops=hops,
            )
        )
    return rows


def backend(seed: int = 0, **sim: float) -> SimulatedBackend:
    return SimulatedBackend.from_spec(SPEC, SPEC.models, PoolOptions(seed=seed, simulated=SimulatedConfig(**sim)))


def ask(pool: SimulatedBackend, rows: list[QARow], model: str, query: str | None = None) -> list[CallResult]:
    return pool.call_batch([CallRequest(model=model, query=query or r.question, question=r) for r in rows])


def correct_mask(results: list[CallResult], rows: list[QARow]) -> np.ndarray:
    """Perfect copier: EM of the stated answer."""
    return np.array(
        [exact_match(extract_stated_answer(r.text), row.golden_answers) for r, row in zip(results, rows, strict=True)]
    )


def published_costs() -> dict[tuple[str, str], float]:
    raw = resources.files("recal_gym.pools").joinpath("profiles", "router_r1_pool.json").read_text("utf-8")
    out = {}
    for m in json.loads(raw)["models"]:
        for d, cell in (m["single_model"] or {}).items():
            out[(m["name"], d)] = cell["cost"]
    return out


# ------------------------------------------------------------------------------ calibration (test 1)
@pytest.mark.parametrize(
    ("source", "hops"),
    [
        ("nq", 1),
        ("popqa", 1),
        pytest.param("hotpotqa", 2, marks=pytest.mark.slow),
        pytest.param("2wikimultihopqa", 2, marks=pytest.mark.slow),
    ],
)
def test_perfect_copier_reproduces_published_em_and_cost(source: str, hops: int) -> None:
    rows = make_rows(N_CALIB, source, hops=hops)
    pool = backend(seed=0)  # the default pool seed
    pool.attach_questions(rows)
    costs = published_costs()
    for model in MODELS:
        res = ask(pool, rows, model)
        assert all(r.ok for r in res)
        p = SPEC.model(model).em_by_dataset[source]
        k = correct_mask(res, rows).sum()
        half = Z99 * math.sqrt(N_CALIB * p * (1 - p)) + 0.5
        assert abs(k - N_CALIB * p) <= half, (model, source, k / N_CALIB, p)
        price = SPEC.model(model).price_per_1m_output
        mean_cost = np.mean([r.completion_tokens * price for r in res])
        assert mean_cost == pytest.approx(costs[(model, source)], rel=0.05), (model, source)
        assert not any(t in r.text for r in res for t in TAG_STRINGS)


def test_sub_question_targets_use_the_sub_question_profile() -> None:
    rows = make_rows(N_CALIB, "hotpotqa", hops=2)
    pool = backend(seed=3)
    model = "LLaMA-3.1-70B-Instruct"
    assert pool.probability(model, rows[0], 0) == SPEC.model(model).em_by_dataset["hotpotqa"]
    p = pool.probability(model, rows[0], 1)
    assert p == SPEC.model(model).em_by_dataset["popqa"]
    res = pool.call_batch([CallRequest(model=model, query=r.decomposition[0].question, question=r) for r in rows])
    k = sum(
        exact_match(extract_stated_answer(x.text), r.decomposition[0].golden_answers)
        for x, r in zip(res, rows, strict=True)
    )
    assert abs(k - N_CALIB * p) <= Z99 * math.sqrt(N_CALIB * p * (1 - p)) + 0.5


# ------------------------------------------------------------------------- correlation (test 2)
def test_error_correlation_increases_with_rho_and_nests_at_one() -> None:
    rows = make_rows(1000, "popqa")
    pair = ("Qwen2.5-7B-Instruct", "LLaMA-3.1-70B-Instruct")
    corrs = []
    for rho in (0.0, 0.5):
        pool = backend(seed=11, difficulty_correlation=rho)
        a, b = (correct_mask(ask(pool, rows, m), rows) for m in pair)
        corrs.append(float(np.corrcoef(1 - a, 1 - b)[0, 1]))
    pool = backend(seed=11, difficulty_correlation=1.0)
    masks = {m: correct_mask(ask(pool, rows, m), rows).astype(bool) for m in MODELS}
    corrs.append(float(np.corrcoef(~masks[pair[0]], ~masks[pair[1]])[0, 1]))
    assert abs(corrs[0]) < 0.1
    assert corrs[0] < corrs[1] < corrs[2]
    # ρ = 1: correct sets nest in order of p, so the best single model is the oracle.
    order = sorted(MODELS, key=lambda m: SPEC.model(m).em_by_dataset["popqa"])
    for weak, strong in itertools.pairwise(order):
        assert not np.any(masks[weak] & ~masks[strong]), (weak, strong)
    assert np.array_equal(np.logical_or.reduce(list(masks.values())), masks[order[-1]])


# ---------------------------------------------------------------------- unrelated queries (test 3)
WORDS = st.sampled_from(
    "specific information request regarding offer have no i to on this answer is model cannot "
    "the of item7 category3 value recorded founded town7 river crosses paris 1901 yes 42 march".split()
)


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    query=st.one_of(st.text(max_size=40), st.lists(WORDS, max_size=8).map(" ".join)),
    golds=st.lists(st.lists(WORDS, min_size=1, max_size=3).map(" ".join), min_size=1, max_size=3),
    model=st.sampled_from(MODELS),
)
def test_unrelated_query_never_yields_a_gold(query: str, golds: list[str], model: str) -> None:
    row = QARow(
        question_id="h/1",
        question="Which value is recorded for item7 under category3?",
        golden_answers=tuple(golds),
        data_source="hotpotqa",
        hops=2,
        decomposition=(SubQuestion(question="Where was item7 founded?", golden_answers=("Town7", golds[0])),),
    )
    all_golds = [g for t in question_targets(row) for g in t.golden_answers]
    pool = backend(seed=5)
    res = pool.call_batch([CallRequest(model=model, query=query, question=row)])[0]
    if match_target(query, question_targets(row), 0.5) is None:
        assert res.ok and not contains_answer(res.text, all_golds)
        assert extract_stated_answer(res.text) is None
        assert pool.metrics()["unrelated"] == 1.0
    assert not any(t in res.text for t in TAG_STRINGS)


def test_unrelated_reply_restates_query_without_golds() -> None:
    row = make_rows(1, "hotpotqa", hops=2)[0]
    pool = backend()
    res = pool.call_batch([CallRequest(model=MODELS[0], query="Town0 Entity0 Holdings alias0", question=row)])[0]
    assert res.text.startswith(UNRELATED_LINE.split(";")[0])
    assert not contains_answer(res.text, ["Town0", "Entity0 Holdings", "alias0"])


# ---------------------------------------------------------------------------- determinism (test 4)
def test_same_seed_gives_byte_identical_replies_in_any_order() -> None:
    rows = make_rows(60, "hotpotqa", hops=2) + make_rows(60, "nq", start=500)
    reqs = [
        CallRequest(model=m, query=q, question=r) for r in rows for m in MODELS for q in (r.question, "random chat")
    ]
    reqs += [CallRequest(model=m, query=s.question, question=r) for r in rows for m in MODELS for s in r.decomposition]
    a, b = backend(seed=9), backend(seed=9)
    a.attach_questions(rows)
    b.attach_questions(rows[::-1])  # the bank does not depend on row order
    first = a.call_batch(reqs)
    perm = np.random.default_rng(0).permutation(len(reqs))
    second = b.call_batch([reqs[i] for i in perm])
    for j, i in enumerate(perm):
        assert second[j] == first[i]
    assert a.call_batch(reqs[:50]) == first[:50]  # repeat calls are greedy
    other = backend(seed=10)
    other.attach_questions(rows)
    assert other.call_batch(reqs) != first


def test_paraphrase_of_a_target_behaves_identically() -> None:
    pool = backend(seed=2)
    rows = make_rows(40, "hotpotqa", hops=2)
    for r in rows:
        for t in question_targets(r):
            paraphrase = " ".join(reversed(t.text.rstrip("?").split())).upper()
            for m in MODELS[:3]:
                x, y = (pool.call_batch([CallRequest(model=m, query=q, question=r)])[0] for q in (t.text, paraphrase))
                assert x == y


def test_keyed_generator_is_a_pure_function_of_its_key() -> None:
    a = keyed_generator(1, "q/1", 0, "*", "target").random(3)
    assert np.array_equal(a, keyed_generator(1, "q/1", 0, "*", "target").random(3))
    assert not np.array_equal(a, keyed_generator(1, "q/1", 1, "*", "target").random(3))


# ----------------------------------------------------------------------------- wrong replies
def test_wrong_replies_abstain_or_state_a_same_type_distractor() -> None:
    rows = make_rows(400, "nq")
    pool = backend(seed=4, abstain_rate=0.3)
    pool.attach_questions(rows)
    n_abstain = n_wrong = 0
    for m in MODELS:
        for res, row in zip(ask(pool, rows, m), rows, strict=True):
            stated = extract_stated_answer(res.text)
            if stated is not None and exact_match(stated, row.golden_answers):
                continue
            n_wrong += 1
            if stated is None:
                assert res.text.startswith(ABSTAIN_LINE)
                n_abstain += 1
                assert not contains_answer(res.text, row.golden_answers)
                continue
            assert answer_type(stated) == answer_type(row.golden_answers[0])
            assert not contains_answer(stated, row.golden_answers)
            assert not any(contains_answer(g, [stated]) for g in row.golden_answers)
            assert not contains_answer(res.text, row.golden_answers)
    assert abs(n_abstain / n_wrong - 0.3) < 0.03
    assert pool.metrics()["abstain"] == n_abstain and pool.metrics()["wrong"] == n_wrong


@pytest.mark.parametrize(("shared", "low", "high"), [(1.0, 1.0, 1.0), (0.0, 0.0, 0.5)])
def test_shared_distractor_makes_wrong_models_agree(shared: float, low: float, high: float) -> None:
    rows = make_rows(300, "nq")
    pool = backend(seed=6, abstain_rate=0.0, shared_distractor=shared, difficulty_correlation=1.0)
    pool.attach_questions(rows)
    stated = [[extract_stated_answer(r.text) for r in ask(pool, rows, m)] for m in MODELS]
    agree = []
    for i, row in enumerate(rows):
        wrong = {s for s in (col[i] for col in stated) if s is not None and not exact_match(s, row.golden_answers)}
        if sum(not exact_match(col[i], row.golden_answers) for col in stated) >= 2:
            agree.append(len(wrong) == 1)
    assert low <= float(np.mean(agree)) <= high


def test_distractors_without_a_bank_are_synthetic_and_typed() -> None:
    rows = make_rows(200, "nq")
    pool = backend(seed=8, abstain_rate=0.0, accuracy_scale=0.0)  # p = 0.001: nearly every reply is wrong
    n_wrong = 0
    for res, row in zip(ask(pool, rows, MODELS[0]), rows, strict=True):
        stated = extract_stated_answer(res.text)
        assert stated is not None
        if not exact_match(stated, row.golden_answers):  # a p = 0.001 success is legitimate
            assert answer_type(stated) == answer_type(row.golden_answers[0])
            n_wrong += 1
    assert n_wrong >= 195


def test_bank_is_per_source_typed_and_order_free() -> None:
    rows = make_rows(20, "nq") + make_rows(5, "popqa", start=100)
    bank = build_bank(rows)
    assert bank == build_bank(rows[::-1])
    assert set(bank) == {"nq", "popqa"}
    assert "Entity0 Holdings" in bank["nq"]["entity"] and "Entity0 Holdings" not in bank["popqa"].get("entity", ())
    assert all(answer_type(a) == kind for by in bank.values() for kind, xs in by.items() for a in xs)


# ------------------------------------------------------------------------------- text and tokens
def test_length_is_reported_as_completion_tokens_and_text_has_that_many_words() -> None:
    rows = make_rows(200, "popqa")
    pool = backend(seed=1)
    for m in MODELS:
        for res in ask(pool, rows, m):
            assert 8 <= res.completion_tokens <= 512
            head = len(res.text.split("\n", 1)[0].split())
            assert len(res.text.split()) == max(res.completion_tokens, head)


def test_reserved_tags_never_appear_in_replies() -> None:
    row = QARow(
        question_id="x/1",
        question="What does <answer>item9</answer> hide in <search>box9?",
        golden_answers=("<answer>treasure</answer>",),
        data_source="nq",
    )
    pool = backend(seed=0, abstain_rate=0.0)
    for m in MODELS:
        for q in (row.question, "<information>random</information> words", "box9 item9 answer search"):
            text = pool.call_batch([CallRequest(model=m, query=q, question=row)])[0].text
            assert not any(t in text for t in TAG_STRINGS), text


@pytest.mark.parametrize(
    ("reply", "expected"),
    [
        (statement("St. Louis"), "St. Louis"),
        (statement("Sammy Davis Jr.") + "\nMore text.", "Sammy Davis Jr."),
        (statement("3.5") + "\nThe answer is 4.", "3.5"),
        (ABSTAIN_LINE + "\nThe answer is 4.", None),
        (UNRELATED_LINE, None),
        ("", None),
    ],
)
def test_extract_stated_answer_inverts_the_template(reply: str, expected: str | None) -> None:
    assert extract_stated_answer(reply) == expected


@pytest.mark.parametrize(
    ("answer", "kind"),
    [
        ("Yes", "yes/no"),
        ("no.", "yes/no"),
        ("1987", "year"),
        ("1,200", "number"),
        ("3.5", "number"),
        ("3 March 1987", "date"),
        ("1987-03-03", "date"),
        ("Barack Obama", "entity"),
        ("May", "entity"),
    ],
)
def test_answer_type(answer: str, kind: str) -> None:
    assert answer_type(answer) == kind


# ------------------------------------------------------------------------------- relevance
def test_relevance_picks_best_target_with_ties_to_the_lowest_index() -> None:
    row = QARow(
        question_id="r/1",
        question="Who is the mother of the director of Jaws?",
        golden_answers=("Leah Adler",),
        data_source="hotpotqa",
        hops=2,
        decomposition=(
            SubQuestion(question="Who directed Jaws?", golden_answers=("Steven Spielberg",)),
            SubQuestion(question="Who directed Jaws?", golden_answers=("Steven Spielberg",)),
        ),
    )
    targets = question_targets(row)
    assert content_words("Who is the director of Jaws?") == ("director", "jaws")
    assert similarity(("a", "b"), ("b", "c")) == 0.5 and similarity((), ("a",)) == 0.0
    assert match_target("mother of the director of jaws", targets, 0.5) == 0
    assert match_target("which person directed JAWS", targets, 0.5) == 1  # tie between 1 and 2
    assert match_target("capital of France", targets, 0.5) is None
    assert match_target("director", targets, 0.5) == 0  # F1 = 0.5 meets θ


def test_profile_mapping_and_defaults() -> None:
    pool = backend()
    row = make_rows(1, "triviaqa")[0]
    assert pool.profile_of(row) == "nq"
    assert pool.profile_of(replace(row, data_source="mydata")) == "popqa"
    assert pool.profile_of(replace(row, data_source="mydata", hops=2)) == "hotpotqa"
    assert pool.profile_of(replace(row, data_source="mydata", hops=2), 1) == "popqa"
    assert pool.probability("Mixtral-8x22B-Instruct", replace(row, data_source="musique")) == 0.274
    assert backend(accuracy_scale=10.0).probability("Mixtral-8x22B-Instruct", row) == 0.999


# --------------------------------------------------------------------------- failures and config
def test_failure_rate_injects_call_failures() -> None:
    rows = make_rows(1000, "nq")
    assert all(
        r == CallResult(ok=False, error="injected_failure") for r in ask(backend(failure_rate=1.0), rows, MODELS[0])
    )
    pool = backend(seed=3, failure_rate=0.3)
    res = ask(pool, rows, MODELS[1]) + ask(pool, rows, MODELS[1], query="unrelated words here")
    failed = sum(not r.ok for r in res)
    assert abs(failed - 600) <= Z99 * math.sqrt(2000 * 0.3 * 0.7) + 0.5
    assert all(r.error == "injected_failure" and r.completion_tokens == 0 for r in res if not r.ok)
    m = pool.metrics()
    assert m["failed"] == failed and m["calls"] == 2000
    assert set(m) == {"calls", "correct", "wrong", "abstain", "distractor", "unrelated", "failed"}


def test_models_without_figures_raise_invalid_config() -> None:
    spec = load_pool_spec("router-r1")
    with pytest.raises(InvalidConfig, match=r"Palmyra-Creative-122B.*profile_em"):
        SimulatedBackend.from_spec(spec, spec.models, PoolOptions())
    with pytest.raises(InvalidConfig, match="Palmyra-Creative-122B"):
        build_pool(spec)
    qwen = SPEC.model("Qwen2.5-7B-Instruct")
    partial = replace(qwen, profile_em=tuple(p for p in qwen.profile_em if p[0] != "2wikimultihopqa"))
    with pytest.raises(InvalidConfig, match=r"Qwen2.5-7B-Instruct.*profile_em.*'2wikimultihopqa'"):
        SimulatedBackend.from_spec(SPEC, [partial], PoolOptions())
    figures = {"profile_em": qwen.profile_em, "mean_tokens": qwen.mean_tokens}
    palmyra = replace(spec.model("Palmyra-Creative-122B"), **figures)
    pool = SimulatedBackend.from_spec(spec, [palmyra], PoolOptions())
    assert pool.call_batch([CallRequest(model=palmyra.name, query="q", question=make_rows(1, "nq")[0])])[0].ok


def test_unserved_model_is_a_programmer_error() -> None:
    pool = SimulatedBackend.from_spec(SPEC, SPEC.models[:2], PoolOptions())
    with pytest.raises(UnknownModel, match="Gemma-2-27B-Instruct"):
        pool.call_batch([CallRequest(model="Gemma-2-27B-Instruct", query="x", question=make_rows(1, "nq")[0])])


def test_build_pool_default_is_simulated_and_close_is_a_no_op() -> None:
    pool = build_pool(options=PoolOptions(seed=1))
    row = make_rows(1, "nq")[0]
    res = pool.call(CallRequest(model=MODELS[0], query=row.question, question=row))
    assert res.ok and normalize_answer(res.text)
    pool.close()
    pool.close()


# --------------------------------------------------------------------------- per-call reply noise
def _noisy_correct(pool: SimulatedBackend, rows: list[QARow], model: str, call_seed: int, turn: int = 1) -> np.ndarray:
    reqs = [CallRequest(model=model, query=r.question, question=r, call_seed=call_seed, turn=turn) for r in rows]
    return correct_mask(pool.call_batch(reqs), rows).astype(bool)


@pytest.mark.parametrize("eta", [0.5, 1.0])
def test_reply_noise_keeps_every_marginal_accuracy(eta: float) -> None:
    rows = make_rows(N_CALIB, "popqa")
    pool = backend(seed=1, reply_noise=eta)
    pool.attach_questions(rows)
    for model in MODELS:
        reqs = [CallRequest(model=model, query=r.question, question=r, call_seed=i, turn=1) for i, r in enumerate(rows)]
        k = correct_mask(pool.call_batch(reqs), rows).sum()
        p = SPEC.model(model).em_by_dataset["popqa"]
        assert abs(k - N_CALIB * p) <= Z99 * math.sqrt(N_CALIB * p * (1 - p)) + 0.5, (model, eta, k / N_CALIB, p)


@pytest.mark.parametrize("eta", [0.3, 1.0])
def test_reply_noise_disagreement_between_call_seeds_matches_closed_form(eta: float) -> None:
    # o = latent X w.p. 1 − η, else a fresh B ~ Bernoulli(p): P(o_1 ≠ o_2) = 2p(1 − p)·η(2 − η).
    rows = make_rows(N_CALIB, "popqa")
    pool = backend(seed=2, reply_noise=eta)
    pool.attach_questions(rows)
    model = "LLaMA-3.1-70B-Instruct"
    p = SPEC.model(model).em_by_dataset["popqa"]
    a, b = _noisy_correct(pool, rows, model, 0), _noisy_correct(pool, rows, model, 1)
    q = 2 * p * (1 - p) * eta * (2 - eta)
    assert abs((a != b).sum() - N_CALIB * q) <= Z99 * math.sqrt(N_CALIB * q * (1 - q)) + 0.5
    turn2 = _noisy_correct(pool, rows, model, 0, turn=2)
    assert abs((a != turn2).sum() - N_CALIB * q) <= Z99 * math.sqrt(N_CALIB * q * (1 - q)) + 0.5
    latent = _noisy_correct(backend(seed=2), rows, model, 0)
    if eta == 1.0:  # the latent outcome is ignored entirely: independent of it
        assert abs(float(np.corrcoef(a, latent)[0, 1])) < 0.1


def test_reply_noise_is_keyed_and_order_free() -> None:
    rows = make_rows(80, "nq")
    reqs = [
        CallRequest(model=m, query=r.question, question=r, call_seed=s, turn=t)
        for r in rows
        for m in MODELS[:3]
        for s in (0, 5)
        for t in (1, 2)
    ]
    a, b = backend(seed=4, reply_noise=0.7), backend(seed=4, reply_noise=0.7)
    a.attach_questions(rows)
    b.attach_questions(rows)
    first = a.call_batch(reqs)
    perm = np.random.default_rng(1).permutation(len(reqs))
    second = b.call_batch([reqs[i] for i in perm])
    assert all(second[j] == first[i] for j, i in enumerate(perm))
    assert a.call_batch(reqs) == first  # the same (call_seed, turn) repeats its outcome


def test_zero_reply_noise_ignores_call_seed_and_turn_byte_for_byte() -> None:
    rows = make_rows(60, "hotpotqa", hops=2)
    plain = [CallRequest(model=m, query=r.question, question=r) for r in rows for m in MODELS]
    seeded = [CallRequest(model=q.model, query=q.query, question=q.question, call_seed=99, turn=3) for q in plain]
    pool = backend(seed=6)
    pool.attach_questions(rows)
    assert pool.call_batch(seeded) == pool.call_batch(plain)
    noisy = backend(seed=6, reply_noise=1.0)
    noisy.attach_questions(rows)
    assert noisy.call_batch(seeded) != pool.call_batch(plain)


@pytest.mark.parametrize("bad", [-0.1, 1.5, float("nan"), True])
def test_reply_noise_is_validated(bad: float) -> None:
    with pytest.raises(InvalidConfig, match="reply_noise"):
        SimulatedConfig(reply_noise=bad)
