"""numbadeconv.functional (the PyTorch-flavoured front end) against naive references and PyTorch.

The naive references below follow PyTorch's definitions directly (a padded correlation and a
scatter-add followed by a crop); ``naive_conv2d`` is itself checked against
``numbadeconv.testing.reference_conv2d`` (TensorFlow's conventions), and both against
``torch.nn.functional`` where torch is installed (marker ``oracle``).
"""

import doctest

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import numbadeconv
from numbadeconv import _engine
from numbadeconv import functional as F
from numbadeconv._kernels import simd
from numbadeconv.testing import reference_conv2d

RTOL = {np.float32: 1e-4, np.float64: 1e-9}
ATOL = {np.float32: 1e-4, np.float64: 1e-9}


# --- naive references, PyTorch's conventions (NCHW, float64) -----------------------------------

def _pair(v):
    return (v, v) if isinstance(v, int) else tuple(v)


def naive_conv2d(x, w, b=None, stride=1, padding=0, dilation=1, groups=1):
    x, w = np.asarray(x, np.float64), np.asarray(w, np.float64)
    (sh, sw), (dh, dw) = _pair(stride), _pair(dilation)
    kh, kw = w.shape[2:]
    if padding == "valid":
        padding = 0
    if padding == "same":
        th, tw = dh * (kh - 1), dw * (kw - 1)
        pads = ((th // 2, th - th // 2), (tw // 2, tw - tw // 2))
    else:
        ph, pw = _pair(padding)
        pads = ((ph, ph), (pw, pw))
    xp = np.pad(x, ((0, 0), (0, 0), *pads))
    n, c, hp, wp = xp.shape
    cout, cig = w.shape[:2]
    cog = cout // groups
    oh = (hp - dh * (kh - 1) - 1) // sh + 1
    ow = (wp - dw * (kw - 1) - 1) // sw + 1
    out = np.zeros((n, cout, oh, ow))
    for o in range(cout):
        g = o // cog
        for i in range(kh):
            for j in range(kw):
                patch = xp[:, g * cig:(g + 1) * cig,
                           i * dh:i * dh + (oh - 1) * sh + 1:sh,
                           j * dw:j * dw + (ow - 1) * sw + 1:sw]
                out[:, o] += np.einsum("nchw,c->nhw", patch, w[o, :, i, j])
    if b is not None:
        out += np.asarray(b, np.float64)[:, None, None]
    return out


def naive_conv_transpose2d(x, w, b=None, stride=1, padding=0, output_padding=0, groups=1,
                           dilation=1):
    """Scatter every input pixel times the kernel, then crop ``padding`` at each end."""
    x, w = np.asarray(x, np.float64), np.asarray(w, np.float64)
    (sh, sw), (ph, pw), (oph, opw), (dh, dw) = (_pair(v) for v in
                                                (stride, padding, output_padding, dilation))
    n, c, h, wd = x.shape
    cig, cog, kh, kw = w.shape[0] // groups, w.shape[1], w.shape[2], w.shape[3]
    oh = (h - 1) * sh - 2 * ph + dh * (kh - 1) + oph + 1
    ow = (wd - 1) * sw - 2 * pw + dw * (kw - 1) + opw + 1
    full = np.zeros((n, cog * groups, max(ph + oh, (h - 1) * sh + dh * (kh - 1) + 1),
                     max(pw + ow, (wd - 1) * sw + dw * (kw - 1) + 1)))
    for ci in range(c):
        g = ci // cig
        for i in range(kh):
            for j in range(kw):
                full[:, g * cog:(g + 1) * cog,
                     i * dh:i * dh + (h - 1) * sh + 1:sh,
                     j * dw:j * dw + (wd - 1) * sw + 1:sw] += (
                    x[:, ci, None] * w[ci, :, i, j][None, :, None, None])
    out = full[:, :, ph:ph + oh, pw:pw + ow]
    if b is not None:
        out = out + np.asarray(b, np.float64)[:, None, None]
    return out


def random_case(seed, *, transpose, dtype=np.float64):
    """A random legal case: (args, kwargs) for F.conv2d or F.conv_transpose2d."""
    rng = np.random.default_rng(seed)
    while True:
        groups = int(rng.choice([1, 1, 2, 3]))
        depthwise = rng.random() < 0.3
        cig = 1 if depthwise else int(rng.integers(1, 4))
        cog = int(rng.integers(1, 4))
        n = int(rng.integers(1, 3))
        h, w = (int(v) for v in rng.integers(1, 9, 2))
        kh, kw = (int(v) for v in rng.integers(1, 5, 2))
        stride = tuple(int(v) for v in rng.integers(1, 4, 2))
        dilation = tuple(int(v) for v in rng.integers(1, 3, 2))
        pad = tuple(int(v) for v in rng.integers(0, 4, 2))
        kwargs = dict(stride=stride if rng.random() < 0.7 else stride[0],
                      dilation=dilation if rng.random() < 0.7 else dilation[0], groups=groups)
        stride, dilation = _pair(kwargs["stride"]), _pair(kwargs["dilation"])
        x = rng.standard_normal((n, cig * groups, h, w)).astype(dtype)
        bias = rng.standard_normal(cog * groups).astype(dtype) if rng.random() < 0.6 else None
        if transpose:
            weight = rng.standard_normal((cig * groups, cog, kh, kw)).astype(dtype)
            op = tuple(int(rng.integers(0, max(s, d)))
                       for s, d in zip(stride, dilation, strict=True))
            out = [(size - 1) * s - 2 * p + d * (k - 1) + o + 1 for size, s, p, d, k, o
                   in zip((h, w), stride, pad, dilation, (kh, kw), op, strict=True)]
            if min(out) <= 0:
                continue
            kwargs.update(padding=pad, output_padding=op)
        else:
            weight = rng.standard_normal((cog * groups, cig, kh, kw)).astype(dtype)
            choice = rng.integers(0, 4)
            if choice == 0 and stride == (1, 1):
                kwargs["padding"] = "same"
            elif choice == 1:
                kwargs["padding"] = "valid"
                pad = (0, 0)
            else:
                kwargs["padding"] = pad if choice == 2 else pad[0]
                pad = _pair(kwargs["padding"])
            if kwargs["padding"] != "same" and any(
                    size + 2 * p < d * (k - 1) + 1
                    for size, p, d, k in zip((h, w), pad, dilation, (kh, kw), strict=True)):
                continue
        return x, weight, bias, kwargs


def check(got, expected, dtype):
    assert got.shape == expected.shape
    assert got.dtype == dtype
    assert got.flags.c_contiguous
    np.testing.assert_allclose(got, expected, rtol=RTOL[dtype], atol=ATOL[dtype])


# --- the test's own reference against the TensorFlow-convention one ------------------------------

@pytest.mark.parametrize("seed", range(10))
def test_naive_conv2d_matches_testing_reference(seed):
    x, w, b, kw = random_case(seed, transpose=False)
    if kw["padding"] in ("same", "valid"):
        kw["padding"] = 0
    ph, pw = _pair(kw["padding"])
    tf_padding = [[0, 0], [0, 0], [ph, ph], [pw, pw]]
    expected = reference_conv2d(x, w.transpose(2, 3, 1, 0), _pair(kw["stride"]), tf_padding,
                                "NCHW", _pair(kw["dilation"]))
    np.testing.assert_allclose(naive_conv2d(x, w, None, **kw), expected, rtol=1e-12, atol=1e-12)


# --- against the naive reference ------------------------------------------------------------------

@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("seed", range(40))
def test_conv2d_matches_naive(seed, dtype):
    x, w, b, kw = random_case(seed, transpose=False, dtype=dtype)
    check(F.conv2d(x, w, b, **kw), naive_conv2d(x, w, b, **kw), dtype)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("seed", range(40))
def test_conv_transpose2d_matches_naive(seed, dtype):
    x, w, b, kw = random_case(seed, transpose=True, dtype=dtype)
    check(F.conv_transpose2d(x, w, b, **kw), naive_conv_transpose2d(x, w, b, **kw), dtype)


@pytest.mark.parametrize("stride, padding, output_padding, dilation", [
    (2, 0, 1, 1),        # p - op < 0: TensorFlow padding [0, -1]
    (3, 1, 2, 1),        # p - op = -1
    (3, 0, 2, 1),        # 1x1 kernel: phases with no taps (bias only)
    (1, 0, 2, 3),        # output_padding >= stride, allowed by the dilation
    (2, 2, 2, 3),
    ((2, 3), (0, 1), (1, 2), (1, 1)),
    (2, 4, 1, 1),        # padding larger than the kernel
])
@pytest.mark.parametrize("kernel", [1, 3])
def test_conv_transpose2d_padding_output_padding(stride, padding, output_padding, dilation,
                                                 kernel, rng):
    x = rng.standard_normal((2, 4, 5, 4))
    w = rng.standard_normal((4, 3, kernel, kernel))
    b = rng.standard_normal(6)
    kw = dict(stride=stride, padding=padding, output_padding=output_padding, groups=2,
              dilation=dilation)
    settings_hw = zip((5, 4), _pair(stride), _pair(padding), _pair(output_padding),
                      _pair(dilation), strict=True)
    sizes = [(s - 1) * st - 2 * p + d * (kernel - 1) + o + 1 for s, st, p, o, d in settings_hw]
    if min(sizes) <= 0:
        with pytest.raises(ValueError, match="output (height|width) would be"):
            F.conv_transpose2d(x, w, b, **kw)
        return
    check(F.conv_transpose2d(x, w, b, **kw), naive_conv_transpose2d(x, w, b, **kw), np.float64)


@pytest.mark.parametrize("multiplier", [1, 2])
@pytest.mark.parametrize("stride", [1, 2])
def test_depthwise(multiplier, stride, rng):
    x = rng.standard_normal((2, 8, 9, 7)).astype(np.float32)
    b = rng.standard_normal(8 * multiplier).astype(np.float32)
    w = rng.standard_normal((8 * multiplier, 1, 3, 3)).astype(np.float32)
    kw = dict(stride=stride, padding=1, groups=8)
    check(F.conv2d(x, w, b, **kw), naive_conv2d(x, w, b, **kw), np.float32)
    wt = rng.standard_normal((8, multiplier, 3, 3)).astype(np.float32)
    kw["output_padding"] = stride - 1
    check(F.conv_transpose2d(x, wt, b, **kw), naive_conv_transpose2d(x, wt, b, **kw),
          np.float32)


# PyTorch's weights are read in place (no conversion to TensorFlow's layout): each kernel's
# reading of them (the plans' kinds, for conv2d and conv_transpose2d)
AVX512 = pytest.mark.skipif(simd.REGISTERS < 32, reason="blocks of 4 vectors: AVX-512's registers")


@pytest.mark.parametrize("cin, cout, k, groups, kinds, dtype", [
    (32, 48, 3, 1, ["outer 16"], np.float64),
    pytest.param(32, 32, 3, 1, ["outer 32"], np.float64, marks=AVX512),  # 4 zmm
    pytest.param(32, 32, 3, 1, ["outer 32"], np.float32, marks=AVX512),  # 4 ymm
    pytest.param(32, 64, 3, 1, ["outer 64"], np.float32, marks=AVX512),  # 4 zmm
    (16, 32, 3, 2, ["outer 16"], np.float64),
    (6, 8, 3, 1, ["outer 8"], np.float64),
    (64, 3, 1, 1, ["tiled in place", "tiled packed"], np.float64),
    (40, 3, 3, 1, ["tiled packed"], np.float64),
    (8, 16, 3, 8, ["depthwise"], np.float64),
    (1, 2, 3, 1, ["rowwise"], np.float64),
])
def test_pytorch_weights_in_every_kernel(cin, cout, k, groups, kinds, dtype, rng):
    x = rng.standard_normal((2, cin, 9, 8)).astype(dtype)
    w = rng.standard_normal((cout, cin // groups, k, k)).astype(dtype)
    wt = rng.standard_normal((cin, cout // groups, k, k)).astype(dtype)
    b = rng.standard_normal(cout).astype(dtype)
    check(F.conv2d(x, w, b, padding=1, groups=groups),
          naive_conv2d(x, w, b, padding=1, groups=groups).astype(dtype), dtype)
    kw = dict(stride=2, padding=1, output_padding=1, groups=groups)
    check(F.conv_transpose2d(x, wt, b, **kw),
          naive_conv_transpose2d(x, wt, b, **kw).astype(dtype), dtype)
    itemsize = np.dtype(dtype).itemsize
    plans = (_engine.plan_conv2d((2, 9, 8, cin), (k, k, cin // groups, cout), (1, 1), (1, 1),
                                 (1, 1), (12 - k, 11 - k), groups, True, itemsize),
             _engine.plan_input_grad((2, 9, 8, cin), (k, k, cout // groups, cin), (15 + k, 13 + k),
                                     (2, 2), (1, 1), (1, 1), groups, True, itemsize))
    found = {f"outer {p.meta[17]}" if p.kind == "outer" else
             f"tiled {'in place' if p.weight_index is None else 'packed'}" if p.kind == "tiled"
             else p.kind for p in plans}
    assert found == set(kinds)


@pytest.mark.parametrize("dilation", [1, 2, (2, 3)])
@pytest.mark.parametrize("kernel", [(1, 1), (2, 2), (3, 2), (4, 3)])
def test_same_padding(kernel, dilation, rng):
    x = rng.standard_normal((1, 3, 6, 7))
    w = rng.standard_normal((4, 3, *kernel))
    got = F.conv2d(x, w, padding="same", dilation=dilation)
    assert got.shape == (1, 4, 6, 7)
    check(got, naive_conv2d(x, w, padding="same", dilation=dilation), np.float64)
    dh = _pair(dilation)[0]
    if dh * (kernel[0] - 1) < 6:  # "valid" (any case, unlike PyTorch) when the kernel fits
        check(F.conv2d(x, w, padding="VALID", dilation=dilation),
              naive_conv2d(x, w, padding=0, dilation=dilation), np.float64)


def test_unbatched(rng):
    x = rng.standard_normal((4, 6, 5))
    w = rng.standard_normal((6, 2, 3, 3))
    b = rng.standard_normal(6)
    got = F.conv2d(x, w, b, padding=1, groups=2)
    assert got.shape == (6, 6, 5)
    check(got, naive_conv2d(x[None], w, b, padding=1, groups=2)[0], np.float64)
    wt = rng.standard_normal((4, 3, 3, 3))
    got = F.conv_transpose2d(x, wt, None, 2, 1, 1, 2)
    assert got.shape == (6, 12, 10)
    check(got, naive_conv_transpose2d(x[None], wt, None, 2, 1, 1, 2)[0], np.float64)


def test_positional_order_matches_pytorch(rng):
    """Positional: input, weight, bias, stride, padding, output_padding, groups, dilation."""
    x = rng.standard_normal((1, 4, 4, 4))
    w = rng.standard_normal((4, 1, 3, 3))
    got = F.conv_transpose2d(x, w, None, 2, 1, 1, 4, 2)
    expected = naive_conv_transpose2d(x, w, None, stride=2, padding=1, output_padding=1,
                                      groups=4, dilation=2)
    check(got, expected, np.float64)
    w = rng.standard_normal((8, 1, 3, 3))
    got = F.conv2d(x, w, None, 1, 2, 2, 4)  # (stride, padding, dilation, groups)
    check(got, naive_conv2d(x, w, stride=1, padding=2, dilation=2, groups=4), np.float64)


# --- dtypes and array kinds ---------------------------------------------------------------------

def test_float16_is_computed_in_float32(rng):
    x = rng.standard_normal((1, 2, 5, 5)).astype(np.float16)
    w = rng.standard_normal((3, 2, 3, 3)).astype(np.float16)
    b = rng.standard_normal(3).astype(np.float16)
    got = F.conv2d(x, w, b, padding=1)
    assert got.dtype == np.float16
    expected = naive_conv2d(x, w, b, padding=1).astype(np.float16)
    np.testing.assert_allclose(got.astype(np.float64), expected, rtol=2e-3, atol=1e-2)
    wt = rng.standard_normal((2, 3, 3, 3)).astype(np.float16)
    got = F.conv_transpose2d(x, wt, b, stride=2)
    assert got.dtype == np.float16
    np.testing.assert_allclose(got.astype(np.float64),
                               naive_conv_transpose2d(x, wt, b, stride=2), rtol=2e-3, atol=1e-2)


@pytest.mark.parametrize("dtypes, result", [
    ((np.float32, np.float32, np.float64), np.float64),
    ((np.float32, np.float64, None), np.float64),
    ((np.float16, np.float32, np.float16), np.float32),
    ((np.float64, np.float16, np.float16), np.float64),
])
def test_mixed_dtypes_promote(dtypes, result, rng):
    x = rng.standard_normal((1, 2, 4, 4)).astype(dtypes[0])
    w = rng.standard_normal((2, 2, 3, 3)).astype(dtypes[1])
    b = None if dtypes[2] is None else rng.standard_normal(2).astype(dtypes[2])
    assert F.conv2d(x, w, b).dtype == result
    assert F.conv_transpose2d(x, w, b).dtype == result


def test_lists_views_read_only_and_channels_last(rng):
    x = rng.standard_normal((2, 3, 6, 5)).astype(np.float32)
    w = rng.standard_normal((4, 3, 3, 3)).astype(np.float32)
    b = rng.standard_normal(4).astype(np.float32)
    expected = F.conv2d(x, w, b, padding=1)
    channels_last = np.ascontiguousarray(x.transpose(0, 2, 3, 1)).transpose(0, 3, 1, 2)
    read_only = x.copy()
    read_only.flags.writeable = False
    b_ro = b.copy()
    b_ro.flags.writeable = False
    big_b = np.repeat(b, 2)
    for args in [(channels_last, w, b), (read_only, w, b_ro), (x.tolist(), w.tolist(), b.tolist()),
                 (x, w[:, :, ::-1, ::-1].copy()[:, :, ::-1, ::-1], big_b[::2])]:
        got = F.conv2d(*args, padding=1)
        assert got.dtype == (np.float64 if isinstance(args[0], list) else np.float32)
        np.testing.assert_allclose(got, expected, rtol=1e-5, atol=1e-5)
    assert not read_only.flags.writeable and not b_ro.flags.writeable


def test_channels_last_input_gives_channels_last_result(rng):
    x = rng.standard_normal((2, 6, 5, 3))  # NHWC buffer
    w = rng.standard_normal((3, 3, 3, 3))
    for op in (F.conv2d, F.conv_transpose2d):
        got = op(x.transpose(0, 3, 1, 2), w, padding=1)
        assert got.transpose(0, 2, 3, 1).flags.c_contiguous
        np.testing.assert_allclose(got, op(np.ascontiguousarray(x.transpose(0, 3, 1, 2)), w,
                                           padding=1), rtol=1e-12, atol=1e-12)
        assert op(np.ascontiguousarray(x.transpose(0, 3, 1, 2)), w, padding=1).flags.c_contiguous


def test_non_native_byte_order(rng):
    x = rng.standard_normal((1, 2, 4, 4))
    w = rng.standard_normal((2, 3, 2, 2))
    b = rng.standard_normal(3)
    swapped = [a.astype(a.dtype.newbyteorder()) for a in (x, w, b)]
    np.testing.assert_allclose(F.conv_transpose2d(*swapped, stride=2),
                               F.conv_transpose2d(x, w, b, stride=2), rtol=0, atol=0)


def test_read_only_bias_does_not_compile_a_new_kernel(rng):
    from numbadeconv import _engine

    def signatures():
        return {kind: len(func.signatures) for kind, func in _engine._CORRELATE.items()}

    x = rng.standard_normal((1, 3, 5, 5)).astype(np.float32)
    w = rng.standard_normal((4, 3, 3, 3)).astype(np.float32)
    b = rng.standard_normal(4).astype(np.float32)
    F.conv2d(x, w, b, threads=1)
    before = signatures()
    b.flags.writeable = False
    x.flags.writeable = False
    F.conv2d(x, w, b, threads=1)
    F.conv2d(x, w, np.repeat(b, 2)[::2], threads=1)
    F.conv2d(x, w, b.astype(np.float64), threads=1)  # float64 result; compiles float64 only
    F.conv2d(x.astype(np.float64), w, b.astype(np.float64), threads=1)
    after = signatures()
    grew = {k: after[k] - before[k] for k in after if after[k] != before[k]}
    assert sum(grew.values()) <= 1, grew


@pytest.mark.parametrize("threads", [1, 2])
def test_threads(threads, rng):
    import numba

    if threads > numba.config.NUMBA_NUM_THREADS:
        pytest.skip("needs 2 threads")
    x = rng.standard_normal((2, 16, 20, 20)).astype(np.float32)
    w = rng.standard_normal((16, 4, 3, 3)).astype(np.float32)
    before = numba.get_num_threads()
    got = F.conv_transpose2d(x, w, None, 2, 1, 1, 4, threads=threads)
    assert numba.get_num_threads() == before
    check(got, naive_conv_transpose2d(x, w, None, 2, 1, 1, 4).astype(np.float32), np.float32)
    with pytest.raises(ValueError, match="threads"):
        F.conv2d(x, np.zeros((4, 16, 1, 1), np.float32), threads=0)


def test_zero_batch(rng):
    x = np.zeros((0, 4, 5, 5))
    assert F.conv2d(x, np.ones((2, 4, 3, 3))).shape == (0, 2, 3, 3)
    assert F.conv_transpose2d(x, np.ones((4, 2, 3, 3)), stride=2).shape == (0, 2, 11, 11)


# --- the adjoint identity (hypothesis) ----------------------------------------------------------

@settings(deadline=None, max_examples=60)
@given(
    h=st.integers(1, 9), w=st.integers(1, 9), k=st.tuples(st.integers(1, 4), st.integers(1, 4)),
    s=st.tuples(st.integers(1, 3), st.integers(1, 3)),
    d=st.tuples(st.integers(1, 3), st.integers(1, 3)),
    p=st.tuples(st.integers(0, 3), st.integers(0, 3)),
    groups=st.sampled_from([1, 2, 3]), cig=st.integers(1, 2), cog=st.integers(1, 2),
    seed=st.integers(0, 2**32 - 1),
)
def test_conv_transpose2d_is_the_adjoint_of_conv2d(h, w, k, s, d, p, groups, cig, cog, seed):
    """<conv2d(x), y> == <x, conv_transpose2d(y)>, with output_padding recovering x's size."""
    sizes = []
    for size, kk, ss, dd, pp in zip((h, w), k, s, d, p, strict=True):
        extent = dd * (kk - 1) + 1
        if size + 2 * pp < extent:
            return
        out = (size + 2 * pp - extent) // ss + 1
        sizes.append((out, size - ((out - 1) * ss - 2 * pp + extent)))
    (oh, oph), (ow, opw) = sizes
    assert 0 <= oph < s[0] and 0 <= opw < s[1]
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((2, cig * groups, h, w))
    weight = rng.standard_normal((cog * groups, cig, *k))
    y = rng.standard_normal((2, cog * groups, oh, ow))
    fwd = F.conv2d(x, weight, None, s, p, d, groups)
    back = F.conv_transpose2d(y, weight, None, s, p, (oph, opw), groups, d)
    assert back.shape == x.shape
    np.testing.assert_allclose(np.vdot(fwd, y), np.vdot(x, back), rtol=1e-10, atol=1e-10)


# --- bad inputs -----------------------------------------------------------------------------------

X = np.zeros((1, 4, 6, 6), np.float32)
W = np.zeros((6, 2, 3, 3), np.float32)  # conv2d: 4 -> 6 channels with groups=2
WT = np.zeros((4, 3, 3, 3), np.float32)  # conv_transpose2d: 4 -> 6 channels with groups=2


@pytest.mark.parametrize("kwargs, error, match", [
    (dict(groups=4), ValueError, r"weight out_channels \(axis 0\) 6 must be divisible by groups"),
    (dict(weight=np.zeros((6, 4, 3, 3), np.float32), groups=3), ValueError,
     r"input in_channels \(axis 1\) 4 must be divisible by groups 3"),
    (dict(groups=1), ValueError, r"input has 4 channels \(axis 1\) but weight expects "
                                 r"in_channels = weight axis 1 \(2\) \* groups \(1\) = 2"),
    (dict(input=X[0], groups=1), ValueError, r"input has 4 channels \(axis 0\)"),
    (dict(groups=0), ValueError, "groups must be a positive int"),
    (dict(groups=2.0), TypeError, "groups must be a positive int"),
    (dict(stride=0), ValueError, "stride must be positive"),
    (dict(stride=(1, 2, 3)), ValueError, "stride must be an int or a pair"),
    (dict(stride=1.5), TypeError, "stride must be an int"),
    (dict(dilation=(1, 0)), ValueError, "dilation must be positive"),
    (dict(padding=-1), ValueError, "padding must be >= 0"),
    (dict(padding="full"), ValueError, "padding must be 'valid', 'same', an int or a pair"),
    (dict(padding="same", stride=2), ValueError, "padding='same' is not supported for strided"),
    (dict(weight=np.zeros((6, 2, 7, 3), np.float32)), ValueError,
     "kernel height is larger than the padded input: input height 6 .* dilated kernel height 7"),
    (dict(dilation=(1, 4), padding=1), ValueError,
     r"kernel width is larger than the padded input: .* = 8 < dilated kernel width 9"),
    (dict(bias=np.zeros(4, np.float32)), ValueError,
     r"bias must be 1-D of length out_channels = 6; got shape \(4,\)"),
    (dict(bias=np.zeros((6, 1), np.float32)), ValueError, "bias must be 1-D"),
    (dict(bias=np.zeros(6, np.int32)), TypeError, "bias must be a float16, float32 or float64"),
    (dict(input=X.astype(np.int64)), TypeError, "input must be a float16, float32 or float64"),
    (dict(input=X[0, 0]), ValueError, "input must be 4-D .* or unbatched 3-D"),
    (dict(weight=W[0]), ValueError, r"weight must be 4-D \[out_channels, in_channels / groups"),
    (dict(weight=np.zeros((6, 2, 0, 3), np.float32)), ValueError,
     "weight must have a kernel height and width"),
])
def test_conv2d_bad_inputs(kwargs, error, match):
    args = dict(input=X, weight=W, bias=None, stride=1, padding=0, dilation=1, groups=2)
    args.update(kwargs)
    with pytest.raises(error, match=match):
        F.conv2d(**args)


@pytest.mark.parametrize("kwargs, error, match", [
    (dict(groups=3), ValueError, r"weight in_channels \(axis 0\) 4 must be divisible by groups"),
    (dict(input=np.zeros((1, 5, 6, 6), np.float32)), ValueError,
     r"input has 5 channels \(axis 1\) but weight in_channels \(axis 0\) is 4"),
    (dict(groups=-1), ValueError, "groups must be a positive int"),
    (dict(stride=(0, 1)), ValueError, "stride must be positive"),
    (dict(dilation=0), ValueError, "dilation must be positive"),
    (dict(padding=(0, -2)), ValueError, "padding must be >= 0"),
    (dict(padding="same"), TypeError, "padding must be an int or a pair of ints"),
    (dict(output_padding=-1), ValueError, "output_padding must be >= 0"),
    (dict(output_padding=1), ValueError,
     "output_padding 1 .* must be smaller than either stride 1 or dilation 1"),
    (dict(stride=2, dilation=(3, 1), output_padding=(2, 2)), ValueError,
     r"output_padding 2 \(along the width\) must be smaller than either stride 2 or dilation 1"),
    (dict(padding=(6, 0)), ValueError, r"output height would be -4 \(must be positive\)"),
    (dict(padding=(0, 5)), ValueError, r"output width would be -2"),
    (dict(bias=np.zeros(3, np.float32)), ValueError,
     "bias must be 1-D of length out_channels = 6"),
    (dict(input=X[0, 0]), ValueError, "input must be 4-D"),
    (dict(weight=WT[0]), ValueError, r"weight must be 4-D \[in_channels, out_channels / groups"),
    (dict(weight=WT.astype(np.complex64)), TypeError, "weight must be a float16, float32"),
])
def test_conv_transpose2d_bad_inputs(kwargs, error, match):
    args = dict(input=X, weight=WT, bias=None, stride=1, padding=0, output_padding=0, groups=2,
                dilation=1)
    args.update(kwargs)
    with pytest.raises(error, match=match):
        F.conv_transpose2d(**args)


def test_exported():
    assert numbadeconv.functional is F
    assert "functional" in numbadeconv.__all__


def test_docstring_examples():
    failures, tried = doctest.testmod(F, optionflags=doctest.NORMALIZE_WHITESPACE)
    assert tried > 0 and failures == 0


# --- PyTorch oracle -------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def torch():
    return pytest.importorskip("torch")


def oracle(test):
    """Mark a PyTorch cross-check: marker ``oracle``, and the warnings torch itself raises.

    torch warns (UserWarning) that ``padding="same"`` with an even kernel and odd dilation may copy
    the input; importing torch may raise DeprecationWarnings from its own modules.
    """
    test = pytest.mark.filterwarnings("ignore::DeprecationWarning:torch.*")(test)
    test = pytest.mark.filterwarnings("ignore:Using padding='same':UserWarning")(test)
    return pytest.mark.oracle(test)


def _torch_call(torch, func, x, w, b, kwargs):
    t = [None if a is None else torch.from_numpy(np.ascontiguousarray(a)) for a in (x, w, b)]
    return getattr(torch.nn.functional, func)(*t, **kwargs).numpy()


@oracle
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("seed", range(60))
@pytest.mark.parametrize("func", ["conv2d", "conv_transpose2d"])
def test_against_torch(func, seed, dtype, torch):
    x, w, b, kw = random_case(1000 + seed, transpose=func == "conv_transpose2d", dtype=dtype)
    expected = _torch_call(torch, func, x, w, b, kw)
    check(getattr(F, func)(x, w, b, **kw), expected, dtype)


@oracle
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("groups, cin, cout", [(1, 3, 4), (2, 4, 6), (4, 4, 4), (4, 4, 8)])
@pytest.mark.parametrize("stride, padding, output_padding, dilation", [
    (1, 0, 0, 1), (2, 0, 1, 1), (2, 1, 1, 1), (3, 1, 2, 1), (3, (2, 0), (1, 2), 1),
    (1, 1, 1, 2), (2, 2, 2, 3), ((1, 2), (1, 0), (0, 1), (2, 1)),
])
def test_conv_transpose2d_grid_against_torch(stride, padding, output_padding, dilation, groups,
                                             cin, cout, dtype, torch, rng):
    x = rng.standard_normal((2, cin, 5, 6)).astype(dtype)
    w = rng.standard_normal((cin, cout // groups, 3, 2)).astype(dtype)
    b = rng.standard_normal(cout).astype(dtype)
    kw = dict(stride=stride, padding=padding, output_padding=output_padding, groups=groups,
              dilation=dilation)
    for bias in (None, b):
        expected = _torch_call(torch, "conv_transpose2d", x, w, bias, kw)
        check(F.conv_transpose2d(x, w, bias, **kw), expected, dtype)


@oracle
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("groups, cin, cout", [(1, 3, 4), (2, 4, 6), (4, 4, 4), (4, 4, 8)])
@pytest.mark.parametrize("stride, padding, dilation", [
    (1, 0, 1), (1, "same", 1), (1, "same", (2, 1)), (1, "valid", 2), (2, 1, 1), (2, (0, 2), 2),
    ((3, 1), 3, 1),
])
def test_conv2d_grid_against_torch(stride, padding, dilation, groups, cin, cout, dtype, torch,
                                   rng):
    x = rng.standard_normal((2, cin, 7, 6)).astype(dtype)
    w = rng.standard_normal((cout, cin // groups, 3, 2)).astype(dtype)
    b = rng.standard_normal(cout).astype(dtype)
    kw = dict(stride=stride, padding=padding, dilation=dilation, groups=groups)
    for bias in (None, b):
        expected = _torch_call(torch, "conv2d", x, w, bias, kw)
        check(F.conv2d(x, w, bias, **kw), expected, dtype)


@oracle
def test_mobilenet_depthwise_against_torch(torch, rng):
    x = rng.standard_normal((2, 32, 28, 28)).astype(np.float32)
    w = rng.standard_normal((32, 1, 3, 3)).astype(np.float32)
    b = rng.standard_normal(32).astype(np.float32)
    for stride in (1, 2):
        kw = dict(stride=stride, padding=1, groups=32)
        check(F.conv2d(x, w, b, **kw), _torch_call(torch, "conv2d", x, w, b, kw), np.float32)
