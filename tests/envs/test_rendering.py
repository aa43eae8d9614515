"""rgb_array rendering (Gymnasium's render_modes contract; what stable-baselines3 asks for)."""

from __future__ import annotations

import sys
import warnings

import gymnasium as gym
import numpy as np
import pytest

import recal_gym  # noqa: F401
from envs.discrete import RouterQADiscreteEnv
from envs.rendering import FRAME_SHAPE, text_frame
from envs.router_qa import RouterQAEnv
from recal_gym.errors import InvalidConfig, MissingDependency
from tests.envs.conftest import ROWS, make_pool

pytest.importorskip("matplotlib")
ROUTE = "<think>need help</think>\n<search> Qwen2.5-7B-Instruct: capital of France? </search>"


def test_metadata_lists_every_mode_the_envs_accept() -> None:
    for cls in (RouterQAEnv, RouterQADiscreteEnv):
        assert cls.metadata["render_modes"] == ["ansi", "rgb_array"]


def test_rgb_array_frames_have_a_fixed_shape_and_show_the_transcript() -> None:
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # gym.make's checker warns on a render mode outside the metadata
        env = gym.make("RouterQA-v0", render_mode="rgb_array")
    env.reset(seed=0)
    first = env.render()
    env.step(ROUTE)
    second = env.render()
    for frame in (first, second):
        assert isinstance(frame, np.ndarray) and frame.shape == FRAME_SHAPE and frame.dtype == np.uint8
        assert frame.min() < 128 < frame.max()  # dark text on a light background
    assert not np.array_equal(first, second)  # the new turn is drawn (the tail of the text is shown)
    env.close()


def test_text_frame_is_deterministic_and_keeps_dollar_signs_as_text() -> None:
    text = "costs $5 and $6\n" * 3 + "<answer> x </answer>"
    assert np.array_equal(text_frame(text), text_frame(text))
    assert text_frame("").shape == FRAME_SHAPE and text_frame("").min() == 255


def test_discrete_env_renders_the_inner_transcript() -> None:
    env = RouterQADiscreteEnv(list(ROWS), pool=make_pool(lambda r: "The answer is Paris."), render_mode="rgb_array")
    env.reset(seed=0)
    env.step(0)
    frame = env.render()
    assert isinstance(frame, np.ndarray) and frame.shape == FRAME_SHAPE
    env.close()


def test_rgb_array_without_matplotlib_is_one_clear_line(monkeypatch: pytest.MonkeyPatch) -> None:
    env = RouterQAEnv(list(ROWS), pool=make_pool(lambda r: "x"), render_mode="rgb_array")  # construction needs no plot
    env.reset(seed=0)
    monkeypatch.setitem(sys.modules, "matplotlib.backends.backend_agg", None)
    hint = r"needs matplotlib, which is not installed — pip install matplotlib$"
    with pytest.raises(MissingDependency, match=hint):
        env.render()


@pytest.mark.parametrize("mode", ["human", "rgb_array_list", "RGB"])
def test_other_render_modes_are_refused_with_the_allowed_list(mode: str) -> None:
    with pytest.raises(InvalidConfig, match=r"render_mode must be None or one of \['ansi', 'rgb_array'\]"):
        RouterQAEnv(list(ROWS), pool=make_pool(lambda r: "x"), render_mode=mode)
