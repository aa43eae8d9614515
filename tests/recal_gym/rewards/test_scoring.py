"""Tests of recal_gym.rewards.scoring: the terminal reward and offline re-scoring (docs/rewards.md §1-§13)."""

from __future__ import annotations

import copy
import math
from collections.abc import Sequence

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from recal_gym.errors import InvalidConfig, InvalidData
from recal_gym.protocol import cut_action, parse_action, scan_blocks
from recal_gym.resolver import resolve_model
from recal_gym.rewards import BUILTIN_COMPONENTS as COMPONENTS
from recal_gym.rewards import RewardSpec, fold_reward, make_spec, recal_spec, router_r1_spec
from recal_gym.rewards.scoring import EpisodeScore, EpisodeScorer, rescore, score_episode
from recal_gym.rewards.state import RewardState
from recal_gym.types import AliasRule, CallRecord, EpisodeRecord, NameTable

_NAMES = (
    "Qwen2.5-7B-Instruct",
    "LLaMA-3.1-8B-Instruct",
    "LLaMA-3.1-70B-Instruct",
    "Mistral-7B-Instruct",
    "Mixtral-8x22B-Instruct",
    "Gemma-2-27B-Instruct",
    "Palmyra-Creative-122B",
)
PRICES = dict(zip(_NAMES, (0.3, 0.18, 0.88, 0.2, 1.2, 0.8, 1.8), strict=True))
TABLE = NameTable(
    names=_NAMES,
    listed=_NAMES[:6],
    alias_rules=(
        AliasRule(keywords=("qwen",), model="Qwen2.5-7B-Instruct"),
        AliasRule(keywords=("palmyra",), model="Palmyra-Creative-122B"),
        AliasRule(keywords=("llama", "70b"), model="LLaMA-3.1-70B-Instruct"),
        AliasRule(keywords=("llama", "8b"), model="LLaMA-3.1-8B-Instruct"),
        AliasRule(keywords=("llama",), model=None),
        AliasRule(keywords=("mistral",), model="Mistral-7B-Instruct"),
        AliasRule(keywords=("mixtral",), model="Mixtral-8x22B-Instruct"),
        AliasRule(keywords=("gemma",), model="Gemma-2-27B-Instruct"),
    ),
    name_matching="router-r1",
)

Turn = tuple[str, str, int]  # (policy text, reply text or "" / "FAIL", completion tokens)


def build_record(turns: Sequence[Turn], gold: Sequence[str] = ("1950",), max_routed: int = 4) -> EpisodeRecord:
    """Assemble a record the way the environment does (docs/protocol.md §5.5), from scripted turns."""
    transcript, spans, calls = "", [], []
    termination = "turn_limit"
    for i, (text, reply, tokens) in enumerate(turns):
        kept, _ = cut_action(text)
        transcript += kept
        action = parse_action(kept)
        if action.kind == "answer":
            termination = "answer"
            break
        if action.kind != "route":
            continue
        model = resolve_model(action.name, TABLE)
        if i >= max_routed:
            outcome, model_name, n_tokens = "not_executed_final_turn", model or "", 0
        elif model is None:
            outcome, model_name, n_tokens = "unknown_model", "", 0
            transcript += "\n\n<information>None</information>\n\n"
        elif reply == "FAIL":
            outcome, model_name, n_tokens = "call_failed", model, 0
            transcript += "\n\n<information>None</information>\n\n"
        else:
            outcome, model_name, n_tokens = "executed", model, tokens
            transcript += "\n\n<information>"
            spans.append((len(transcript), len(transcript) + len(reply)))
            transcript += reply + "</information>\n\n"
        price = PRICES.get(model_name, 0.0)
        calls.append(
            CallRecord(
                turn=i + 1,
                requested_model=action.name,
                model=model_name,
                outcome=outcome,  # type: ignore[arg-type]
                completion_tokens=n_tokens,
                price_per_1m=price,
                cost=n_tokens * price,
            )
        )
    raw_cost = 0.0
    for c in calls:
        raw_cost += c.cost
    return EpisodeRecord(
        question_id="nq/7",
        data_source="nq",
        question="When was X founded?",
        golden_answers=tuple(gold),
        transcript=transcript,
        information_spans=tuple(spans),
        calls=tuple(calls),
        raw_cost=raw_cost,
        termination=termination,
        pool=TABLE,
    )


