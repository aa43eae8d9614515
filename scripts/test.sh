#!/usr/bin/env bash
# Set up (venv, torch CPU wheel, project, offline assets) and run the whole test suite, as CI does.
# Usage: bash scripts/test.sh [extra pytest args]
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh --assets
# shellcheck disable=SC1091
. "${RECAL_GYM_VENV:-.venv}/bin/activate"
export HF_HUB_OFFLINE=1 HF_DATASETS_OFFLINE=1 TOKENIZERS_PARALLELISM=false
ruff check .
python -m pytest -p no:cacheprovider "$@"
