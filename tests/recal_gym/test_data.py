"""Tests for recal_gym.data: embedded sets, loaders, preprocessing, QuestionSet and samplers."""

from __future__ import annotations

import hashlib
import importlib.util
import json
import subprocess
import sys
from importlib import resources
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from recal_gym.data import (
    QuestionSet,
    embedded_manifest,
    embedded_names,
    group_by_source,
    load_embedded,
    load_hf_dataset,
    load_jsonl,
    load_questions,
    load_router_r1_parquet,
    preprocess_question,
    sample_mixture,
    sample_per_dataset,
    train_test_split,
)
from recal_gym.errors import InvalidConfig, InvalidData, UnknownName
from recal_gym.types import QARow

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures" / "data"
REPO = Path(__file__).resolve().parents[2]
EMBEDDED = resources.files("recal_gym.data").joinpath("embedded")
TAG_RE = r"<\s*/?\s*(think|search|information|answer)\s*>"


def _row(qid: str, source: str) -> QARow:
    return QARow(question_id=qid, question=f"{qid}?", golden_answers=("a",), data_source=source)


def _pool(sizes: dict[str, int]) -> list[QARow]:
    return [_row(f"{s}/{i}", s) for s, n in sizes.items() for i in range(n)]


# ------------------------------------------------------------------ preprocessing


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ("  who? ", "who?"),
        ("who wrote it", "who wrote it?"),
        ("\twhen\n", "when?"),
        ("is it <answer>x</answer>", "is it &lt;answer&gt;x&lt;/answer&gt;?"),
        ("< /ANSWER > ok?", "&lt; /ANSWER &gt; ok?"),
        ("<Think>", "&lt;Think&gt;?"),
        ("a <b> c", "a <b> c?"),
    ],
)
def test_preprocess_question_cases(raw: str, expected: str) -> None:
    assert preprocess_question(raw) == expected


@pytest.mark.parametrize("raw", ["", "   ", "\n\t"])
def test_preprocess_question_rejects_empty(raw: str) -> None:
    with pytest.raises(InvalidData, match="empty after stripping"):
        preprocess_question(raw)


@settings(max_examples=200, deadline=None)
@given(st.text(min_size=1).filter(lambda s: s.strip()))
def test_preprocess_question_properties(raw: str) -> None:
    import re

    out = preprocess_question(raw)
    assert out.endswith("?")
    assert out == out.strip()
    assert re.search(TAG_RE, out, re.IGNORECASE) is None
    assert preprocess_question(out) == out  # idempotent


# ------------------------------------------------------------------ embedded data


def test_embedded_datasets_load_and_are_valid() -> None:
    names = embedded_names()
    assert len(names) >= 2
    assert set(names) == {"fanoutqa_single", "fanoutqa_multi"}
    rows = load_embedded()
    assert len({r.question_id for r in rows}) == len(rows)
    assert {r.data_source for r in rows} == set(names)
    manifest = embedded_manifest()
    for name in names:
        subset = load_embedded(name)
        assert len(subset) == manifest["datasets"][name]["rows"] > 0
        for row in subset:
            assert row.question_id.startswith(f"{name}/")
            assert row.question.endswith("?")
            assert all(isinstance(a, str) and a.strip() for a in row.golden_answers)
            assert all(sq.golden_answers for sq in row.decomposition)
    assert sum(manifest["datasets"][n]["rows"] for n in names) == len(rows)


def test_embedded_difficulty_structure() -> None:
    single = load_embedded("fanoutqa_single")
    multi = load_embedded("fanoutqa_multi")
    assert len(single) >= 1000
    assert len(multi) >= 30
    assert all(r.hops == 1 for r in single)
    assert all(r.hops >= 2 and len(r.decomposition) >= 2 for r in multi)
    assert len({r.question for r in single}) == len(single)  # identical questions were merged


def test_embedded_manifest_sha256_and_profiles() -> None:
    manifest = embedded_manifest()
    for entry in manifest["datasets"].values():
        data = EMBEDDED.joinpath(entry["file"]).read_bytes()
        assert hashlib.sha256(data).hexdigest() == entry["sha256"]
        assert data.count(b"\n") == entry["rows"]
    assert manifest["profiles"] == {
        "fanoutqa_single": {"profile": "single_hop_default"},
        "fanoutqa_multi": {"profile": "multi_hop_default"},
    }
    assert manifest["source"]["package"] == "fanoutqa"
    assert manifest["licence"] == "CC BY-SA 4.0"
    licence = EMBEDDED.joinpath("LICENSE-DATA").read_text(encoding="utf-8")
    assert "Attribution-ShareAlike 4.0 International" in licence
    attribution = EMBEDDED.joinpath("ATTRIBUTION.md").read_text(encoding="utf-8")
    assert "FanOutQA" in attribution and "CC BY-SA 4.0" in attribution and "What was changed" in attribution


