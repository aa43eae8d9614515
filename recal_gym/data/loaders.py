r"""Question loaders: the embedded FanOutQA sets, FlashRAG JSONL, Router-R1 Parquet, HF datasets.

Every loader returns validated :class:`~recal_gym.types.QARow` objects (``docs/protocol.md`` §10):

- the question is preprocessed by :func:`preprocess_question` (strip, append ``?``, neutralise
  reserved tags, ``docs/protocol.md`` §15);
- a bare-string gold answer is wrapped in a list; gold answers are otherwise kept as given;
- ids are stable and unique across datasets. A row's ``question_id`` field is used verbatim; a
  source-local ``id`` field (FlashRAG's ``"test_0"``) is namespaced as ``"{data_source}/{id}"``;
  a row without either gets ``"{data_source}/{index}"`` (0-based row index);
- a malformed row raises :class:`~recal_gym.errors.InvalidData` naming the file, the row number and
  the field, and listing the required fields; duplicate ids raise it too. So do a file that is empty
  or blank, bytes that are not UTF-8 (the row and byte offset are named), JSON nested too deeply to
  decode, and text holding a lone surrogate (a ``"\ud800"`` escape, which is not Unicode text).

``pandas``/``pyarrow``/``datasets`` are imported lazily, inside the function that needs them.

>>> from recal_gym.data import load_embedded
>>> rows = load_embedded("fanoutqa_single")
>>> rows[0].data_source
'fanoutqa_single'
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Iterator, Mapping, Sequence
from importlib import resources
from pathlib import Path
from typing import Any

from recal_gym.data.question_set import QuestionSet, check_unique
from recal_gym.errors import InvalidConfig, InvalidData, UnknownName, close_matches_hint
from recal_gym.protocol import neutralise
from recal_gym.types import QARow, SubQuestion

__all__ = [
    "REQUIRED_FIELDS",
    "ROW_FIELDS",
    "QuestionSet",
    "embedded_manifest",
    "embedded_names",
    "load_embedded",
    "load_hf_dataset",
    "load_jsonl",
    "load_questions",
    "load_router_r1_parquet",
    "preprocess_question",
]

REQUIRED_FIELDS: tuple[str, ...] = ("question", "golden_answers")
"""Fields every input row must carry (after the optional column mapping)."""
ROW_FIELDS: tuple[str, ...] = (
    "question_id",
    "id",
    "question",
    "golden_answers",
    "data_source",
    "decomposition",
    "hops",
)
"""Every field a row may carry; also the allowed keys of a loader's ``mapping``."""

_EMBEDDED_PACKAGE = "recal_gym.data"
_EMBEDDED_DIR = "embedded"
_QUESTION_LABEL = "Question: "
_SHOWN_CHARS = 80


def _short(value: Any) -> str:
    """``repr(value)`` cut to a readable length (a bad 10 MB row must not become a 10 MB message)."""
    text = repr(value)
    return text if len(text) <= _SHOWN_CHARS else text[: _SHOWN_CHARS - 5] + " ...)"


def _is_unicode(text: str) -> bool:
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


def preprocess_question(text: str) -> str:
    """Router-R1's question preprocessing plus tag neutralisation (``docs/protocol.md`` §10, §15).

    Strip surrounding whitespace, append ``?`` unless the last character already is one, then
    neutralise every reserved-tag look-alike (``<answer>`` becomes ``&lt;answer&gt;``).

    Args:
        text: The raw question.

    Returns:
        The preprocessed question.

    Raises:
        InvalidData: if ``text`` is not a string or is empty after stripping.
    """
    if not isinstance(text, str):
        raise InvalidData(f"question must be a string, got {type(text).__name__} {_short(text)}")
    if not _is_unicode(text):
        raise InvalidData(f"question holds a lone surrogate (not Unicode text): {_short(text)}")
    stripped = text.strip()
    if not stripped:
        raise InvalidData(f"question is empty after stripping: {_short(text)}")
    if not stripped.endswith("?"):
        stripped += "?"
    return neutralise(stripped)[0]


# --------------------------------------------------------------------------------------------
# Row validation shared by every loader
# --------------------------------------------------------------------------------------------


