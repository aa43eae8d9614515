"""Build recal-gym's embedded question sets from the installed ``fanoutqa`` package.

Usage::

    pip install --no-deps fanoutqa
    python scripts/build_embedded_data.py [--out DIR]

The default output directory is ``recal_gym/data/embedded/``. The script reads
``fanout-final-dev.json`` straight from the package's data folder (it never imports ``fanoutqa``,
whose dependencies are not installed) and writes, byte-identically on every run:

- ``fanoutqa_single.jsonl``: single-hop sub-questions with one string answer;
- ``fanoutqa_multi.jsonl``: multi-hop questions (hops >= 2) with a scalar gold answer;
- ``manifest.json``: datasets, row counts, sha256 of each file, source package and version, and the
  simulated-pool profile hint of each dataset;
- ``LICENSE-DATA``: the CC BY-SA 4.0 licence text, copied from the package;
- ``ATTRIBUTION.md``: credit, the exact list of changes, and the licence of the derived files.

The selection and flattening rules are documented in ``RULES`` below and written into
``ATTRIBUTION.md``.
"""

from __future__ import annotations

import argparse
import hashlib
import importlib.metadata
import importlib.util
import json
import re
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

__all__ = ["build", "main"]

PACKAGE = "fanoutqa"
SOURCE_FILE = "fanout-final-dev.json"
DEFAULT_OUT = Path(__file__).resolve().parent.parent / "recal_gym" / "data" / "embedded"
SINGLE = "fanoutqa_single"
MULTI = "fanoutqa_multi"
PROFILES = {SINGLE: "single_hop_default", MULTI: "multi_hop_default"}

# Source nodes whose gold answer does not answer their own question text; excluded everywhere.
ERRATA = {
    "9fef897e61f2dedb": "asks which high school Nav attended; the gold is that school's principal",
    "41ebc04ef539dd6c": "asks which high school Chris Brown attended; the gold is that school's principal",
    "4209f3daa1a0d1a0": "asks for Biden's cabinet members and their schools; the gold is one school",
    "07ba7a9a300629f3": "asks for Greece's head of state; the gold is Germany's",
}

# A parent question "Who/What is/was the X?" whose answer appears in a dependent sibling question
# lets us compose a bridge question by substituting "the X" for the answer.
_BRIDGE_RE = re.compile(r"^(?:Who|What) (?:is|was) (the .+?)\?$")

RULES = """\
Selection rules (source: `fanout-final-dev.json`, the only split with answers):

- A node is the top-level question or any (nested) sub-question of its `decomposition`.
- `hops` of a node without a decomposition is 1. Otherwise it is the longest chain through the
  node's `depends_on` graph, where each child counts its own `hops`.
- Nodes listed as errata (gold answer does not answer the question text) are dropped:ERRATA_LIST
- **fanoutqa_single**: every sub-question (never a top-level question) whose answer is one
  non-empty string and whose `hops` is 1. Identical question texts (after stripping surrounding
  whitespace and trailing question marks) are merged: the row keeps the smallest node id, that
  node's text, and the union of the answers, in node-id order.
- **fanoutqa_multi**: (a) every node with `hops` >= 2 whose answer flattens to a scalar gold
  (rules below); (b) bridge questions composed from two sibling sub-questions A and B of any
  node: A matches `^(Who|What) (is|was) (the ...)?$` and its answer flattens to one gold string;
  B depends only on A, has no decomposition, has a scalar gold, and contains A's answer exactly
  once as a whole word. The composed question is B's text with A's answer replaced by A's
  "the ..." phrase (e.g. "Which college did the general manager of the Boston Celtics attend?"),
  its decomposition is [A, B] and `hops` is 2. This is how dict-answered sub-questions such as
  "Who is the general manager of the Boston Celtics and which college did they attend?" are
  decomposed. A bridge is skipped when A and B are the whole decomposition of a node already
  selected under (a), which asks the same chain in its own words. Identical question texts are
  merged as above.

Gold-answer flattening for rows (`golden_answers`):

- string: kept as given (non-empty after stripping; otherwise the node is dropped);
- bool: "yes" for true, "no" for false (checked before int);
- int: decimal string (`str`); float: integer-valued floats as integers, others as Python `repr`;
- list with exactly one scalar element: that element, flattened; longer lists are dropped,
  because each element alone is not a correct answer to a set-valued question;
- dict: dropped (a per-entity answer has no single gold; even one-key dicts answer a two-part
  "who ... and how old ..." question). Such nodes contribute bridge questions instead (above).

Decomposition answers (`decomposition[i].golden_answers`, used as simulated-pool targets, never
scored by exact match) are one statement string: scalars as above, lists joined with ", ",
dicts as "key: value" pairs joined with "; ". A sub-question whose statement is empty is left out.
Decomposition entries are the node's descendants in post-order (nested children before their
parent), siblings in source order.

Question text is kept verbatim (surrounding whitespace stripped); recal-gym's loader appends "?"
and neutralises reserved tags at load time.
"""


