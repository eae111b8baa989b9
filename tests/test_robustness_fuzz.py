"""Hostile arguments: every public op either returns the reference's result or raises
ValueError / TypeError. Never another exception, never a crash.

Hypothesis throws random ranks, shapes (0, and huge sizes as arguments or as zero-stride views),
strides, dilations, paddings, output shapes, dtypes, layouts and ``threads`` at the four ops. The
examples run in a child interpreter with ``NUMBA_BOUNDSCHECK=1``, so that an out-of-bounds read or
write in a kernel is an IndexError (a failure) rather than silent corruption or a segfault, and so
that a crash fails one test instead of killing the runner. The child uses its own
``NUMBA_CACHE_DIR``: Numba's cache does not tell bounds-checked machine code from the rest.
"""

import collections

import numpy as np
import pytest
from _robustness import REPO, check_child, child_env, run_child
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

OPS = ("conv2d", "conv2d_transpose", "conv2d_backprop_input", "conv2d_backprop_filter")
HUGE = 2**40
#: Huge strides, dilations and paddings (with a small output) are fuzzed too: see
#: ``HUGE_GEOMETRY`` below for what they must do.
BIG = [HUGE, 2**63, 2**20]

DTYPES = ["float32", "float64", "float16", ">f4", ">f8", "int32", "int64", "uint8", "bool",
          "complex64", "complex128", "object", "U3"]
# a float dtype's tolerance (result vs the float64 reference, relative to sum |terms|)
RTOL = {2: 4e-3, 4: 2e-4, 8: 1e-10}

small = st.integers(0, 4)
dim = st.one_of(small, small, small, st.sampled_from([0, 1, HUGE, 2**31, -1]))
positive = st.integers(1, 3)
scalar_arg = st.one_of(positive, positive, st.sampled_from([0, -1, *BIG]), st.just(True),
                       st.floats(0, 3), st.text(max_size=2), st.none(),
                       st.integers(1, 3).map(np.int64))
spatial = st.one_of(scalar_arg, st.lists(scalar_arg, max_size=5),
                    st.lists(positive, min_size=2, max_size=2),
                    st.tuples(st.just(1), positive, positive, st.just(1)),
                    st.tuples(st.just(1), st.just(1), positive, positive))
pad_amount = st.one_of(st.integers(0, 3), st.integers(0, 3), st.sampled_from([-1, *BIG]))
explicit = st.tuples(pad_amount, pad_amount, pad_amount, pad_amount)
padding = st.one_of(
    st.sampled_from(["SAME", "VALID", "same", "valid", "EXPLICIT", "", "SAME "]),
    explicit.map(lambda p: [[0, 0], [p[0], p[1]], [p[2], p[3]], [0, 0]]),
    explicit.map(lambda p: [[0, 0], [0, 0], [p[0], p[1]], [p[2], p[3]]]),
    explicit.map(lambda p: np.array([[0, 0], [p[0], p[1]], [p[2], p[3]], [0, 0]])),
    st.lists(st.lists(st.one_of(pad_amount, st.floats(0, 2), st.text(max_size=1)), max_size=3),
             max_size=5),
    st.none(), st.integers(-1, 3),
)
layout = st.sampled_from(["NHWC", "NHWC", "NCHW", "NCHW", "nhwc", "NWHC", "", None, 4])
threads = st.one_of(st.none(), st.none(), st.just(1), st.just(2), st.sampled_from([0, -1, HUGE]),
                    st.just(1.0), st.just(True), st.just("2"))


def _make_array(shape, dtype, seed, flip):
    a = np.random.default_rng(seed).standard_normal(int(np.prod(shape))).reshape(shape)
    if dtype.kind in "fc":
        a = a.astype(dtype)
    elif dtype.kind == "U":
        a = a.astype(str).astype(dtype)
    else:
        a = np.asarray(a * 3).astype(dtype)
    return a[::-1] if flip and a.ndim else a  # non-contiguous


@st.composite
def hostile_array(draw, shape):
    """Something in place of an array of ``shape``: another rank or dtype, a huge view, ..."""
    kind = draw(st.sampled_from(["rank", "dtype", "huge", "list", "scalar", "zero"]))
    dtype = np.dtype(draw(st.sampled_from(DTYPES)))
    if kind == "rank":
        shape = draw(st.lists(small, max_size=6))
    elif kind == "huge":  # a zero-stride view: a huge shape in no memory
        shape = list(shape)
        shape[draw(st.integers(0, 3))] = draw(st.sampled_from([2**16, 2**24, 2**31]))
        return np.broadcast_to(np.ones((), np.float32), shape)
    elif kind == "scalar":
        return draw(st.sampled_from([1.0, None, "x", [1.0]]))
    elif kind == "zero":
        shape = list(shape)
        shape[draw(st.integers(0, 3))] = 0
        dtype = np.dtype(np.float32)
    a = _make_array(shape, dtype, draw(st.integers(0, 2**32 - 1)), draw(st.booleans()))
    return a.tolist() if kind == "list" else a


