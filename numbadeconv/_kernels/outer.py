"""The channel-rich correlation kernel: register-blocked outer products in explicit SIMD vectors.

The same phase table and tap runs as the ``tiled`` kernel of
:mod:`numbadeconv._kernels.correlate` (read its docstring), with packed weights
``[G, n_blocks, all taps, cig, B]``: for each tap and input channel, ``B = 16`` consecutive
output channels (zero past ``cog``). The toffs entries from a phase's WS column on are its taps'
offsets within a block (``tap * cig * B``), ``meta[8]`` and ``meta[9]`` the block and group
strides. A job is a block of rows of one phase, for ``meta[14]`` images and ``meta[15]``
channel blocks: images are grouped so that the weights of a block, loaded into cache once,
serve enough pixels, and channel blocks are split when that leaves too few jobs.

A tile is P pixels x 16 output channels held in vector registers (float32: 6 pixels x 2 vectors
of 8; float64: 3 pixels x 4 vectors of 4: 12 accumulators of the 16 AVX2 registers either way).
For each input element of a run the tile does one broadcast per pixel and one fused multiply-add
per accumulator; the accumulators stay in registers across the whole run and no horizontal sum
is needed. LLVM does not find this schedule from scalar code (it vectorises the reduction loop
instead), so :func:`_outer_run` writes it in LLVM IR.
"""

import numpy as np
from llvmlite import ir
from numba import types
from numba.core import cgutils
from numba.extending import intrinsic

from .._jit import kernel
from . import simd
from .correlate import C0, R0, M, Q, T, U, _tap_runs, out_layout

#: Output channels per block (two float32 or four float64 vectors).
BLOCK = 16

#: Bytes of weights (a chunk of input elements x BLOCK) per pass over a job's tiles: half of an
#: L1 cache, the rest holds the tiles' source runs.
CHUNK_BYTES = 16 * 1024

def _pixels(dtype) -> int:
    """Pixels per tile: 12 accumulator vectors of 8 float32 or 4 float64."""
    return 6 if dtype == types.float32 else 3


@intrinsic
def _outer_run(typingctx, acc, ao, x, xo, xs, w, wo, span):
    """``acc[ao + p*16 + c] += sum_{k < span} x[xo[xs + p] + k] * w[wo + k*16 + c]``.

    For the tile's pixels ``p``: ``acc[ao:]`` holds the tile (loaded into registers first,
    stored back last), ``xo[xs:]`` (int64) the pixels' offsets in ``x``; all offsets are in
    bounds.
    """
    sig = types.void(acc, ao, x, xo, xs, w, wo, span)

    def codegen(context, builder, signature, args):
        acc_a, ao_v, x_a, xo_a, xs_v, w_a, wo_v, span_v = args
        v = simd.Vectors(context, builder, signature.args[0].dtype)
        n_vec = BLOCK // v.lanes
        n_pix = _pixels(signature.args[0].dtype)
        acc_p = v.at(v.data(acc_a, signature.args[0]), ao_v)
        x_p = v.data(x_a, signature.args[2])
        xo_p = v.at(v.data(xo_a, signature.args[3]), xs_v)
        w_p = v.at(v.data(w_a, signature.args[5]), wo_v)
        # accumulators live in allocas, which LLVM promotes to registers
        slots = []
        for i in range(n_pix * n_vec):
            slot = cgutils.alloca_once(builder, v.type)
            builder.store(v.load(acc_p, v.lanes * i), slot)
            slots.append(slot)
        rows = [v.at(x_p, v.item(xo_p, j)) for j in range(n_pix)]
        with cgutils.for_range(builder, span_v) as loop:
            k = loop.index
            w_k = v.at(w_p, builder.mul(k, ir.Constant(simd.I64, BLOCK)))
            w_vecs = [v.load(w_k, v.lanes * i) for i in range(n_vec)]
            for j in range(n_pix):
                b = v.splat(builder.load(v.at(rows[j], k)))
                for i in range(n_vec):
                    slot = slots[j * n_vec + i]
                    builder.store(v.fma(b, w_vecs[i], builder.load(slot)), slot)
        for i in range(n_pix * n_vec):
            v.store(builder.load(slots[i]), acc_p, v.lanes * i)
        return context.get_dummy_value()

    return sig, codegen


@kernel(internal=True)
def _check_run(acc, ao, x, xo, xs, n_pix, w, wo, span):
    """Raise IndexError unless every element that ``_outer_run`` would touch is in bounds."""
    ok = 0 <= ao and ao + n_pix * BLOCK <= acc.shape[0] and 0 <= wo
    ok = ok and wo + span * BLOCK <= w.shape[0] and xs + n_pix <= xo.shape[0]
    for j in range(n_pix):
        ok = ok and 0 <= xo[xs + j] and xo[xs + j] + span <= x.shape[0]
    if not ok:
        raise IndexError("outer-product kernel: a run would read or write out of bounds")


