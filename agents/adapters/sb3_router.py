"""SB3 models trained on ``RouterQADiscrete-v0`` as text routers: ``recal-gym eval --router sb3:<zip>``.

:func:`save_router` writes the SB3 model (``model.save``, a ``.zip``) and, next to it, a sidecar
``<name>.router.json`` holding what the zip does not: the algorithm (``stable_baselines3.PPO``,
``sb3_contrib.MaskablePPO``, ...), the featuriser (``{"kind": "hashing", "dim", "ngrams", "seed"}`` or
``{"kind": "minilm", "path"}``), the listed models in action order, ``cost_scale``, ``mask_repeats`` and
the env's ``max_routed_turns``. :func:`load_router` reads both and returns an :class:`SB3Router`: it
rebuilds the discrete observation from the text env's prompt, observations and info
(:func:`envs.discrete.discrete_observation`) and writes the same text turns the discrete env writes
(:func:`envs.discrete.action_text`), so the model acts in RouterQA exactly as in training. Action
masks are passed to models that take them (MaskablePPO). Its episodes should run with the training
env's ``max_routed_turns`` (:meth:`SB3Router.env_kwargs`; ``recal-gym eval`` does this).
"""

from __future__ import annotations

import importlib
import inspect
import json
from pathlib import Path
from typing import Any

import numpy as np
import torch

from agents.eval.baselines import question_from_prompt
from envs.discrete import (
    HashingFeaturizer,
    QueryFeaturizer,
    RouterQADiscreteEnv,
    action_mask,
    action_text,
    discrete_observation,
    reply_answer,
)
from recal_gym.errors import AssetMissing, InvalidConfig

__all__ = ["SIDECAR_FORMAT", "SB3Router", "load_router", "save_router", "sidecar_path"]

SIDECAR_FORMAT = "recal-gym-sb3-router"
"""``<name>.router.json["format"]``."""
_VERSION = 1


def sidecar_path(zip_path: str | Path) -> Path:
    """``model.zip`` -> ``model.router.json`` (same directory)."""
    p = Path(zip_path)
    return p.with_name((p.name[: -len(".zip")] if p.name.endswith(".zip") else p.name) + ".router.json")


def _featurizer_spec(featurizer: QueryFeaturizer) -> dict[str, Any]:
    if isinstance(featurizer, HashingFeaturizer):
        return {"kind": "hashing", "dim": featurizer.dim, "ngrams": featurizer.ngrams, "seed": featurizer.seed}
    from agents.models.featurizers import MiniLMFeaturizer

    if isinstance(featurizer, MiniLMFeaturizer):
        return {"kind": "minilm", "path": None}
    raise InvalidConfig(
        f"save_router cannot describe featurizer {type(featurizer).__name__}; use HashingFeaturizer or MiniLMFeaturizer"
    )


def save_router(model: Any, path: str | Path, env: RouterQADiscreteEnv) -> Path:
    """Save an SB3 model trained on ``env`` plus its sidecar; returns the ``.zip`` path.

    Args:
        model: A stable-baselines3 (or sb3-contrib) algorithm instance.
        path: Where to write the zip (``.zip`` is appended when missing).
        env: The (unwrapped) discrete env it was trained on (featuriser, models, settings).
    """
    p = Path(path)
    p = p if p.name.endswith(".zip") else p.with_name(p.name + ".zip")
    p.parent.mkdir(parents=True, exist_ok=True)
    model.save(str(p))
    cls = type(model)
    meta = {
        "format": SIDECAR_FORMAT,
        "version": _VERSION,
        "algorithm": f"{cls.__module__}:{cls.__name__}",
        "featurizer": _featurizer_spec(env.featurizer),
        "models": list(env.models),
        "cost_scale": env.cost_scale,
        "mask_repeats": env.mask_repeats,
        "max_routed_turns": env.text_env.max_routed_turns,
    }
    sidecar_path(p).write_text(json.dumps(meta, indent=2))
    return p


def _build_featurizer(spec: dict[str, Any]) -> QueryFeaturizer:
    if spec.get("kind") == "hashing":
        return HashingFeaturizer(dim=int(spec["dim"]), ngrams=int(spec["ngrams"]), seed=int(spec["seed"]))
    if spec.get("kind") == "minilm":
        from agents.models.featurizers import MiniLMFeaturizer

        return MiniLMFeaturizer(spec.get("path"))
    raise InvalidConfig(f"unknown featurizer kind {spec.get('kind')!r}; known: 'hashing', 'minilm'")