def _fail(where: str, number: int, field: str, problem: str) -> InvalidData:
    return InvalidData(
        f"{where}, row {number}: field {field!r} {problem}; "
        f"required fields: {list(REQUIRED_FIELDS)} (optional: "
        f"{[f for f in ROW_FIELDS if f not in REQUIRED_FIELDS]})"
    )


def _answers(value: Any, where: str, number: int, field: str = "golden_answers") -> tuple[str, ...]:
    """Validate a gold-answer value; a bare string is wrapped."""
    if isinstance(value, str):
        value = [value]
    elif hasattr(value, "tolist") and not isinstance(value, Mapping):  # numpy arrays from Parquet
        value = value.tolist()
    if not isinstance(value, list | tuple):
        raise _fail(where, number, field, f"must be a string or a list of strings, got {_short(value)}")
    if not value:
        raise _fail(where, number, field, "must not be empty")
    for answer in value:
        if not isinstance(answer, str) or not answer.strip():
            raise _fail(where, number, field, f"must hold non-empty strings, got {_short(answer)}")
        if not _is_unicode(answer):
            raise _fail(where, number, field, f"holds a lone surrogate (not Unicode text): {_short(answer)}")
    return tuple(value)


def _decomposition(value: Any, where: str, number: int) -> tuple[SubQuestion, ...]:
    if value is None:
        return ()
    if not isinstance(value, list | tuple):
        raise _fail(where, number, "decomposition", f"must be a list, got {_short(value)}")
    out = []
    for k, sub in enumerate(value):
        field = f"decomposition[{k}]"
        if not isinstance(sub, Mapping) or "question" not in sub or "golden_answers" not in sub:
            raise _fail(where, number, field, f"must be a mapping with question and golden_answers: {_short(sub)}")
        try:
            question = preprocess_question(sub["question"])
        except InvalidData as err:
            raise _fail(where, number, field + ".question", str(err)) from None
        out.append(
            SubQuestion(
                question=question,
                golden_answers=_answers(sub["golden_answers"], where, number, field + ".golden_answers"),
            )
        )
    return tuple(out)


def _text_field(raw: Mapping[str, Any], key: str, where: str, number: int) -> str | None:
    value = raw.get(key)
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, str | int):
        raise _fail(where, number, key, f"must be a string, got {_short(value)}")
    text = str(value).strip()
    if not text:
        raise _fail(where, number, key, "must not be empty")
    if not _is_unicode(text):
        raise _fail(where, number, key, f"holds a lone surrogate (not Unicode text): {_short(text)}")
    return text


def _hops(value: Any, where: str, number: int) -> int:
    if value is None:
        return 1
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise _fail(where, number, "hops", f"must be an integer >= 1, got {_short(value)}")
    return value


def _make_row(
    raw: Mapping[str, Any],
    *,
    where: str,
    number: int,
    index: int,
    data_source: str | None,
    default_source: str | None = None,
) -> QARow:
    """Validate one row already keyed by :data:`ROW_FIELDS` names.

    ``data_source`` (when given) overrides the row's own field; ``default_source`` fills it in when
    the row has none.
    """
    if not isinstance(raw, Mapping):
        raise InvalidData(f"{where}, row {number}: expected a JSON object, got {_short(raw)}")
    for field in REQUIRED_FIELDS:
        if raw.get(field) is None:
            raise _fail(where, number, field, "is missing")
    source = data_source if data_source is not None else _text_field(raw, "data_source", where, number)
    source = source or default_source
    if not source:
        raise _fail(where, number, "data_source", "is missing (pass data_source=...)")
    try:
        question = preprocess_question(raw["question"])
    except InvalidData as err:
        raise _fail(where, number, "question", str(err)) from None
    qid = _text_field(raw, "question_id", where, number)
    if qid is None:
        local = _text_field(raw, "id", where, number)
        qid = f"{source}/{index if local is None else local}"
        if local is not None and local.startswith(f"{source}/"):
            qid = local
    return QARow(
        question_id=qid,
        question=question,
        golden_answers=_answers(raw["golden_answers"], where, number),
        data_source=source,
        decomposition=_decomposition(raw.get("decomposition"), where, number),
        hops=_hops(raw.get("hops"), where, number),
    )


def _remap(raw: Any, mapping: Mapping[str, str] | None) -> Any:
    """Rename a raw row's keys: ``mapping`` maps our field name -> the source's key."""
    if mapping is None or not isinstance(raw, Mapping):
        return raw
    out = dict(raw)
    for ours, theirs in mapping.items():
        if theirs in raw:
            out[ours] = raw[theirs]
    return out


