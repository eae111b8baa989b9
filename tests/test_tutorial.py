"""The worked example of the tutorial (TUTORIAL.md), with TensorFlow 2.21's numbers."""

import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

import numbadeconv as nd

ROOT = Path(__file__).resolve().parents[1]

X1 = np.ones([1, 3, 3, 1], dtype=np.float32)
X2 = np.ones([1, 6, 6, 3], dtype=np.float32)
X3 = np.ones([1, 5, 5, 3], dtype=np.float32)
KERNEL = np.ones([3, 3, 3, 1], dtype=np.float32)
STRIDES = [1, 2, 2, 1]

Y2_GRID = [[12, 18, 12], [18, 27, 18], [12, 18, 12]]
Y3_GRID = [
    [12, 30, 18, 30, 12],
    [30, 75, 45, 75, 30],
    [18, 45, 27, 45, 18],
    [30, 75, 45, 75, 30],
    [12, 30, 18, 30, 12],
]
Y4_GRID = [[27, 27, 18], [27, 27, 18], [18, 18, 12]]
Y1_ROW = [1, 1, 2, 1, 2, 1]
Y1_DOUBLE = [2, 2, 4, 2, 4, 2]
Y1_GRID = [Y1_ROW, Y1_ROW, Y1_DOUBLE, Y1_ROW, Y1_DOUBLE, Y1_ROW]


def test_y2_conv2d():
    y2 = nd.conv2d(X3, KERNEL, strides=STRIDES, padding="SAME")
    assert y2.shape == (1, 3, 3, 1)
    assert y2.dtype == np.float32
    np.testing.assert_array_equal(y2[0, :, :, 0], Y2_GRID)


def test_y3_transpose_every_channel():
    y2 = nd.conv2d(X3, KERNEL, strides=STRIDES, padding="SAME")
    y3 = nd.conv2d_transpose(y2, KERNEL, output_shape=[1, 5, 5, 3], strides=STRIDES, padding="SAME")
    assert y3.shape == (1, 5, 5, 3)
    for channel in range(3):
        np.testing.assert_array_equal(y3[0, :, :, channel], Y3_GRID)


def test_y4_conv2d():
    y4 = nd.conv2d(X2, KERNEL, strides=STRIDES, padding="SAME")
    assert y4.shape == (1, 3, 3, 1)
    np.testing.assert_array_equal(y4[0, :, :, 0], Y4_GRID)


def test_y1_transpose():
    y1 = nd.conv2d_transpose(X1, KERNEL, output_shape=[1, 6, 6, 3], strides=STRIDES, padding="SAME")
    assert y1.shape == (1, 6, 6, 3)
    for channel in range(3):
        np.testing.assert_array_equal(y1[0, :, :, channel], Y1_GRID)


def test_y1_and_y3_via_backprop_input():
    y1 = nd.conv2d_backprop_input([1, 6, 6, 3], KERNEL, X1, STRIDES, "SAME")
    np.testing.assert_array_equal(y1[0, :, :, 0], Y1_GRID)
    y2 = nd.conv2d(X3, KERNEL, STRIDES, "SAME")
    y3 = nd.conv2d_backprop_input([1, 5, 5, 3], KERNEL, y2, STRIDES, "SAME")
    np.testing.assert_array_equal(y3[0, :, :, 2], Y3_GRID)


def test_y5_inadmissible_output_shape_is_a_clear_value_error():
    with pytest.raises(ValueError) as info:
        nd.conv2d_transpose(
            X1, KERNEL, output_shape=[1, 10, 10, 3], strides=STRIDES, padding="SAME"
        )
    message = str(info.value)
    assert "output_shape" in message
    assert "10" in message
    assert "5" in message and "6" in message, f"admissible sizes 5, 6 not named: {message}"


def test_admissible_sizes_of_the_tutorial():
    assert nd.transpose_output_sizes(3, 3, 2, "SAME") == (5, 6)
    assert nd.conv_output_size(5, 3, 2, "SAME") == nd.conv_output_size(6, 3, 2, "SAME") == 3
    assert nd.conv_output_size(10, 3, 2, "SAME") == 5


def test_python_dash_m_runs_the_tutorial():
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(ROOT), env.get("PYTHONPATH")]))
    result = subprocess.run(
        [sys.executable, "-m", "numbadeconv"],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    out = result.stdout
    for text in ["75", "27", "45", "30", "18", "12"]:
        assert text in out, f"{text!r} missing from the output:\n{out}"
