"""``rgb_array`` rendering of RouterQA text: the transcript drawn as a fixed-size RGB frame.

RouterQA is a text environment; its native render mode is ``"ansi"`` (prompt + transcript as a
``str``). Gymnasium's ``metadata["render_modes"]`` contract and stable-baselines3's
``make_vec_env`` (which asks every env for ``render_mode="rgb_array"``) expect image frames too, so
:func:`text_frame` draws the tail of that text (the newest turns) in a monospace font on a
fixed-size canvas: every frame has the same shape, as video recorders need.

matplotlib (a core dependency) draws the text; it is imported only when a frame is drawn.
"""

from __future__ import annotations

import textwrap

import numpy as np

from recal_gym.optional import require

__all__ = ["FRAME_SHAPE", "text_frame"]

FRAME_SHAPE = (600, 800, 3)
"""``(height, width, 3)`` of every frame."""

_DPI = 100
_FONT_PT = 9.0
_COLS = 118
"""Characters per line at 9 pt DejaVu Sans Mono on 800 px (0.6 em per character, with a margin)."""
_ROWS = 44
"""Lines per frame at 1.15 line spacing on 600 px."""


def _tail_lines(text: str) -> list[str]:
    """Wrap ``text`` at :data:`_COLS` and keep the last :data:`_ROWS` lines (the newest turns)."""
    lines: list[str] = []
    for raw in text.splitlines() or [""]:
        lines.extend(textwrap.wrap(raw.expandtabs(4), _COLS, replace_whitespace=False, drop_whitespace=False) or [""])
    return lines[-_ROWS:]


def text_frame(text: str) -> np.ndarray:
    """Draw the last lines of ``text`` as an RGB image.

    Args:
        text: What ``render()`` returns in ``"ansi"`` mode (prompt + transcript).

    Returns:
        ``(600, 800, 3)`` uint8 array (:data:`FRAME_SHAPE`): black monospace text on white.

    Raises:
        MissingDependency: matplotlib is not installed (``pip install matplotlib``).
    """
    backend = require("matplotlib.backends.backend_agg", feature="render_mode='rgb_array'")
    from matplotlib.figure import Figure

    height, width, _ = FRAME_SHAPE
    fig = Figure(figsize=(width / _DPI, height / _DPI), dpi=_DPI, facecolor="white")
    canvas = backend.FigureCanvasAgg(fig)
    fig.text(
        0.01,
        0.99,
        "\n".join(_tail_lines(text)),
        family="monospace",
        fontsize=_FONT_PT,
        linespacing=1.15,
        va="top",
        ha="left",
        parse_math=False,  # "$" in a reply is text, not mathtext
    )
    canvas.draw()
    rgba = np.asarray(canvas.buffer_rgba())  # (H, W, 4) uint8
    return np.ascontiguousarray(rgba[..., :3])
