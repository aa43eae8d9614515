"""Every bad ``recal-gym`` invocation: one line on stderr, exit code 2, no traceback (issue #12 items 11, 12).

Each invocation runs in-process through :func:`agents.cli.main` (fast: no interpreter start), from a
directory holding the bad files; a few run through ``python -m agents.cli`` to check the real entry
point, ``--debug`` and a missing matplotlib.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from agents.cli import main

ROOT = Path(__file__).resolve().parents[3]
FIXTURES = ROOT / "tests" / "fixtures" / "data"

FILES: dict[str, bytes] = {
    "bad_syntax.yaml": b"models:\n  - name: a\n    descriptor: [unclosed\n",
    "bad_field.yaml": b"models:\n  - {name: T, descriptor: d, price_per_1m_output: 1, max_tokens: many}\n",
    "bad_temp.yaml": b"models:\n  - {name: T, descriptor: d, price_per_1m_output: 1, temperature: [1]}\n",
    "bad_key.yaml": b"models:\n  - {name: T, descriptor: d, price_per_1m_output: 1, colour: red}\n",
    "garbage.json": b'{"models": [',
    "empty.jsonl": b"",
    "blank.jsonl": b"\n \n",
    "deep.jsonl": b"[" * 100_000 + b"\n",
    "notutf8.jsonl": b'{"question": "caf\xe9?", "golden_answers": ["x"]}\n',
    "surrogate.jsonl": b'{"question": "a \\ud800?", "golden_answers": ["x"]}\n',
    "garbage.parquet": b"not parquet at all",
    "afile": b"x",
    "bad_cfg.yaml": b"lr: [1\n",
    "bad_cfg.json": b"[1",
    "garbage.sqlite": b"not a database " * 50,
}
"""Bad inputs written into the working directory of every invocation."""

BAD: list[tuple[str, str]] = [
    ("eval --n 0", "argument --n: must be an integer >= 1, got 0"),
    ("eval --n -3", "argument --n: must be an integer >= 1, got -3"),
    ("eval --n abc", "argument --n: must be an integer >= 1, got 'abc'"),
    ("eval --seed x", "argument --seed: invalid int value: 'x'"),
    ("eval --nosuch-flag", "unrecognized arguments: --nosuch-flag"),
    ("eval --reward nosuch --no-files", "unknown reward preset 'nosuch'"),
    ("eval --dataset foo.csv --no-files", "question spec 'foo.csv' is not recognised"),
    ("eval --dataset missing.jsonl --no-files", "No such file or directory: 'missing.jsonl'"),
    ("eval --dataset embedded:nosuch --no-files", "unknown embedded dataset 'nosuch'"),
    ("eval --dataset empty.jsonl --no-files", "empty.jsonl: no rows"),
    ("eval --dataset blank.jsonl --no-files", "blank.jsonl: no rows"),
    ("eval --dataset deep.jsonl --no-files", "deep.jsonl, row 1: JSON nested too deeply"),
    ("eval --dataset notutf8.jsonl --no-files", "notutf8.jsonl, row 1: not UTF-8 text (byte offset 17"),
    ("eval --dataset surrogate.jsonl --no-files", "surrogate.jsonl, row 1: field 'question' "),
    (f"eval --dataset {FIXTURES}/bad_json.jsonl --no-files", "bad_json.jsonl, row 2: not valid JSON"),
    (f"eval --dataset {FIXTURES}/bad_missing_field.jsonl --no-files", "row 2: field 'golden_answers' is missing"),
    (f"eval --dataset {FIXTURES}/bad_duplicate_ids.jsonl --no-files", "duplicate question id"),
    (f"eval --dataset {FIXTURES}/bad_empty_answers.jsonl --no-files", "field 'golden_answers'"),
    (f"eval --dataset {FIXTURES}/bad_answers_not_list.jsonl --no-files", "field 'golden_answers'"),
    (f"eval --dataset {FIXTURES}/bad_empty_question.jsonl --no-files", "field 'question'"),
    ("eval --dataset garbage.parquet --no-files", "garbage.parquet: not a readable Parquet file"),
    ("eval --pool missing.yaml --no-files", "pool file 'missing.yaml' does not exist"),
    ("eval --pool nosuch --no-files", "pool 'nosuch' is neither a known profile"),
    ("eval --pool bad_syntax.yaml --no-files", "pool file bad_syntax.yaml: line 4, column 1: not valid YAML"),
    ("eval --pool bad_field.yaml --no-files", "pool model 'T': field 'max_tokens' must be an integer, got 'many'"),
    ("eval --pool bad_temp.yaml --no-files", "pool model 'T': field 'temperature' must be a finite number, got [1]"),
    ("eval --pool bad_key.yaml --no-files", "pool model 'T': unknown field(s) ['colour']"),
    ("eval --pool garbage.json --no-files", "pool file garbage.json: line 1, column 13: not valid JSON"),
    ("eval --router single:GPT-5 --no-files", "--router single:GPT-5: model 'GPT-5' is not in the pool"),
    ("eval --router single:LLaMA-3.1-7B-Instruct --no-files", "Did you mean 'LLaMA-3.1-70B-Instruct' or 'LLaMA-3.1-8B"),
    ("eval --router best --no-files", "unknown router 'best' — use random, direct"),
    ("eval --router sb3:missing.zip --no-files", "--router sb3:missing.zip: 'missing.zip' does not exist"),
    ("eval --router checkpoint:missing_dir --no-files", "'missing_dir' does not exist"),
    ("eval --out afile", "--out 'afile' is a file, not a directory"),
    ("eval --json . --no-files", "--json '.' is a directory, not a file"),
    ("pool", "the following arguments are required: pool_cmd"),
    ("pool record", "the following arguments are required: --out"),
    ("pool record --batch-size 0 --out t.jsonl", "argument --batch-size: must be an integer >= 1, got 0"),
    ("pool record --n 0 --out t.jsonl", "argument --n: must be an integer >= 1, got 0"),
    ("pool record --out t.csv", "replay table 't.csv' must end in one of ['.jsonl', '.parquet', '.pq']"),
    ("pool record --out afile", "replay table 'afile' must end in one of"),
    ("pool record --out t.jsonl --model nosuch", "model 'nosuch' is not in pool"),
    ("pool record --out t.jsonl --pool missing.yaml", "pool file 'missing.yaml' does not exist"),
    ("pool record --out t.jsonl --pool bad_field.yaml", "field 'max_tokens' must be an integer"),
    ("pool record --out t.jsonl --dataset foo.csv", "question spec 'foo.csv' is not recognised"),
    ("pool record --out t.jsonl --dataset deep.jsonl", "deep.jsonl, row 1: JSON nested too deeply"),
    ("train --preset huge", "unknown preset 'huge'"),
    ("train --config missing.yaml", "--config 'missing.yaml' does not exist"),
    ("train --config bad_cfg.yaml", "config file 'bad_cfg.yaml' is not valid YAML"),
    ("train --config bad_cfg.json", "config file 'bad_cfg.json' is not valid JSON"),
    ("train --set lr", "--set needs FIELD=VALUE, got 'lr'"),
    ("train --set nosuch=1", "unknown TrainConfig field(s) ['nosuch']"),
    ("train --set lr=-1", "TrainConfig.lr=-1 must be a finite number > 0"),
    ("train --steps 0", "TrainConfig.steps=0 must be an int >= 1"),
    ("train --estimator nosuch", "TrainConfig.estimator='nosuch' is not one of"),
    ("train --resume missing_dir", "--resume 'missing_dir' does not exist"),
    ("train --threads 0", "argument --threads: must be an integer >= 1, got 0"),
    ("train --out afile", "--out 'afile' is a file, not a directory"),
    ("assets install nosuch", "unknown asset 'nosuch'"),
    ("assets install", "no asset named — name assets to install, or pass --demo"),
    ("assets install --gemma --dry-run", "Gemma-3-270m is under the Gemma Terms of Use"),
    ("assets locate nosuch", "unknown asset 'nosuch'"),
    ("assets prepare nosuch", "argument name: invalid choice: 'nosuch'"),
    ("", "the following arguments are required: cmd"),
    ("nosuch", "argument cmd: invalid choice: 'nosuch'"),
]
"""(invocation, a piece of its one-line message); every one must exit 2 before doing any work."""


@pytest.fixture
def bad_files(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    for name, content in FILES.items():
        (tmp_path / name).write_bytes(content)
    monkeypatch.chdir(tmp_path)
    return tmp_path


def _run(argv: list[str]) -> int:
    try:
        return main(argv)
    except SystemExit as exc:  # argparse exits itself
        return int(exc.code or 0)


@pytest.mark.parametrize(("invocation", "message"), BAD, ids=[b[0] or "<none>" for b in BAD])
def test_bad_invocation_is_one_line_exit_2(bad_files: Path, capsys, invocation: str, message: str) -> None:
    before = sorted(p.name for p in bad_files.iterdir())
    code = _run(invocation.split())
    out, err = capsys.readouterr()
    assert code == 2, err
    lines = err.splitlines()
    assert len(lines) == 1, err
    assert lines[0].startswith("recal-gym") and " — " in lines[0] and "Traceback" not in err
    assert message in lines[0]
    assert out == ""  # nothing printed, nothing run
    assert sorted(p.name for p in bad_files.iterdir()) == before  # nothing written


def test_a_bad_cache_path_in_a_pool_is_a_config_error(bad_files: Path, capsys) -> None:
    from agents.cli.validation import error_line
    from recal_gym.errors import InvalidConfig
    from recal_gym.pools import build_pool
    from recal_gym.pools.options import PoolOptions

    with pytest.raises(InvalidConfig) as info:
        build_pool(None, PoolOptions(cache_path="garbage.sqlite"))
    line = error_line("recal-gym eval", info.value)
    assert line.startswith("recal-gym eval: response cache path 'garbage.sqlite' cannot hold the cache")
    assert "\n" not in line


def _cli(args: list[str], cwd: Path, pre: str = "") -> subprocess.CompletedProcess[str]:
    code = "; ".join(c for c in ("import sys", pre, "from agents.cli import main", "sys.exit(main(sys.argv[1:]))") if c)
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    return subprocess.run([sys.executable, "-c", code, *args], cwd=cwd, env=env, capture_output=True, text=True)


def test_entry_point_exit_code_and_debug_traceback(bad_files: Path) -> None:
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    proc = subprocess.run(
        [sys.executable, "-m", "agents.cli", "eval", "--router", "single:GPT-5", "--no-files", "--n", "1"],
        cwd=bad_files,
        env=env,
        capture_output=True,
        text=True,
    )
    assert proc.returncode == 2 and proc.stdout == ""
    assert (
        proc.stderr.count("\n") == 1 and "Traceback" not in proc.stderr and "'GPT-5' is not in the pool" in proc.stderr
    )
    debug = _cli(["--debug", "eval", "--pool", "bad_field.yaml", "--no-files"], bad_files)
    assert debug.returncode == 1 and "Traceback" in debug.stderr and "InvalidConfig" in debug.stderr


@pytest.mark.slow
def test_without_matplotlib_eval_and_train_stop_before_work_and_tables_still_work(bad_files: Path) -> None:
    hide = "sys.modules['matplotlib'] = None"
    proc = _cli(["eval", "--n", "1", "--no-progress", "--out", "ev"], bad_files, hide)
    assert proc.returncode == 2 and proc.stdout == "" and not (bad_files / "ev").exists()
    assert proc.stderr.strip() == (
        "recal-gym eval: plots need matplotlib, which is not installed — pip install matplotlib, or pass --no-plots"
    )
    proc = _cli(["train", "--out", "run"], bad_files, hide)
    assert proc.returncode == 2 and "training curves need matplotlib" in proc.stderr and "--no-plot" in proc.stderr
    assert not (bad_files / "run").exists()
    proc = _cli(["train", "--out", "run", "--no-plot"], bad_files, "sys.modules['tensorboard'] = None")
    assert proc.returncode == 2 and "TensorBoard events need tensorboard" in proc.stderr
    args = ["eval", "--n", "1", "--no-progress", "--out", "ev", "--no-plots", "--router", "direct"]
    proc = _cli(args, bad_files, hide)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.rstrip().endswith("wrote table.md, table.csv, reports.json, episodes.jsonl to ev")
    written = sorted(p.name for p in (bad_files / "ev").iterdir())
    assert written == ["episodes.jsonl", "reports.json", "table.csv", "table.md"]
    assert json.loads((bad_files / "ev" / "reports.json").read_text())["reports"][0]["router"] == "direct"