def _check_mapping(mapping: Mapping[str, str] | None) -> None:
    if mapping is None:
        return
    for key, value in mapping.items():
        if key not in ROW_FIELDS:
            raise InvalidConfig(
                f"mapping key {key!r} is not a row field; allowed: {list(ROW_FIELDS)}."
                + close_matches_hint(key, ROW_FIELDS)
            )
        if not isinstance(value, str) or not value:
            raise InvalidConfig(f"mapping[{key!r}] must be a non-empty column name, got {value!r}")


# --------------------------------------------------------------------------------------------
# File formats
# --------------------------------------------------------------------------------------------


def _decode_utf8(data: bytes, where: str) -> str:
    """Decode a whole file as UTF-8 (a leading BOM is dropped), naming the row and byte of a bad byte."""
    try:
        return data.decode("utf-8-sig")
    except UnicodeDecodeError as err:
        row = data.count(b"\n", 0, err.start) + 1
        bad = data[err.start : err.start + 4]
        raise InvalidData(
            f"{where}, row {row}: not UTF-8 text (byte offset {err.start}: {bad!r}); save the file as UTF-8"
        ) from None


def _jsonl_records(text: str, where: str) -> Iterator[tuple[int, Any]]:
    r"""Yield ``(line number, parsed object)`` for every non-blank line.

    Lines end at ``"\n"`` only (``str.splitlines`` would also split at U+2028 or U+0085 inside a JSON
    string and shift every later row number).

    Raises:
        InvalidData: a line that is not JSON or nests too deeply, or no line at all.
    """
    seen = False
    for number, line in enumerate(text.split("\n"), start=1):
        if not line.strip():
            continue
        seen = True
        try:
            yield number, json.loads(line)
        except json.JSONDecodeError as err:
            raise InvalidData(f"{where}, row {number}: not valid JSON ({err.msg} at column {err.colno})") from None
        except RecursionError:
            raise InvalidData(f"{where}, row {number}: JSON nested too deeply to decode") from None
        except ValueError as err:  # e.g. an integer longer than Python's digit limit
            raise InvalidData(f"{where}, row {number}: not valid JSON ({err})") from None
    if not seen:
        raise InvalidData(
            f"{where}: no rows (the file is empty or blank); a JSONL file holds one JSON object per line "
            f"with the fields {list(REQUIRED_FIELDS)}"
        )


def _rows_from_records(
    records: Iterable[tuple[int, Any]],
    *,
    where: str,
    data_source: str | None,
    default_source: str | None = None,
    mapping: Mapping[str, str] | None = None,
) -> list[QARow]:
    rows = [
        _make_row(
            _remap(raw, mapping),
            where=where,
            number=number,
            index=index,
            data_source=data_source,
            default_source=default_source,
        )
        for index, (number, raw) in enumerate(records)
    ]
    return check_unique(rows, where)


def load_jsonl(
    path: str | Path, *, data_source: str | None = None, mapping: Mapping[str, str] | None = None
) -> list[QARow]:
    """Load a FlashRAG-style JSONL file (``question``, ``golden_answers``, optional ``id``).

    Args:
        path: The ``.jsonl`` file; blank lines are skipped, row numbers are file line numbers.
        data_source: Dataset name for every row (overrides the rows' own field). When None, each
            row's ``data_source`` field is used, else the file name up to its first dot
            (``nq.test.jsonl`` -> ``"nq"``).
        mapping: Optional renaming, our field -> the file's key, e.g. ``{"golden_answers": "answer"}``.
            Keys must be in :data:`ROW_FIELDS`.

    Returns:
        The validated rows in file order.

    Raises:
        InvalidData: on a malformed row, a duplicate id, a file that is empty or not UTF-8.
        InvalidConfig: on a bad ``mapping``.
        FileNotFoundError: the file does not exist.
    """
    _check_mapping(mapping)
    path = Path(path)
    where = str(path)
    records = _jsonl_records(_decode_utf8(path.read_bytes(), where), where)
    return _rows_from_records(
        records,
        where=where,
        data_source=data_source,
        default_source=path.name.split(".")[0],
        mapping=mapping,
    )