def source_dir() -> Path:
    """Return the installed ``fanoutqa`` data folder, without importing the package.

    Raises:
        SystemExit: if the package is not installed.
    """
    spec = importlib.util.find_spec(PACKAGE)
    if spec is None or not spec.submodule_search_locations:
        raise SystemExit(f"{PACKAGE} is not installed; run: pip install --no-deps {PACKAGE}")
    return Path(next(iter(spec.submodule_search_locations))) / "data"


def _scalar_text(value: Any) -> str | None:
    """Flatten a scalar answer to text, or return None for non-scalars."""
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        return str(int(value)) if value.is_integer() else repr(value)
    if isinstance(value, str):
        return value.strip() or None
    return None


def gold_answers(value: Any) -> list[str] | None:
    """Flatten a row's gold answer under the strict rules; None means "drop the node"."""
    if isinstance(value, list):
        return gold_answers(value[0]) if len(value) == 1 and not isinstance(value[0], list | dict) else None
    text = _scalar_text(value)  # None for dicts and empty strings
    if text is None:
        return None
    # Strings are kept as given; only the emptiness check strips them.
    return [value if isinstance(value, str) else text]


def statement(value: Any) -> str:
    """Flatten any answer to one statement string (decomposition targets)."""
    if isinstance(value, list):
        return ", ".join(s for s in (statement(v) for v in value) if s)
    if isinstance(value, dict):
        return "; ".join(f"{k}: {s}" for k, s in ((k, statement(v)) for k, v in value.items()) if s)
    return _scalar_text(value) or ""


def hops(node: dict[str, Any]) -> int:
    """Longest dependency chain below ``node`` (1 for a leaf)."""
    children = node["decomposition"]
    if not children:
        return 1
    depth: dict[str, int] = {}
    for child in children:  # source order is a topological order of depends_on
        before = max((depth.get(dep, 0) for dep in child["depends_on"]), default=0)
        depth[child["id"]] = before + hops(child)
    return max(depth.values())


def decomposition(node: dict[str, Any]) -> list[dict[str, Any]]:
    """The node's descendants in post-order, as ``{"question", "golden_answers"}`` entries."""
    out: list[dict[str, Any]] = []
    for child in node["decomposition"]:
        out.extend(decomposition(child))
        text = statement(child["answer"])
        if text:
            out.append({"question": child["question"].strip(), "golden_answers": [text]})
    return out


def _walk(nodes: list[dict[str, Any]], top: bool) -> Iterator[tuple[dict[str, Any], bool]]:
    for node in nodes:
        yield node, top
        yield from _walk(node["decomposition"], False)


def _row(qid: str, question: str, gold: list[str], source: str, node: dict[str, Any], n: int) -> dict:
    return {
        "question_id": f"{source}/{qid}",
        "question": question,
        "golden_answers": gold,
        "data_source": source,
        "decomposition": decomposition(node),
        "hops": n,
    }


