"""verl adapter: the ``recal`` estimator in verl's advantage-estimator registry (``docs/learner.md`` §11).

verl (0.8/0.9) looks estimators up with ``core_algos.get_adv_estimator_fn(config.algorithm.adv_estimator)``
and calls them, on the driver, as::

    advantages, returns = fn(token_level_rewards=..., response_mask=..., config=algo_config, index=uid, ...)

with ``token_level_rewards``/``response_mask`` of shape ``(bs, response_length)`` and ``index`` the
``(bs,)`` group ``uid`` array. ReCal also needs each trajectory's six raw components and its
``data_source``, which upstream verl does not pass. :class:`VerlRecalEstimator` therefore takes two
extra keyword arguments, ``reward_components`` (``(bs, K)``, the reward spec's component order) and ``data_source``
(``(bs,)``), and :func:`recal_kwargs_from_batch` extracts them from a ``DataProto``.

Multi-node recipe:

1. Make the custom reward function return a dict with ``"score"`` plus ``raw_<component>`` for the six
   components (e.g. from RouterQA's ``info["reward_components_raw"]``); verl stores the extra keys in
   ``batch.non_tensor_batch`` (``reward_extra_info``). ``data_source`` is already a dataset column.
2. In the driver process, before building the trainer::

       from agents.adapters.verl import register_recal_with_verl
       fn = register_recal_with_verl("recal")          # lazy-imports verl; raises ImportError if absent

3. Set ``algorithm.adv_estimator=recal`` and pass the extra arguments where ``compute_advantage`` builds
   ``adv_kwargs`` (a three-line subclass/patch of ``ray_trainer.compute_advantage``)::

       adv_kwargs.update(recal_kwargs_from_batch(data))

4. Save ``fn.state.state_dict()`` with each checkpoint and ``load_state_dict`` it on resume. Advantages are
   computed once on the driver over the whole gathered batch, so every rank sees the same values and
   the result does not depend on the number of nodes (``docs/learner.md`` §4.6).

verl itself is never imported at module import time.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import Any

import numpy as np
import torch
from torch import Tensor

from agents.adapters.trl import recal_advantages
from agents.grpo.advantages import AdvantageFn, make_estimator
from agents.grpo.calibration import CalibrationState
from agents.grpo.estimator_config import RecalConfig
from recal_gym.errors import InvalidData
from recal_gym.rewards.presets import make_spec
from recal_gym.rewards.spec import RewardSpec

__all__ = [
    "COMPONENT_KEYS",
    "VerlRecalEstimator",
    "component_keys",
    "recal_kwargs_from_batch",
    "register_recal_with_verl",
]


def component_keys(spec: RewardSpec | str = "recal") -> tuple[str, ...]:
    """``non_tensor_batch`` keys (the reward function's extra info) holding a spec's raw components."""
    return tuple(f"raw_{k}" for k in make_spec(spec).names)


COMPONENT_KEYS: tuple[str, ...] = component_keys("recal")
"""The keys for the default ``recal`` spec."""

Register = Callable[[str], Callable[[Any], Any]]
"""verl's ``core_algos.register_adv_est``: ``name -> decorator``."""


class VerlRecalEstimator:
    """An ``agents`` estimator behind verl's advantage-estimator call signature.

    Args:
        estimator: Registry name in ``agents.grpo.advantages`` (default ``"recal"``).
        config: Estimator hyperparameters.
        spec: Reward spec whose gates, τ and weights turn raw components into the batch.
        state: Calibration state (σ̄ and running moments); one object for the whole run.

    Attributes:
        state: The :class:`~agents.grpo.calibration.CalibrationState` to checkpoint.
        last_metrics: ``dict[str, float]`` of the last call (``adv/*``, ``recal/*``, ``calib/*``).
    """

    def __init__(
        self,
        estimator: str = "recal",
        config: RecalConfig | None = None,
        *,
        spec: RewardSpec | str = "recal",
        state: CalibrationState | None = None,
    ) -> None:
        """Build the estimator (validated by ``make_estimator``/``make_spec``)."""
        self.fn: AdvantageFn = make_estimator(estimator, config)
        self.spec = make_spec(spec)
        self.state = CalibrationState() if state is None else state
        self.last_metrics: dict[str, float] = {}

    def __call__(
        self,
        token_level_rewards: Tensor,
        response_mask: Tensor,
        index: Sequence[Any] | np.ndarray | None = None,
        config: Any = None,
        *,
        reward_components: Tensor | np.ndarray | None = None,
        data_source: Sequence[str] | np.ndarray | None = None,
        **_: Any,
    ) -> tuple[Tensor, Tensor]:
        """Return ``(advantages, returns)``, both ``(bs, response_length)``: Â_i on every response token.

        Args:
            token_level_rewards: ``(bs, L)`` float; only checked for shape (the scalar is the spec's fold).
            response_mask: ``(bs, L)`` 0/1 response-token mask.
            index: ``(bs,)`` group keys (verl's ``uid``).
            config: verl's ``AlgoConfig`` (unused: hyperparameters are bound at construction).
            reward_components: ``(bs, K)`` raw components in the spec's component order.
            data_source: ``(bs,)`` dataset names.

        Raises:
            InvalidData: missing ``index``, ``reward_components`` or ``data_source``, or mismatched sizes.
        """
        bs = int(token_level_rewards.shape[0])
        if index is None or reward_components is None or data_source is None:
            raise InvalidData(
                "the ReCal estimator needs index (uid), reward_components (bs, K) and data_source (bs,); pass "
                "adv_kwargs.update(recal_kwargs_from_batch(data)) in compute_advantage (see agents.adapters.verl)"
            )
        raw = np.asarray(
            reward_components.detach().cpu().numpy() if isinstance(reward_components, Tensor) else reward_components,
            dtype=np.float64,
        )
        k = len(self.spec.names)
        if raw.shape != (bs, k) or tuple(response_mask.shape) != tuple(token_level_rewards.shape):
            raise InvalidData(
                f"shapes: token_level_rewards {tuple(token_level_rewards.shape)}, response_mask "
                f"{tuple(response_mask.shape)}, reward_components {raw.shape}; expected (bs, L), (bs, L), (bs, {k})"
            )
        keys = [k.item() if isinstance(k, np.generic) else k for k in index]
        out = recal_advantages(
            raw, [str(s) for s in data_source], keys, spec=self.spec, estimator=self.fn, state=self.state
        )
        self.last_metrics = {k: float(v) for k, v in out.metrics.items()}
        adv = out.advantages.to(token_level_rewards.device, token_level_rewards.dtype)  # (bs,)
        scores = adv.unsqueeze(-1) * response_mask.to(adv.dtype)  # (bs, L)
        return scores, scores


def recal_kwargs_from_batch(data: Any, spec: RewardSpec | str = "recal") -> dict[str, Any]:
    """``reward_components`` and ``data_source`` from a verl ``DataProto`` (its ``non_tensor_batch``).

    Args:
        data: The ``DataProto`` (anything with a ``non_tensor_batch`` mapping).
        spec: The reward spec whose components the reward function returned (default ``recal``).

    Raises:
        InvalidData: a ``raw_<component>`` key or ``data_source`` is missing.
    """
    extra: Mapping[str, Any] = data.non_tensor_batch
    keys = component_keys(spec)
    missing = [k for k in (*keys, "data_source") if k not in extra]
    if missing:
        raise InvalidData(
            f"non_tensor_batch lacks {missing}; return them from the reward function's extra info (verl's "
            "reward_extra_info) and keep the data_source column"
        )
    comps = np.stack([np.asarray(extra[k], dtype=np.float64) for k in keys], axis=1)  # (bs, K)
    return {"reward_components": torch.from_numpy(comps), "data_source": [str(s) for s in extra["data_source"]]}


def register_recal_with_verl(
    name: str = "recal",
    *,
    estimator: str = "recal",
    config: RecalConfig | None = None,
    spec: RewardSpec | str = "recal",
    state: CalibrationState | None = None,
    register: Register | None = None,
) -> VerlRecalEstimator:
    """Register a :class:`VerlRecalEstimator` under ``name`` in verl's registry and return it.

    Args:
        name: The ``algorithm.adv_estimator`` value to use.
        estimator: ``agents`` estimator name.
        config: Its hyperparameters.
        spec: Reward spec for the gates and weights.
        state: Calibration state to share (a fresh one when ``None``).
        register: verl's ``register_adv_est`` (default: imported lazily from ``verl.trainer.ppo.core_algos``;
            tests pass a stand-in).

    Raises:
        ImportError: ``register`` is ``None`` and verl is not installed.
        ValueError: verl already holds a different function under ``name``.
    """
    if register is None:
        try:
            from verl.trainer.ppo.core_algos import register_adv_est
        except ImportError as err:
            raise ImportError("the verl adapter needs verl: pip install verl (see verl's install guide)") from err
        register = register_adv_est
    fn = VerlRecalEstimator(estimator, config, spec=spec, state=state)
    register(name)(fn)
    return fn
