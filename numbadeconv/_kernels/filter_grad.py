"""The filter gradient of a strided, dilated, grouped 2-D convolution (a reduction over pixels).

::

    out[s, kh, kw, ci, g*cog + co] =
        sum over the rows (n, oh) of slab s, and ow, of
            src[n, oh*sh + kh*dh, (ow*sw + kw*dw)*C + g*cig + ci] * dy[n, oh, ow, g*d_g + co]

``src`` is the zero-padded NHWC input with its last two axes merged (``[N, Hs, Ws*C]``), ``dy`` the
output gradient ``[N, OH, OW, Cd]`` whose group ``g`` starts at channel ``g*d_g`` (``dy`` itself,
``d_g = cog``, or a copy whose groups are padded with zero channels to whole blocks),
``meta`` (int64) ``[C, sh, sw, dh, dw, groups, rows_per_slab, d_g, block, acc_bytes, chunks,
plane_pixels]``.
Each job owns one slab ``s`` (a range of ``rows_per_slab`` rows of the N*OH output rows), one
row of taps ``kh``, one group and one of ``chunks`` equal ranges of its blocks of output
channels, and writes only its own part of ``out`` ``[S, fh, fw, cig, Cout]``: threads never
share an output element, and the caller sums the slabs.

It is the outer-product kernel's micro-kernel (:mod:`.outer`) with the roles exchanged: a tile is
a few (column tap, input channel) pairs x a block of ``block`` output channels (16, or 8 where
that pads fewer: :func:`.outer.block_width`, unpaired) in vector registers (the taps of a row
read the same source rows, and few input channels still fill the tiles), reduced over the pixels
of every row of the slab (a row is a run: ``sw*C`` elements between its pixels in ``src``,
``Cd`` in ``dy``), a pass of rows at a time so that their rows of ``src`` and ``dy`` stay in
cache while every tile and every block of output channels reads them. Jobs with many
accumulators take longer passes, over copies of their pixels (:data:`LONG_PASS_PIXELS`): of
the source rows, in planes of a tile's channels, where a row has at least ``plane_pixels``
pixels (each tile of one column tap's channels, then, and the channels past a column tap's whole
tiles, of every column tap, in tiles together; a run per row), else of each pixel's pairs (one
run).
"""

import numpy as np
from llvmlite import ir
from numba import types
from numba.core import cgutils
from numba.extending import intrinsic

from .._jit import kernel
from . import simd
from .outer import check_runs, runs8_strided, runs16_strided, runs32_strided, tile_pixels
from .simd import CHECK_BOUNDS

#: Pixels per pass (whole rows, at least one): their rows of src and dy stay in cache while every
#: tile and block reads them. Few: the pixels of a row are ``Cd`` (dy) and ``sw*C`` (src)
#: elements apart, often a multiple of 1 KiB, which puts them in a few sets of the L1 cache only
#: (256 float32 channels: 4 of 64). Against 256 pixels, 32 took 0.79-0.90 of the time (VAE
#: float64, DCGAN 8x8 and 16x16, ResNet), 16 up to 1.18x more ...
PASS_PIXELS = 32

#: ... unless a job's accumulators (every tile x block, reloaded by every pass) outgrow
#: ``meta[9]`` bytes (of the L2 cache): then passes of LONG_PASS_PIXELS (32 took 1.09x and
#: 1.45x the time of 256 for U-Net, 4 MiB of accumulators, and DCGAN 4x4x1024, 10 MiB), whose
#: pixels of src and dy are first copied next to each other, as many tiles and blocks read each
#: of them (0.58-0.59 of the time for U-Net, DCGAN 4x4 and 8x8; where the tiles or blocks are
#: few, the copies cost more than they save: 1.2x for ResNet, 2-3.7x for few-channel layers).
LONG_PASS_PIXELS = 256