def _merge(rows: list[tuple[str, dict[str, Any]]]) -> list[dict[str, Any]]:
    """Merge rows with identical question text; keep the smallest id and union the answers.

    Texts are compared after stripping and with a trailing "?" ensured (the loader adds it).
    """
    by_text: dict[str, dict[str, Any]] = {}
    for _, row in sorted(rows, key=lambda r: r[0]):
        key = row["question"].rstrip("?") + "?"  # the loader appends "?", so "X" and "X?" are one
        kept = by_text.get(key)
        if kept is None:
            by_text[key] = row
        else:
            kept["golden_answers"].extend(a for a in row["golden_answers"] if a not in kept["golden_answers"])
    return sorted(by_text.values(), key=lambda r: r["question_id"])


def _bridge(parent: dict[str, Any], child: dict[str, Any]) -> dict[str, Any] | None:
    """Compose the bridge question of sibling A (``parent``) and B (``child``), or return None."""
    match = _BRIDGE_RE.match(parent["question"].strip())
    bridge = gold_answers(parent["answer"])
    gold = gold_answers(child["answer"])
    if match is None or bridge is None or gold is None or child["decomposition"]:
        return None
    entity = re.compile(rf"(?<!\w){re.escape(bridge[0].strip())}(?!\w)")
    if len(entity.findall(child["question"])) != 1:
        return None
    question = entity.sub(lambda _: match.group(1), child["question"].strip())
    row = _row(f"{parent['id']}-{child['id']}", question, gold, MULTI, {"decomposition": []}, 2)
    row["decomposition"] = decomposition({"decomposition": [parent, child]})
    return row


def _bridges(node: dict[str, Any], selected: bool) -> Iterator[tuple[str, dict[str, Any]]]:
    """Yield the bridge questions composed from ``node``'s direct sub-questions."""
    children = node["decomposition"]
    siblings = {c["id"]: c for c in children}
    for child in children:
        if len(child["depends_on"]) != 1 or child["id"] in ERRATA:
            continue
        parent = siblings.get(child["depends_on"][0])
        if parent is None or parent["id"] in ERRATA or (selected and len(children) == 2):
            continue
        row = _bridge(parent, child)
        if row is not None:
            yield row["question_id"], row


def select(data: list[dict[str, Any]]) -> dict[str, list[dict[str, Any]]]:
    """Apply the selection rules to the parsed source file."""
    single: list[tuple[str, dict[str, Any]]] = []
    multi: list[tuple[str, dict[str, Any]]] = []
    for node, top in _walk(data, True):
        if node["id"] in ERRATA:
            continue
        n = hops(node)
        question = node["question"].strip()
        gold = gold_answers(node["answer"])
        if n >= 2 and gold is not None:
            multi.append((node["id"], _row(node["id"], question, gold, MULTI, node, n)))
        elif n == 1 and not top and isinstance(node["answer"], str) and gold is not None:
            single.append((node["id"], _row(node["id"], question, gold, SINGLE, node, 1)))
        multi.extend(_bridges(node, selected=n >= 2 and gold is not None))
    return {SINGLE: _merge(single), MULTI: _merge(multi)}


def _jsonl(rows: list[dict[str, Any]]) -> bytes:
    return "".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows).encode("utf-8")


