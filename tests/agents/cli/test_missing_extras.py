"""A missing optional dependency is one line and exit status 2, never a traceback.

(Missing matplotlib and tensorboard, checked before any work, are in ``test_errors.py``.)
"""

from __future__ import annotations

import sys

import pytest

from agents.cli import main


def test_train_without_torch_is_one_line_naming_the_train_extra(monkeypatch, capsys) -> None:
    monkeypatch.setitem(sys.modules, "torch", None)  # as in a core-only install
    assert main(["train", "--preset", "tiny", "--out", "unused", "--no-progress"]) == 2
    err = capsys.readouterr().err
    assert err == (
        'recal-gym train: training a router needs torch, which is not installed — pip install "recal-gym[train]"\n'
    )


def test_eval_with_matplotlib_lists_the_plots_it_wrote(tmp_path, capsys) -> None:
    pytest.importorskip("matplotlib")
    out = tmp_path / "eval"
    assert main(["eval", "--n", "2", "--router", "direct", "--no-progress", "--out", str(out)]) == 0
    wrote = capsys.readouterr().out.rsplit("wrote ", 1)[1]
    assert "pareto.png, per_dataset_em.png" in wrote and "table.md" in wrote
    assert (out / "pareto.png").stat().st_size > 0