def test_load_embedded_unknown_name_names_close_matches() -> None:
    with pytest.raises(UnknownName, match="fanoutqa_single"):
        load_embedded("fanoutqa_singel")
    with pytest.raises(KeyError):
        load_embedded("nope")


def test_embedded_file_is_sorted_and_deterministic() -> None:
    ids = [r.question_id for r in load_embedded("fanoutqa_single")]
    assert ids == sorted(ids)
    assert [r.question_id for r in load_embedded("fanoutqa_single")] == ids


# ------------------------------------------------------------------ JSONL


def test_load_jsonl_flashrag_rows() -> None:
    rows = load_jsonl(FIXTURES / "flashrag_nq.jsonl")
    assert [r.question_id for r in rows] == [
        "flashrag_nq/test_0",
        "flashrag_nq/test_1",
        "flashrag_nq/test_2",
        "flashrag_nq/test_3",
    ]
    assert rows[0].question == "who wrote the declaration of independence?"
    assert rows[1].question == "what is the capital of france?"
    assert rows[2].question == "when did &lt;answer&gt;x&lt;/answer&gt; happen?"
    assert rows[2].golden_answers == ("1990",)  # bare string wrapped
    assert rows[3].question == "who?"
    assert rows[3].golden_answers == ("Nobody", "No one")


def test_load_jsonl_data_source_and_index_ids() -> None:
    rows = load_jsonl(FIXTURES / "flashrag_hotpotqa.jsonl", data_source="hotpotqa")
    assert [r.question_id for r in rows] == ["hotpotqa/0", "hotpotqa/1", "hotpotqa/2"]
    assert {r.data_source for r in rows} == {"hotpotqa"}
    nq = load_jsonl(FIXTURES / "flashrag_nq.jsonl", data_source="nq")
    both = QuestionSet([*rows, *nq])  # ids unique across datasets
    assert both.datasets() == ("hotpotqa", "nq")


def test_load_jsonl_mapping() -> None:
    rows = load_jsonl(
        FIXTURES / "renamed_columns.jsonl",
        mapping={"id": "qid", "question": "query", "golden_answers": "answer"},
    )
    assert [r.question_id for r in rows] == ["arith/a1", "arith/a2"]
    assert rows[1].golden_answers == ("6",)
    with pytest.raises(InvalidConfig, match="not a row field"):
        load_jsonl(FIXTURES / "renamed_columns.jsonl", mapping={"query": "question"})


@pytest.mark.parametrize(
    ("fixture", "pattern"),
    [
        (
            "bad_missing_field.jsonl",
            r"bad_missing_field\.jsonl, row 2: field 'golden_answers' is missing; "
            r"required fields: \['question', 'golden_answers'\]",
        ),
        ("bad_empty_question.jsonl", r"bad_empty_question\.jsonl, row 2: field 'question'.*empty after stripping"),
        ("bad_answers_not_list.jsonl", r"row 1: field 'golden_answers' must be a string or a list of strings"),
        ("bad_empty_answers.jsonl", r"row 1: field 'golden_answers' must not be empty"),
        ("bad_duplicate_ids.jsonl", r"duplicate question id 'bad_duplicate_ids/q0' \(rows 1 and 3\)"),
        ("bad_json.jsonl", r"bad_json\.jsonl, row 2: not valid JSON"),
    ],
)
def test_load_jsonl_malformed(fixture: str, pattern: str) -> None:
    with pytest.raises(InvalidData, match=pattern):
        load_jsonl(FIXTURES / fixture)


def test_load_jsonl_rejects_non_string_answer(tmp_path: Path) -> None:
    path = tmp_path / "ints.jsonl"
    path.write_text(json.dumps({"question": "q", "golden_answers": [1990]}) + "\n")
    with pytest.raises(InvalidData, match="must hold non-empty strings, got 1990"):
        load_jsonl(path)
    path.write_text(json.dumps({"question": "q", "golden_answers": ["a"], "hops": 0}) + "\n")
    with pytest.raises(InvalidData, match="'hops' must be an integer >= 1"):
        load_jsonl(path)