def maybe(draw, valid, hostile, p_hostile):
    """``valid``, or with probability about ``p_hostile`` a draw from ``hostile``."""
    if draw(st.integers(0, 999)) < p_hostile * 1000:
        return draw(hostile)
    return valid


@st.composite
def calls(draw):
    """(op, args, kwargs): a valid call with, often, one or more arguments made hostile."""
    from numbadeconv.testing import reference_output_size

    op = draw(st.sampled_from(OPS))
    p = draw(st.sampled_from([0.0, 0.05, 0.15, 0.4]))  # how hostile this example is
    groups = draw(st.sampled_from([1, 1, 2, 3]))
    cg, og = draw(small), draw(small)
    if groups > 1:
        cg = max(cg, 1)
    n, h, w = draw(small), draw(st.integers(0, 7)), draw(st.integers(0, 7))
    fh, fw = draw(positive), draw(positive)
    sh, sw, dh, dw = (draw(positive) for _ in range(4))
    pads = draw(st.one_of(st.sampled_from(["SAME", "VALID"]),
                          st.tuples(*[st.integers(0, 3)] * 4)))
    if isinstance(pads, str):
        pad_h = pad_w = pads
    else:
        pad_h, pad_w = pads[:2], pads[2:]
        pads = [[0, 0], list(pad_h), list(pad_w), [0, 0]]
    nchw = draw(st.booleans())
    if nchw and not isinstance(pads, str):
        pads = [pads[0], pads[3], pads[1], pads[2]]
    try:
        oh = reference_output_size(h, fh, sh, pad_h, dh)
        ow = reference_output_size(w, fw, sw, pad_w, dw)
    except ValueError:
        oh = ow = -1
    oh, ow = max(oh, 0), max(ow, 0)
    order = (lambda a, b, c, d: (a, d, b, c)) if nchw else (lambda a, b, c, d: (a, b, c, d))
    x_shape = order(n, h, w, cg * groups)
    y_shape = order(n, oh, ow, og * groups)
    f_shape = (fh, fw, cg, og * groups)
    dtype = np.dtype(draw(st.sampled_from(["float32", "float64", "float16", ">f4"])))
    seed = draw(st.integers(0, 2**32 - 1))
    x = maybe(draw, _make_array(x_shape, dtype, seed, draw(st.booleans())),
              hostile_array(x_shape), p)
    y = maybe(draw, _make_array(y_shape, dtype, seed + 1, draw(st.booleans())),
              hostile_array(y_shape), p)
    f = maybe(draw, _make_array(f_shape, dtype, seed + 2, draw(st.booleans())),
              hostile_array(f_shape), p)
    int_list = st.lists(dim, max_size=5)
    kwargs = dict(
        strides=maybe(draw, draw(st.sampled_from([[sh, sw], order(1, sh, sw, 1)]))
                      if sh != sw else sh, spatial, p),
        padding=maybe(draw, pads, padding, p),
        data_format=maybe(draw, "NCHW" if nchw else "NHWC", layout, p),
        dilations=maybe(draw, [dh, dw], spatial, p),
        threads=maybe(draw, None, threads, p),
    )
    if op == "conv2d":
        args = (x, f)
    elif op == "conv2d_transpose":
        args = (y, f, maybe(draw, list(x_shape), int_list, p))
    elif op == "conv2d_backprop_input":
        args = (maybe(draw, list(x_shape), int_list, p), f, y)
    else:
        args = (x, maybe(draw, list(f_shape), int_list, p), y)
    return op, args, kwargs


def _reference(op, args, kwargs):
    from numbadeconv import testing

    kwargs = {k: v for k, v in kwargs.items() if k != "threads"}
    if op == "conv2d":
        return testing.reference_conv2d(*args, **kwargs)
    if op == "conv2d_transpose":
        return testing.reference_conv2d_transpose(*args, **kwargs)
    if op == "conv2d_backprop_input":
        shape, f, dy = args
        return testing.reference_conv2d_transpose(dy, f, shape, **kwargs)
    return testing.reference_conv2d_backprop_filter(*args, **kwargs)