def route(name: str, query: str = "When was X founded?") -> str:
    return f"<think>I should ask {name.split('-')[0]}.</think>\n<search> {name}: {query} </search> tail"


def answer(text: str) -> str:
    return f"<think>Done.</think>\n<answer> {text} </answer>"


GOOD = build_record([(route("LLaMA-3.1-8B-Instruct"), "X was founded in 1950.", 40), (answer("1950"), "", 0)])
WRONG = build_record([(route("Qwen2.5-7B-Instruct"), "No idea.", 12), (answer("1949"), "", 0)])
BAD_FORMAT = build_record(
    [(route("GPT-4"), "", 0), (answer("1950"), "", 0)]  # unknown model: F9 fails
)
DIRECT = build_record([("<think>I know this.</think><answer>1950</answer>", "", 0)])
NO_ANSWER = build_record([("<think>hmm</think>", "", 0)] * 5)
FINAL_ROUTE = build_record([("<think>hmm</think>", "", 0)] * 4 + [(route("Gemma-2-27B-Instruct"), "x", 9)])
EXPENSIVE = build_record(
    [
        (route("Mixtral-8x22B-Instruct"), "Founded in 1950 by Y.", 400),
        (route("LLaMA-3.1-70B-Instruct", "Who founded X?"), "Y did.", 300),
        (answer("1950"), "", 0),
    ]
)
RECORDS = [GOOD, WRONG, BAD_FORMAT, DIRECT, NO_ANSWER, FINAL_ROUTE, EXPENSIVE]


def _check_fold(score: EpisodeScore) -> None:
    assert score.reward == fold_reward(score.components, score.weights)
    for k in COMPONENTS:
        assert score.components[k] == score.gates[k] * score.components_raw[k] + 0.0


# --- oracles ---------------------------------------------------------------------------------------------


def test_good_episode_oracle() -> None:
    s = score_episode(GOOD, recal_spec())
    assert s.format_ok and s.format_error == "" and s.answer == "1950" and s.has_answer
    assert s.em == 1.0 and s.f1 == 1.0
    assert s.raw_cost == 40 * 0.18
    assert s.components_raw == {
        "format": 0.0, "answer": 1.0, "info": 1.0, "route": 1.0, "balance": 1.0, "cost": 0.5,
        "latency": 0.5,  # the test record's calls carry no latency (weight 0: neutral 0.5)
        "calls": 0.75,  # one routed call of cap 4
    }  # fmt: skip
    assert s.gates == dict.fromkeys(COMPONENTS, 1.0)
    assert s.reward == ((((0.0 + 0.0) + 1.0) + 0.1) + 0.1) + 0.1 + 0.1 * 0.5
    assert s.weights == recal_spec().weights_dict() and s.spec == recal_spec() and not s.spans_inferred
    for v in (s.reward, *s.components.values(), *s.components_raw.values(), *s.gates.values(), s.em, s.raw_cost):
        assert type(v) is float
    _check_fold(s)


@pytest.mark.parametrize("alpha", [0.0, 0.6, 0.9])
def test_router_r1_outcome_table_on_transcripts(alpha: float) -> None:
    spec = router_r1_spec(alpha)
    state = RewardState.default(spec, TABLE.listed)
    state.cost.load_state_dict({"window": [0.0, 1.0, 2.0, 3.0, 10.0]})
    good = score_episode(GOOD, spec, state)
    c_cost = good.components_raw["cost"]
    assert 0.0 < c_cost < 1.0
    assert good.reward == (1.0 + 0) * (1 - alpha) + c_cost * alpha  # Router-R1's arithmetic
    assert score_episode(WRONG, spec, state).reward == 0.0
    assert score_episode(BAD_FORMAT, spec, state).reward == -1.0
    assert score_episode(NO_ANSWER, spec, state).reward == -1.0
    assert score_episode(FINAL_ROUTE, spec, state).format_error == "block_counts"


def test_router_r1_f1_partial_credit() -> None:
    rec = build_record([(answer("in 1950 AD"), "", 0)])
    s = score_episode(rec, router_r1_spec(0.0, "f1"))
    p, r = 1 / 3, 1.0
    assert s.f1 == (2 * p * r) / (p + r) and s.em == 0.0
    assert s.reward == s.f1
    assert s.gates["cost"] == 1.0  # answer > 0 opens the auxiliaries