# ------------------------------------------------------------------ Router-R1 Parquet


def _router_r1_record(source: str, index: int | None, question: str, target: list[str]) -> dict:
    prompt = "Answer the given question. ... <answer> Beijing </answer>.\nQuestion: " + question + "\n"
    extra = {"split": "train", "index": index}
    return {
        "data_source": source,
        "prompt": [{"role": "user", "content": prompt}],
        "ability": "fact-reasoning",
        "reward_model": {"style": "rule", "ground_truth": {"target": target}},
        "extra_info": extra,
    }


def _write_parquet(path: Path, records: list[dict]) -> Path:
    pa = pytest.importorskip("pyarrow")
    pq = pytest.importorskip("pyarrow.parquet")
    pq.write_table(pa.Table.from_pylist(records), path)
    return path


def test_load_router_r1_parquet(tmp_path: Path) -> None:
    path = _write_parquet(
        tmp_path / "train_nh_qwen.parquet",
        [
            _router_r1_record("nq", 0, "who sings i'm gonna be 500 miles?", ["The Proclaimers"]),
            _router_r1_record("nq", 1, "when was the first iphone released?", ["2007", "June 29, 2007"]),
            _router_r1_record("hotpotqa", 0, "Were Scott Derrickson and Ed Wood of the same nationality?", ["yes"]),
        ],
    )
    rows = load_router_r1_parquet(path)
    # Router-R1's index restarts per source; ids stay unique because they carry the source.
    assert [r.question_id for r in rows] == ["nq/0", "nq/1", "hotpotqa/0"]
    assert rows[0].question == "who sings i'm gonna be 500 miles?"
    assert rows[1].golden_answers == ("2007", "June 29, 2007")
    assert load_questions(path).datasets() == ("hotpotqa", "nq")


def test_load_router_r1_parquet_malformed(tmp_path: Path) -> None:
    bad_target = _router_r1_record("nq", 0, "q?", ["a"])
    bad_target["reward_model"] = {"style": "rule", "ground_truth": {"target": None}}
    path = _write_parquet(tmp_path / "bad.parquet", [_router_r1_record("nq", 1, "ok?", ["a"]), bad_target])
    with pytest.raises(InvalidData, match=r"bad\.parquet, row 2: field 'reward_model\.ground_truth\.target'"):
        load_router_r1_parquet(path)
    dup = _write_parquet(
        tmp_path / "dup.parquet", [_router_r1_record("nq", 3, "a?", ["a"]), _router_r1_record("nq", 3, "b?", ["b"])]
    )
    with pytest.raises(InvalidData, match="duplicate question id 'nq/3'"):
        load_router_r1_parquet(dup)
    empty_turn = _router_r1_record("nq", 0, "x", ["a"])
    empty_turn["prompt"] = [{"role": "user", "content": "   "}]
    path = _write_parquet(tmp_path / "emptyturn.parquet", [empty_turn])
    with pytest.raises(InvalidData, match=r"emptyturn\.parquet, row 1: field 'prompt' must be a string or a chat list"):
        load_router_r1_parquet(path)
    no_user = _router_r1_record("nq", 0, "x", ["a"])
    no_user["prompt"] = [{"role": "system", "content": "Question: hidden"}]
    path = _write_parquet(tmp_path / "nouser.parquet", [no_user])
    with pytest.raises(InvalidData, match=r"nouser\.parquet, row 1: field 'prompt'"):
        load_router_r1_parquet(path)


def test_router_r1_parquet_with_a_bare_question_prompt_uses_the_whole_user_turn(tmp_path: Path) -> None:
    bare = _router_r1_record("nq", 0, "x", ["Paris"])
    bare["prompt"] = [{"role": "user", "content": "  What is the capital of France  "}]
    plain = _router_r1_record("nq", 1, "x", ["Austen"])
    plain["prompt"] = "Who wrote Emma?"  # a string column instead of a chat list
    labelled = _router_r1_record("nq", 2, "Who wrote Hamlet?", ["Shakespeare"])
    rows = load_router_r1_parquet(_write_parquet(tmp_path / "bare.parquet", [bare, labelled]))
    assert [r.question for r in rows] == ["What is the capital of France?", "Who wrote Hamlet?"]
    rows = load_router_r1_parquet(_write_parquet(tmp_path / "plain.parquet", [plain]))
    assert rows[0].question == "Who wrote Emma?"