SHAPE_ARG = {"conv2d_transpose": 2, "conv2d_backprop_input": 0, "conv2d_backprop_filter": 1}


def _modest(obj, limit=10**4) -> bool:
    """Whether every int and array axis in ``obj`` (nested) is at most ``limit``."""
    if isinstance(obj, np.ndarray):
        return max(obj.shape, default=0) <= limit and (obj.dtype.kind not in "iu" or obj.size == 0
                                                       or int(np.abs(obj).max()) <= limit)
    if isinstance(obj, dict):
        obj = list(obj.values())
    if isinstance(obj, (list, tuple)):
        return all(_modest(v, limit) for v in obj)
    if isinstance(obj, (int, np.integer)):
        return abs(int(obj)) <= limit
    return True


def check_call(op, args, kwargs, stats):
    import numbadeconv as nd

    try:
        got = getattr(nd, op)(*args, **kwargs)
    except (ValueError, TypeError) as exc:
        assert str(exc), f"{op}: {type(exc).__name__} without a message"
        stats["rejected"] += 1
        return
    except MemoryError as exc:
        # Results and input copies are checked against the machine's memory before anything is
        # allocated; buffers in proportion to a (huge) input can still meet this child's address
        # space limit, and NumPy's MemoryError then names the size.
        assert "Unable to allocate" in str(exc), exc
        stats["MemoryError naming the size"] += 1
        return
    stats["accepted"] += 1
    assert isinstance(got, np.ndarray) and got.dtype.kind == "f", (op, type(got))
    if not _modest((args, kwargs, got.shape)):
        # a huge geometry: the naive reference would loop or allocate for ages
        stats["huge geometry, not compared"] += 1
        return
    ref = _reference(op, args, kwargs)
    assert got.shape == ref.shape, (op, got.shape, ref.shape)
    # the same op on |inputs| bounds the rounding error of each element
    bound = _reference(op, [a if i == SHAPE_ARG.get(op) else np.abs(np.asarray(a, np.float64))
                            for i, a in enumerate(args)], kwargs)
    tol = RTOL[got.dtype.itemsize] * (bound + 1) * 4
    finite = np.isfinite(ref)
    assert np.all(np.abs(got[finite] - ref[finite]) <= tol[finite]), op
    assert np.array_equal(np.isnan(got), np.isnan(ref)), op


def fuzz(max_examples, seed=None):
    """Run ``max_examples`` hypothesis examples; returns counts of accepted / rejected calls."""
    stats = collections.Counter(accepted=0, rejected=0)

    @settings(max_examples=max_examples, deadline=None, database=None, derandomize=seed is None,
              suppress_health_check=list(HealthCheck))
    @given(calls())
    def run(call):
        check_call(*call, stats)

    run()
    return stats


CHILD = """
import resource, sys
sys.path.insert(0, {tests!r})
import numba
from numbadeconv import _args
assert numba.config.BOUNDSCHECK, "bounds checking is off"
# Results over 1 GiB must be refused (ValueError) before anything is allocated, and an address
# space of 6 GiB turns any unchecked big allocation into a MemoryError (a failure).
_args.MAX_OUTPUT_BYTES = 2**30
resource.setrlimit(resource.RLIMIT_AS, (6 * 2**30, resource.getrlimit(resource.RLIMIT_AS)[1]))
from test_robustness_fuzz import fuzz
print("stats", dict(fuzz({n})))
"""


def _run_bounds_checked(code, tmp_path, timeout, **kwargs):
    """``code``'s output in a child process with NUMBA_BOUNDSCHECK=1 and a cache of its own."""
    env = child_env(NUMBA_BOUNDSCHECK="1", NUMBA_CACHE_DIR=str(tmp_path / "boundscheck_cache"))
    return check_child(run_child(code, env=env, timeout=timeout, **kwargs))


def _run(tmp_path, n, timeout):
    out = _run_bounds_checked(CHILD.format(tests=str(REPO / "tests"), n=n), tmp_path, timeout,
                              cwd=tmp_path)
    print(out)
    return out


def test_fuzz_hostile_arguments(tmp_path):
    _run(tmp_path, 1000, timeout=300)


@pytest.mark.slow
def test_fuzz_hostile_arguments_many(tmp_path):
    _run(tmp_path, 5000, timeout=3000)


# --- requests that must fail fast: each in a child with a 6 GiB address space and a timeout -----