def _router_r1_question(prompt: Any, where: str, number: int) -> str:
    """The question after the first ``"Question: "`` label of the user turn, else the whole user turn."""
    if hasattr(prompt, "tolist"):
        prompt = prompt.tolist()
    content: Any = None
    if isinstance(prompt, str):
        content = prompt
    elif isinstance(prompt, list | tuple):
        users = [m.get("content") for m in prompt if isinstance(m, Mapping) and m.get("role") == "user"]
        content = users[-1] if users else None
    if not isinstance(content, str) or not content.strip():
        raise _fail(where, number, "prompt", "must be a string or a chat list holding a non-empty user turn")
    if _QUESTION_LABEL not in content:  # a bare question without Router-R1's instruction template
        return content.strip()
    return content.partition(_QUESTION_LABEL)[2].strip()


def _router_r1_record(raw: Any, where: str, number: int) -> dict[str, Any]:
    if not isinstance(raw, Mapping):
        raise InvalidData(f"{where}, row {number}: expected a record, got {_short(raw)}")
    reward = raw.get("reward_model")
    truth = reward.get("ground_truth") if isinstance(reward, Mapping) else None
    target = truth.get("target") if isinstance(truth, Mapping) else None
    if target is None:
        raise _fail(where, number, "reward_model.ground_truth.target", "is missing")
    extra = raw.get("extra_info")
    index = extra.get("index") if isinstance(extra, Mapping) else None
    out = {
        "question": _router_r1_question(raw.get("prompt"), where, number),
        "golden_answers": target,
        "data_source": raw.get("data_source"),
    }
    if index is not None:
        out["id"] = index
    return out


def load_router_r1_parquet(path: str | Path) -> list[QARow]:
    """Load Router-R1's training/test Parquet rows.

    Each row has ``data_source``, ``prompt`` (a chat list whose user content holds the question after
    ``"Question: "``; a user turn without that label, or a plain string, is taken whole as the bare
    question), ``reward_model.ground_truth.target`` (the gold answers) and optionally
    ``extra_info.index``. Router-R1's index restarts at 0 per data source, so ids are
    ``"{data_source}/{index}"`` (the row position stands in when the index is absent).

    Args:
        path: The ``.parquet`` file. Row numbers in errors are 1-based positions in the file.

    Returns:
        The validated rows in file order.

    Raises:
        InvalidData: on a malformed row, a duplicate id, or a file that is not Parquet (or has no rows).
        FileNotFoundError: the file does not exist.
        MissingDependency: ``pyarrow`` is not installed (an ``ImportError`` naming the ``hf-datasets`` extra).
    """
    from recal_gym.optional import require

    pa = require("pyarrow", feature="load_router_r1_parquet")
    pq = require("pyarrow.parquet", feature="load_router_r1_parquet")
    path = Path(path)
    where = str(path)
    if not path.is_file():
        raise FileNotFoundError(f"question file {where!r} does not exist (or is not a file)")
    try:
        raws = pq.read_table(path).to_pylist()
    except pa.ArrowException as err:
        raise InvalidData(f"{where}: not a readable Parquet file ({err})") from None
    if not raws:
        raise InvalidData(f"{where}: no rows; a Router-R1 Parquet file holds one row per question")
    records = [(n, _router_r1_record(raw, where, n)) for n, raw in enumerate(raws, start=1)]
    return _rows_from_records(records, where=where, data_source=None)


def load_hf_dataset(
    dataset: Any,
    *,
    question: str = "question",
    answers: str = "golden_answers",
    data_source: str | None = None,
    id: str | None = None,
    data_source_column: str | None = None,
) -> list[QARow]:
    """Load any Hugging Face ``datasets.Dataset`` (or list of dicts) through a column mapping.

    Args:
        dataset: A ``datasets.Dataset`` or any iterable of row mappings.
        question: Column holding the question text.
        answers: Column holding the gold answer(s) (a string or a list of strings).
        data_source: Dataset name for every row (required unless ``data_source_column`` is given).
        id: Optional column holding a source-local id (namespaced as ``"{data_source}/{id}"``).
        data_source_column: Optional column holding each row's dataset name.

    Returns:
        The validated rows in dataset order.

    Raises:
        InvalidConfig: if neither ``data_source`` nor ``data_source_column`` is given, or a named
            column is absent.
        InvalidData: on a malformed row or a duplicate id.
    """
    if data_source is None and data_source_column is None:
        raise InvalidConfig("load_hf_dataset needs data_source=<name> or data_source_column=<column>")
    mapping = {"question": question, "golden_answers": answers}
    if id is not None:
        mapping["id"] = id
    if data_source_column is not None:
        mapping["data_source"] = data_source_column
    columns = getattr(dataset, "column_names", None)
    if columns is not None:
        for column in mapping.values():
            if column not in columns:
                raise InvalidConfig(
                    f"column {column!r} is not in the dataset; columns: {list(columns)}."
                    + close_matches_hint(column, columns)
                )
    where = f"HF dataset {data_source or data_source_column!r}"
    records = ((n, {k: raw.get(c) for k, c in mapping.items()}) for n, raw in enumerate(dataset, start=1))
    return _rows_from_records(records, where=where, data_source=data_source)