def test_bad_parquet_files_name_the_file(tmp_path: Path) -> None:
    pytest.importorskip("pyarrow")
    garbage = tmp_path / "garbage.parquet"
    garbage.write_bytes(b"PAR1 not really" * 10)
    with pytest.raises(InvalidData, match=r"garbage\.parquet: not a readable Parquet file"):
        load_router_r1_parquet(garbage)
    with pytest.raises(FileNotFoundError, match=r"absent\.parquet' does not exist"):
        load_router_r1_parquet(tmp_path / "absent.parquet")
    pa = pytest.importorskip("pyarrow")
    pq = pytest.importorskip("pyarrow.parquet")
    empty = tmp_path / "empty.parquet"
    pq.write_table(pa.table({"prompt": pa.array([], pa.string())}), empty)
    with pytest.raises(InvalidData, match=r"empty\.parquet: no rows"):
        load_router_r1_parquet(empty)


# ------------------------------------------------------------------ HF datasets


def test_load_hf_dataset_with_column_mapping() -> None:
    datasets = pytest.importorskip("datasets")
    ds = datasets.Dataset.from_list(
        [
            {"qid": "x1", "query": "who painted the mona lisa", "answer": ["Leonardo da Vinci"]},
            {"qid": "x2", "query": "capital of peru?", "answer": ["Lima"]},
        ]
    )
    rows = load_hf_dataset(ds, question="query", answers="answer", data_source="trivia", id="qid")
    assert [r.question_id for r in rows] == ["trivia/x1", "trivia/x2"]
    assert rows[0].question == "who painted the mona lisa?"
    rows = load_hf_dataset(ds, question="query", answers="answer", data_source="trivia")
    assert [r.question_id for r in rows] == ["trivia/0", "trivia/1"]
    with pytest.raises(InvalidConfig, match="column 'answers' is not in the dataset"):
        load_hf_dataset(ds, question="query", answers="answers", data_source="trivia")
    with pytest.raises(InvalidConfig, match="data_source"):
        load_hf_dataset(ds, question="query", answers="answer")


def test_load_hf_dataset_malformed() -> None:
    datasets = pytest.importorskip("datasets")
    ds = datasets.Dataset.from_list(
        [{"question": "fine?", "golden_answers": ["a"]}, {"question": "", "golden_answers": ["b"]}]
    )
    with pytest.raises(InvalidData, match="row 2: field 'question'"):
        load_hf_dataset(ds, data_source="d")
    ds = datasets.Dataset.from_list(
        [{"question": "q1", "golden_answers": "a", "k": "same"}, {"question": "q2", "golden_answers": "b", "k": "same"}]
    )
    with pytest.raises(InvalidData, match="duplicate question id 'd/same'"):
        load_hf_dataset(ds, data_source="d", id="k")


# ------------------------------------------------------------------ QuestionSet and load_questions


def test_question_set_lookup_and_immutability() -> None:
    qs = load_questions(["embedded:fanoutqa_multi", FIXTURES / "flashrag_nq.jsonl"])
    assert len(qs) == embedded_manifest()["datasets"]["fanoutqa_multi"]["rows"] + 4
    assert qs.datasets() == ("fanoutqa_multi", "flashrag_nq")
    first = qs.ids("flashrag_nq")[0]
    assert qs.by_id(first).question_id == first
    assert first in qs and "nope" not in qs
    assert len(qs.ids()) == len(qs) == len(list(qs))
    with pytest.raises(UnknownName, match="Did you mean 'flashrag_nq/test_"):
        qs.by_id("flashrag_nq/test_O")
    with pytest.raises(KeyError):
        qs.by_id("missing")
    with pytest.raises(UnknownName, match="unknown data source 'nqq'"):
        qs.ids("nqq")
    with pytest.raises(AttributeError, match="immutable"):
        qs._rows = ()  # type: ignore[misc]
    assert isinstance(qs.rows, tuple)


def test_question_set_rejects_duplicates_across_sources() -> None:
    rows = load_jsonl(FIXTURES / "flashrag_nq.jsonl")
    with pytest.raises(InvalidData, match="duplicate question id"):
        QuestionSet([*rows, *rows])
    with pytest.raises(InvalidData, match="duplicate question id"):
        load_questions([FIXTURES / "flashrag_nq.jsonl", FIXTURES / "flashrag_nq.jsonl"])