F32 = "np.ones({}, np.float32)"
HUGE_REQUESTS = {
    "output_shape": f"nd.conv2d_transpose({F32.format((1, 1, 1, 1))}, {F32.format((1, 1, 1, 1))},"
                    " [1, 2**20, 2**20, 1], strides=2**20, padding='SAME')",
    "filter_sizes": f"nd.conv2d_backprop_filter({F32.format((1, 2, 2, 1))}, [2**20, 2**20, 1, 1],"
                    f" {F32.format((1, 2, 2, 1))}, strides=1, padding='SAME')",
    "broadcast view": "nd.conv2d(np.broadcast_to(np.float32(1), (1, 2**17, 2**17, 2)),"
                      f" {F32.format((1, 1, 2, 1))}, strides=2**17, padding='VALID')",
}
HUGE_GEOMETRY = {
    # a zero-padded copy of the input larger than memory (the channel-rich kernel reads a padded
    # copy where a call does much work per input element: 4096 output channels here): refused
    # before allocating
    "padding, conv2d": f"nd.conv2d({F32.format((1, 1, 1, 64))}, {F32.format((1, 1, 64, 4096))},"
                       " strides=10**6, padding=[[0, 0], [10**6, 10**6], [10**6, 10**6], [0, 0]])",
    "dilation, conv2d": f"nd.conv2d({F32.format((1, 4, 4, 64))}, {F32.format((2, 2, 64, 4096))},"
                        " strides=1, padding='SAME', dilations=10**9)",
    "padding, backprop_filter": f"nd.conv2d_backprop_filter({F32.format((1, 1, 1, 1))}, "
                                f"[1, 1, 1, 1], {F32.format((1, 3, 3, 1))}, strides=10**6, "
                                "padding=[[0, 0], [10**6, 10**6], [10**6, 10**6], [0, 0]])",
}
FAIL_FAST = """
import resource, time
import numpy as np
import numbadeconv as nd
resource.setrlimit(resource.RLIMIT_AS, (6 * 2**30, resource.getrlimit(resource.RLIMIT_AS)[1]))
start = time.perf_counter()
try:
    {call}
except ValueError as exc:
    assert "bytes" in str(exc) or "too" in str(exc), exc
    print("ValueError", time.perf_counter() - start, exc)
"""


def _fail_fast(call):
    out = check_child(run_child(FAIL_FAST.format(call=call), timeout=15))
    assert "ValueError" in out, out


@pytest.mark.parametrize("what", list(HUGE_REQUESTS))
def test_huge_request_fails_fast_with_value_error(what):
    _fail_fast(HUGE_REQUESTS[what])


@pytest.mark.parametrize("what", list(HUGE_GEOMETRY))
def test_huge_geometry_fails_fast(what):
    _fail_fast(HUGE_GEOMETRY[what])


# the row-wise, the depthwise and the outer-product kernel (little work per input element)
@pytest.mark.parametrize(("channels", "per_group"), [(1, 1), (8, 1), (64, 64)])
def test_huge_geometry_of_little_work_returns_promptly(channels, per_group):
    # these kernels read the input unpadded: no copy, and the few taps inside it are found
    out = check_child(run_child(
        "import numpy as np, numbadeconv as nd\n"
        f"x, w = np.ones((1, 4, 4, {channels}), np.float32), np.full((2, 2, {per_group}, "
        f"{channels}), 2, np.float32)\n"
        "y = nd.conv2d(x[:, :1, :1], w[:1, :1], strides=10**6, "
        "padding=[[0, 0], [10**6, 10**6], [10**6, 10**6], [0, 0]])\n"
        "print(y.shape, float(y.sum()), float(y[0, 1, 1, 0]))\n"
        "y = nd.conv2d(x, w, strides=1, padding='SAME', dilations=10**9)\n"
        "print(y.shape, float(np.abs(y).sum()))\n", timeout=60))
    assert (f"(1, 3, 3, {channels}) {2.0 * channels * per_group} {2.0 * per_group}"
            in out), out
    assert f"(1, 4, 4, {channels}) 0.0" in out, out


def test_huge_transpose_stride_returns_promptly():
    # the transpose visits only the phases that some output has, not every residue of the stride
    out = check_child(run_child(
        "import numpy as np, numbadeconv as nd\n"
        "y = nd.conv2d_transpose(np.ones((1, 1, 1, 1), np.float32), np.full((1, 1, 1, 1), 2, "
        "np.float32), [1, 1, 1, 1], strides=2**30, padding='VALID')\n"
        "print(y.shape, float(y.sum()))\n", timeout=60))
    assert "(1, 1, 1, 1) 2.0" in out, out