# --------------------------------------------------------------------------------------------
# Embedded data sets
# --------------------------------------------------------------------------------------------


def _embedded_file(name: str) -> Any:
    return resources.files(_EMBEDDED_PACKAGE).joinpath(_EMBEDDED_DIR, name)


def embedded_manifest() -> dict[str, Any]:
    """Return the embedded data's manifest (datasets, row counts, sha256, source, profiles).

    Returns:
        A fresh dict parsed from ``recal_gym/data/embedded/manifest.json``.
    """
    return json.loads(_embedded_file("manifest.json").read_text(encoding="utf-8"))


def embedded_names() -> tuple[str, ...]:
    """Names of the embedded datasets, sorted (``("fanoutqa_multi", "fanoutqa_single")``)."""
    return tuple(sorted(embedded_manifest()["datasets"]))


def load_embedded(name: str | None = None) -> list[QARow]:
    """Load one embedded dataset, or all of them (concatenated in name order) when ``name`` is None.

    The embedded sets are derived from FanOutQA (CC BY-SA 4.0; see
    ``recal_gym/data/embedded/ATTRIBUTION.md``).

    Args:
        name: One of :func:`embedded_names`, or None for all.

    Returns:
        The validated rows.

    Raises:
        UnknownName: if ``name`` is not an embedded dataset (close matches are named).
    """
    manifest = embedded_manifest()["datasets"]
    if name is None:
        names: Sequence[str] = sorted(manifest)
    elif name not in manifest:
        raise UnknownName(
            f"unknown embedded dataset {name!r}; available: {sorted(manifest)}." + close_matches_hint(name, manifest)
        )
    else:
        names = [name]
    rows: list[QARow] = []
    for each in names:
        entry = manifest[each]
        where = f"embedded:{each} ({entry['file']})"
        text = _embedded_file(entry["file"]).read_text(encoding="utf-8")
        rows.extend(_rows_from_records(_jsonl_records(text, where), where=where, data_source=None))
    return check_unique(rows, "embedded datasets")


def load_questions(spec: str | Path | Sequence[str | Path]) -> QuestionSet:
    """Load questions from one spec (or several) into a :class:`QuestionSet`.

    Specs: ``"embedded"`` (every embedded dataset), ``"embedded:<name>"``, a ``.jsonl`` path
    (:func:`load_jsonl`) or a ``.parquet`` path (:func:`load_router_r1_parquet`).

    Args:
        spec: A spec or a list of specs; rows are concatenated in order.

    Returns:
        The combined question set (ids must be unique across all specs).

    Raises:
        InvalidConfig: on a spec of unknown form.
        UnknownName: on an unknown embedded name.
        InvalidData: on a malformed row or duplicate ids.
    """
    specs = [spec] if isinstance(spec, str | Path) else list(spec)
    rows: list[QARow] = []
    for each in specs:
        text = str(each)
        if text == "embedded":
            rows.extend(load_embedded())
        elif text.startswith("embedded:"):
            rows.extend(load_embedded(text.partition(":")[2]))
        elif text.endswith(".jsonl"):
            rows.extend(load_jsonl(text))
        elif text.endswith(".parquet"):
            rows.extend(load_router_r1_parquet(text))
        else:
            raise InvalidConfig(
                f"question spec {text!r} is not recognised; use 'embedded', 'embedded:<name>', "
                "a .jsonl path or a .parquet path"
            )
    return QuestionSet(rows)
