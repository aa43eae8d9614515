"""Fuzzing user inputs (issue #12): pool options, pool files and data files.

Every input either loads (and then works) or raises the documented error, whose message names the
file and the row, line or field; nothing else escapes.
"""

from __future__ import annotations

import json
import math
import re
import tempfile
from pathlib import Path

from hypothesis import given
from hypothesis import strategies as st

from recal_gym.data import load_jsonl
from recal_gym.errors import InvalidConfig, InvalidData
from recal_gym.pools import PoolSpec, build_pool, load_pool_spec
from recal_gym.pools.openai import failure_bound_s
from recal_gym.pools.options import PoolOptions, SimulatedConfig
from recal_gym.types import CallRequest, CallResult, QARow
from tests.fuzz.conftest import FUZZ

ANY_CHAR = st.characters(exclude_categories=())
WILD = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(),
    st.sampled_from([10**401, -(2**64), 2**63]),
    st.floats(allow_nan=True, allow_infinity=True),
    st.text(ANY_CHAR, max_size=12),
    st.lists(st.integers() | st.text(max_size=3), max_size=3),
    st.dictionaries(st.text(max_size=4), st.integers() | st.floats(), max_size=3),
)
"""Values of every JSON-ish type, including the ones no field accepts."""
ROW = QARow(question_id="nq/0", question="Who wrote Hamlet?", golden_answers=("Shakespeare",), data_source="nq")


# ---------------------------------------------------------------------------- pool options

OPTION_FIELDS = ("seed", "timeout_s", "max_retries", "backoff_s", "max_concurrency", "max_response_bytes")
SIM_FIELDS = ("accuracy_scale", "difficulty_correlation", "abstain_rate", "length_sigma", "failure_rate")


@FUZZ
@given(
    opts=st.dictionaries(st.sampled_from(OPTION_FIELDS), WILD | st.integers(0, 30) | st.floats(0, 5), max_size=4),
    sim=st.dictionaries(st.sampled_from(SIM_FIELDS), WILD | st.floats(0, 1), max_size=3),
    unrecorded=st.sampled_from(["fail", "nearest", "closest", 3]),
)
def test_pool_options_construct_and_work_or_name_the_field(opts: dict, sim: dict, unrecorded: object) -> None:
    try:
        options = PoolOptions(**opts, replay_unrecorded=unrecorded, simulated=SimulatedConfig(**sim))  # type: ignore[arg-type]
    except InvalidConfig as err:
        named = re.match(r"(PoolOptions|SimulatedConfig)\.(\w+) ", str(err))
        assert named is not None and named.group(2) in (*OPTION_FIELDS, *SIM_FIELDS, "replay_unrecorded"), str(err)
        return
    assert math.isfinite(failure_bound_s(options))
    pool = build_pool(None, options)
    pool.attach_questions([ROW])
    [res] = pool.call_batch([CallRequest(model=pool.spec.names[0], query="who wrote hamlet", question=ROW)])
    assert isinstance(res, CallResult) and (res.ok or res.error == "injected_failure")


# ---------------------------------------------------------------------------- pool files

ENTRY = {"name": "Tiny", "descriptor": "A tiny model.", "price_per_1m_output": 0.5, "backend": "simulated"}
MODEL_FIELDS = (
    "name",
    "descriptor",
    "price_per_1m_output",
    "price_per_1m_input",
    "backend",
    "model_id",
    "base_url",
    "temperature",
    "top_p",
    "seed",
    "max_tokens",
    "aliases",
    "listed",
    "profile_em",
    "mean_tokens",
    "replay_path",
    "colour",
)
POOL_FIELDS = ("name", "models", "defaults", "alias_rules", "dataset_profile_map", "name_matching", "modles")


def _field_named(message: str) -> bool:
    return bool(
        re.search(r"field '\w+'|field\(s\) \[|line \d+|not UTF-8|must be a mapping|alias rule|models\[\d+\]", message)
    )


@FUZZ
@given(
    entry=st.dictionaries(st.sampled_from(MODEL_FIELDS), WILD, max_size=3),
    top=st.dictionaries(st.sampled_from(POOL_FIELDS), WILD, max_size=2),
    suffix=st.sampled_from([".json", ".yaml"]),
)
def test_pool_files_load_or_name_file_and_field(entry: dict, top: dict, suffix: str) -> None:
    data = {"name": "fuzz", "models": [{**ENTRY, **entry}], **top}
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / f"pool{suffix}"
        path.write_text(json.dumps(data), encoding="utf-8")  # JSON is YAML too; surrogates stay escaped
        try:
            spec = load_pool_spec(path)
        except InvalidConfig as err:
            assert str(err).startswith(f"pool file {path}: ") and _field_named(str(err)), str(err)
            return
    assert isinstance(spec, PoolSpec) and PoolSpec.from_dict(spec.to_dict()) == spec
    for m in spec.models:
        assert isinstance(m.max_tokens, int) and isinstance(m.temperature, float) and isinstance(m.listed, bool)


@FUZZ
@given(content=st.binary(max_size=200), suffix=st.sampled_from([".json", ".yaml", ".yml"]))
def test_any_bytes_as_a_pool_file_name_the_file(content: bytes, suffix: str) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / f"p{suffix}"
        path.write_bytes(content)
        try:
            load_pool_spec(path)
        except InvalidConfig as err:
            assert str(err).startswith(f"pool file {path}: "), str(err)


# ---------------------------------------------------------------------------- data files

ROW_FIELDS = ("question", "golden_answers", "id", "question_id", "data_source", "decomposition", "hops", "extra")
GOOD_ROW = {"question": "Who wrote Emma?", "golden_answers": ["Jane Austen"]}
LINES = st.one_of(
    st.dictionaries(st.sampled_from(ROW_FIELDS), WILD, max_size=3).map(lambda d: json.dumps({**GOOD_ROW, **d})),
    st.just(json.dumps(GOOD_ROW)),
    st.text(ANY_CHAR, max_size=30).map(lambda t: json.dumps(t)),
    st.text(st.characters(exclude_categories=("Cs",)), max_size=30),
    st.sampled_from(["", "   ", "[" * 5000, "{", '{"question": "a\u2028b?", "golden_answers": ["x\x85y"]}']),
)


@FUZZ
@given(lines=st.lists(LINES, max_size=6), tail=st.binary(max_size=8))
def test_jsonl_files_load_or_name_file_and_row(lines: list[str], tail: bytes) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "data.jsonl"
        content = "\n".join(lines).encode("utf-8") + b"\n" + tail
        path.write_bytes(content)
        try:
            rows = load_jsonl(path)
        except InvalidData as err:
            message = str(err)
            assert message.startswith(str(path)), message
            found = re.match(re.escape(str(path)) + r"(, row (\d+)|: no rows|: duplicate question id)", message)
            assert found is not None, message
            if found.group(2) is not None:
                assert 1 <= int(found.group(2)) <= content.count(b"\n") + 1
            return
    assert rows and all(isinstance(r, QARow) for r in rows)
    for r in rows:
        r.question.encode("utf-8")