def test_zero_input_channels_with_nonzero_filter_channels_is_a_value_error():
    # found by the fuzz: 0 channels / 1 filter channel made 0 groups, then a ZeroDivisionError
    import numbadeconv as nd

    x, f = np.zeros((1, 3, 3, 0), np.float32), np.zeros((1, 1, 1, 2), np.float32)
    with pytest.raises(ValueError, match="0 channels"):
        nd.conv2d(x, f, 1, "SAME")
    with pytest.raises(ValueError, match="0 channels"):
        nd.conv2d_transpose(np.zeros((1, 3, 3, 2), np.float32), f, [1, 3, 3, 0], 1, "SAME")
    with pytest.raises(ValueError, match="0 channels"):
        nd.conv2d_backprop_filter(x, [1, 1, 1, 2], np.zeros((1, 3, 3, 2), np.float32), 1, "SAME")


@pytest.mark.parametrize("threads", [1, 2])
def test_outer_kernel_is_bounds_checked(tmp_path, threads):
    # Numba's NUMBA_BOUNDSCHECK does not see the outer-product kernel's vector loads (LLVM IR):
    # the kernel checks each run itself then. Packed weights one block short must be caught, on
    # the parallel path too (Numba's parallel loops drop their callees' errors: the failed jobs
    # are run again serially).
    code = f"""
import numpy as np, numbadeconv as nd
from numbadeconv import _engine
plan = _engine.plan_conv2d((1, 8, 8, 32), (3, 3, 32, 32), (1, 1), (1, 1), (1, 1), (8, 8), 1)
assert plan.kind == "outer", plan.kind
meta, n_jobs = _engine._blocked_meta(plan, {threads})
x = _engine._padded(np.zeros((1, 8, 8, 32), np.float32), plan.frame, 1)
weights = np.zeros(9 * 32 * 32 - 16, np.float32)
try:
    _engine._launch(_engine._CORRELATE["outer"], {threads}, n_jobs, x, weights,
                    np.empty((1, 8, 8, 32), np.float32), plan.phases, plan.toffs, meta,
                    np.zeros(32, np.float32))
except IndexError as exc:
    print("IndexError", exc)
"""
    out = _run_bounds_checked(code, tmp_path, timeout=300)
    assert "IndexError outer-product kernel" in out, out


def test_filter_grad_kernel_is_bounds_checked(tmp_path):
    # The filter gradient runs on the same vector micro-kernel and checks each pass itself: a
    # padded input one row short must be caught.
    code = """
import numpy as np
from numbadeconv import _engine
from numbadeconv._kernels import filter_grad
plan = _engine.plan_filter_grad((1, 8, 8, 16), (1, 8, 8, 32), (3, 3), (1, 1), (1, 1), (1, 1), 1, 1)
x = np.zeros((1, 9, 10 * 16), np.float32)
try:
    filter_grad.filter_grad_serial(x, np.zeros((1, 8, 8, 32), np.float32),
                                   np.empty((1, 3, 3, 16, 32), np.float32), plan.meta, 0, plan.jobs)
except IndexError as exc:
    print("IndexError", exc)
"""
    out = _run_bounds_checked(code, tmp_path, timeout=300)
    assert "IndexError outer-product kernel" in out, out


def test_depthwise_runs_are_bounds_checked(tmp_path):
    # As the outer-product kernel: the depthwise kernel's vector runs (LLVM IR) check themselves
    # under NUMBA_BOUNDSCHECK. Four rows of ten 8-channel pixels from a source one pixel short.
    code = """
import numpy as np
from numba import njit
from numbadeconv._kernels import depthwise

@njit
def rows(x):
    a, b, w = np.zeros(4 * 80, np.float32), np.zeros(8, np.float32), np.zeros(80, np.float32)
    c_off = np.array([-8, 0, 8])
    xo = np.empty((4, 9), np.int64)
    for h in range(4):
        for k in range(9):
            xo[h, k] = (h + k // 3) * 80 + c_off[k % 3]
    depthwise._rows(a, np.array([0, 80, 160, 240]), 4, b, 0, x, xo, c_off, 8, w, 0, 8,
                    np.array([1, 0, 0]), np.array([10, 10, 9]), 10, 3, np.empty(4, np.int64),
                    np.empty(6, np.int64), np.empty(3, np.int64), np.empty(9, np.int64))

rows(np.zeros(6 * 80, np.float32))
print("in bounds: ok")
try:
    rows(np.zeros(6 * 80 - 8, np.float32))
except IndexError as exc:
    print("IndexError", exc)
"""
    out = _run_bounds_checked(code, tmp_path, timeout=300)
    assert "in bounds: ok" in out and "IndexError depthwise kernel" in out, out