def test_recal_outcome_table_on_transcripts() -> None:
    spec = recal_spec()
    bad = score_episode(BAD_FORMAT, spec)
    assert bad.reward == -1.0 and bad.em == 1.0  # ungated EM is still reported
    assert bad.components == {"format": -1.0, **dict.fromkeys(COMPONENTS[1:], 0.0)}
    wrong = score_episode(WRONG, spec)
    assert wrong.reward == 0.0 and wrong.components_raw["route"] == 1.0 and wrong.components["route"] == 0.0
    for rec in (GOOD, DIRECT, EXPENSIVE):
        r = score_episode(rec, spec).reward
        assert 1.0 <= r <= 1.4


def test_recal_f1_tau() -> None:
    rec = build_record([(route("Qwen2.5-7B-Instruct"), "1950", 5), (answer("in 1950 AD"), "", 0)])
    s = score_episode(rec, recal_spec(answer_metric="f1"))
    assert s.components["answer"] == 0.5 and s.gates["info"] == 1.0  # tau = 0.5: F1 0.5 passes
    s = score_episode(rec, recal_spec(answer_metric="f1", tau=0.6))
    assert s.reward == 0.5 and s.gates["info"] == 0.0


def test_format_failure_ids_and_route_component() -> None:
    rec = build_record(
        [
            (route("qwen"), "ok", 3),
            (route("GPT-4"), "", 0),
            (route("gemma", "a: b"), "ok", 3),
            (route("mistral"), "1950", 3),
            (answer("1950"), "", 0),
        ]
    )
    s = score_episode(rec, recal_spec())
    assert s.format_error == "bad_route_syntax" and not s.format_ok
    assert s.components_raw["route"] == 0.5
    assert score_episode(DIRECT, recal_spec()).components_raw["route"] == 1.0
    assert score_episode(DIRECT, recal_spec(route_empty_value=0.0)).components_raw["route"] == 0.0


def test_info_reads_only_executed_spans() -> None:
    # A None splice (failed call) never counts, even for the gold answer "None".
    rec = build_record([(route("qwen"), "FAIL", 0), (answer("None"), "", 0)], gold=("None",))
    assert score_episode(rec, recal_spec()).components_raw["info"] == 0.0
    # A policy-written information block is not in the record's spans.
    forged = build_record([("<think>a</think><information>1950</information><answer>1950</answer>", "", 0)])
    assert score_episode(forged, recal_spec()).components_raw["info"] == 0.0
    # Token vs substring matching.
    rec = build_record([(route("qwen"), "It happened in 19501.", 5), (answer("x"), "", 0)])
    assert score_episode(rec, recal_spec()).components_raw["info"] == 0.0
    assert score_episode(rec, recal_spec(info_match="substring")).components_raw["info"] == 1.0


def test_spans_infer_flags_the_score() -> None:
    foreign = EpisodeRecord(**{**_fields(GOOD), "information_spans": None, "calls": None})
    with pytest.raises(InvalidData, match=r"no 'information_spans'.*spans='infer'"):
        score_episode(foreign, recal_spec())
    s = score_episode(foreign, recal_spec(), spans="infer")
    assert s.spans_inferred and s.components_raw["info"] == 1.0
    assert s.components_raw["balance"] == 1.0 and s.raw_cost == GOOD.raw_cost
    assert score_episode(GOOD, recal_spec(), spans="infer").spans_inferred
    forged = build_record([("<think>a</think><information>1950</information><answer>1950</answer>", "", 0)])
    assert score_episode(forged, recal_spec(), spans="infer").components_raw["info"] == 1.0
    with pytest.raises(InvalidConfig, match="spans='guess'"):
        score_episode(GOOD, recal_spec(), spans="guess")  # type: ignore[arg-type]


def _fields(rec: EpisodeRecord) -> dict:
    return {name: getattr(rec, name) for name in EpisodeRecord.__dataclass_fields__}


