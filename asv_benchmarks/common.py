"""Shared pieces of the asv suite: the case table, the peers, and small helpers.

Every case is described by the geometry of one *forward* convolution: an input ``x`` of logical
shape NHWC, TensorFlow filters ``[fh, fw, cin, cout]``, strides, dilations and padding. The
three op families read it as follows (this is exactly how the ops are related in TensorFlow):

* ``conv2d``:           ``y = conv2d(x, w)``
* ``conv2d_transpose``: ``x_like = conv2d_transpose(y, w, output_shape=x.shape)`` (the same
  array ``w``, read as ``[fh, fw, out=cin, in=cout]``); ``conv2d_backprop_input`` is the
  same computation under its gradient name
* ``backprop_filter``:  ``dw = conv2d_backprop_filter(x, w.shape, dy)``

so a transposed-convolution case "8x8x512 -> 16x16x256, k5 s2" is the forward case
``x = 16x16x256, w = 5x5x256x512, stride 2``.

A grouped case (``groups`` > 1) is grouped as TensorFlow's ``conv2d`` reads it: ``w[2]`` is the
input channels of one group, ``x``'s channels / ``groups``, and ``w[3]``, a multiple of
``groups``, all the output channels; ``groups`` = ``x``'s channels with ``w[2] == 1`` is a
depthwise convolution. numbadeconv infers the groups from the shapes; the peers are told them.

Peers (parameter ``impl``):

``numbadeconv``       this project
``functional``        this project's PyTorch-flavoured API (``numbadeconv.functional``: NCHW
                      arrays, or NCHW views of NHWC ones, PyTorch's weight layouts), called as
                      the ``torch`` peer is; it has no filter gradient
``numpy_reference``   a *fast* NumPy implementation, the one a NumPy user would write:
                      im2col with ``sliding_window_view`` + one ``tensordot`` (one GEMM) for
                      the forward conv and the filter gradient, one GEMM + a scatter-add per tap
                      (col2im) for the transpose. ``numbadeconv.testing`` holds the naive
                      reference used for correctness; this one is for speed.
``torch``             ``torch.nn.functional`` (channels_last for NHWC cases)
``tensorflow``        ``tf.nn`` / ``tf.raw_ops`` in eager mode, default oneDNN setting;
                      ``tf.nn.depthwise_conv2d`` for depthwise cases, no grouped gradients
                      or transposes (TF has no CPU kernel for them)
``jax``               ``jax.lax.conv_general_dilated`` and its ``vjp``, jitted

Peers are imported lazily in ``setup`` (never at module import): asv imports every benchmark
module for discovery, and a module-level ``import tensorflow`` would add seconds and hundreds of
MB to every process (and to every ``peakmem_*`` number). A peer that is not importable, or that
cannot do a case (e.g. a threads setting it cannot honour), is skipped by raising
``NotImplementedError`` in ``setup``, which asv records as "n/a".

Environment:

``ASV_SKIP_SLOW=1``   skip the large, real-network cases and the TensorFlow peer (whose import
                      costs ~7 s per benchmark process), to keep ``asv run --quick`` short
"""

from __future__ import annotations

import dataclasses
import os
import statistics
import time
from collections.abc import Callable

import numba
import numpy as np

import numbadeconv as nd

IMPLS = ["numbadeconv", "functional", "numpy_reference", "torch", "tensorflow", "jax"]
#: "all" is numba.config.NUMBA_NUM_THREADS (the machine's cores unless the variable is set).
THREADS = ["1", "all"]

SKIP_SLOW = os.environ.get("ASV_SKIP_SLOW", "").strip() not in ("", "0")


@dataclasses.dataclass(frozen=True)
class Case:
    """The forward geometry of one benchmark case (see the module docstring)."""

    x: tuple[int, int, int, int]  # logical NHWC
    w: tuple[int, int, int, int]  # [fh, fw, cin / groups, cout]
    strides: int = 1
    padding: str = "SAME"
    dilations: int = 1
    dtype: str = "float32"
    data_format: str = "NHWC"
    slow: bool = False  # skipped when ASV_SKIP_SLOW is set
    sweep_threads: bool = False  # also measured with threads="1"
    note: str = ""
    groups: int = 1  # x's channels = groups * w[2]; w[3] divisible by groups

    @property
    def y(self) -> tuple[int, int, int, int]:
        """Logical NHWC shape of the forward output."""
        n, h, w_, _ = self.x
        return (n, _out(h, self.w[0], self.strides, self.dilations, self.padding),
                _out(w_, self.w[1], self.strides, self.dilations, self.padding), self.w[3])

    @property
    def depthwise(self) -> bool:
        """One input channel per group (TensorFlow's ``depthwise_conv2d``)."""
        return self.groups > 1 and self.groups == self.x[3] and self.w[2] == 1

    @property
    def flops(self) -> int:
        """Nominal FLOPs (2 per multiply-add, every tap counted); the same for all three ops.

        ``w[2]`` is the fan-in of one output channel, grouped or not.
        """
        n, ho, wo, co = self.y
        return 2 * n * ho * wo * self.w[0] * self.w[1] * self.w[2] * co


