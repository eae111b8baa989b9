"""The tutorial's program (``tf.nn.conv2d_transpose`` explained), run with numbadeconv.

``python -m numbadeconv`` prints what the tutorial's listing computes: y1..y4 with their shapes and
channel-0 grids, and the ``output_shape=[1, 10, 10, 3]`` call that cannot work, with the reason.
"""

from __future__ import annotations

import numpy as np

from . import api


def _grid(a: np.ndarray) -> str:
    return np.array2string(a, formatter={"float_kind": lambda v: f"{v:g}"}, separator=", ")


def run() -> list[str]:
    """Run the tutorial and return its printed lines."""
    x1 = np.ones((1, 3, 3, 1), np.float32)
    x2 = np.ones((1, 6, 6, 3), np.float32)
    x3 = np.ones((1, 5, 5, 3), np.float32)
    kernel = np.ones((3, 3, 3, 1), np.float32)
    s2 = [1, 2, 2, 1]
    y1 = api.conv2d_transpose(x1, kernel, [1, 6, 6, 3], s2, "SAME")
    y2 = api.conv2d(x3, kernel, s2, "SAME")
    y3 = api.conv2d_transpose(y2, kernel, [1, 5, 5, 3], s2, "SAME")
    y4 = api.conv2d(x2, kernel, s2, "SAME")
    lines = ["x1 = ones[1,3,3,1]; x2 = ones[1,6,6,3]; x3 = ones[1,5,5,3]; kernel = ones[3,3,3,1]",
             ""]
    for text, y in [
        ("y1 = conv2d_transpose(x1, kernel, output_shape=[1,6,6,3], strides=[1,2,2,1], 'SAME')",
         y1),
        ("y2 = conv2d(x3, kernel, strides=[1,2,2,1], 'SAME')", y2),
        ("y3 = conv2d_transpose(y2, kernel, output_shape=[1,5,5,3], strides=[1,2,2,1], 'SAME')",
         y3),
        ("y4 = conv2d(x2, kernel, strides=[1,2,2,1], 'SAME')", y4),
    ]:
        lines += [text, f"  shape {y.shape}; channel 0:", _grid(y[0, :, :, 0]), ""]
    lines.append("y5 = conv2d_transpose(x1, kernel, output_shape=[1,10,10,3], strides=[1,2,2,1], "
                 "'SAME')")
    try:
        api.conv2d_transpose(x1, kernel, [1, 10, 10, 3], s2, "SAME")
    except ValueError as exc:
        lines.append(f"  ValueError: {exc}")
    else:  # pragma: no cover - the library would be broken
        raise AssertionError("output_shape [1, 10, 10, 3] was accepted")
    return lines
