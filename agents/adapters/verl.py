"""verl adapter: the ``recal`` estimator in verl's advantage-estimator registry (``docs/learner.md`` §11).

verl looks estimators up with ``core_algos.get_adv_estimator_fn(config.algorithm.adv_estimator)`` and calls
them, on the driver, as::

    advantages, returns = fn(token_level_rewards=..., response_mask=..., config=algo_config, index=uid, ...)

with ``token_level_rewards``/``response_mask`` of shape ``(bs, response_length)`` and ``index`` the ``(bs,)``
group ``uid`` array. ReCal also needs each trajectory's K raw components and its ``data_source``, which verl
does not pass to a registered estimator. :class:`VerlRecalEstimator` therefore takes them as keywords,
``reward_components`` (``(bs, K)``, the reward spec's component order) and ``data_source`` (``(bs,)``), or reads
them from a ``non_tensor_batch`` keyword (verl passes one only to its own ``gdpo``; verl-project/verl PR #7473
proposes passing it to every estimator that accepts it, which this one does), or from the batch that
:func:`install_compute_advantage_hook` stashed.

**The hook: where ``compute_advantage`` needs one line.** In verl 0.8 (verl-project/verl, read at commit
``0094eb2``, the legacy ``RayPPOTrainer`` whose ``fit`` calls it), file ``verl/trainer/ppo/ray_trainer.py``,
function ``compute_advantage(data, adv_estimator, gamma, lam, num_repeat, norm_adv_by_std_in_grpo, config)``,
branch ``else:  # handle all other adv estimator type other than GAE and GRPO``, between::

        if "reward_baselines" in data.batch:  # optional
            adv_kwargs["reward_baselines"] = data.batch["reward_baselines"]

and ``advantages, returns = adv_estimator_fn(**adv_kwargs)``, add::

        adv_kwargs.update(recal_kwargs_from_batch(data))  # from agents.adapters.verl import recal_kwargs_from_batch

Without editing verl, :func:`install_compute_advantage_hook` (driver process, before ``trainer.fit()``) wraps
the module's ``compute_advantage`` so that the ``recal`` estimator receives the same values.

Recipe (``examples/verl/``; the README says what was and was not run against real verl):

1. The reward function returns ``"score"`` plus ``raw_<component>`` (:mod:`agents.adapters.verl_reward`); verl
   keeps the extra keys per sample in ``non_tensor_batch`` (``reward_extra_info``). ``data_source`` is a dataset
   column.
2. In the driver, before building the trainer::

       from agents.adapters.verl import install_compute_advantage_hook, register_recal_with_verl
       fn = register_recal_with_verl("recal")      # lazy-imports verl; raises ImportError if absent
       install_compute_advantage_hook(fn)          # or the one-line edit above

3. ``algorithm.adv_estimator=recal``.
4. Save ``fn.state.state_dict()`` with each checkpoint and ``load_state_dict`` it on resume. Advantages are
   computed once on the driver over the whole gathered batch, so every rank sees the same values and the
   result does not depend on the number of nodes (``docs/learner.md`` §4.6).

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
    "install_compute_advantage_hook",
    "recal_kwargs_from_batch",
    "register_recal_with_verl",
    "setup_recal",
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
        pending: ``reward_components``/``data_source`` of the batch :func:`install_compute_advantage_hook` is
            computing advantages for (used, then cleared, by the next call that is not given them).
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
        self.pending: dict[str, Any] | None = None

    def _components(
        self,
        reward_components: Tensor | np.ndarray | None,
        data_source: Sequence[str] | np.ndarray | None,
        non_tensor_batch: Mapping[str, Any] | None,
    ) -> tuple[Tensor | np.ndarray, Sequence[str] | np.ndarray]:
        """The raw components and sources: given keywords, else ``non_tensor_batch``, else the hook's batch."""
        if reward_components is None or data_source is None:
            if non_tensor_batch is not None:
                found = _kwargs_from_non_tensor(non_tensor_batch, self.spec)
            elif self.pending is not None:
                found, self.pending = self.pending, None
            else:
                raise InvalidData(
                    "the ReCal estimator needs reward_components (bs, K) and data_source (bs,); call "
                    "install_compute_advantage_hook(fn) or add adv_kwargs.update(recal_kwargs_from_batch(data)) in "
                    "compute_advantage (see agents.adapters.verl)"
                )
            reward_components, data_source = found["reward_components"], found["data_source"]
        return reward_components, data_source

    def __call__(
        self,
        token_level_rewards: Tensor,
        response_mask: Tensor,
        index: Sequence[Any] | np.ndarray | None = None,
        config: Any = None,
        *,
        reward_components: Tensor | np.ndarray | None = None,
        data_source: Sequence[str] | np.ndarray | None = None,
        non_tensor_batch: Mapping[str, Any] | None = None,
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
            non_tensor_batch: verl's ``DataProto.non_tensor_batch`` (``raw_<component>`` and ``data_source``
                columns), read when the two above are not given.

        Raises:
            InvalidData: missing ``index`` or components (no keyword, no ``non_tensor_batch``, no hooked batch),
                or mismatched sizes.
        """
        bs = int(token_level_rewards.shape[0])
        if index is None:
            raise InvalidData("the ReCal estimator needs index: verl's uid group keys (bs,)")
        reward_components, data_source = self._components(reward_components, data_source, non_tensor_batch)
        raw = np.asarray(
            reward_components.detach().cpu().numpy() if isinstance(reward_components, Tensor) else reward_components,
            dtype=np.float64,
        )
        k = len(self.spec.names)
        shapes_ok = raw.shape == (bs, k) and len(data_source) == bs and len(index) == bs
        if not shapes_ok or tuple(response_mask.shape) != tuple(token_level_rewards.shape):
            raise InvalidData(
                f"shapes: token_level_rewards {tuple(token_level_rewards.shape)}, response_mask "
                f"{tuple(response_mask.shape)}, reward_components {raw.shape}, data_source ({len(data_source)},), "
                f"index ({len(index)},); expected (bs, L), (bs, L), (bs, {k}), (bs,), (bs,)"
            )
        keys = [k.item() if isinstance(k, np.generic) else k for k in index]
        out = recal_advantages(
            raw, [str(s) for s in data_source], keys, spec=self.spec, estimator=self.fn, state=self.state
        )
        self.last_metrics = {k: float(v) for k, v in out.metrics.items()}
        adv = out.advantages.to(token_level_rewards.device, token_level_rewards.dtype)  # (bs,)
        scores = adv.unsqueeze(-1) * response_mask.to(adv.dtype)  # (bs, L)
        return scores, scores


def _kwargs_from_non_tensor(extra: Mapping[str, Any], spec: RewardSpec | str) -> dict[str, Any]:
    keys = component_keys(spec)
    missing = [k for k in (*keys, "data_source") if k not in extra]
    if missing:
        raise InvalidData(
            f"non_tensor_batch lacks {missing}; return them from the reward function's extra info (verl's "
            "reward_extra_info; agents.adapters.verl_reward does) and keep the data_source column"
        )
    comps = np.stack([np.asarray(extra[k], dtype=np.float64) for k in keys], axis=1)  # (bs, K)
    return {"reward_components": torch.from_numpy(comps), "data_source": [str(s) for s in extra["data_source"]]}


def recal_kwargs_from_batch(data: Any, spec: RewardSpec | str = "recal") -> dict[str, Any]:
    """``reward_components`` and ``data_source`` from a verl ``DataProto`` (its ``non_tensor_batch``).

    Args:
        data: The ``DataProto`` (anything with a ``non_tensor_batch`` mapping).
        spec: The reward spec whose components the reward function returned (default ``recal``).

    Raises:
        InvalidData: a ``raw_<component>`` key or ``data_source`` is missing.
    """
    return _kwargs_from_non_tensor(data.non_tensor_batch, spec)


def install_compute_advantage_hook(fn: VerlRecalEstimator, module: Any = None, *, name: str = "recal") -> Callable:
    """Make verl's ``compute_advantage`` give ``fn`` the batch's components, without editing verl's source.

    Replaces ``module.compute_advantage`` (default ``verl.trainer.ppo.ray_trainer``, where ``RayPPOTrainer.fit``
    looks it up at call time) by a wrapper that, when the estimator is ``name``, stashes
    :func:`recal_kwargs_from_batch` of the batch in ``fn.pending`` and then calls the original.

    Args:
        fn: The registered estimator (:func:`register_recal_with_verl`).
        module: The module holding ``compute_advantage`` (tests pass a stand-in).
        name: The ``algorithm.adv_estimator`` value ``fn`` is registered under.

    Returns:
        The original ``compute_advantage`` (assign it back to undo the hook).

    Raises:
        ImportError: ``module`` is ``None`` and verl is not installed.
    """
    if module is None:
        try:
            import verl.trainer.ppo.ray_trainer
        except ImportError as err:
            raise ImportError("the verl adapter needs verl: pip install verl (see verl's install guide)") from err
        module = verl.trainer.ppo.ray_trainer
    original = module.compute_advantage

    def compute_advantage(data: Any, adv_estimator: Any, *args: Any, **kwargs: Any) -> Any:
        if str(getattr(adv_estimator, "value", adv_estimator)) == name:
            fn.pending = recal_kwargs_from_batch(data, fn.spec)
        return original(data, adv_estimator, *args, **kwargs)

    compute_advantage.__wrapped__ = original  # type: ignore[attr-defined]
    module.compute_advantage = compute_advantage
    return original  # type: ignore[no-any-return]


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


def setup_recal(name: str = "recal", **kwargs: Any) -> VerlRecalEstimator:
    """Register the estimator and install the ``compute_advantage`` hook in this process; return the estimator.

    Call it in the process that runs ``RayPPOTrainer.fit`` (verl's ``TaskRunner`` actor), e.g. through Ray's
    ``worker_process_setup_hook`` (``+ray_kwargs.ray_init.runtime_env.worker_process_setup_hook=
    agents.adapters.verl.setup_recal``) or from your own task runner before it builds the trainer.

    Args:
        name: The ``algorithm.adv_estimator`` value.
        **kwargs: As for :func:`register_recal_with_verl` (``estimator``, ``config``, ``spec``, ``state``).

    Raises:
        ImportError: verl is not installed.
    """
    fn = register_recal_with_verl(name, **kwargs)
    install_compute_advantage_hook(fn, name=name)
    return fn
