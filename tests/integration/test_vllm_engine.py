"""The learner's vLLM rollout engine (``agents.grpo.engines.VLLMEngine``) on a real vllm-cpu, weight sync included.

``scripts/vllm_engine_check.py`` runs in the vllm-cpu venv (a subprocess: vllm-cpu pins other
transformers/numpy versions than the project venv). It builds the tiny Llama, samples with vLLM,
compares the sampler log-probs with the HF training forward, perturbs the HF weights (a simulated
update), syncs them into vLLM and compares greedy continuations. This test asserts on its JSON report.
The project is installed into that venv on first use (``pip install gymnasium`` and
``pip install --no-deps -e <repo>``), the same two steps ``scripts/setup_vllm_cpu.sh`` runs.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
from pathlib import Path
from typing import Any

import pytest

from .conftest import READY_MARKER, REPO_ROOT, SETUP_SCRIPT, _server_env, default_vllm_venv

pytestmark = pytest.mark.integration

CHECK_SCRIPT = REPO_ROOT / "scripts" / "vllm_engine_check.py"
CHECK_TIMEOUT_S = 300.0
"""Generous bound on the whole check (measured ~50 s: ~25 s engine start, ~5 s shutdown)."""
FP32_TOL = 1e-3
"""Log-prob agreement, vLLM float32 vs HF float32 (measured ~5e-7 before and ~5e-5 after the update)."""


def _run(argv: list[str], cwd: Path, timeout: float) -> subprocess.CompletedProcess[str]:
    """Run ``argv`` in its own process group; kill the whole group if it outlives ``timeout``."""
    proc = subprocess.Popen(
        argv,
        cwd=cwd,
        env=_server_env(),
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        start_new_session=True,  # the engine-core child is in this group too
    )
    try:
        out, _ = proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        out, _ = proc.communicate()
        pytest.fail(f"{argv[1:]} timed out after {timeout:.0f} s:\n{out[-4000:]}")
    finally:
        try:  # reap any straggler (e.g. an engine core left by a crash)
            os.killpg(proc.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
    return subprocess.CompletedProcess(argv, proc.returncode, out, "")


def _ensure_project(python: Path, cwd: Path) -> None:
    """Install gymnasium and this repository (editable, no deps) into the venv unless already there."""
    probe = "import gymnasium, agents; print(agents.__file__)"
    found = _run([str(python), "-c", probe], cwd, 120.0)
    if found.returncode == 0 and Path(found.stdout.strip().splitlines()[-1]).resolve().parent.parent == REPO_ROOT:
        return
    for args in (["gymnasium"], ["--no-deps", "-e", str(REPO_ROOT)]):
        done = _run([str(python), "-m", "pip", "install", "--disable-pip-version-check", *args], cwd, 300.0)
        if done.returncode != 0:
            pytest.fail(f"pip install {' '.join(args)} into the vllm-cpu venv failed:\n{done.stdout[-4000:]}")


@pytest.fixture(scope="module")
def report(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    """Run the engine check once (float32 engine) and return its JSON report."""
    venv = default_vllm_venv()
    python = venv / "bin" / "python"
    if not (python.is_file() and (venv / READY_MARKER).is_file()):
        pytest.skip(
            f"vllm-cpu venv not found at {venv}; create it with: bash {SETUP_SCRIPT} {venv}  "
            "(or set RECAL_GYM_VLLM_VENV)"
        )
    work = tmp_path_factory.mktemp("vllm-engine")
    _ensure_project(python, work)
    out = work / "report.json"
    done = _run([str(python), str(CHECK_SCRIPT), "--dtype", "float32", "--out", str(out)], work, CHECK_TIMEOUT_S)
    if done.returncode != 0 or not out.is_file():
        pytest.fail(f"vllm_engine_check.py exited with {done.returncode}:\n{done.stdout[-6000:]}")
    return json.loads(out.read_text(encoding="utf-8"))


def test_engine_started_and_reports_figures(report: dict[str, Any]) -> None:
    assert report["dtype"] == "float32"
    assert report["vllm_version"].startswith("0.")
    assert report["engine_start_seconds"] > 0.0
    assert report["sampling"]["batch_tokens"] > 0 and report["sampling"]["tokens_per_second"] > 0.0
    assert len(report["sync"]["sync_seconds"]) >= 1


def test_sampler_logprobs_match_hf_training_forward(report: dict[str, Any]) -> None:
    s = report["sampling"]
    assert s["sampled_tokens"] > 0
    assert s["logprob_abs_diff"]["max"] < FP32_TOL
    assert s["stops_ok"]  # every turn ends at EOS, right after a stop string, or at the budget


def test_same_generator_seed_gives_same_samples(report: dict[str, Any]) -> None:
    assert report["sampling"]["reproducible"]


def test_greedy_matches_hf_before_update(report: dict[str, Any]) -> None:
    assert report["sync"]["greedy_before_update_equal"]


def test_sync_weights_makes_vllm_follow_the_updated_model(report: dict[str, Any]) -> None:
    s = report["sync"]
    assert s["update_changed_hf_greedy"]  # the simulated update matters for greedy decoding
    assert s["stale_equals_before"]  # without a sync vLLM still samples the old weights
    assert s["logprob_abs_diff_stale"]["max"] > 1.0  # ... and disagrees with the updated model
    assert s["greedy_after_sync_equal"]
    assert s["greedy_after_sync_tokens"] > 0
    assert s["logprob_abs_diff_after_sync"]["max"] < FP32_TOL
