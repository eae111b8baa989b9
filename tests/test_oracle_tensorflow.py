"""Cross-checks against TensorFlow's own CPU kernels (skipped when TensorFlow is missing).

Only what TensorFlow's CPU kernels accept is compared (all NHWC):

* ``Conv2D``: groups, dilations, explicit padding.
* ``Conv2DBackpropInput`` / ``Conv2DBackpropFilter``: no groups ("Gradients for grouped
  convolutions are not supported on CPU") and no dilation ("Current CPU implementations do
  not yet support dilation rates larger than 1").
* No empty ``out_backprop``: TensorFlow 2.21's ``Conv2DBackpropFilter`` then returns
  uninitialised memory instead of zeros (seen: 1.9e179), and may crash.

Any TensorFlow error therefore fails the test: nothing is caught.
"""

import os
import warnings

import numpy as np
import pytest

from numbadeconv.testing import (
    reference_conv2d,
    reference_conv2d_backprop_filter,
    reference_conv2d_transpose,
    reference_output_size,
)

os.environ.setdefault("TF_ENABLE_ONEDNN_OPTS", "0")
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
with warnings.catch_warnings():
    for module in ("tensorflow", "keras", "google", "protobuf", "h5py", "absl"):
        warnings.filterwarnings("ignore", category=DeprecationWarning, module=module)
    tf = pytest.importorskip("tensorflow")

import numbadeconv as nd  # noqa: E402

pytestmark = [
    pytest.mark.oracle,
    pytest.mark.filterwarnings("ignore::DeprecationWarning:tensorflow.*"),
    pytest.mark.filterwarnings("ignore::DeprecationWarning:keras.*"),
    pytest.mark.filterwarnings("ignore::DeprecationWarning:google.*"),
    pytest.mark.filterwarnings("ignore::DeprecationWarning:protobuf.*"),
]

RTOL = {np.float32: 1e-4, np.float64: 1e-9}
SEEDS = range(30)


def random_case(seed, *, gradients):
    """A random NHWC case TensorFlow's CPU kernels support; non-empty output."""
    rng = np.random.default_rng(seed)
    while True:
        n = int(rng.integers(1, 3))
        h, w = (int(v) for v in rng.integers(1, 10, 2))
        fh, fw = (int(v) for v in rng.integers(1, 6, 2))
        sh, sw = (int(v) for v in rng.integers(1, 4, 2))
        dh, dw = (int(v) for v in rng.integers(1, 3, 2))
        groups = int(rng.choice([1, 1, 2, 3]))
        if gradients:
            dh = dw = groups = 1
        cg, og = (int(v) for v in rng.integers(1, 4, 2))
        mode = rng.choice(["SAME", "VALID", "EXPLICIT"])
        if mode == "EXPLICIT":
            top, bottom, left, right = (int(v) for v in rng.integers(0, 3, 4))
            padding = [[0, 0], [top, bottom], [left, right], [0, 0]]
            pad_h, pad_w = (top, bottom), (left, right)
        else:
            padding = pad_h = pad_w = str(mode)
        try:
            oh = reference_output_size(h, fh, sh, pad_h, dh)
            ow = reference_output_size(w, fw, sw, pad_w, dw)
        except ValueError:
            continue
        if oh == 0 or ow == 0:
            continue
        x = rng.standard_normal((n, h, w, groups * cg))
        k = rng.standard_normal((fh, fw, cg, groups * og))
        dy = rng.standard_normal((n, oh, ow, groups * og))
        return x, k, dy, [1, sh, sw, 1], padding, [1, dh, dw, 1]


def tf_padding(padding):
    """(padding, explicit_paddings) for the raw ops."""
    if isinstance(padding, str):
        return padding, []
    return "EXPLICIT", [p for pair in padding for p in pair]


