"""TrainConfig: presets, nested sections, overrides from files and flags, validation, registry names."""

from __future__ import annotations

import dataclasses

import pytest

from agents.grpo.config import PRESETS, TrainConfig, apply_overrides, load_config, preset
from agents.grpo.estimator_config import RecalConfig
from agents.grpo.loss_config import LossConfig
from recal_gym.errors import InvalidConfig, UnknownComponent, UnknownName


def test_presets_match_the_documented_table() -> None:
    tiny, smol, qwen = PRESETS["tiny"], PRESETS["smollm2-cpu"], PRESETS["qwen2.5-3b-gpu"]
    assert (tiny.questions_per_step, tiny.group_size, tiny.steps, tiny.lr) == (4, 8, 50, 1e-3)
    assert (tiny.max_routed_turns, tiny.max_new_tokens, tiny.max_obs_tokens, tiny.loss.kl_coef) == (1, 24, 64, 0.0)
    assert (smol.questions_per_step, smol.group_size, smol.max_new_tokens, smol.heldout_fraction) == (4, 4, 48, 0.15)
    assert (qwen.questions_per_step, qwen.group_size, qwen.steps, qwen.lr, qwen.loss.kl_coef) == (
        64, 8, 225, 1e-6, 0.001,
    )  # fmt: skip
    assert (qwen.minibatches, qwen.max_new_tokens, qwen.max_obs_tokens, qwen.engine) == (2, 1024, 600, "vllm")
    assert tiny.recal.dataset_stats == smol.recal.dataset_stats == "running"
    assert qwen.recal.dataset_stats == "batch"
    assert tiny.batch_size == 32


def test_every_section_field_is_settable_by_dotted_key() -> None:
    """Each RecalConfig / LossConfig field can be overridden (the CLI's --set section.field=JSON)."""
    samples = {
        "recal.w_min": 0.2, "recal.w_max": 2.0, "recal.steepness": -3.0, "recal.std_ema": 0.5,
        "recal.running_decay": 0.9, "recal.min_dataset_count": 3, "recal.eps": 1e-5,
        "recal.drop_zero_variance_groups": True, "recal.variance_source": "total",
        "recal.component_weights": {"cost": 0.0}, "recal.answer_threshold": 0.5, "recal.hierarchy": False,
        "recal.componentwise": False, "recal.variance_weighting": False, "recal.final_norm": "batch",
        "recal.dataset_stats": "batch",
        "loss.dual_clip": 3.0, "loss.clip_low": 0.1, "loss.clip_high": 0.3, "loss.kl_coef": 0.01,
        "loss.kl_estimator": "k2", "loss.entropy_coef": 0.001, "loss.loss_agg": "seq-mean-token-mean",
        "loss.entropy_scope": "route",
        "loss.l_norm": 50.0,
    }  # fmt: skip
    names = {f"recal.{f.name}" for f in dataclasses.fields(RecalConfig)}
    names |= {f"loss.{f.name}" for f in dataclasses.fields(LossConfig)}
    assert names <= set(samples), sorted(names - set(samples))
    cfg = apply_overrides(preset("tiny"), samples)
    for key, value in samples.items():
        section, name = key.split(".")
        assert getattr(getattr(cfg, section), name) == value, key
    assert cfg.lr == preset("tiny").lr  # untouched fields keep the preset's values


def test_load_config_file_and_overrides(tmp_path) -> None:
    path = tmp_path / "run.yaml"
    path.write_text("preset: smollm2-cpu\nsteps: 3\nlr: 0.002\nrecal:\n  w_min: 0.25\nloss.dual_clip: 3.0\n")
    cfg = load_config("tiny", file=path, overrides={"seed": 7, "steps": None, "recal.std_ema": 0.8})
    assert (cfg.name, cfg.steps, cfg.lr, cfg.seed) == ("smollm2-cpu", 3, 0.002, 7)
    assert (cfg.recal.w_min, cfg.recal.std_ema, cfg.loss.dual_clip) == (0.25, 0.8, 3.0)
    assert cfg.recal.dataset_stats == "running"  # the preset's section, merged, not replaced
    json_path = tmp_path / "run.json"
    json_path.write_text('{"group_size": 3}')
    assert load_config(file=json_path).group_size == 3


def test_to_dict_round_trips() -> None:
    cfg = apply_overrides(preset("qwen2.5-3b-gpu"), {"recal.component_weights": {"cost": 0.5}, "seed": 4})
    assert TrainConfig.from_dict(cfg.to_dict()) == cfg


@pytest.mark.parametrize(
    ("changes", "error", "match"),
    [
        ({"group_size": 1}, InvalidConfig, "group_size"),
        ({"steps": 0}, InvalidConfig, "steps"),
        ({"lr": -1.0}, InvalidConfig, "lr"),
        ({"top_p": 0.0}, InvalidConfig, "top_p"),
        ({"estimator": "ppo"}, InvalidConfig, r"estimator='ppo' is not registered.*register_estimator"),
        ({"loss.loss_agg": "sum"}, InvalidConfig, "loss_agg"),
        ({"loss.dual_clip": 0.5}, InvalidConfig, "dual_clip"),
        ({"recal.answer_threshold": 2.0}, InvalidConfig, "answer_threshold"),
        ({"recal.w_min": 0.0}, InvalidConfig, "w_min"),
        ({"recal.component_weights": {"answr": 1.0}}, UnknownComponent, "answer"),
        ({"warmstart_direct_share": 1.5}, InvalidConfig, "warmstart_direct_share"),
        ({"recal.wmin": 0.2}, InvalidConfig, r"unknown TrainConfig field 'recal.wmin'.*recal.w_min"),
        ({"stepz": 3}, InvalidConfig, r"unknown TrainConfig field 'stepz'.*steps"),
        ({"los.kl_coef": 3}, InvalidConfig, r"unknown TrainConfig field 'los.kl_coef'.*loss.kl_coef"),
        ({"recal": 3}, InvalidConfig, r"TrainConfig.recal=3 must be a RecalConfig"),
    ],
)
def test_config_validation(changes, error, match) -> None:
    with pytest.raises(error, match=match):
        apply_overrides(TrainConfig(), changes)


def test_unknown_preset_lists_close_matches() -> None:
    with pytest.raises(UnknownName, match="tiny"):
        preset("tinny")


@pytest.fixture
def registered_estimator():
    """Register a custom estimator for one test, then remove it."""
    from agents.grpo.advantages import make_estimator, register_estimator, unregister_estimator

    register_estimator("grpo_copy", lambda config: make_estimator("grpo", config))
    yield "grpo_copy"
    unregister_estimator("grpo_copy")


def test_a_registered_estimator_is_a_valid_config(registered_estimator: str) -> None:
    cfg = apply_overrides(preset("tiny"), {"estimator": registered_estimator})
    assert cfg.estimator == registered_estimator
    assert TrainConfig.from_dict(cfg.to_dict()) == cfg


def test_loss_config_resolves_l_norm() -> None:
    cfg = apply_overrides(preset("tiny"), {"loss.loss_agg": "seq-mean-token-sum-norm"})
    assert cfg.loss_config.l_norm == 2 * 24  # (max_routed_turns + 1) * max_new_tokens
    assert apply_overrides(cfg, {"loss.l_norm": 10.0}).loss_config.l_norm == 10.0
    assert preset("tiny").loss_config.l_norm is None
