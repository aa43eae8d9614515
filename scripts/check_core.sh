#!/usr/bin/env bash
# The core-only install job (part of scripts/test.sh, so of CI): `pip install recal-gym` with no
# extras and no torch pin, in a fresh venv, then the env and eval path in it.
#
# 1. python3 -m venv TMP; pip install a copy of the package sources (a real wheel build: package data
#    must ship in it; the copy keeps build artefacts out of the checkout)
# 2. torch, transformers, stable-baselines3, trl and datasets must NOT be installed; print size and count
# 3. scripts/core_smoke.py from outside the checkout (the installed wheel runs): gym.make and an
#    episode of RouterQA-v0 and RouterQADiscrete-v0, `recal-gym eval --n 5` in-process, with an import
#    hook proving torch & co. were never even asked for
# 4. the console scripts: `recal-gym eval --n 5 --no-progress` exits 0; `recal-gym train` exits 2 with
#    one line naming the train extra
# 5. scripts/core_smoke.py again in the current (dev) venv, where torch is installed: still no attempt
# Usage: bash scripts/check_core.sh        (RECAL_GYM_CORE_VENV=DIR keeps the venv there)
set -euo pipefail
cd "$(dirname "$0")/.."
REPO=$(pwd)
WORK=$(mktemp -d -t recal-gym-core.XXXXXX)
trap 'rm -rf "$WORK"' EXIT
VENV=${RECAL_GYM_CORE_VENV:-$WORK/venv}
start=$(date +%s)
rm -rf "$VENV"
python3 -m venv "$VENV"
PY="$VENV/bin/python"
mkdir "$WORK/src"
cp -r pyproject.toml README.md recal_gym envs agents "$WORK/src/"
find "$WORK/src" -name __pycache__ -prune -exec rm -rf {} +
"$PY" -m pip install --quiet --disable-pip-version-check "$WORK/src"
for pkg in torch transformers stable-baselines3 trl datasets; do
    if "$PY" -m pip show "$pkg" >/dev/null 2>&1; then
        echo "check_core: error: pip install recal-gym (no extras) installed $pkg" >&2
        exit 1
    fi
done
size=$(du -sm "$VENV" | cut -f1)
count=$("$PY" -m pip list --format=freeze --exclude-editable 2>/dev/null | grep -vcE '^(pip|setuptools|wheel)==' || true)
echo "check_core: core venv ${size} MB, ${count} packages besides pip/setuptools (incl. recal-gym), $(( $(date +%s) - start )) s to install"

cd "$WORK"  # outside the checkout: imports come from the installed wheel
"$PY" "$REPO/scripts/core_smoke.py" "$WORK/out"
"$VENV/bin/recal-gym" eval --n 5 --no-progress --out "$WORK/cli" > "$WORK/eval.txt" 2> "$WORK/eval.err"
grep -q "| random |" "$WORK/eval.txt"
test -s "$WORK/cli/pareto.png" && test -s "$WORK/cli/table.md"
set +e
"$VENV/bin/recal-gym" train --preset tiny --out "$WORK/train" > "$WORK/train.out" 2> "$WORK/train.err"
code=$?
set -e
if [[ $code -ne 2 || $(wc -l < "$WORK/train.err") -ne 1 ]] || ! grep -q 'pip install "recal-gym\[train\]"' "$WORK/train.err"; then
    echo "check_core: error: recal-gym train without torch gave exit $code and:" >&2
    cat "$WORK/train.err" >&2
    exit 1
fi
echo "check_core: recal-gym train without torch: exit 2, $(cat "$WORK/train.err")"
cd "$REPO"
PYTHONPATH="$REPO" python "$REPO/scripts/core_smoke.py" "$WORK/dev"   # the dev venv: torch installed, never asked for
echo "check_core: OK in $(( $(date +%s) - start )) s"