def _sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def _attribution(version: str, counts: dict[str, int]) -> str:
    errata = "".join(f"\n  - `{k}`: {v}" for k, v in sorted(ERRATA.items()))
    lines = [
        "# Attribution of the embedded question sets",
        "",
        "The files `fanoutqa_single.jsonl` and `fanoutqa_multi.jsonl` in this folder are derived from",
        '**FanOutQA**: Andrew Zhu, Alyssa Hwang, Liam Dugan and Chris Callison-Burch, "FanOutQA: A',
        'Multi-Hop, Multi-Document Question Answering Benchmark for Large Language Models", ACL 2024',
        "(https://aclanthology.org/2024.acl-short.2/). Source: the `fanoutqa` package on PyPI,",
        f"version {version}, file `fanoutqa/data/{SOURCE_FILE}` (https://github.com/zhudotexe/fanoutqa).",
        "The FanOutQA data is licensed under the Creative Commons Attribution-ShareAlike 4.0",
        "International licence (CC BY-SA 4.0); its full text is in `LICENSE-DATA` beside this file.",
        "",
        "**Licence of the derived files.** `fanoutqa_single.jsonl`, `fanoutqa_multi.jsonl` and",
        "`manifest.json` are released under CC BY-SA 4.0 (share-alike), see `LICENSE-DATA`.",
        "recal-gym's code is licensed separately.",
        "",
        "## What was changed",
        "",
        "- Rows were selected, flattened and re-shaped into recal-gym's question format",
        "  (`question_id`, `question`, `golden_answers`, `data_source`, `decomposition`, `hops`).",
        "  The Wikipedia `evidence`, `categories` and `depends_on` fields were dropped.",
        "- Non-string answers were converted to strings and some questions were excluded, as below.",
        "- Bridge questions in `fanoutqa_multi` are new text composed from two FanOutQA sub-questions.",
        f"- Row counts: {', '.join(f'{k} {v}' for k, v in sorted(counts.items()))}.",
        "",
        RULES.replace("ERRATA_LIST", errata).rstrip(),
        "",
        "The files are regenerated byte-identically by `scripts/build_embedded_data.py`.",
        "",
    ]
    return "\n".join(lines)


def build(out: Path, src: Path | None = None) -> dict[str, Any]:
    """Write every embedded file into ``out`` and return the manifest.

    Args:
        out: Output folder (created if missing).
        src: The ``fanoutqa`` data folder; defaults to the installed package's.

    Returns:
        The manifest written to ``manifest.json``.
    """
    src = source_dir() if src is None else src
    raw = (src / SOURCE_FILE).read_bytes()
    version = importlib.metadata.version(PACKAGE)
    datasets = select(json.loads(raw))
    out.mkdir(parents=True, exist_ok=True)
    manifest: dict[str, Any] = {
        "format": "recal-gym-embedded/1",
        "source": {
            "package": PACKAGE,
            "version": version,
            "file": SOURCE_FILE,
            "sha256": _sha256(raw),
            "licence": "CC BY-SA 4.0",
        },
        "licence": "CC BY-SA 4.0",
        "licence_file": "LICENSE-DATA",
        "attribution_file": "ATTRIBUTION.md",
        "datasets": {},
        "profiles": {name: {"profile": PROFILES[name]} for name in sorted(datasets)},
    }
    for name in sorted(datasets):
        data = _jsonl(datasets[name])
        (out / f"{name}.jsonl").write_bytes(data)
        manifest["datasets"][name] = {
            "file": f"{name}.jsonl",
            "rows": len(datasets[name]),
            "sha256": _sha256(data),
            "profile": PROFILES[name],
        }
    (out / "LICENSE-DATA").write_bytes((src / "LICENSE").read_bytes())
    counts = {name: len(rows) for name, rows in datasets.items()}
    (out / "ATTRIBUTION.md").write_text(_attribution(version, counts), encoding="utf-8", newline="\n")
    (out / "manifest.json").write_text(
        json.dumps(manifest, indent=2, ensure_ascii=False) + "\n", encoding="utf-8", newline="\n"
    )
    return manifest


def main(argv: list[str] | None = None) -> int:
    """Command-line entry point."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT, help="output folder")
    args = parser.parse_args(argv)
    manifest = build(args.out)
    for name, entry in manifest["datasets"].items():
        sys.stdout.write(f"{name}: {entry['rows']} rows -> {args.out / entry['file']}\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