@kernel(internal=True)
def _outer_job(phases, meta, blocks, n_images, job):
    """Job ``job``: (first image, end image, phase, first row, end row, first and end block).

    Phase innermost, then row block, then block chunk, then image chunk; ``meta[14]`` images
    and ``meta[15]`` blocks (of all groups' ``blocks``) per job.
    """
    n_phases = phases.shape[0]
    n_row_blocks = meta[6]
    n_chunks = -(-blocks // meta[15])
    p = job % n_phases
    rest = job // n_phases
    m_lo = rest % n_row_blocks * meta[7]
    rest //= n_row_blocks
    b_lo = rest % n_chunks * meta[15]
    n_lo = rest // n_chunks * meta[14]
    return (n_lo, min(n_lo + meta[14], n_images), p, m_lo, min(m_lo + meta[7], phases[p, M]),
            b_lo, min(b_lo + meta[15], blocks))


@kernel()
def outer_serial(src, weights, dst, phases, toffs, meta, bias, first, last):
    flat = src.reshape(-1)
    n_pix = 6 if dst.itemsize == 4 else 3  # as _pixels, which the IR of _outer_run uses
    tile = n_pix * BLOCK
    n_ch, ssh, ssw, rs, cs, groups = meta[0], meta[1], meta[2], meta[3], meta[4], meta[5]
    w_block, w_group = meta[8], meta[9]
    cig = n_ch // groups
    d_flat = dst.reshape(-1)
    _, _, n_out, s_img, s_row, s_col, s_ch = out_layout(dst, meta)
    cog = n_out // groups
    blocks = -(-cog // BLOCK)  # per group
    chunk = CHUNK_BYTES // (BLOCK * dst.itemsize)
    for job in range(first, last):
        n_lo, n_hi, p, m_lo, m_hi, b_lo, b_hi = _outer_job(phases, meta, groups * blocks,
                                                             dst.shape[0], job)
        nq = phases[p, Q]
        tap_x = np.empty(phases[p, T] * phases[p, U], np.int64)
        tap_w = np.empty(phases[p, T] * phases[p, U], np.int64)
        n_taps, span = _tap_runs(phases, toffs, p, n_ch, cig, src.shape[2], tap_x, tap_w)
        # the job's pixels (images n_lo to n_hi, rows m_lo to m_hi, nq each) in tiles of n_pix
        # (the last tile repeats the last pixel); base: each pixel's source offset
        per_image = (m_hi - m_lo) * nq
        n_pixels = (n_hi - n_lo) * per_image
        n_tiles = -(-n_pixels // n_pix)
        base = np.empty(n_tiles * n_pix, np.int64)
        for i in range(n_tiles * n_pix):
            k = min(i, n_pixels - 1)
            base[i] = ((n_lo + k // per_image) * src.shape[1] + (m_lo + k % per_image // nq)
                       * ssh) * src.shape[2] + k % nq * ssw * n_ch
        xo = np.empty(n_tiles * n_pix, np.int64)
        acc = np.empty(n_tiles * tile, dst.dtype)
        for gb in range(b_lo, b_hi):
            g = gb // blocks
            cb = gb % blocks * BLOCK
            w0 = g * w_group + gb % blocks * w_block
            n_c = min(BLOCK, cog - cb)
            for i in range(n_tiles * n_pix):
                for c in range(BLOCK):
                    acc[i * BLOCK + c] = bias[g * cog + cb + c] if c < n_c else 0
            # a chunk of a run's weights stays in L1 while every tile uses it
            for k in range(n_taps):
                for c0 in range(0, span, chunk):
                    for i in range(n_tiles * n_pix):
                        xo[i] = base[i] + g * cig + tap_x[k] + c0
                    for t_i in range(n_tiles):
                        if simd.CHECK_BOUNDS:
                            _check_run(acc, t_i * tile, flat, xo, t_i * n_pix, n_pix, weights,
                                       w0 + tap_w[k] + c0 * BLOCK, min(chunk, span - c0))
                        _outer_run(acc, t_i * tile, flat, xo, t_i * n_pix, weights,
                                   w0 + tap_w[k] + c0 * BLOCK, min(chunk, span - c0))
            for i in range(n_pixels):
                at = ((n_lo + i // per_image) * s_img
                      + (phases[p, R0] + (m_lo + i % per_image // nq) * rs) * s_row
                      + (phases[p, C0] + i % nq * cs) * s_col + (g * cog + cb) * s_ch)
                for c in range(n_c):
                    d_flat[np.uint64(at + c * s_ch)] = acc[i * BLOCK + c]
