#!/usr/bin/env bash
# The main job, offline, on the embedded default: baseline routers on RouterQA-v0 (FanOutQA-derived
# questions, simulated Router-R1 pool), printing a per-dataset table of EM, F1, cost and calls.
# Usage: bash scripts/main.sh [extra `recal-gym eval` flags]
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
# shellcheck disable=SC1091
. "${RECAL_GYM_VENV:-.venv}/bin/activate"
export HF_HUB_OFFLINE=1 HF_DATASETS_OFFLINE=1
recal-gym eval --n 100 --out runs/eval "$@"
