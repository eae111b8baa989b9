"""``python -m numbadeconv bench``: time the benchmark cases against the peers installed here.

Each case is a real layer in TensorFlow's terms (NHWC, TF padding). For every case the command
prints the median time of numbadeconv and of each available peer (PyTorch, TensorFlow, JAX, and a
NumPy im2col implementation), measured interleaved in the same process, the GFLOP/s, the
percentage of a float32/float64 GEMM peak measured in the same run, and our time over each
peer's (below 1 means faster). The asv suite in ``asv_benchmarks/`` uses the same case table.
"""

from __future__ import annotations

import importlib.util
import os
import statistics
import time
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from . import api

# --- the cases --------------------------------------------------------------------------------


@dataclass(frozen=True)
class Case:
    """One benchmark case: ``op`` is "conv2d", "conv2d_transpose" or "conv2d_backprop_filter".

    TensorFlow semantics. ``x_shape`` is the convolution's input (NHWC), ``kernel`` the filter in
    ``conv2d``'s layout ``[fh, fw, in, out]``; a transpose maps ``conv2d``'s output back to
    ``x_shape``, a filter gradient takes the input and the gradient of ``conv2d``'s output.
    With ``groups`` > 1 the convolution is grouped as in TensorFlow's ``conv2d`` (whose input
    channel count is then a multiple of ``filters.shape[2]``): ``kernel[2]`` is
    ``x_shape[3] / groups``, the input channels of one group, and ``kernel[3]`` (a multiple of
    ``groups``) all the output channels; ``groups == x_shape[3]`` with ``kernel[2] == 1`` is a
    depthwise convolution. numbadeconv infers the groups from the shapes.
    """

    name: str
    op: str
    x_shape: tuple[int, int, int, int]
    kernel: tuple[int, int, int, int]
    stride: int
    padding: str
    dtype: str = "float32"
    quick: bool = False
    groups: int = 1

    @property
    def y_shape(self) -> tuple[int, int, int, int]:
        """Shape of ``conv2d``'s output (the transpose's input)."""
        from .sizes import conv_output_size

        n, h, w, _ = self.x_shape
        fh, fw, _, c_out = self.kernel
        return (n, conv_output_size(h, fh, self.stride, self.padding),
                conv_output_size(w, fw, self.stride, self.padding), c_out)

    @property
    def depthwise(self) -> bool:
        """One input channel per group (TensorFlow's ``depthwise_conv2d``)."""
        return self.groups > 1 and self.groups == self.x_shape[3] and self.kernel[2] == 1

    @property
    def flops(self) -> int:
        """Multiply-adds x 2 (the same for a convolution and its transpose; per-group fan-in)."""
        fh, fw, c_in, _ = self.kernel
        n, h, w, c = self.y_shape
        return 2 * n * h * w * c * fh * fw * c_in

    def inputs(self, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
        """(operand, filters) of the operation, random, in ``dtype``.

        For a filter gradient: (input, out_backprop).
        """
        rng = np.random.default_rng(seed)
        shape = self.y_shape if self.op == "conv2d_transpose" else self.x_shape
        operand = rng.standard_normal(shape).astype(self.dtype)
        if self.op == "conv2d_backprop_filter":
            return operand, rng.standard_normal(self.y_shape).astype(self.dtype)
        filters = (rng.standard_normal(self.kernel) / np.sqrt(np.prod(self.kernel[:3])))
        return operand, filters.astype(self.dtype)


CASES = [
    Case("tutorial conv2d 5x5x3", "conv2d", (1, 5, 5, 3), (3, 3, 3, 1), 2, "SAME", quick=True),
    Case("tutorial conv2d 6x6x3", "conv2d", (1, 6, 6, 3), (3, 3, 3, 1), 2, "SAME"),
    Case("tutorial transpose ->5x5x3", "conv2d_transpose", (1, 5, 5, 3), (3, 3, 3, 1), 2, "SAME",
         quick=True),
    Case("tutorial transpose ->6x6x3", "conv2d_transpose", (1, 6, 6, 3), (3, 3, 3, 1), 2, "SAME"),
    Case("DCGAN 8x8x512->16x16x256 b16", "conv2d_transpose", (16, 16, 16, 256), (5, 5, 256, 512),
         2, "SAME", quick=True),
    Case("DCGAN 16x16x256->32x32x128 b16", "conv2d_transpose", (16, 32, 32, 128),
         (5, 5, 128, 256), 2, "SAME"),
    Case("DCGAN 4x4x1024->8x8x512 b16", "conv2d_transpose", (16, 8, 8, 512), (5, 5, 512, 1024), 2,
         "SAME"),
    Case("DCGAN 32x32x128->64x64x3 b64", "conv2d_transpose", (64, 64, 64, 3), (5, 5, 3, 128), 2,
         "SAME"),
    Case("U-Net 28x28x1024->56x56x512 k2s2", "conv2d_transpose", (1, 56, 56, 512),
         (2, 2, 512, 1024), 2, "VALID", quick=True),
    Case("FCN 16x16x21->512x512x21 k64s32", "conv2d_transpose", (1, 512, 512, 21),
         (64, 64, 21, 21), 32, "SAME"),
    Case("image 256x256x1->512x512x1 k3s2", "conv2d_transpose", (1, 512, 512, 1), (3, 3, 1, 1), 2,
         "SAME", quick=True),
    Case("VAE decoder 14x14x64->28x28x32 k4s2 f64", "conv2d_transpose", (32, 28, 28, 32),
         (4, 4, 32, 64), 2, "SAME", dtype="float64", quick=True),
    Case("ResNet 3x3 56x56x64 b8", "conv2d", (8, 56, 56, 64), (3, 3, 64, 64), 1, "SAME",
         quick=True),
    Case("ResNet 3x3 14x14x256 b8", "conv2d", (8, 14, 14, 256), (3, 3, 256, 256), 1, "SAME"),
    Case("ResNet 1x1 28x28x512->128 b8", "conv2d", (8, 28, 28, 512), (1, 1, 512, 128), 1,
         "VALID"),
    Case("MobileNet depthwise 3x3 112x112x32 b8", "conv2d", (8, 112, 112, 32), (3, 3, 1, 32), 1,
         "SAME", groups=32, quick=True),
    Case("MobileNet depthwise 3x3 s2 112x112x64 b8", "conv2d", (8, 112, 112, 64), (3, 3, 1, 64), 2,
         "SAME", groups=64),
    Case("grouped transpose 16x16x256->32x32x128 k4s2 g8 b8", "conv2d_transpose", (8, 32, 32, 128),
         (4, 4, 16, 256), 2, "SAME", groups=8),
    # few channels, as in small decoders and sparse coding
    Case("few channels 3x3 64x64x8 b4", "conv2d", (4, 64, 64, 8), (3, 3, 8, 8), 1, "SAME",
         quick=True),
    Case("small decoder 32x32x16->64x64x8 k4s2 b4", "conv2d_transpose", (4, 64, 64, 8),
         (4, 4, 8, 16), 2, "SAME"),
    # a small network's first layer (one channel in) and its last (one channel out, the
    # transpose); an RGB image's per-channel 15x15 filters (deblurring)
    Case("first layer 64x64x1->32 k3 b16", "conv2d", (16, 64, 64, 1), (3, 3, 1, 32), 1, "SAME"),
    Case("last layer 32->64x64x1 k3 b16", "conv2d_transpose", (16, 64, 64, 1), (3, 3, 1, 32), 1,
         "SAME"),
    Case("RGB deblur depthwise 15x15 512x512x3", "conv2d", (1, 512, 512, 3), (15, 15, 1, 3), 1,
         "SAME", groups=3),
    # convolutional sparse coding: an image against 32 atoms of 11x11, and the adjoint (the
    # 32 coefficient maps back to one image)
    Case("sparse coding 128x128x1->32 k11 b8", "conv2d", (8, 128, 128, 1), (11, 11, 1, 32), 1,
         "SAME"),
    Case("sparse coding adjoint 32->128x128x1 k11 b8", "conv2d_transpose", (8, 128, 128, 1),
         (11, 11, 1, 32), 1, "SAME"),
    # filter gradients (training) of layers above
    Case("filter gradient ResNet 3x3 56x56x64 b8", "conv2d_backprop_filter", (8, 56, 56, 64),
         (3, 3, 64, 64), 1, "SAME", quick=True),
    Case("filter gradient DCGAN 32x32x128->16x16x256 b16", "conv2d_backprop_filter",
         (16, 32, 32, 128), (5, 5, 128, 256), 2, "SAME"),
    Case("filter gradient few channels 3x3 64x64x8 b4", "conv2d_backprop_filter", (4, 64, 64, 8),
         (3, 3, 8, 8), 1, "SAME"),
    Case("filter gradient MobileNet depthwise 3x3 112x112x32 b8", "conv2d_backprop_filter",
         (8, 112, 112, 32), (3, 3, 1, 32), 1, "SAME", groups=32),
]


def run_numbadeconv(case: Case, threads: int | None = None) -> Callable[[], object]:
    """A zero-argument callable running ``case`` with numbadeconv."""
    operand, filters = case.inputs()
    if case.op == "conv2d":
        return lambda: api.conv2d(operand, filters, case.stride, case.padding, threads=threads)
    if case.op == "conv2d_backprop_filter":
        return lambda: api.conv2d_backprop_filter(operand, case.kernel, filters, case.stride,
                                                  case.padding, threads=threads)
    return lambda: api.conv2d_transpose(operand, filters, case.x_shape, case.stride, case.padding,
                                        threads=threads)


# --- peers --------------------------------------------------------------------------------------


def _torch_padding(case: Case) -> tuple[tuple[int, int], tuple[int, int]]:
    """PyTorch (padding, output_padding) with the output shape and cost of the TF case.

    TensorFlow's SAME may pad one pixel more at the bottom than at the top, which PyTorch cannot
    express; the peer then computes a one-pixel-shifted result of the same size and cost (timing
    only: the values are not compared).
    """
    from .sizes import window

    pads, extra = [], []
    for axis in (0, 1):
        size, k = case.x_shape[1 + axis], case.kernel[axis]
        _, before, after = window(size, k, case.stride, case.padding)
        p = max(before, after)
        pads.append(p)
        extra.append(p - min(before, after))
    return tuple(pads), tuple(extra)


def run_torch(case: Case, threads: int | None = None) -> Callable[[], object]:
    """``case`` with PyTorch on channels_last tensors (oneDNN)."""
    import torch

    if threads is not None:
        torch.set_num_threads(threads)
    operand, filters = case.inputs()
    x = torch.from_numpy(operand).permute(0, 3, 1, 2).contiguous(
        memory_format=torch.channels_last)
    pads, extra = _torch_padding(case)
    if case.op == "conv2d_backprop_filter":  # what autograd runs for the weight's gradient
        dy = torch.from_numpy(filters).permute(0, 3, 1, 2).contiguous(
            memory_format=torch.channels_last)
        fh, fw, c_in, c_out = case.kernel
        w = torch.empty((c_out, c_in, fh, fw)).contiguous(memory_format=torch.channels_last)
        stride = (case.stride, case.stride)
        return lambda: torch.ops.aten.convolution_backward(
            dy, x, w, None, stride, pads, (1, 1), False, (0, 0), case.groups,
            (False, False, True))[1]
    # [out, in/groups, kh, kw]
    w = torch.from_numpy(np.ascontiguousarray(filters.transpose(3, 2, 0, 1)))
    if case.op == "conv2d":  # symmetric max(before, after): the same output size here
        w = w.contiguous(memory_format=torch.channels_last)
        return lambda: torch.nn.functional.conv2d(x, w, stride=case.stride, padding=pads,
                                                  groups=case.groups)
    # conv_transpose2d weight is [in(of the transpose) = conv out, out/groups = conv in/groups,
    # kh, kw]: the same tensor
    w = w.contiguous(memory_format=torch.channels_last)
    return lambda: torch.nn.functional.conv_transpose2d(x, w, stride=case.stride, padding=pads,
                                                        output_padding=extra, groups=case.groups)


def run_tensorflow(case: Case, threads: int | None = None) -> Callable[[], object]:
    """``case`` with ``tf.nn`` (eager; TensorFlow's default CPU path).

    Depthwise convolutions use ``tf.nn.depthwise_conv2d`` (their filter gradient
    ``DepthwiseConv2dNativeBackpropFilter``), other grouped ones ``tf.nn.conv2d`` (which runs
    them on the CPU); other grouped transposes and filter gradients raise NotImplementedError.
    """
    if case.groups > 1 and case.op != "conv2d" and not (
            case.depthwise and case.op == "conv2d_backprop_filter"):
        raise NotImplementedError(
            "TensorFlow's CPU Conv2DBackprop ops reject grouped filters (\"Gradients for "
            "grouped convolutions are not supported on CPU\")")
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    import tensorflow as tf

    operand, filters = case.inputs()
    x = tf.constant(operand)
    strides = [1, case.stride, case.stride, 1]
    fh, fw, _, c_out = case.kernel
    # depthwise filters [fh, fw, 1, C * mult] are TensorFlow's [fh, fw, C, mult]: the same order
    depthwise_sizes = [fh, fw, case.groups, c_out // case.groups]
    if case.op == "conv2d_backprop_filter":
        dy = tf.constant(filters)
        if case.depthwise:
            return lambda: tf.raw_ops.DepthwiseConv2dNativeBackpropFilter(
                input=x, filter_sizes=depthwise_sizes, out_backprop=dy, strides=strides,
                padding=case.padding).numpy()
        return lambda: tf.raw_ops.Conv2DBackpropFilter(
            input=x, filter_sizes=case.kernel, out_backprop=dy, strides=strides,
            padding=case.padding).numpy()
    if case.depthwise:
        w = tf.constant(filters.reshape(depthwise_sizes))
        return lambda: tf.nn.depthwise_conv2d(x, w, strides, case.padding).numpy()
    w = tf.constant(filters)
    if case.op == "conv2d":
        return lambda: tf.nn.conv2d(x, w, case.stride, case.padding).numpy()
    return lambda: tf.nn.conv2d_transpose(x, w, case.x_shape, case.stride, case.padding).numpy()


def run_jax(case: Case, threads: int | None = None) -> Callable[[], object]:
    """``case`` with ``jax.lax`` (XLA, jitted).

    The transpose is the vector-Jacobian product of the convolution at the case's input shape
    (``lax.conv_transpose`` with SAME would pick one of the admissible output sizes itself);
    float64 cases enable JAX's 64-bit mode.
    """
    import jax
    from jax import lax

    if case.dtype == "float64":
        jax.config.update("jax_enable_x64", True)
    operand, filters = case.inputs()
    x, w = jax.device_put(operand), jax.device_put(filters)

    def conv(x, w):
        return lax.conv_general_dilated(x, w, (case.stride,) * 2, case.padding,
                                        dimension_numbers=("NHWC", "HWIO", "NHWC"),
                                        feature_group_count=case.groups)

    if case.op == "conv2d":
        f = jax.jit(conv)
    elif case.op == "conv2d_backprop_filter":
        w0 = jax.numpy.zeros(case.kernel, case.dtype)
        f = jax.jit(lambda x, dy: jax.vjp(lambda w: conv(x, w), w0)[1](dy)[0])
    else:
        x0 = jax.numpy.zeros(case.x_shape, case.dtype)
        f = jax.jit(lambda y, w: jax.vjp(lambda x: conv(x, w), x0)[1](y)[0])
    return lambda: f(x, w).block_until_ready()


def numpy_im2col_transpose(y, w, x_shape, stride, padding):
    """NumPy peer: transpose as one GEMM (col = y @ w^T) and a scatter-add of the columns."""
    from .sizes import window

    n, h, wd, c = x_shape
    fh, fw, _, c_out = w.shape
    _, oh, ow, _ = y.shape
    _, pt, _ = window(h, fh, stride, padding)
    _, pl, _ = window(wd, fw, stride, padding)
    cols = y.reshape(-1, c_out) @ w.reshape(-1, c_out).T  # [N*OH*OW, fh*fw*C]
    cols = cols.reshape(n, oh, ow, fh, fw, c)
    hp, wp = (oh - 1) * stride + fh, (ow - 1) * stride + fw
    out = np.zeros((n, max(hp, pt + h), max(wp, pl + wd), c), y.dtype)
    for kh in range(fh):
        for kw in range(fw):
            out[:, kh:kh + (oh - 1) * stride + 1:stride,
                kw:kw + (ow - 1) * stride + 1:stride] += cols[:, :, :, kh, kw]
    return out[:, pt:pt + h, pl:pl + wd]


def numpy_im2col_conv(x, w, stride, padding):
    """NumPy peer: conv2d as a sum over taps of strided-window GEMMs."""
    from .sizes import window

    n, h, wd, c = x.shape
    fh, fw, _, c_out = w.shape
    oh, pt, pb = window(h, fh, stride, padding)
    ow, pl, pr = window(wd, fw, stride, padding)
    xp = np.pad(x, ((0, 0), (pt, pb), (pl, pr), (0, 0)))
    out = np.zeros((n, oh, ow, c_out), x.dtype)
    for kh in range(fh):
        for kw in range(fw):
            out += xp[:, kh:kh + (oh - 1) * stride + 1:stride,
                      kw:kw + (ow - 1) * stride + 1:stride] @ w[kh, kw]
    return out


def numpy_im2col_filter_grad(x, dy, kernel, stride, padding):
    """NumPy peer: the filter gradient as one GEMM per tap (window^T @ dy)."""
    from .sizes import window

    n, h, wd, c = x.shape
    fh, fw = kernel
    _, oh, ow, c_out = dy.shape
    _, pt, pb = window(h, fh, stride, padding)
    _, pl, pr = window(wd, fw, stride, padding)
    xp = np.pad(x, ((0, 0), (pt, pb), (pl, pr), (0, 0)))
    d = dy.reshape(-1, c_out)
    out = np.empty((fh, fw, c, c_out), x.dtype)
    for kh in range(fh):
        for kw in range(fw):
            out[kh, kw] = xp[:, kh:kh + (oh - 1) * stride + 1:stride,
                             kw:kw + (ow - 1) * stride + 1:stride].reshape(-1, c).T @ d
    return out


def numpy_grouped(func: Callable[..., np.ndarray], operand: np.ndarray, filters: np.ndarray,
                  groups: int, *args) -> np.ndarray:
    """``func(operand, filters, *args)`` (an im2col peer above) one group at a time.

    Group ``g`` reads the ``g``-th of ``groups`` equal slices of the operand's channels (conv2d's
    input, or the transpose's input: conv2d's output) and of the filters' output channels (axis
    3; for the filter gradient, of ``dy``'s channels); the results are concatenated along the
    channels. ``args`` are the per-group ones.
    """
    if groups == 1:
        return func(operand, filters, *args)
    ci, co = operand.shape[3] // groups, filters.shape[3] // groups
    return np.concatenate([func(operand[..., g * ci:(g + 1) * ci],
                                filters[..., g * co:(g + 1) * co], *args)
                           for g in range(groups)], axis=3)


def run_numpy(case: Case, threads: int | None = None) -> Callable[[], object]:
    """``case`` with the NumPy im2col peer (BLAS GEMMs; one set per group)."""
    operand, filters = case.inputs()
    if case.op == "conv2d":
        return lambda: numpy_grouped(numpy_im2col_conv, operand, filters, case.groups,
                                     case.stride, case.padding)
    if case.op == "conv2d_backprop_filter":  # filters: dy, whose channels split by group too
        return lambda: numpy_grouped(numpy_im2col_filter_grad, operand, filters, case.groups,
                                     case.kernel[:2], case.stride, case.padding)
    group_x_shape = (*case.x_shape[:3], case.kernel[2])
    return lambda: numpy_grouped(numpy_im2col_transpose, operand, filters, case.groups,
                                 group_x_shape, case.stride, case.padding)


#: numpy last: each round of timings ends with it, then lets its BLAS threads go idle.
PEERS = {"torch": run_torch, "tensorflow": run_tensorflow, "jax": run_jax, "numpy": run_numpy}


def available_peers(names: list[str]) -> dict[str, Callable]:
    """The peers among ``names`` whose package is importable here."""
    module = {"torch": "torch", "tensorflow": "tensorflow", "jax": "jax", "numpy": "numpy"}
    return {n: PEERS[n] for n in names
            if n in PEERS and importlib.util.find_spec(module[n]) is not None}


# --- timing -------------------------------------------------------------------------------------


def _time_once(func: Callable[[], object], min_seconds: float = 0.02) -> float:
    """Seconds per call, looping until ``min_seconds`` have passed, after one untimed call.

    The untimed call takes what the first call pays alone: JIT compiling, oneDNN primitive
    creation, and after another library's call (or a pause) caches holding its data, threads to
    wake, a clock to ramp up. Large cases time a single call, which would otherwise include it.
    """
    func()
    calls, start = 0, time.perf_counter()
    while True:
        func()
        calls += 1
        elapsed = time.perf_counter() - start
        if elapsed >= min_seconds:
            return elapsed / calls


def _let_blas_idle() -> None:
    """Wait until OpenBLAS's threads stop spinning after a GEMM.

    Spinning, they would slow every other library's threads (and small calls by milliseconds)
    for about a tenth of a second.
    """
    time.sleep(0.25)


def gemm_peak(dtype: str, n: int = 1024, repeat: int = 5) -> float:
    """GFLOP/s of an n x n x n matrix product (NumPy's BLAS) in ``dtype``, median of runs."""
    a = np.random.default_rng(0).standard_normal((n, n)).astype(dtype)
    return 2 * n**3 / statistics.median(_time_once(lambda: a @ a) for _ in range(repeat)) / 1e9


def main(quick: bool = False, repeat: int = 7, threads: int | None = None,
         peers: list[str] | None = None, only: list[str] | None = None) -> int:
    """Run the suite and print the table; returns the exit status."""
    import numba

    chosen = [c for c in CASES if (c.quick or not quick)
              and (not only or any(o.lower() in c.name.lower() for o in only))]
    runners = available_peers(peers or list(PEERS))
    versions = {"numba": numba.__version__, "numpy": np.__version__}
    for name in runners:
        mod = __import__(name)
        versions[name] = getattr(mod, "__version__", "?")
    n_threads = threads or numba.get_num_threads()
    peaks = {d: gemm_peak(d) for d in sorted({c.dtype for c in chosen})}
    _let_blas_idle()
    print(f"threads {n_threads}; " + ", ".join(f"{k} {v}" for k, v in versions.items()))
    print("GEMM peak (NumPy BLAS): " + ", ".join(f"{d} {p:.0f} GFLOP/s" for d, p in peaks.items()))
    print(f"median of {repeat} interleaved runs; ratio = numbadeconv time / peer time")
    width = max([42, *(len(c.name) for c in chosen)])
    header = f"{'case':{width}} {'ours':>10} {'GFLOP/s':>8} {'%peak':>6}"
    for name in runners:
        header += f" {name:>11} {'ratio':>6}"
    print(header)
    for case in chosen:
        funcs = {"numbadeconv": run_numbadeconv(case, threads)}
        for name, make in runners.items():
            try:
                funcs[name] = make(case, threads)
            except Exception as exc:  # a peer that cannot run this case is left out
                print(f"  ({name} skipped for {case.name}: {type(exc).__name__}: {exc})")
        times = {k: [] for k in funcs}
        order = list(funcs)
        for _ in range(repeat):
            for k in order:
                times[k].append(_time_once(funcs[k]))
                if k == "numpy":
                    _let_blas_idle()
            order.append(order.pop(0))  # each library in turn runs first in a round
        med = {k: statistics.median(v) for k, v in times.items()}
        ours = med["numbadeconv"]
        gflops = case.flops / ours / 1e9
        line = (f"{case.name:{width}} {_fmt(ours):>10} {gflops:8.1f} "
                f"{100 * gflops / peaks[case.dtype]:6.0f}")
        for name in runners:
            if name in med:
                line += f" {_fmt(med[name]):>11} {ours / med[name]:6.2f}"
            else:
                line += f" {'-':>11} {'-':>6}"
        print(line, flush=True)
    return 0


def _fmt(seconds: float) -> str:
    return f"{seconds * 1e6:.1f} us" if seconds < 1e-3 else f"{seconds * 1e3:.2f} ms"