def test_missing_cost_data() -> None:
    no_cost = EpisodeRecord(**{**_fields(GOOD), "calls": None, "raw_cost": None})
    with pytest.raises(InvalidData, match=r"neither 'calls' nor 'raw_cost'.*cost weight"):
        score_episode(no_cost, recal_spec())
    with pytest.raises(ValueError, match="raw_cost"):
        score_episode(no_cost, router_r1_spec(0.5))
    s = score_episode(no_cost, router_r1_spec())  # cost weight 0: scored, cost unknown
    assert math.isnan(s.raw_cost) and s.components_raw["cost"] == 0.5 and s.reward == 1.0
    assert s.state_after.cost.state_dict() == {"window": []}
    given_cost = EpisodeRecord(**{**_fields(GOOD), "calls": None, "raw_cost": 16.0})
    s = score_episode(given_cost, recal_spec())
    assert s.raw_cost == 16.0 and s.state_after.cost.state_dict() == {"window": [4.0]}


def test_listed_mismatch_and_bad_spans() -> None:
    state = RewardState.default(recal_spec(), ("A", "B"))
    with pytest.raises(InvalidData, match="listed models"):
        score_episode(GOOD, recal_spec(), state)
    bad = EpisodeRecord(**{**_fields(GOOD), "information_spans": ((5, 10_000),)})
    with pytest.raises(InvalidData, match="outside the transcript"):
        score_episode(bad, recal_spec())


def test_balance_counts_listed_routes_only() -> None:
    rec = build_record(
        [
            (route("Palmyra"), "x", 5),  # unlisted: ignored
            (route("qwen"), "FAIL", 0),  # call_failed: counted
            (route("GPT-4"), "", 0),  # unknown: ignored
            (answer("1950"), "", 0),
        ]
    )
    s = score_episode(rec, recal_spec())
    f = s.state_after.balance.f
    assert f[0] == 0.99 * (1 / 6) + 0.01 and np.all(f[1:] == 0.99 * (1 / 6))


# --- purity, threading, rescore --------------------------------------------------------------------------


def test_score_episode_mutates_nothing() -> None:
    spec = recal_spec()
    state = RewardState.default(spec, TABLE.listed)
    state.balance.update(np.array([1, 0, 0, 0, 0, 0]))
    state.cost.update(4.0)
    before_state = copy.deepcopy(state.state_dict())
    before_rec = copy.deepcopy(GOOD)
    s = score_episode(GOOD, spec, state)
    assert state.state_dict() == before_state and GOOD == before_rec and spec == recal_spec()
    assert s.state_after is not state and s.state_after != state


def test_frozen_state_scores_without_updating() -> None:
    state = RewardState.default(recal_spec(), TABLE.listed).copy(frozen=True)
    s = score_episode(GOOD, recal_spec(), state)
    assert s.state_after == state


def _threaded(records: Sequence[EpisodeRecord], spec: RewardSpec) -> tuple[list[EpisodeScore], RewardState]:
    state = RewardState.default(spec, TABLE.listed)
    out = []
    for rec in records:
        s = score_episode(rec, spec, state)
        out.append(s)
        state = s.state_after
    return out, state


def _same(a: EpisodeScore, b: EpisodeScore) -> None:
    assert a.reward == b.reward and a.components == b.components and a.components_raw == b.components_raw
    assert a.gates == b.gates and a.spec_hash == b.spec_hash


@pytest.mark.parametrize("spec", [recal_spec(), router_r1_spec(0.6), recal_spec(answer_metric="f1")])
def test_rescore_equals_sequential_threading(spec: RewardSpec) -> None:
    records = RECORDS * 3
    scores, final = rescore(records, spec)
    assert all(s.state_after is None for s in scores)  # rescore threads one state; the final state is returned
    expected, state = _threaded(records, spec)
    for a, b in zip(scores, expected, strict=True):
        _same(a, b)
    assert final == state
    costs = {s.components_raw["cost"] for s in scores}
    assert len(costs) > 2  # the normaliser really moved