class SB3Router:
    """A discrete-env SB3 policy acting through the RouterQA text API (see the module docstring).

    Args:
        model: The loaded SB3 model.
        meta: The sidecar's contents.
        deterministic: Greedy actions (``predict(deterministic=True)``).
        seed: Seed of sampled actions (``deterministic=False``).
        name: Display name.
    """

    def __init__(
        self, model: Any, meta: dict[str, Any], *, deterministic: bool = True, seed: int = 0, name: str = "sb3"
    ) -> None:
        """Bind the model and rebuild its featuriser."""
        self.model = model
        self.models: tuple[str, ...] = tuple(meta["models"])
        self.featurizer = _build_featurizer(meta["featurizer"])
        self.cost_scale = float(meta["cost_scale"])
        self.mask_repeats = bool(meta["mask_repeats"])
        self.max_routed_turns = int(meta["max_routed_turns"])
        self.deterministic = deterministic
        self.seed = seed
        self.name = name
        self._calls = 0
        self._masked = "action_masks" in inspect.signature(model.predict).parameters  # MaskablePPO
        self._question = ""
        self._features = np.zeros(0, dtype=np.float32)
        self._asked = np.zeros(len(self.models))
        self._answers: list[str] = []
        self._last_has_answer = False
        self._routed = False

    def env_kwargs(self) -> dict[str, Any]:
        """RouterQA arguments matching the training env (its routing-turn budget)."""
        return {"max_routed_turns": self.max_routed_turns}

    def reset(self, prompt: str, info: dict[str, Any]) -> None:
        """Start an episode: featurise the question."""
        self._question = question_from_prompt(prompt)
        self._features = np.clip(np.asarray(self.featurizer([self._question]), dtype=np.float32)[0], -1.0, 1.0)
        self._asked = np.zeros(len(self.models))
        self._answers, self._last_has_answer, self._routed = [], False, False

    def act(self, observation: str, info: dict[str, Any]) -> str:
        """Update the turn state from the last reply, predict an action, write its text turn."""
        if self._routed:
            stated = reply_answer(observation)
            self._last_has_answer = stated is not None
            if stated is not None:
                self._answers.append(stated)
        obs = discrete_observation(
            self._features,
            turn=float(info.get("turn", 0.0)),
            max_routed_turns=self.max_routed_turns,
            raw_cost=float(info.get("raw_cost", 0.0)),
            cost_scale=self.cost_scale,
            asked=self._asked,
            last_has_answer=self._last_has_answer,
        )
        kwargs: dict[str, Any] = {"deterministic": self.deterministic}
        if self._masked:
            left = float(info.get("routed_turns_left", 0.0))
            kwargs["action_masks"] = action_mask(
                routed_turns_left=left, done=False, asked=self._asked, mask_repeats=self.mask_repeats
            )
        # SB3 samples from torch's global RNG: draw inside a forked RNG seeded by (seed, call number),
        # so sampled runs repeat and the caller's global RNG state is left untouched.
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(self.seed * 1_000_003 + self._calls)
            action, _ = self.model.predict(obs, **kwargs)
        self._calls += 1
        a = int(np.asarray(action).reshape(()))
        self._routed = a < len(self.models)
        if self._routed:
            self._asked[a] = 1.0
        return action_text(a, self.models, self._question, self._answers)


def _algorithm(path: str) -> Any:
    module, _, attr = path.partition(":")
    try:
        return getattr(importlib.import_module(module), attr)
    except ImportError as exc:
        raise AssetMissing(f"the SB3 router needs {module} ({exc}); pip install it to load this model") from None


def load_router(
    path: str | Path, *, sample: bool = False, temperature: float | None = None, seed: int = 0
) -> SB3Router:
    """Load ``path`` (a zip written by :func:`save_router`) as a text router.

    Args:
        path: The model zip; its sidecar ``<name>.router.json`` must sit next to it.
        sample: Sample actions instead of taking the most likely one.
        temperature: Not supported by SB3 policies (must be None).
        seed: Seed of the model's action sampling.

    Raises:
        InvalidConfig: no sidecar, a bad sidecar, or a ``temperature``.
        AssetMissing: the algorithm's package is not installed.
    """
    if temperature is not None:
        raise InvalidConfig(f"sb3:{path}: --temperature={temperature!r} does not apply to SB3 policies")
    zip_path = Path(path)
    side = sidecar_path(zip_path)
    if not side.is_file():
        raise InvalidConfig(
            f"sb3:{path}: no sidecar {side.name} next to the zip; save models with "
            "agents.adapters.sb3_router.save_router(model, path, env) so the featuriser and model list are known"
        )
    meta = json.loads(side.read_text())
    if meta.get("format") != SIDECAR_FORMAT or meta.get("version") != _VERSION:
        raise InvalidConfig(f"{str(side)!r} is not a {SIDECAR_FORMAT} v{_VERSION} sidecar")
    model = _algorithm(str(meta["algorithm"])).load(str(zip_path), device="cpu")
    return SB3Router(model, meta, deterministic=not sample, seed=seed, name=f"sb3:{zip_path.name}")