@kernel()
def filter_grad_serial(src, dy, out, meta, first, last):
    n_ch, sh, sw, dh, dw, groups, rows_per_slab, d_g = (meta[0], meta[1], meta[2], meta[3],
                                                        meta[4], meta[5], meta[6], meta[7])
    block = meta[8]
    _, fh, fw, cig, n_out = out.shape
    n_images, n_oh, n_ow, d_ch = dy.shape
    cog = n_out // groups
    blocks = -(-cog // block)
    n_pix = tile_pixels(block, out.itemsize, 1)  # (column tap, input channel) pairs per tile
    x_flat, d_flat, o_flat = src.reshape(-1), dy.reshape(-1), out.reshape(-1)
    zeros = np.zeros(block, out.dtype)
    n_chunks = meta[10]
    per_chunk = -(-blocks // n_chunks)  # blocks per job
    # the tiles' (column tap kw, input channel ci) pairs i = kw*cig + ci (the last tile repeats
    # the last one) ...
    n_tiles = -(-fw * cig // n_pix)
    long = per_chunk * n_tiles * n_pix * block * out.itemsize > meta[9]
    # ... or, for long passes over rows of at least meta[11] pixels, each column tap's channels
    # in whole tiles of their own (pair i = (kw*full + cb)*n_pix + j is channel cb*n_pix + j),
    # then the channels past them (rest of each column tap) of every column tap together (in
    # tiles of one column tap, DCGAN 32x32x128's 128 channels took 110 tiles of 6 for 640 pairs,
    # and 1.04x the time of these 107)
    planes = long and n_ow >= meta[11]
    n_cb = -(-cig // n_pix)  # channel blocks of the plane copies
    full = cig // n_pix
    rest = cig - full * n_pix
    if planes:
        n_tiles = fw * full + -(-fw * rest // n_pix)
    tile = n_pix * block
    acc = np.empty(per_chunk * n_tiles * tile, out.dtype)  # [blocks of the job, tiles, tile]
    runs_x = np.empty(rows_per_slab, np.int64)
    runs_w = np.empty(rows_per_slab, np.int64)
    per_pass = max(1, (LONG_PASS_PIXELS if long else PASS_PIXELS) // n_ow)
    p_max = per_pass * n_ow if long else 0
    # long passes copy dy as [blocks of the job, pixels, block], and the source as rows of
    # planes [rows, channel blocks, column phases, columns, n_pix] (a tile's channels of column
    # j at position j // sw of phase j % sw) or as the tiles' pairs [tiles, pixels, n_pix]
    cols = (n_ow - 1) * sw + (fw - 1) * dw + 1  # the columns that the taps read
    phase_cols = -(-cols // sw)
    row_size = n_cb * sw * phase_cols * n_pix
    x_pack = np.empty((per_pass * row_size if planes else n_tiles * p_max * n_pix) if long
                      else 0, out.dtype)
    d_pack = np.empty(per_chunk * p_max * block, out.dtype)
    # the pairs' offsets from a pixel's first source element, where the micro-kernel reads them
    # (the same in place, else in the copies), and their rows in out
    xo = np.empty(n_tiles * n_pix, np.int64)
    x_off = np.empty(n_tiles * n_pix, np.int64)
    ci_out = np.empty(n_tiles * n_pix, np.int64)
    for i in range(n_tiles * n_pix):
        k = min(i, fw * cig - 1)
        kw, ci = k // cig, k % cig
        if planes and i < fw * full * n_pix:
            kw, ci = i // (full * n_pix), i % (full * n_pix)
        elif planes:
            k = min(i - fw * full * n_pix, fw * rest - 1)
            kw, ci = k // rest, full * n_pix + k % rest
        xo[i] = kw * dw * n_ch + ci
        ci_out[i] = (kw * cig + ci) * n_out
        o = kw * dw
        x_off[i] = (((ci // n_pix * sw + o % sw) * phase_cols + o // sw) * n_pix + ci % n_pix
                    if planes else (i // n_pix * p_max) * n_pix + i % n_pix if long else xo[i])
    # the copies' runs: a row each (planes), or one of all the pass's pixels
    n_runs = per_pass if planes else 1
    runs_x_pack = np.empty(n_runs, np.int64)
    runs_w_pack = np.empty(n_runs, np.int64)
    for r in range(n_runs):
        runs_x_pack[r] = r * row_size
        runs_w_pack[r] = r * n_ow * block
    for job in range(first, last):
        b_lo = job % n_chunks * per_chunk
        b_hi = min(blocks, b_lo + per_chunk)
        g = job // n_chunks % groups
        kh = job // (n_chunks * groups) % fh
        s = job // (n_chunks * groups * fh)
        row_lo = s * rows_per_slab
        n_rows = min(rows_per_slab, n_images * n_oh - row_lo)
        for r in range(n_rows):
            n, oh = (row_lo + r) // n_oh, (row_lo + r) % n_oh
            runs_x[r] = (n * src.shape[1] + oh * sh + kh * dh) * src.shape[2] + g * cig
            runs_w[r] = ((n * n_oh + oh) * n_ow) * d_ch + g * d_g
        tap_out = (s * fh + kh) * fw * cig * n_out + g * cog  # out[s, kh, 0, 0, g*cog]
        # a pass's rows of dy and src stay in cache while every tile and block uses them
        for r_lo in range(0, n_rows, per_pass):
            r_hi = min(n_rows, r_lo + per_pass)
            # the micro-kernel's operands: the pass's rows (a run each), in place or copied
            x, rx, rw, r0, r1, w = x_flat, runs_x, runs_w, r_lo, r_hi, d_flat
            span, x_step, w_step, w_block, w_first = n_ow, sw * n_ch, d_ch, block, 0
            for r in range(r_lo, r_hi if planes else r_lo):  # rows of planes
                to = (r - r_lo) * row_size
                for col in range(cols):
                    at = runs_x[r] + col * n_ch
                    at_col = to + (col % sw * phase_cols + col // sw) * n_pix
                    for cb in range(n_cb):
                        x_to = np.uint64(at_col + cb * sw * phase_cols * n_pix)
                        x_at = np.uint64(at + cb * n_pix)
                        for c in range(np.uint64(min(n_pix, cig - cb * n_pix))):
                            x_pack[x_to + c] = x_flat[x_at + c]
            for r in range(r_lo, r_hi if long else r_lo):
                for q in range(n_ow):
                    p = (r - r_lo) * n_ow + q
                    if not planes:  # the tiles' pairs, pixel by pixel
                        at = runs_x[r] + q * sw * n_ch
                        for i in range(np.uint64(n_tiles * n_pix)):
                            x_pack[np.uint64(x_off[i] + p * n_pix)] = x_flat[np.uint64(at + xo[i])]
                    at = runs_w[r] + q * d_ch
                    for b in range(b_lo, b_hi):
                        d_to = np.uint64(((b - b_lo) * p_max + p) * block)
                        d_at = np.uint64(at + b * block)
                        for c in range(np.uint64(block)):
                            d_pack[d_to + c] = d_flat[d_at + c]
            if long:
                x, rx, rw, r0, r1, w = (x_pack, runs_x_pack, runs_w_pack, 0,
                                        r_hi - r_lo if planes else 1, d_pack)
                span = n_ow if planes else (r_hi - r_lo) * n_ow
                x_step, w_step = n_pix, block
                w_block, w_first = p_max * block, b_lo * p_max * block  # the job's blocks only
            for t in range(n_tiles):
                for b in range(b_lo, b_hi):
                    ao = ((b - b_lo) * n_tiles + t) * tile
                    wo = b * w_block - w_first
                    d_add = tap_out + b * block
                    # whole blocks go from the registers to out
                    end = cog - b * block >= block and r_hi == n_rows
                    if CHECK_BOUNDS:
                        check_runs(acc, ao, x, x_off, t * n_pix, n_pix, rx, rw, r0, r1, w, wo,
                                   span, zeros, o_flat, ci_out, d_add, end, block, 1, x_step,
                                   w_step)
                    if block == 32:
                        runs32_strided(acc, ao, x, x_off, t * n_pix, rx, rw, r0, r1, w, wo,
                                       span, zeros, r_lo == 0, o_flat, ci_out, d_add, end, 1, 0,
                                       x_step, w_step)
                    elif block == 16:
                        runs16_strided(acc, ao, x, x_off, t * n_pix, rx, rw, r0, r1, w, wo,
                                       span, zeros, r_lo == 0, o_flat, ci_out, d_add, end, 1, 0,
                                       x_step, w_step)
                    else:
                        runs8_strided(acc, ao, x, x_off, t * n_pix, rx, rw, r0, r1, w, wo,
                                      span, zeros, r_lo == 0, o_flat, ci_out, d_add, end, 1, 0,
                                      x_step, w_step)
        if cog % block and b_hi == blocks:  # the last block is partial: from acc
            b = blocks - 1
            for i in range(n_tiles * n_pix):  # (a repeated pair writes the same sums again)
                at = ((b - b_lo) * n_tiles * n_pix + i) * block
                for c in range(cog - b * block):
                    o_flat[tap_out + b * block + ci_out[i] + c] = acc[at + c]


#: Elements of the result per job of :func:`sum_slabs_serial`, at most: 16 KiB of float32, which
#: stay in the L1 cache while every slab is added to them (64 KiB took 1.1x the time) ...
SUM_ELEMENTS = 4096

#: ... and at least, where the result is too small for JOBS_PER_THREAD jobs of SUM_ELEMENTS per
#: thread (a 3x3x64x64 gradient is 9 of them: on 64 threads, its 64 slabs' sum on 9 of them took
#: a quarter of the call); a multiple of SUM_ALIGN elements (cache lines of float64).
SUM_MIN_ELEMENTS = 512
SUM_ALIGN = 8


@kernel()
def sum_slabs_serial(part, out, step, first, last):
    """``out[i] = part[0, i] + part[1, i] + ...``: the slabs' sum, ``step`` elements a job.

    ``part`` ``[S, M]`` the slabs' gradients (:func:`filter_grad_serial`), ``out`` ``[M]``. The
    slabs are added in order, as NumPy's ``part.sum(axis=0)`` adds them, but on every thread of
    the call (16 threads split a DCGAN 32x32x128 gradient into 16 slabs, 52 MB: NumPy's sum, in
    one thread, took 2.2 ms on a Zen 4 core, half the time that the gradient itself would take
    on 16 of them; two slabs of it on two threads: 0.08 ms against NumPy's 0.22).
    """
    n_slabs, size = part.shape
    flat = part.reshape(-1)
    for job in range(first, last):
        lo = np.uint64(job * step)  # (unsigned indices: no wraparound, vectorised)
        hi = np.uint64(min(size, job * step + step))
        for i in range(lo, hi):
            out[i] = flat[i]
        for s in range(1, n_slabs):
            at = np.uint64(s * size)
            for i in range(lo, hi):
                out[i] += flat[at + i]


def _tap_sums(n_taps: int, n_vec: int):
    """An intrinsic adding, for ``n_taps`` taps, a row's products of channel vectors.

    ``run(acc, ao, x, xo, x_step, d, d0, d_step, n_steps, c)`` adds, for taps ``k < n_taps``,
    vectors ``v < n_vec`` (of L lanes: 8 float32 or 4 float64) and pixels ``q < n_steps``::

        acc[ao[k] + c + v*L:][:L] += x[xo[k] + q*x_step + c + v*L:][:L]
                                     * d[d0 + q*d_step + c + v*L:][:L]

    The n_taps x n_vec sums stay in registers over the pixels, and each vector of ``d`` is loaded
    once for all the taps. ``ao`` and ``xo``: int64, n_taps each. All offsets must be in bounds.
    """

    @intrinsic
    def run(typingctx, acc, ao, x, xo, x_step, d, d0, d_step, n_steps, c):
        sig = types.void(acc, ao, x, xo, x_step, d, d0, d_step, n_steps, c)

        def codegen(context, builder, signature, args):
            acc_a, ao_a, x_a, xo_a, x_step_v, d_a, d0_v, d_step_v, n_v, c_v = args
            arg = signature.args
            v = simd.Vectors(context, builder, arg[0].dtype)
            lanes = v.lanes
            acc_p, ao_p = v.data(acc_a, arg[0]), v.data(ao_a, arg[1])
            x_p, xo_p = v.data(x_a, arg[2]), v.data(xo_a, arg[3])
            d_p = v.at(v.at(v.data(d_a, arg[5]), d0_v), c_v)
            outs = [v.at(v.at(acc_p, v.item(ao_p, k)), c_v) for k in range(n_taps)]
            rows = [v.at(v.at(x_p, v.item(xo_p, k)), c_v) for k in range(n_taps)]
            # the sums live in allocas, which LLVM promotes to registers
            slots = [[cgutils.alloca_once(builder, v.type) for _ in range(n_vec)]
                     for _ in range(n_taps)]
            for k in range(n_taps):
                for i in range(n_vec):
                    builder.store(v.load(outs[k], lanes * i), slots[k][i])
            with cgutils.for_range(builder, n_v) as pixels:
                q = pixels.index
                d_q = v.at(d_p, builder.mul(q, d_step_v))
                d_vecs = [v.load(d_q, lanes * i) for i in range(n_vec)]
                x_q = builder.mul(q, x_step_v)
                for k in range(n_taps):
                    x_k = v.at(rows[k], x_q)
                    for i in range(n_vec):
                        slot = slots[k][i]
                        builder.store(v.fma(v.load(x_k, lanes * i), d_vecs[i],
                                            builder.load(slot)), slot)
            for k in range(n_taps):
                for i in range(n_vec):
                    v.store(builder.load(slots[k][i]), outs[k], lanes * i)
            return context.get_dummy_value()

        return sig, codegen

    return run


def _window_sums(n_taps: int, n_vec: int):
    """An intrinsic adding a row's products for ``n_taps`` taps one pixel apart (a sliding window).

    ``run(acc, a0, x, x0, d, d0, step, n_steps, c)`` adds, for taps ``k < n_taps``, vectors
    ``v < n_vec`` (of L lanes) and pixels ``q < n_steps``::

        acc[a0 + k*step + c + v*L:][:L] += x[x0 + (q + k)*step + c + v*L:][:L]
                                           * d[d0 + q*step + c + v*L:][:L]

    The sums stay in registers over the pixels, and so does a window of ``n_taps`` pixels of
    ``x``: each step loads one new pixel of ``x`` and one of ``d`` for ``n_taps`` multiply-adds
    per vector (the taps of a stride-1 row: :func:`_tap_sums` loads one of ``x`` per tap).
    All offsets must be in bounds.
    """

    @intrinsic
    def run(typingctx, acc, a0, x, x0, d, d0, step, n_steps, c):
        sig = types.void(acc, a0, x, x0, d, d0, step, n_steps, c)

        def codegen(context, builder, signature, args):
            acc_a, a0_v, x_a, x0_v, d_a, d0_v, step_v, n_v, c_v = args
            arg = signature.args
            v = simd.Vectors(context, builder, arg[0].dtype)
            lanes = v.lanes
            acc_p = v.at(v.at(v.data(acc_a, arg[0]), a0_v), c_v)
            x_p = v.at(v.at(v.data(x_a, arg[2]), x0_v), c_v)
            d_p = v.at(v.at(v.data(d_a, arg[4]), d0_v), c_v)

            def pixel(pointer, q):
                at = v.at(pointer, builder.mul(q, step_v))
                return [v.load(at, lanes * i) for i in range(n_vec)]

            # the sums and the window (pixels q .. q + n_taps - 2 of x) live in allocas, which
            # LLVM promotes to registers
            sums = [[cgutils.alloca_once(builder, v.type) for _ in range(n_vec)]
                    for _ in range(n_taps)]
            window = [[cgutils.alloca_once(builder, v.type) for _ in range(n_vec)]
                      for _ in range(n_taps - 1)]
            for k in range(n_taps):
                for i, vec in enumerate(pixel(acc_p, ir.Constant(simd.I64, k))):
                    builder.store(vec, sums[k][i])
            for k in range(n_taps - 1):
                for i, vec in enumerate(pixel(x_p, ir.Constant(simd.I64, k))):
                    builder.store(vec, window[k][i])
            last = ir.Constant(simd.I64, n_taps - 1)
            with cgutils.for_range(builder, n_v) as pixels:
                q = pixels.index
                d_vecs = pixel(d_p, q)
                xs = [[builder.load(slot) for slot in row] for row in window]
                xs.append(pixel(x_p, builder.add(q, last)))
                for k in range(n_taps):
                    for i in range(n_vec):
                        slot = sums[k][i]
                        builder.store(v.fma(xs[k][i], d_vecs[i], builder.load(slot)), slot)
                for k in range(n_taps - 1):  # the window moves one pixel on
                    for i in range(n_vec):
                        builder.store(xs[k + 1][i], window[k][i])
            for k in range(n_taps):
                at = v.at(acc_p, builder.mul(ir.Constant(simd.I64, k), step_v))
                for i in range(n_vec):
                    v.store(builder.load(sums[k][i]), at, lanes * i)
            return context.get_dummy_value()

        return sig, codegen

    return run


#: A row of three column taps one pixel apart (stride and dilation 1), four vectors of channels
#: at a time (one for the last ones): 3 x 4 sums, a window of 3 x 4 vectors of x and 4 of dy, in
#: AVX-512's 32 registers, where the target has them. Against :func:`_tap_sums` (3 taps x 4
#: vectors), on one thread: 1.6-1.7x the speed on data in L1 or L2, a MobileNet 3x3 layer's
#: gradient 0.89 of the time. In AVX2's 16 registers (2 vectors at a time, the row in two passes)
#: it ran faster on data in L1 (1.3x) but slower in L2 (0.85x), and is not used.
WINDOW_TAPS, WINDOW_VECS = 3, 4
_window = _window_sums(WINDOW_TAPS, WINDOW_VECS)
_window_last = _window_sums(WINDOW_TAPS, 1)


@kernel(internal=True)
def _window_row(acc, a0, x, x0, d, d0, n_out, n_steps):
    """A row's sums for ``WINDOW_TAPS`` taps one pixel apart, every channel (``_window_sums``)."""
    lanes = simd.VECTOR_BYTES // acc.itemsize
    c = 0
    while c < n_out:
        n_vec = WINDOW_VECS if c + WINDOW_VECS * lanes <= n_out else 1
        if CHECK_BOUNDS:
            width = n_vec * lanes
            last = max(0, n_steps - 1)
            ok = (0 <= a0 + c and a0 + (WINDOW_TAPS - 1) * n_out + c + width <= acc.shape[0]
                  and 0 <= x0 + c and x0 + (last + WINDOW_TAPS - 1) * n_out + c + width
                  <= x.shape[0]
                  and 0 <= d0 + c and d0 + last * n_out + c + width <= d.shape[0])
            if not ok:
                raise IndexError("depthwise filter gradient: a window would read or write out "
                                 "of bounds")
        if n_vec == WINDOW_VECS:
            _window(acc, a0, x, x0, d, d0, n_out, n_steps, c)
        else:
            _window_last(acc, a0, x, x0, d, d0, n_out, n_steps, c)
        c += n_vec * lanes


#: Taps per vector run and vectors of channels per tap: the sums of TAPS x VECS vectors in
#: registers beside VECS vectors of dy.
TAPS, VECS = 3, 4
_sums = _tap_sums(TAPS, VECS)
_sums_last = _tap_sums(TAPS, 1)  # the channels past the last VECS vectors


@kernel(internal=True)
def _check_sums(acc, ao, x, xo, x_step, d, d0, d_step, n_steps, c, n_vec):
    """Raise IndexError unless every element that a ``_tap_sums`` run touches is in bounds.

    Its arguments, with its ``n_vec``.
    """
    width = n_vec * simd.VECTOR_BYTES // acc.itemsize
    last = max(0, n_steps - 1)
    ok = 0 <= d0 + c and d0 + last * d_step + c + width <= d.shape[0]
    for k in range(ao.shape[0]):
        ok = ok and 0 <= ao[k] + c and ao[k] + c + width <= acc.shape[0]
        ok = ok and 0 <= xo[k] + c and xo[k] + last * x_step + c + width <= x.shape[0]
    if not ok:
        raise IndexError("depthwise filter gradient: a run would read or write out of bounds")


@kernel(internal=True)
def _vector_taps(acc, ao, x, xo, x_step, d, d0, n_out, n_steps):
    """``TAPS`` taps' sums of ``n_out`` elements over ``n_steps`` steps (``_tap_sums`` runs)."""
    lanes = simd.VECTOR_BYTES // acc.itemsize
    c = 0
    while c < n_out:
        n_vec = VECS if c + VECS * lanes <= n_out else 1
        if CHECK_BOUNDS:
            _check_sums(acc, ao, x, xo, x_step, d, d0, n_out, n_steps, c, n_vec)
        if n_vec == VECS:
            _sums(acc, ao, x, xo, x_step, d, d0, n_out, n_steps, c)
        else:
            _sums_last(acc, ao, x, xo, x_step, d, d0, n_out, n_steps, c)
        c += n_vec * lanes


@kernel(internal=True)
def _expand_row(ring, to, x, fr, n_ch, mult, sw, phase_cols, j_lo, j_hi, left):
    """Copy a source row's columns into a padded row of the ring, at ``to``.

    The padded row's column ``j`` (of source column ``j - left``) goes to position ``j // sw``
    of column phase ``j % sw`` (``phase_cols`` columns each), each of its channels ``mult``
    times (``n_ch * mult`` elements per column): only the columns ``j_lo <= j < j_hi`` hold
    source ones, the others are left as they are (zero). ``fr``: the source row's offset in ``x``.
    """
    n_out = n_ch * mult
    for ph in range(sw):
        p_lo = max(0, -((ph - j_lo) // sw))  # the phase's columns from j_lo to j_hi
        p_hi = max(p_lo, -((ph - j_hi) // sw))
        at = to + (ph * phase_cols + p_lo) * n_out
        x_at = fr + (p_lo * sw + ph - left) * n_ch
        if sw == 1 and mult == 1:  # one contiguous run
            for i in range(np.uint64((p_hi - p_lo) * n_out)):
                ring[np.uint64(at) + i] = x[np.uint64(x_at) + i]
            continue
        for p in range(p_hi - p_lo):
            r_p, x_p = np.uint64(at + p * n_out), np.uint64(x_at + p * sw * n_ch)
            if mult == 1:  # a column's channels, contiguous
                for i in range(np.uint64(n_ch)):
                    ring[r_p + i] = x[x_p + i]
                continue
            for i in range(np.uint64(n_ch)):
                for m in range(np.uint64(mult)):
                    ring[r_p + i * mult + m] = x[x_p + i]


@kernel()
def depthwise_filter_grad_serial(src, dy, out, meta, first, last):
    """The filter gradient of a depthwise convolution (``cig == 1``, ``groups == C``).

    ``src`` is the input itself, *not* padded: ``meta`` is the first 7 entries of
    :func:`filter_grad_serial`'s, then the (top, left) padding. Each job owns a slab of rows
    and every tap. The source rows that its rows read are first copied into a ring of
    ``(fh - 1)*dh + 1`` rows (at most ``H``; each row once per job, then read from cache by
    every tap that reads it), zero-padded, in column phases (:func:`_expand_row`) and with each
    input channel repeated for its ``mult`` output channels: a tap then reads, for the pixels
    of a row, one contiguous run laid out as the row of dy. Rows of padding read a zero row of
    the ring (their products with dy are zero, or NaN where dy is not finite, as in the
    reference). Against a padded copy of the whole input, 0.74-0.83 of the time of a MobileNet
    3x3 layer's gradient; few channels or a channel multiplier, 0.04-0.06.

    The gradient of a tap is the sum, over a row's runs, of their products with dy's rows,
    element by element: summed in periods of ``P`` elements (``P`` the least multiple of
    ``Cout`` that is whole vectors), ``TAPS`` taps at a time with their sums in registers over
    the run (:func:`_tap_sums`), the element ``i`` of a period adding to channel ``i % Cout``;
    the run's pixels past its last whole period are summed in memory. A row of 3 column taps
    at stride and dilation 1, of whole vectors of channels, is summed through a sliding window
    instead (:func:`_window_row`).
    """
    n_ch, sh, sw, dh, dw, rows_per_slab = meta[0], meta[1], meta[2], meta[3], meta[4], meta[6]
    top, left = meta[7], meta[8]
    _, n_h, row_len = src.shape
    _, fh, fw, _, n_out = out.shape
    n_images, n_oh, n_ow, _ = dy.shape
    x_flat, d_flat, o_flat = src.reshape(-1), dy.reshape(-1), out.reshape(-1)
    lanes = simd.VECTOR_BYTES // out.itemsize
    period = n_out
    while period % lanes:
        period += n_out
    span = n_ow * n_out  # a row's elements (pixels x channels)
    n_periods = span // period
    # a row's taps one pixel apart, each pixel whole vectors: a sliding window (_window_row)
    window = (simd.REGISTERS >= 32 and sw == 1 and dw == 1 and fw == WINDOW_TAPS
              and period == n_out)
    # the ring: its slots' padded rows, then a zero row
    cols = (n_ow - 1) * sw + (fw - 1) * dw + 1  # a padded row's columns
    phase_cols = -(-cols // sw)
    width = sw * phase_cols * n_out
    n_slots = max(1, min((fh - 1) * dh + 1, n_h))  # rows that a row's taps read, at most
    ring = np.zeros((n_slots + 1) * width, out.dtype)
    held = np.empty(n_slots, np.int64)  # the source row (n*n_h + ih) in each slot
    j_lo, j_hi = min(cols, left), min(cols, left + row_len // n_ch)  # columns of source ones
    n_taps = fh * fw
    acc = np.empty(n_taps * n_out, out.dtype)  # [fh, fw, n_out]
    sums = np.empty((n_taps + 1) * period, out.dtype)  # [taps, period], then a spare tap's
    ao = np.empty(TAPS, np.int64)
    xo = np.empty(TAPS, np.int64)
    for job in range(first, last):
        acc[:] = 0
        sums[:] = 0
        held[:] = -1
        row_lo = job * rows_per_slab
        for r in range(row_lo, min(row_lo + rows_per_slab, n_images * n_oh)):
            n, oh = r // n_oh, r % n_oh
            d0 = r * span
            k = 0  # taps gathered for a vector run
            for kh in range(fh):
                ih = oh * sh + kh * dh - top
                x_row = n_slots * width  # the zero row, for padding
                if 0 <= ih < n_h:
                    x_row = ih % n_slots * width
                    if held[ih % n_slots] != n * n_h + ih:
                        held[ih % n_slots] = n * n_h + ih
                        _expand_row(ring, x_row, x_flat, (n * n_h + ih) * row_len, n_ch,
                                    n_out // n_ch, sw, phase_cols, j_lo, j_hi, left)
                if window and n_periods > 0:  # the row's taps, one pixel apart
                    _window_row(sums, kh * fw * period, ring, x_row, d_flat, d0, n_out, n_ow)
                    continue
                for kw in range(fw):
                    tap = kh * fw + kw
                    o = kw * dw  # pixel q reads padded column q*sw + o
                    x0 = x_row + (o % sw * phase_cols + o // sw) * n_out
                    a0 = np.uint64(tap * n_out)
                    for q in range(n_periods * period // n_out, n_ow):  # past the periods
                        x_q, d_q = np.uint64(x0 + q * n_out), np.uint64(d0 + q * n_out)
                        for c in range(np.uint64(n_out)):
                            acc[a0 + c] += ring[x_q + c] * d_flat[d_q + c]
                    if n_periods == 0:
                        continue
                    ao[k] = tap * period
                    xo[k] = x0
                    k += 1
                    if k == TAPS:
                        _vector_taps(sums, ao, ring, xo, period, d_flat, d0, period, n_periods)
                        k = 0
            if k > 0:  # the spare taps read the first tap's run into the spare sums
                for j in range(k, TAPS):
                    ao[j] = n_taps * period
                    xo[j] = xo[0]
                _vector_taps(sums, ao, ring, xo, period, d_flat, d0, period, n_periods)
        for tap in range(n_taps):
            for i in range(0, period, n_out):
                for c in range(n_out):
                    acc[tap * n_out + c] += sums[tap * period + i + c]
        for i in range(n_taps * n_out):  # (a slice assignment would cost seconds of compile
            o_flat[job * n_taps * n_out + i] = acc[i]  # time)