def _out(size: int, k: int, s: int, d: int, padding: str) -> int:
    if padding == "SAME":
        return -(-size // s)
    return (size - (k - 1) * d - 1) // s + 1


def _pads(size: int, out: int, k: int, s: int, d: int, padding: str) -> tuple[int, int]:
    """TensorFlow's (before, after) padding of one spatial axis."""
    if padding == "VALID":
        return 0, 0
    total = max((out - 1) * s + (k - 1) * d + 1 - size, 0)
    return total // 2, total - total // 2


# fmt: off
CASES: dict[str, Case] = {
    # The tutorial (TF docs, "conv2d_transpose is ambiguous"): 5x5 and 6x6 both give 3x3.
    "tutorial_5x5":        Case((1, 5, 5, 3), (3, 3, 3, 1), strides=2),
    "tutorial_6x6":        Case((1, 6, 6, 3), (3, 3, 3, 1), strides=2),
    # One 512x512 single-channel image, 3x3 kernel, stride 2 (256x256 <-> 512x512).
    "image_512_k3s2":      Case((1, 512, 512, 1), (3, 3, 1, 1), strides=2),
    # VAE decoder (MNIST-style) transpose 7x7x64 -> 14x14x32, batch 32, float64, both layouts.
    "vae_dec_f64":         Case((32, 14, 14, 32), (3, 3, 32, 64), strides=2, dtype="float64",
                                sweep_threads=True),
    "vae_dec_f64_nchw":    Case((32, 14, 14, 32), (3, 3, 32, 64), strides=2, dtype="float64",
                                data_format="NCHW"),
    # ResNet basic block 3x3 conv, 56x56x64, batch 8.
    "resnet_56x56x64_b8":  Case((8, 56, 56, 64), (3, 3, 64, 64), slow=True, sweep_threads=True),
    "resnet_56x56x64_b8_nchw": Case((8, 56, 56, 64), (3, 3, 64, 64), data_format="NCHW",
                                    slow=True),
    # Deeper ResNet layers, batch 8: a 3x3 conv of 14x14x256 (2.4 MB of filters) and a
    # bottleneck's 1x1 conv 28x28x512 -> 128 (a plain matrix product).
    "resnet_14x14x256_b8": Case((8, 14, 14, 256), (3, 3, 256, 256), slow=True),
    "resnet_1x1_28x28x512_b8": Case((8, 28, 28, 512), (1, 1, 512, 128), slow=True),
    # ... the bottleneck in NCHW (the outer-product kernel reads its input as it is).
    "resnet_1x1_28x28x512_b8_nchw": Case((8, 28, 28, 512), (1, 1, 512, 128),
                                         data_format="NCHW", slow=True),
    # DCGAN generator (k5 s2 SAME), batch 16 / 64; names read as the transpose does.
    "dcgan_4to8_b16":      Case((16, 8, 8, 512), (5, 5, 512, 1024), strides=2, slow=True),
    "dcgan_8to16_b16":     Case((16, 16, 16, 256), (5, 5, 256, 512), strides=2, slow=True,
                                sweep_threads=True),
    "dcgan_16to32_b16":    Case((16, 32, 32, 128), (5, 5, 128, 256), strides=2, slow=True),
    "dcgan_16to32_b16_nchw": Case((16, 32, 32, 128), (5, 5, 128, 256), strides=2,
                                  data_format="NCHW", slow=True),
    "dcgan_32to64_b64":    Case((64, 64, 64, 3), (5, 5, 3, 128), strides=2, slow=True),
    # U-Net 2x2 up-convolution 28x28x1024 -> 56x56x512.
    "unet_up_28to56":      Case((1, 56, 56, 512), (2, 2, 512, 1024), strides=2, slow=True),
    # FCN-32s bilinear-style upsampling, k64 s32, 16x16x21 -> 512x512x21.
    "fcn32s_16to512":      Case((1, 512, 512, 21), (64, 64, 21, 21), strides=32, slow=True),
    # MobileNet depthwise 3x3 convolutions (one filter per channel), stride 1 and 2, batch 8.
    "mobilenet_dw_112x112x32_b8": Case((8, 112, 112, 32), (3, 3, 1, 32), groups=32,
                                       sweep_threads=True),
    "mobilenet_dw_s2_112x112x64_b8": Case((8, 112, 112, 64), (3, 3, 1, 64), strides=2,
                                          groups=64, slow=True),
    # Few channels (small decoders, sparse coding): 3x3 64x64x8 -> 8, batch 4, and its
    # transpose.
    "few_ch_64x64x8_b4":   Case((4, 64, 64, 8), (3, 3, 8, 8)),
    # Convolutional sparse coding: 128x128 images against 32 atoms of 11x11, batch 8, and the
    # adjoint (32 coefficient maps back to one image).
    "sparse_coding_k11_b8": Case((8, 128, 128, 1), (11, 11, 1, 32), slow=True),
    # A small network's first layer 64x64x1 -> 32, k3, batch 16 (its transpose: the last layer).
    "first_layer_1to32_b16": Case((16, 64, 64, 1), (3, 3, 1, 32)),
    # ... and an RGB first layer 64x64x3 -> 32 in NCHW (the planar kernel: no layout copies).
    "first_layer_3to32_b16_nchw": Case((16, 64, 64, 3), (3, 3, 3, 32), data_format="NCHW"),
    # An RGB image's per-channel 15x15 filters (deblurring), 512x512.
    "rgb_deblur_dw_k15_512": Case((1, 512, 512, 3), (15, 15, 1, 3), groups=3),
    # Grouped (8 groups) 4x4 s2 up-convolution 16x16x256 -> 32x32x128, batch 8.
    "grouped_up_16to32_g8_b8": Case((8, 32, 32, 128), (4, 4, 16, 256), strides=2, groups=8,
                                    slow=True),
}
# fmt: on

CONV2D_CASES = ["tutorial_5x5", "tutorial_6x6", "image_512_k3s2", "vae_dec_f64",
                "resnet_56x56x64_b8", "resnet_56x56x64_b8_nchw", "resnet_14x14x256_b8",
                "resnet_1x1_28x28x512_b8", "resnet_1x1_28x28x512_b8_nchw",
                "mobilenet_dw_112x112x32_b8",
                "mobilenet_dw_s2_112x112x64_b8", "few_ch_64x64x8_b4", "sparse_coding_k11_b8",
                "first_layer_1to32_b16", "first_layer_3to32_b16_nchw", "rgb_deblur_dw_k15_512"]
TRANSPOSE_CASES = ["tutorial_5x5", "tutorial_6x6", "image_512_k3s2", "vae_dec_f64",
                   "vae_dec_f64_nchw", "dcgan_4to8_b16", "dcgan_8to16_b16", "dcgan_16to32_b16",
                   "dcgan_16to32_b16_nchw", "dcgan_32to64_b64", "unet_up_28to56",
                   "fcn32s_16to512", "grouped_up_16to32_g8_b8", "few_ch_64x64x8_b4",
                   "sparse_coding_k11_b8", "first_layer_1to32_b16", "rgb_deblur_dw_k15_512"]
BACKPROP_FILTER_CASES = ["tutorial_5x5", "image_512_k3s2", "vae_dec_f64",
                         "resnet_56x56x64_b8", "dcgan_16to32_b16", "few_ch_64x64x8_b4",
                         "mobilenet_dw_112x112x32_b8"]
# backprop_input is conv2d_transpose under its gradient name: a few cases are enough.
BACKPROP_INPUT_CASES = ["tutorial_5x5", "vae_dec_f64_nchw", "resnet_56x56x64_b8"]

OPS = ("conv2d", "conv2d_transpose", "backprop_input", "backprop_filter")


# --------------------------------------------------------------------------------------------
# Inputs
# --------------------------------------------------------------------------------------------


def _to_layout(a: np.ndarray, data_format: str) -> np.ndarray:
    return np.ascontiguousarray(a.transpose(0, 3, 1, 2)) if data_format == "NCHW" else a


def _layout_shape(shape, data_format: str) -> tuple[int, ...]:
    n, h, w, c = shape
    return (n, c, h, w) if data_format == "NCHW" else (n, h, w, c)


def arrays(op: str, case: Case, seed: int = 0) -> dict[str, np.ndarray]:
    """Random inputs of ``op`` for ``case``, in the case's dtype and data format."""
    rng = np.random.default_rng(seed)
    dt = np.dtype(case.dtype)
    out = {"w": rng.standard_normal(case.w).astype(dt)}
    if op in ("conv2d", "backprop_filter"):
        out["x"] = _to_layout(rng.standard_normal(case.x).astype(dt), case.data_format)
    if op != "conv2d":
        out["y"] = _to_layout(rng.standard_normal(case.y).astype(dt), case.data_format)
    return out


def miniature(case: Case) -> Case:
    """The same op/dtype/layout/kernel/strides on a tiny input: warms JIT and runtimes cheaply.

    Used by the ``peakmem_*`` classes so that warm-up does not already reach the peak. A grouped
    case keeps (at most) two groups of at most two input and two output channels each.
    """
    k = max((case.w[0] - 1) * case.dilations + 1, (case.w[1] - 1) * case.dilations + 1)
    side = max(k, 2 * case.strides)
    groups = min(case.groups, 2)
    cin, cout = min(case.w[2], 2), min(case.w[3] // case.groups, 2)
    return dataclasses.replace(case, x=(1, side, side, groups * cin), groups=groups,
                               w=(case.w[0], case.w[1], cin, groups * cout))


# --------------------------------------------------------------------------------------------
# Skips and threads
# --------------------------------------------------------------------------------------------


def n_threads(threads: str) -> int:
    return 1 if threads == "1" else numba.config.NUMBA_NUM_THREADS


def check_skip(case_name: str, impl: str, threads: str = "all") -> Case:
    """Return the case, or raise NotImplementedError (asv: skip) for combinations not run."""
    case = CASES[case_name]
    if SKIP_SLOW and case.slow:
        raise NotImplementedError("slow case skipped (ASV_SKIP_SLOW is set)")
    if SKIP_SLOW and impl == "tensorflow":
        # Importing TensorFlow costs ~7 s in every benchmark process: most of a quick run.
        raise NotImplementedError("tensorflow skipped (ASV_SKIP_SLOW is set)")
    if impl == "tensorflow" and case.data_format == "NCHW":
        # TF's CPU kernels are NHWC-only ("Conv2D op currently only supports the NHWC tensor
        # format on the CPU"); skip before paying the ~5 s import to find out.
        raise NotImplementedError("tensorflow has no NCHW convolution on the CPU")
    if threads == "1" and not case.sweep_threads:
        raise NotImplementedError("threads=1 is only measured on the sweep_threads cases")
    if threads == "1" and impl == "numpy_reference":
        try:
            import threadpoolctl  # noqa: F401
        except ImportError:
            raise NotImplementedError("threads=1 for NumPy needs threadpoolctl") from None
    return case


# --------------------------------------------------------------------------------------------
# Peers: each builder returns a zero-argument callable that runs the op once
# --------------------------------------------------------------------------------------------


def build(op: str, case: Case, impl: str, threads: str = "all",
          data: dict[str, np.ndarray] | None = None) -> Callable[[], object]:
    """A zero-argument callable running ``op`` on ``case`` with ``impl`` (inputs prebuilt)."""
    if op not in OPS:
        raise ValueError(f"unknown op {op!r}")
    data = arrays(op, case) if data is None else data
    try:
        builder = _BUILDERS[impl]
    except KeyError:
        raise ValueError(f"unknown impl {impl!r}; expected one of {IMPLS}") from None
    return builder(op, case, data, n_threads(threads))


def _numbadeconv(op, c: Case, a, threads):
    kw = dict(strides=c.strides, padding=c.padding, data_format=c.data_format,
              dilations=c.dilations, threads=threads)
    x_shape = _layout_shape(c.x, c.data_format)
    if op == "conv2d":
        return lambda: nd.conv2d(a["x"], a["w"], **kw)
    if op == "conv2d_transpose":
        return lambda: nd.conv2d_transpose(a["y"], a["w"], x_shape, **kw)
    if op == "backprop_input":
        return lambda: nd.conv2d_backprop_input(x_shape, a["w"], a["y"], **kw)
    return lambda: nd.conv2d_backprop_filter(a["x"], c.w, a["y"], **kw)


def _functional(op, c: Case, a, threads):
    """``numbadeconv.functional``, called as :func:`_torch` calls ``torch.nn.functional``.

    Padding that is larger on one side (TensorFlow's SAME) goes as PyTorch users write it:
    ``np.pad`` before a convolution, a crop after a transpose.
    """
    if op == "backprop_filter":
        raise NotImplementedError("numbadeconv.functional has no filter gradient")
    fn = nd.functional

    def nchw(arr):  # NHWC cases: the NCHW view of the NHWC array (channels_last, no copy)
        return arr.transpose(0, 3, 1, 2) if c.data_format == "NHWC" else arr

    # co, ci / groups, fh, fw: also conv_transpose2d's (in, out / groups, fh, fw)
    w = np.ascontiguousarray(a["w"].transpose(3, 2, 0, 1))
    _, h, wd, _ = c.x
    ph, pw = _np_geometry(c)
    s, d, g = c.strides, c.dilations, c.groups
    if op == "conv2d":
        x = nchw(a["x"])
        if ph[0] == ph[1] and pw[0] == pw[1]:
            return lambda: fn.conv2d(x, w, None, s, (ph[0], pw[0]), d, g, threads=threads)
        pads = ((0, 0), (0, 0), ph, pw)
        return lambda: fn.conv2d(np.pad(x, pads), w, None, s, 0, d, g, threads=threads)
    y = nchw(a["y"])
    p, top, left, crop = _transpose_padding(c, "functional")
    if not crop:
        return lambda: fn.conv_transpose2d(y, w, None, s, p, 0, g, d, threads=threads)
    return lambda: fn.conv_transpose2d(y, w, None, s, p, 0, g, d, threads=threads)[
        :, :, top:top + h, left:left + wd]


def _transpose_padding(c: Case, impl: str) -> tuple[tuple[int, int], int, int, bool]:
    """PyTorch's ``padding`` for ``c``'s transpose, the rows and columns to crop in front, and
    whether its result needs cropping at all.

    TensorFlow's SAME may pad one more pixel at the end: PyTorch pads the smaller side and the
    result is cropped. NotImplementedError where that would need ``output_padding``.
    """
    (_, h, wd, _), (fh, fw, _, _), (_, ho, wo, _) = c.x, c.w, c.y
    ph, pw = _np_geometry(c)
    s, d = c.strides, c.dilations
    p = (min(ph), min(pw))
    top, left = ph[0] - p[0], pw[0] - p[1]  # leftover leading padding, cropped after
    full_h = (ho - 1) * s + (fh - 1) * d + 1 - 2 * p[0]
    full_w = (wo - 1) * s + (fw - 1) * d + 1 - 2 * p[1]
    if full_h < top + h or full_w < left + wd:
        raise NotImplementedError(f"case needs output_padding; not wired for {impl}")
    return p, top, left, (top, left, full_h, full_w) != (0, 0, h, wd)


# --- NumPy ---------------------------------------------------------------------------------


def _np_geometry(c: Case):
    (_, h, w, _), (fh, fw, _, _), (_, ho, wo, _) = c.x, c.w, c.y
    s, d = c.strides, c.dilations
    ph = _pads(h, ho, fh, s, d, c.padding)
    pw = _pads(w, wo, fw, s, d, c.padding)
    return ph, pw


def _np_windows(xp: np.ndarray, c: Case) -> np.ndarray:
    """im2col as a view: (N, Ho, Wo, Cin, fh, fw)."""
    fh, fw = c.w[:2]
    s, d = c.strides, c.dilations
    _, ho, wo, _ = c.y
    win = np.lib.stride_tricks.sliding_window_view(
        xp, ((fh - 1) * d + 1, (fw - 1) * d + 1), axis=(1, 2))
    return win[:, : (ho - 1) * s + 1 : s, : (wo - 1) * s + 1 : s, :, ::d, ::d]


def np_conv2d(x: np.ndarray, w: np.ndarray, c: Case) -> np.ndarray:
    ph, pw = _np_geometry(c)
    xp = np.pad(x, ((0, 0), ph, pw, (0, 0)))
    return np.tensordot(_np_windows(xp, c), w, axes=([3, 4, 5], [2, 0, 1]))


def np_backprop_filter(x: np.ndarray, dy: np.ndarray, c: Case) -> np.ndarray:
    ph, pw = _np_geometry(c)
    xp = np.pad(x, ((0, 0), ph, pw, (0, 0)))
    dw = np.tensordot(_np_windows(xp, c), dy, axes=([0, 1, 2], [0, 1, 2]))  # (ci, fh, fw, co)
    return np.ascontiguousarray(dw.transpose(1, 2, 0, 3))


def np_conv2d_transpose(dy: np.ndarray, w: np.ndarray, c: Case) -> np.ndarray:
    (n, h, wd, _), (fh, fw, ci, _), (_, ho, wo, _) = c.x, c.w, c.y
    s, d = c.strides, c.dilations
    ph, pw = _np_geometry(c)
    cols = np.tensordot(dy, w, axes=([3], [3]))  # one GEMM: (N, Ho, Wo, fh, fw, ci)
    hp = max(h + sum(ph), (ho - 1) * s + (fh - 1) * d + 1)
    wp = max(wd + sum(pw), (wo - 1) * s + (fw - 1) * d + 1)
    xp = np.zeros((n, hp, wp, ci), dy.dtype)
    for i in range(fh):  # col2im: scatter-add each tap
        for j in range(fw):
            xp[:, i * d : i * d + (ho - 1) * s + 1 : s,
               j * d : j * d + (wo - 1) * s + 1 : s, :] += cols[:, :, :, i, j, :]
    return xp[:, ph[0] : ph[0] + h, pw[0] : pw[0] + wd, :]


def np_grouped(func: Callable[[np.ndarray, np.ndarray, Case], np.ndarray], a: np.ndarray,
               b: np.ndarray, c: Case) -> np.ndarray:
    """``func(a, b, c)`` (one of the three above) one group at a time.

    Group ``g`` takes the ``g``-th of ``c.groups`` equal slices of the channels (axis 3) of both
    ``a`` and ``b``: x and w's output channels (conv2d), dy and w's output channels (transpose),
    x and dy (filter gradient); the results' channels (axis 3) are concatenated.
    """
    if c.groups == 1:
        return func(a, b, c)
    sa, sb = a.shape[3] // c.groups, b.shape[3] // c.groups
    return np.concatenate([func(a[..., g * sa : (g + 1) * sa], b[..., g * sb : (g + 1) * sb], c)
                           for g in range(c.groups)], axis=3)


def _numpy(op, c: Case, a, threads):
    if threads == 1:
        from threadpoolctl import threadpool_limits

        threadpool_limits(1)  # for the rest of this (per-benchmark) process
    nchw = c.data_format == "NCHW"

    def nhwc(arr):
        return arr.transpose(0, 2, 3, 1) if nchw else arr

    def back(arr):
        return np.ascontiguousarray(arr.transpose(0, 3, 1, 2)) if nchw else arr

    if op == "conv2d":
        return lambda: back(np_grouped(np_conv2d, nhwc(a["x"]), a["w"], c))
    if op in ("conv2d_transpose", "backprop_input"):
        return lambda: back(np_grouped(np_conv2d_transpose, nhwc(a["y"]), a["w"], c))
    return lambda: np_grouped(np_backprop_filter, nhwc(a["x"]), nhwc(a["y"]), c)


# --- PyTorch -------------------------------------------------------------------------------


def _torch(op, c: Case, a, threads):
    try:
        import torch
        import torch.nn.functional as F
    except ImportError:
        raise NotImplementedError("torch is not installed") from None
    torch.set_num_threads(threads)
    mf = torch.channels_last if c.data_format == "NHWC" else torch.contiguous_format

    def t(arr):  # a numpy array in the case's layout -> NCHW-indexed tensor, case memory format
        ten = torch.from_numpy(arr)
        if c.data_format == "NHWC":
            ten = ten.permute(0, 3, 1, 2)
        return ten.contiguous(memory_format=mf)

    # co, ci / groups, fh, fw: also conv_transpose2d's (in, out / groups, fh, fw)
    w = torch.from_numpy(a["w"]).permute(3, 2, 0, 1).contiguous(memory_format=mf)
    _, h, wd, _ = c.x
    ph, pw = _np_geometry(c)
    s, d, g = c.strides, c.dilations, c.groups
    sym = ph[0] == ph[1] and pw[0] == pw[1]
    pad4 = (pw[0], pw[1], ph[0], ph[1])
    torch.set_grad_enabled(False)

    if op == "conv2d":
        x = t(a["x"])
        if sym:
            return lambda: F.conv2d(x, w, None, s, (ph[0], pw[0]), d, g)
        return lambda: F.conv2d(F.pad(x, pad4), w, None, s, 0, d, g)
    if op in ("conv2d_transpose", "backprop_input"):
        y = t(a["y"])
        p, oh, ow, crop = _transpose_padding(c, "torch")
        if not crop:
            return lambda: F.conv_transpose2d(y, w, None, s, p, 0, g, d)
        return lambda: F.conv_transpose2d(y, w, None, s, p, 0, g, d)[:, :, oh:oh + h, ow:ow + wd]
    x, y = t(a["x"]), t(a["y"])
    wsize = tuple(w.shape)
    if sym:
        return lambda: torch.nn.grad.conv2d_weight(x, wsize, y, s, (ph[0], pw[0]), d, g)
    return lambda: torch.nn.grad.conv2d_weight(F.pad(x, pad4), wsize, y, s, 0, d, g)


# --- TensorFlow ----------------------------------------------------------------------------


def _tensorflow(op, c: Case, a, threads):
    if c.groups > 1 and op != "conv2d":
        # Before the import: TF's CPU runs grouped conv2d, but its Conv2DBackpropInput says
        # "Gradients for grouped convolutions are not supported on CPU" and its
        # Conv2DBackpropFilter rejects grouped filter sizes.
        raise NotImplementedError("tensorflow has no grouped convolution gradient (transpose) "
                                  "on the CPU")
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")  # TF_ENABLE_ONEDNN_OPTS left default
    try:
        import tensorflow as tf
    except ImportError:
        raise NotImplementedError("tensorflow is not installed") from None
    if threads != numba.config.NUMBA_NUM_THREADS:
        # Only possible before TF's runtime starts; every asv benchmark runs in its own process.
        try:
            tf.config.threading.set_intra_op_parallelism_threads(threads)
            tf.config.threading.set_inter_op_parallelism_threads(threads)
        except RuntimeError as exc:
            raise NotImplementedError(f"cannot set TF threads after init: {exc}") from None
    fn = _tensorflow_call(tf, op, c, a)

    def guarded():  # TF's CPU kernels reject some NCHW ops: report as a skip, not a failure
        try:
            return fn()
        except (tf.errors.InvalidArgumentError, tf.errors.UnimplementedError) as exc:
            if "NHWC" in str(exc):
                raise NotImplementedError(f"tensorflow CPU: {exc.message}") from None
            raise

    return guarded if c.data_format == "NCHW" else fn


def _tensorflow_call(tf, op, c: Case, a):
    fmt, s, d = c.data_format, c.strides, c.dilations
    s4 = [1, 1, s, s] if fmt == "NCHW" else [1, s, s, 1]
    d4 = [1, 1, d, d] if fmt == "NCHW" else [1, d, d, 1]
    w = tf.constant(a["w"])
    x_shape = list(_layout_shape(c.x, fmt))
    if op == "conv2d" and c.depthwise:  # filters [fh, fw, C, multiplier]: the same order
        x = tf.constant(a["x"])
        fh, fw, _, co = c.w
        wd = tf.reshape(w, (fh, fw, c.groups, co // c.groups))
        return lambda: tf.nn.depthwise_conv2d(x, wd, s4, c.padding, fmt, [d, d])
    if op == "conv2d":
        x = tf.constant(a["x"])
        return lambda: tf.nn.conv2d(x, w, s4, c.padding, fmt, d4)
    if op == "conv2d_transpose":
        y = tf.constant(a["y"])
        return lambda: tf.nn.conv2d_transpose(y, w, x_shape, s4, c.padding, fmt, d4)
    if op == "backprop_input":
        y = tf.constant(a["y"])
        sizes = tf.constant(x_shape, tf.int32)
        return lambda: tf.raw_ops.Conv2DBackpropInput(
            input_sizes=sizes, filter=w, out_backprop=y, strides=s4, padding=c.padding,
            data_format=fmt, dilations=d4)
    x, y = tf.constant(a["x"]), tf.constant(a["y"])
    fsizes = tf.constant(c.w, tf.int32)
    return lambda: tf.raw_ops.Conv2DBackpropFilter(
        input=x, filter_sizes=fsizes, out_backprop=y, strides=s4, padding=c.padding,
        data_format=fmt, dilations=d4)


# --- JAX -----------------------------------------------------------------------------------


def _jax(op, c: Case, a, threads):
    if threads == 1:  # only effective before jax is imported (a fresh asv process)
        os.environ["XLA_FLAGS"] = (os.environ.get("XLA_FLAGS", "")
                                   + " --xla_cpu_multi_thread_eigen=false"
                                   + " intra_op_parallelism_threads=1")
    try:
        import jax
    except ImportError:
        raise NotImplementedError("jax is not installed") from None
    if c.dtype == "float64":
        jax.config.update("jax_enable_x64", True)
    from jax import lax

    fmt = c.data_format
    dn = (fmt, "HWIO", fmt)
    ph, pw = _np_geometry(c)
    s, d = c.strides, c.dilations

    def conv(x, w):
        return lax.conv_general_dilated(x, w, (s, s), [ph, pw], rhs_dilation=(d, d),
                                        dimension_numbers=dn, feature_group_count=c.groups)

    w = jax.device_put(a["w"])
    x0 = jax.numpy.zeros(_layout_shape(c.x, fmt), c.dtype)
    if op == "conv2d":
        x = jax.device_put(a["x"])
        f = jax.jit(conv)
        return lambda: f(x, w).block_until_ready()
    y = jax.device_put(a["y"])
    if op in ("conv2d_transpose", "backprop_input"):
        f = jax.jit(lambda y, w: jax.vjp(lambda x: conv(x, w), x0)[1](y)[0])
        return lambda: f(y, w).block_until_ready()
    x = jax.device_put(a["x"])
    f = jax.jit(lambda x, y: jax.vjp(lambda w: conv(x, w), w)[1](y)[0])
    return lambda: f(x, y).block_until_ready()


def as_numpy(op: str, case: Case, impl: str, out) -> np.ndarray:
    """A peer's result as a NumPy array in TensorFlow's layout (for cross-checking the peers)."""
    if impl in ("torch", "functional"):
        out = np.asarray(out)
        if op == "backprop_filter":
            return out.transpose(2, 3, 1, 0)  # [co, ci, fh, fw] -> [fh, fw, ci, co]
        return out.transpose(0, 2, 3, 1) if case.data_format == "NHWC" else out
    return np.asarray(out)


_BUILDERS = {
    "numbadeconv": _numbadeconv,
    "functional": _functional,
    "numpy_reference": _numpy,
    "torch": _torch,
    "tensorflow": _tensorflow,
    "jax": _jax,
}


# --------------------------------------------------------------------------------------------
# Helpers for the benchmark classes
# --------------------------------------------------------------------------------------------


def gflops(fn: Callable[[], object], flops: int, repeats: int = 5, budget: float = 3.0) -> float:
    """Median GFLOP/s over up to ``repeats`` calls (at least 3, stop early past ``budget`` s)."""
    times: list[float] = []
    start = time.perf_counter()
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
        if len(times) >= 3 and time.perf_counter() - start > budget:
            break
    return flops / statistics.median(times) / 1e9


class OpBenchmark:
    """Base for the per-op classes: ``params = [case, impl, threads]``, warmed-up callable."""

    op = ""
    param_names = ["case", "impl", "threads"]
    timeout = 600.0
    # Big cases take up to ~1 s per call for the slower peers: cap the samples per benchmark.
    repeat = (1, 5, 10.0)
    warmup_time = 0.0  # setup already warmed up the JIT / runtime

    def setup(self, case_name, impl, threads):
        case = check_skip(case_name, impl, threads)
        self.flops = case.flops
        self.fn = build(self.op, case, impl, threads)
        self.fn()  # JIT compile / cache load, runtime init, first-touch of the output


class OpMemory:
    """Base for the per-op ``peakmem_*`` classes: warm up on a miniature so the peak is the call's.

    ``peakmem_reference`` (empty) is the process baseline after that setup: inputs, imported
    libraries, loaded kernels. Subtract it from the op's peak to get the op's own memory.
    """

    op = ""
    param_names = ["case", "impl"]
    timeout = 600.0

    def setup(self, case_name, impl):
        case = check_skip(case_name, impl)
        self.data = arrays(self.op, case)
        build(self.op, miniature(case), impl)()  # compile / cache load / runtime init only
        self.fn = build(self.op, case, impl, data=self.data)