def test_load_questions_specs() -> None:
    assert len(load_questions("embedded")) == len(load_embedded())
    with pytest.raises(InvalidConfig, match="not recognised"):
        load_questions("data.csv")
    with pytest.raises(UnknownName):
        load_questions("embedded:fanout")


def test_import_is_light() -> None:
    code = (
        "import sys, recal_gym.data as d; d.load_embedded();"
        "bad = [m for m in ('torch', 'agents', 'pandas', 'pyarrow', 'datasets') if m in sys.modules];"
        "print(','.join(bad))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == ""


# ------------------------------------------------------------------ samplers


def test_sample_mixture_counts_and_determinism() -> None:
    rows = _pool({"nq": 50, "hotpotqa": 40, "popqa": 10})
    mix = sample_mixture(rows, {"nq": 20, "hotpotqa": 7}, seed=3)
    assert len(mix) == 27
    counts = {k: len(v) for k, v in group_by_source(mix).items()}
    assert counts == {"nq": 20, "hotpotqa": 7}
    assert len({r.question_id for r in mix}) == 27  # without replacement
    assert mix == sample_mixture(rows, {"nq": 20, "hotpotqa": 7}, seed=3)
    assert mix != sample_mixture(rows, {"nq": 20, "hotpotqa": 7}, seed=4)
    # A source's draw does not depend on the rest of the mix.
    alone = sample_mixture(rows, {"hotpotqa": 7}, seed=3)
    assert [r for r in mix if r.data_source == "hotpotqa"] == alone


def test_sample_mixture_errors() -> None:
    rows = _pool({"nq": 5})
    with pytest.raises(InvalidConfig, match=r"counts\['nq'\] = 6 exceeds the 5 rows"):
        sample_mixture(rows, {"nq": 6}, seed=0)
    with pytest.raises(InvalidConfig, match="Did you mean 'nq'"):
        sample_mixture(rows, {"nqq": 1}, seed=0)
    with pytest.raises(InvalidConfig, match=">= 0"):
        sample_mixture(rows, {"nq": -1}, seed=0)
    with pytest.raises(InvalidConfig, match="seed"):
        sample_mixture(rows, {"nq": 1}, seed=1.5)  # type: ignore[arg-type]


def test_sample_per_dataset() -> None:
    rows = _pool({"nq": 30, "bamboogle": 4})
    sample = sample_per_dataset(rows, 10, seed=1)
    counts = {k: len(v) for k, v in group_by_source(sample).items()}
    assert counts == {"nq": 10, "bamboogle": 4}  # all rows when fewer
    assert sample == sample_per_dataset(rows, 10, seed=1)
    with pytest.raises(InvalidConfig, match="n must be"):
        sample_per_dataset(rows, 0, seed=1)


@settings(max_examples=40, deadline=None)
@given(
    sizes=st.dictionaries(st.sampled_from(["a", "b", "c"]), st.integers(1, 30), min_size=1),
    frac=st.floats(0.05, 0.95),
    seed=st.integers(0, 2**32),
)
def test_train_test_split_properties(sizes: dict[str, int], frac: float, seed: int) -> None:
    rows = _pool(sizes)
    train, test = train_test_split(rows, frac, seed)
    assert sorted(r.question_id for r in train + test) == sorted(r.question_id for r in rows)
    assert not {r.question_id for r in train} & {r.question_id for r in test}
    for source, n in sizes.items():
        assert sum(r.data_source == source for r in test) == round(frac * n)
    assert (train, test) == train_test_split(rows, frac, seed)
    order = {r.question_id: k for k, r in enumerate(rows)}
    assert [order[r.question_id] for r in test] == sorted(order[r.question_id] for r in test)


def test_train_test_split_errors() -> None:
    with pytest.raises(InvalidConfig, match=r"test_fraction must be in \(0, 1\)"):
        train_test_split(_pool({"a": 3}), 1.0, seed=0)


def test_samplers_on_embedded_data() -> None:
    rows = load_embedded()
    sample = sample_per_dataset(rows, 500, seed=42)
    counts = {k: len(v) for k, v in group_by_source(sample).items()}
    assert counts == {"fanoutqa_multi": len(load_embedded("fanoutqa_multi")), "fanoutqa_single": 500}


# ------------------------------------------------------------------ regeneration (assets)


@pytest.mark.assets
def test_embedded_files_regenerate_byte_identically(tmp_path: Path) -> None:
    if importlib.util.find_spec("fanoutqa") is None:
        pytest.skip("needs the fanoutqa package: pip install --no-deps fanoutqa")
    subprocess.run(
        [sys.executable, str(REPO / "scripts" / "build_embedded_data.py"), "--out", str(tmp_path)],
        check=True,
        capture_output=True,
    )
    produced = sorted(p.name for p in tmp_path.iterdir())
    shipped = sorted(p.name for p in EMBEDDED.iterdir() if p.is_file())
    assert produced == shipped
    for name in produced:
        assert (tmp_path / name).read_bytes() == EMBEDDED.joinpath(name).read_bytes(), name


# ------------------------------------------------------------------ hostile JSONL files (issue #12 item 8)

_GOOD = {"question": "Who wrote Emma?", "golden_answers": ["Jane Austen"]}


def _jsonl(path: Path, lines: list[str]) -> Path:
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


@pytest.mark.parametrize("sep", ["\u2028", "\u2029", "\x85", "\x1c", "\x0b"])
def test_exotic_line_separators_inside_strings_are_data_not_line_ends(tmp_path: Path, sep: str) -> None:
    odd = {"question": f"Who wrote{sep}Emma?", "golden_answers": [f"Jane{sep}Austen"], "id": "odd"}
    path = tmp_path / "t.jsonl"
    path.write_text(json.dumps(odd, ensure_ascii=False) + "\n" + json.dumps({"id": "bad"}) + "\n", encoding="utf-8")
    with pytest.raises(InvalidData, match=r"t\.jsonl, row 2: field 'question' is missing"):
        load_jsonl(path)  # row numbers are not shifted by the separator in row 1
    path.write_text(json.dumps(odd, ensure_ascii=False) + "\n", encoding="utf-8")
    [row] = load_jsonl(path)
    assert row.golden_answers == (f"Jane{sep}Austen",)


def test_crlf_line_ends_and_a_bom_load(tmp_path: Path) -> None:
    path = tmp_path / "crlf.jsonl"
    path.write_bytes(b"\xef\xbb\xbf" + (json.dumps(_GOOD) + "\r\n").encode() * 1 + b"\r\n")
    [row] = load_jsonl(path)
    assert row.question == "Who wrote Emma?"


@pytest.mark.parametrize(
    ("content", "match"),
    [
        (b"", r"empty\.jsonl: no rows \(the file is empty or blank\)"),
        (b"\n   \n\t\n", r"empty\.jsonl: no rows"),
        (json.dumps(_GOOD).encode() + b"\n" + b"[" * 100_000 + b"\n", r"empty\.jsonl, row 2: JSON nested too deeply"),
        (
            json.dumps(_GOOD).encode() + b'\n{"question": "caf\xe9?"}\n',
            r"row 2: not UTF-8 text \(byte offset 84: b.\\xe9",
        ),
        (b'{"question": 1' + b"0" * 5000 + b"}\n", r"row 1: not valid JSON \(Exceeds the limit"),
        (
            b'{"question": "x", "golden_answers": ["\\ud800"]}\n',
            r"row 1: field 'golden_answers' holds a lone surrogate",
        ),
        (b'{"question": "a \\udfff b", "golden_answers": ["x"]}\n', r"row 1: field 'question' .*lone surrogate"),
        (
            b'{"question": "q", "golden_answers": ["x"], "data_source": "\\ud800"}\n',
            r"field 'data_source' holds a lone",
        ),
        (b"[" + b"1," * 10_000 + b"1]\n", r"row 1: expected a JSON object, got \[1, 1, 1.{0,70} \.\.\.\)$"),
    ],
)
def test_bad_jsonl_files_name_file_row_and_problem(tmp_path: Path, content: bytes, match: str) -> None:
    path = tmp_path / "empty.jsonl"
    path.write_bytes(content)
    with pytest.raises(InvalidData, match=match):
        load_jsonl(path)


def test_an_empty_file_through_gym_make_is_the_loader_error(tmp_path: Path) -> None:
    import gymnasium as gym

    import recal_gym  # noqa: F401

    path = tmp_path / "blank.jsonl"
    path.write_text("\n\n")
    with pytest.raises(InvalidData, match=r"blank\.jsonl: no rows"):
        gym.make("RouterQA-v0", dataset=str(path))