def test_rescore_with_batches() -> None:
    spec = make_spec("recal", update_mode="batch")
    records = RECORDS * 2
    batches = [[3, 0, 1], [2, 4, 5, 6], list(range(7, 14))]
    scores, final = rescore(records, spec, batches=batches)
    state = RewardState.default(spec, TABLE.listed)
    for batch in batches:
        for i in batch:  # every episode of a batch is scored against the state at the batch start
            s = score_episode(records[i], spec, state)
            _same(scores[i], s)
            assert s.state_after == state
        state = state.copy()
        state.update_batch([records[i] for i in batch])
    assert final == state
    assert final.cost.state_dict()["window"][:3] == [math.sqrt(records[i].raw_cost) for i in (3, 0, 1)]
    # Order inside a batch does not change the scores.
    shuffled, final2 = rescore(records, spec, batches=[[1, 0, 3], [6, 5, 4, 2], list(range(13, 6, -1))])
    assert [s.reward for s in shuffled] == [s.reward for s in scores]
    assert final2.balance.f.tolist() == final.balance.f.tolist()


@pytest.mark.parametrize("batches", [[[0, 1]], [[0, 1, 2], [2]], [[0, 1, 5]]])
def test_rescore_rejects_bad_batches(batches: list[list[int]]) -> None:
    with pytest.raises(InvalidConfig, match="partition"):
        rescore(RECORDS[:3], recal_spec(), batches=batches)


def test_rescore_does_not_mutate_the_initial_state() -> None:
    state = RewardState.default(recal_spec(), TABLE.listed)
    rescore(RECORDS, recal_spec(), state)
    assert state == RewardState.default(recal_spec(), TABLE.listed)
    scores, final = rescore([], recal_spec(), state)
    assert scores == [] and final == state


# --- properties ------------------------------------------------------------------------------------------

_reply = st.sampled_from(["X was founded in 1950.", "No idea.", "1950", "FAIL", "", "</information><answer>1950"])
_turn = st.one_of(
    st.tuples(
        st.builds(route, st.sampled_from(["qwen", "LLaMA-3.1-8B-Instruct", "Gemma", "GPT-4", "Palmyra", "a: b"])),
        _reply,
        st.integers(0, 500),
    ),
    st.tuples(st.builds(answer, st.sampled_from(["1950", "1949", "", "in 1950", "yes"])), st.just(""), st.just(0)),
    st.tuples(
        st.sampled_from(["<think>hmm</think>", "junk", "<think></think>", "<answer>1950</answer> x"]),
        _reply,
        st.just(0),
    ),
)
_specs = st.sampled_from(
    [recal_spec(), router_r1_spec(), router_r1_spec(0.7, "f1"), recal_spec(answer_metric="f1", update_mode="batch")]
)


@settings(max_examples=60, deadline=None)
@given(st.lists(st.lists(_turn, min_size=1, max_size=5), min_size=1, max_size=4), _specs)
def test_ranges_fold_and_purity(episodes: list[list[Turn]], spec: RewardSpec) -> None:
    state = RewardState.default(spec, TABLE.listed)
    for turns in episodes:
        rec = build_record(turns)
        before = state.state_dict()
        s = score_episode(rec, spec, state)
        assert state.state_dict() == before
        _check_fold(s)
        raw = s.components_raw
        assert raw["format"] in (spec.format_penalty, 0.0) and s.format_ok == (raw["format"] == 0.0)
        assert raw["info"] in (0.0, 1.0)
        for k in ("answer", "route", "balance", "cost"):
            assert 0.0 <= raw[k] <= 1.0
        assert s.em in (0.0, 1.0) and 0.0 <= s.f1 <= 1.0
        assert all(g in (0.0, 1.0) for g in s.gates.values())
        assert all(math.isfinite(v) for v in (*s.components.values(), s.reward, s.raw_cost))
        if spec.name == "recal" and spec.answer_metric == "em":
            assert s.reward == -1.0 or 0.0 <= s.reward <= 1.4
        if spec.name == "router-r1" and spec.answer_metric == "em":
            assert s.reward in (-1.0, 0.0, 1.0)
        state = s.state_after


def test_view_shares_one_pair_scan_and_builds_blocks_only_on_request() -> None:
    rec = EXPENSIVE
    ep = EpisodeScorer(make_spec("recal")).view(rec)
    assert ep.format.ok and ep.answer == "1950"
    assert ep._blocks is None  # no built-in reads the offsets
    assert ep.pairs == [(b.tag, b.content) for b in scan_blocks(rec.transcript)]
    assert ep.blocks == scan_blocks(rec.transcript)