def assert_close(got, expected, bound, dtype, what):
    assert got.dtype == dtype, what
    assert got.shape == expected.shape, what
    tol = RTOL[dtype] * bound + 1e-300
    err = np.abs(got.astype(np.float64) - expected.astype(np.float64))
    assert np.all(err <= tol), f"{what}: max error {err.max()} (worst tolerance {tol.min()})"


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("seed", SEEDS)
def test_conv2d(seed, dtype):
    x, k, _, strides, padding, dilations = random_case(seed, gradients=False)
    x, k = x.astype(dtype), k.astype(dtype)
    expected = tf.nn.conv2d(x, k, strides, padding, dilations=dilations).numpy()
    bound = reference_conv2d(np.abs(x), np.abs(k), strides, padding, dilations=dilations)
    what = f"conv2d {x.shape} {k.shape} {strides} {padding} {dilations}"
    got = nd.conv2d(x, k, strides, padding, dilations=dilations)
    assert_close(got, expected, bound, dtype, what)
    if dtype == np.float64:  # and the oracle itself
        ref = reference_conv2d(x, k, strides, padding, dilations=dilations)
        assert_close(ref, expected, bound, dtype, "reference " + what)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("seed", SEEDS)
def test_conv2d_transpose(seed, dtype):
    x, k, dy, strides, padding, _ = random_case(seed, gradients=True)
    k, dy = k.astype(dtype), dy.astype(dtype)
    expected = tf.nn.conv2d_transpose(dy, k, x.shape, strides, padding).numpy()
    bound = reference_conv2d_transpose(np.abs(dy), np.abs(k), x.shape, strides, padding)
    what = f"conv2d_transpose {dy.shape} {k.shape} to {x.shape} {strides} {padding}"
    got = nd.conv2d_transpose(dy, k, x.shape, strides, padding)
    assert_close(got, expected, bound, dtype, what)
    pad, explicit = tf_padding(padding)
    raw = tf.raw_ops.Conv2DBackpropInput(
        input_sizes=list(x.shape),
        filter=k,
        out_backprop=dy,
        strides=strides,
        padding=pad,
        explicit_paddings=explicit,
    ).numpy()
    got = nd.conv2d_backprop_input(x.shape, k, dy, strides, padding)
    assert_close(got, raw, bound, dtype, "backprop_input " + what)
    if dtype == np.float64:
        ref = reference_conv2d_transpose(dy, k, x.shape, strides, padding)
        assert_close(ref, expected, bound, dtype, "reference " + what)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("seed", SEEDS)
def test_conv2d_backprop_filter(seed, dtype):
    x, k, dy, strides, padding, _ = random_case(seed, gradients=True)
    x, dy = x.astype(dtype), dy.astype(dtype)
    pad, explicit = tf_padding(padding)
    expected = tf.raw_ops.Conv2DBackpropFilter(
        input=x,
        filter_sizes=list(k.shape),
        out_backprop=dy,
        strides=strides,
        padding=pad,
        explicit_paddings=explicit,
    ).numpy()
    bound = reference_conv2d_backprop_filter(np.abs(x), k.shape, np.abs(dy), strides, padding)
    what = f"conv2d_backprop_filter {x.shape} {k.shape} {dy.shape} {strides} {padding}"
    got = nd.conv2d_backprop_filter(x, k.shape, dy, strides, padding)
    assert_close(got, expected, bound, dtype, what)
    if dtype == np.float64:
        ref = reference_conv2d_backprop_filter(x, k.shape, dy, strides, padding)
        assert_close(ref, expected, bound, dtype, "reference " + what)


def test_tutorial_y5_is_an_error_in_tensorflow_too():
    with pytest.raises(tf.errors.OpError):
        tf.nn.conv2d_transpose(
            np.ones((1, 3, 3, 1), np.float32),
            np.ones((3, 3, 3, 1), np.float32),
            [1, 10, 10, 3],
            [1, 2, 2, 1],
            "SAME",
        )
    with pytest.raises(ValueError, match="output_shape"):
        nd.conv2d_transpose(
            np.ones((1, 3, 3, 1), np.float32),
            np.ones((3, 3, 3, 1), np.float32),
            [1, 10, 10, 3],
            [1, 2, 2, 1],
            "SAME",
        )
