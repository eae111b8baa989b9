"""The channel-rich correlation kernel: register-blocked outer products in explicit SIMD vectors.

The same phase table and tap runs as the ``tiled`` kernel of
:mod:`numbadeconv._kernels.correlate` (read its docstring), with packed weights
``[G, n_blocks, all taps, cig, B]``: for each tap and input channel, ``B`` consecutive output
channels (zero past ``cog``), ``B = meta[17]``: 16, or 8 when a group has at most 8 output
channels (:func:`block_width`). The toffs entries from a phase's WS column on are its taps'
offsets within a block (``tap * cig * B``), ``meta[8]`` and ``meta[9]`` the block and group
strides. A job is a block of rows of one phase, for ``meta[14]`` images and ``meta[15]``
channel blocks: images are grouped so that the weights of a block, loaded into cache once,
serve enough pixels, and channel blocks are split when that leaves too few jobs.

A tile is P pixels x B output channels held in vector registers, P as large as the 16 AVX2
registers allow beside the block's weight vectors and a broadcast (:func:`tile_pixels`; float32,
B = 16: 6 pixels x 2 vectors of 8, B = 8: 12 x 1; float64: 2 x 4 and 6 x 2). For each input
element the tile does one broadcast per pixel and one fused multiply-add per accumulator; the
accumulators stay in registers over all the runs (taps) of a pixel, a chunk of each at a time,
start from the bias and, for full blocks of an NHWC result, end in the result itself; no
horizontal sum is needed. LLVM does not find this schedule from scalar code (it vectorises the
reduction loop instead), so :func:`_outer_runs` writes it in LLVM IR.
"""

import numpy as np
from llvmlite import ir
from numba import types
from numba.core import cgutils
from numba.extending import intrinsic, register_jitable

from .._jit import kernel
from . import simd
from .correlate import C0, R0, M, Q, T, U, _tap_runs, out_layout
from .simd import CHECK_BOUNDS

#: Vector registers (AVX2): a tile's accumulators, its weight vectors and a broadcast.
REGISTERS = 16

#: Most pixels per tile (each takes a general register for its source pointer).
MAX_PIXELS = 12

#: Bytes of weights (a chunk of every run x B) per pass over a job's tiles: half of an L1
#: cache, the rest holds the tiles' source runs.
CHUNK_BYTES = 16 * 1024


def block_width(cig: int, cog: int) -> int:
    """Output channels per block for groups of ``cig`` -> ``cog`` channels: 8 or 16.

    16 needs fewer loads per multiply-add (a broadcast serves two vectors); 8, for at most 8
    output channels, wastes less but needs an even ``cig`` (:func:`pair`).
    """
    return 8 if cog <= 8 and cig % 2 == 0 else 16


@register_jitable
def pair(block):
    """Input elements per broadcast: 2 for blocks of 8 channels, else 1.

    A block of 8 then holds 4 channels x 2 input elements per float32 vector, so that a broadcast
    (of a pair) still serves two vectors; the pairs are summed when the tile leaves the
    registers. Runs must be of even length.
    """
    return 2 if block == 8 else 1


@register_jitable
def tile_pixels(block, itemsize):
    """Pixels per tile of ``block`` channels of ``itemsize`` bytes.

    As many as the vector registers hold beside the block's weight vectors and a broadcast, at
    most MAX_PIXELS.
    """
    n_vec = block * pair(block) * itemsize // simd.VECTOR_BYTES
    return min(MAX_PIXELS, (REGISTERS - 1 - n_vec) // n_vec)


def _outer_runs(block: int, strided: bool = False):
    """The micro-kernel of ``block`` output channels: an intrinsic ``run``.

    ``run(acc, ao, x, xo, xs, runs_x, runs_w, r_lo, r_hi, w, wo, span, b, first, dst, out,
    d_add, direct)`` computes one tile's runs ``r_lo`` to ``r_hi``, ``span`` elements of each,
    in registers::

        acc[ao + p*B + c] += sum_{r, k} x[xo[xs + p] + runs_x[r] + k] * w[wo + runs_w[r] + k*B + c]

    for the tile's pixels ``p`` (``B = block``; the weights of a pair of elements interleaved,
    :func:`pair`, ``span`` a multiple of it): ``acc[ao:]`` holds the tile between calls;
    ``xo[xs:]`` (int64) the pixels' offsets in ``x``, ``runs_x`` and ``runs_w`` (int64) the runs'
    offsets. With ``first`` the tile starts from the bias ``b[:B]`` instead of ``acc``; with
    ``direct`` it ends in ``dst[out[xs + p] + d_add:]`` instead of ``acc``. ``strided``: ``run``
    takes two more arguments, ``x_step`` and ``w_step``, and element ``k`` of a run is at
    ``k*x_step`` in ``x`` and ``k*w_step`` in ``w`` (blocks of 16 only: no pairs). All offsets
    are in bounds.
    """
    if strided and pair(block) != 1:  # tile_pixels sizes the tiles of paired blocks
        raise ValueError(f"strided runs need a block of single elements, not {block}")
    n_pair = pair(block)

    def codegen(context, builder, signature, args):
        (acc_a, ao_v, x_a, xo_a, xs_v, rx_a, rw_a, r_lo_v, r_hi_v, w_a, wo_v, span_v, b_a,
         first_v, dst_a, out_a, d_add_v, direct_v, *steps) = args
        arg = signature.args
        v = simd.Vectors(context, builder, arg[0].dtype)
        lanes = v.lanes
        n_out = block // lanes  # vectors of a pixel's channels in acc, b and dst
        n_vec = n_out * n_pair  # ... and in registers
        n_pix = tile_pixels(block, simd.VECTOR_BYTES // lanes)
        acc_p = v.at(v.data(acc_a, arg[0]), ao_v)
        x_p = v.data(x_a, arg[2])
        xo_p = v.at(v.data(xo_a, arg[3]), xs_v)
        rx_p, rw_p = v.data(rx_a, arg[5]), v.data(rw_a, arg[6])
        w_p = v.at(v.data(w_a, arg[9]), wo_v)
        zero = ir.Constant(v.type, None)

        def spread(pointer):
            """A pixel's channels at ``pointer``, as the n_vec register vectors hold them."""
            vecs = [v.load(pointer, lanes * o) for o in range(n_out)]
            if n_pair == 1:
                return vecs
            half = lanes // 2  # channel c to lane 2c (of its half), the pair's partner 0
            return [v.interleave(vecs[i // 2], zero, [(i % 2) * half + j // 2 if j % 2 == 0
                                                      else lanes for j in range(lanes)])
                    for i in range(n_vec)]

        def gather(vecs):
            """The n_out vectors of a pixel's channels: each pair of lanes summed."""
            if n_pair == 1:
                return vecs
            return [builder.fadd(v.interleave(vecs[2 * o], vecs[2 * o + 1],
                                              list(range(0, 2 * lanes, 2))),
                                 v.interleave(vecs[2 * o], vecs[2 * o + 1],
                                              list(range(1, 2 * lanes, 2))))
                    for o in range(n_out)]

        # accumulators live in allocas, which LLVM promotes to registers
        slots = [cgutils.alloca_once(builder, v.type) for _ in range(n_pix * n_vec)]
        with builder.if_else(cgutils.is_true(builder, first_v)) as (from_bias, from_acc):
            with from_bias:
                bias = spread(v.data(b_a, arg[12]))
                for i, slot in enumerate(slots):
                    builder.store(bias[i % n_vec], slot)
            with from_acc:
                for j in range(n_pix):
                    for i, vec in enumerate(spread(v.at(acc_p, block * j))):
                        builder.store(vec, slots[j * n_vec + i])
        pixels = [v.at(x_p, v.item(xo_p, j)) for j in range(n_pix)]
        one = ir.Constant(simd.I64, 1)
        with cgutils.for_range_slice(builder, r_lo_v, r_hi_v, one) as (r, _):
            run_x = builder.load(builder.gep(rx_p, [r]))
            run_w = v.at(w_p, builder.load(builder.gep(rw_p, [r])))
            rows = [v.at(pixel, run_x) for pixel in pixels]
            # steps between consecutive elements (pairs) of a run, in x and in w
            x_step, w_step = steps or (ir.Constant(simd.I64, n_pair),
                                       ir.Constant(simd.I64, block * n_pair))
            n_steps = builder.sdiv(span_v, ir.Constant(simd.I64, n_pair))
            with cgutils.for_range(builder, n_steps) as loop:
                k = loop.index
                w_k = v.at(run_w, builder.mul(k, w_step))
                w_vecs = [v.load(w_k, lanes * i) for i in range(n_vec)]
                x_k = builder.mul(k, x_step)
                for j in range(n_pix):
                    bc = v.repeat(v.at(rows[j], x_k), n_pair)
                    for i in range(n_vec):
                        slot = slots[j * n_vec + i]
                        builder.store(v.fma(bc, w_vecs[i], builder.load(slot)), slot)
        results = [gather([builder.load(slots[j * n_vec + i]) for i in range(n_vec)])
                   for j in range(n_pix)]
        with builder.if_else(cgutils.is_true(builder, direct_v)) as (to_dst, to_acc):
            with to_dst:
                d_p = v.at(v.data(dst_a, arg[14]), d_add_v)
                out_p = v.at(v.data(out_a, arg[15]), xs_v)
                for j, vecs in enumerate(results):
                    d_j = v.at(d_p, v.item(out_p, j))
                    for o, vec in enumerate(vecs):
                        v.store(vec, d_j, lanes * o)
            with to_acc:
                for j, vecs in enumerate(results):
                    for o, vec in enumerate(vecs):
                        v.store(vec, acc_p, block * j + lanes * o)
        return context.get_dummy_value()

    if strided:
        @intrinsic
        def run_strided(typingctx, acc, ao, x, xo, xs, runs_x, runs_w, r_lo, r_hi, w, wo, span,
                        b, first, dst, out, d_add, direct, x_step, w_step):
            return types.void(acc, ao, x, xo, xs, runs_x, runs_w, r_lo, r_hi, w, wo, span, b,
                              first, dst, out, d_add, direct, x_step, w_step), codegen

        return run_strided

    @intrinsic
    def run(typingctx, acc, ao, x, xo, xs, runs_x, runs_w, r_lo, r_hi, w, wo, span, b, first,
            dst, out, d_add, direct):
        return types.void(acc, ao, x, xo, xs, runs_x, runs_w, r_lo, r_hi, w, wo, span, b, first,
                          dst, out, d_add, direct), codegen

    return run


_runs16 = _outer_runs(16)
_runs8 = _outer_runs(8)
#: Blocks of 16 channels over runs of any steps (the filter gradient's).
runs16_strided = _outer_runs(16, strided=True)


@kernel(internal=True)
def check_runs(acc, ao, x, xo, xs, n_pix, runs_x, runs_w, r_lo, r_hi, w, wo, span, b, dst, out,
               d_add, direct, block, step, x_step, w_step):
    """Raise IndexError unless every element that a call of ``_outer_runs`` touches is in bounds.

    Its arguments, with the tile's ``n_pix`` and ``block``: ``step`` elements of a run (a pair,
    or one) are ``x_step`` apart in ``x`` and ``w_step`` in ``w`` (the unit-step runs:
    ``pair(block)`` and ``block * pair(block)``).
    """
    ok = 0 <= ao and ao + n_pix * block <= acc.shape[0] and xs + n_pix <= xo.shape[0]
    ok = ok and 0 <= r_lo and r_hi <= runs_x.shape[0] and r_hi <= runs_w.shape[0]
    ok = ok and block <= b.shape[0] and span % step == 0
    n_steps = span // step
    for r in range(r_lo, r_hi if n_steps > 0 else r_lo):
        at = wo + runs_w[r]
        ok = ok and 0 <= at and at + (n_steps - 1) * w_step + block * step <= w.shape[0]
        for j in range(n_pix):
            at = xo[xs + j] + runs_x[r]
            ok = ok and 0 <= at and at + (n_steps - 1) * x_step + step <= x.shape[0]
    for j in range(n_pix if direct else 0):
        ok = ok and xs + j < out.shape[0]
        ok = ok and 0 <= out[xs + j] + d_add and out[xs + j] + d_add + block <= dst.shape[0]
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
    block = meta[17]
    n_pix = tile_pixels(block, dst.itemsize)
    tile = n_pix * block
    n_ch, ssh, ssw, rs, cs, groups = meta[0], meta[1], meta[2], meta[3], meta[4], meta[5]
    w_block, w_group = meta[8], meta[9]
    cig = n_ch // groups
    d_flat = dst.reshape(-1)
    _, _, n_out, s_img, s_row, s_col, s_ch = out_layout(dst, meta)
    cog = n_out // groups
    blocks = -(-cog // block)  # per group
    b_block = np.zeros(block, dst.dtype)
    for job in range(first, last):
        n_lo, n_hi, p, m_lo, m_hi, b_lo, b_hi = _outer_job(phases, meta, groups * blocks,
                                                             dst.shape[0], job)
        nq = phases[p, Q]
        tap_x = np.empty(phases[p, T] * phases[p, U], np.int64)
        tap_w = np.empty(phases[p, T] * phases[p, U], np.int64)
        n_taps, span = _tap_runs(phases, toffs, p, n_ch, cig, src.shape[2], tap_x, tap_w)
        # a pass takes runs whose weights fit in CHUNK_BYTES, or a chunk of one run
        most = max(1, CHUNK_BYTES // (block * dst.itemsize))
        chunk = max(1, -(-span // max(1, -(-span // most))))  # equal chunks of at most `most`
        chunk = -(-chunk // pair(block)) * pair(block)
        per_pass = max(1, most // max(1, span))
        # the job's pixels (images n_lo to n_hi, rows m_lo to m_hi, nq each) in tiles of n_pix
        # (the last tile repeats the last pixel): base and out, each pixel's offset in the source
        # and in dst
        n_pixels = (n_hi - n_lo) * (m_hi - m_lo) * nq
        n_tiles = -(-n_pixels // n_pix)
        base = np.empty(n_tiles * n_pix, np.int64)
        out = np.empty(n_tiles * n_pix, np.int64)
        i = 0
        for n in range(n_lo, n_hi):
            for m in range(m_lo, m_hi):
                x_row = (n * src.shape[1] + m * ssh) * src.shape[2]
                d_row = n * s_img + (phases[p, R0] + m * rs) * s_row + phases[p, C0] * s_col
                for q in range(nq):
                    base[i] = x_row + q * ssw * n_ch
                    out[i] = d_row + q * cs * s_col
                    i += 1
        for i in range(n_pixels, n_tiles * n_pix):
            base[i] = base[n_pixels - 1]
            out[i] = out[n_pixels - 1]
        xo = np.empty(n_tiles * n_pix, np.int64)
        acc = np.empty(n_tiles * tile, dst.dtype)
        for gb in range(b_lo, b_hi):
            g = gb // blocks
            cb = gb % blocks * block
            w0 = g * w_group + gb % blocks * w_block
            n_c = min(block, cog - cb)
            for c in range(n_c):
                b_block[c] = bias[g * cog + cb + c]
            for c in range(n_c, block):
                b_block[c] = 0
            # full blocks of contiguous channels (NHWC) go from the registers to dst
            direct = n_c == block and s_ch == 1 and n_taps > 0
            d_add = (g * cog + cb) * s_ch
            if n_taps == 0:  # no tap reaches this phase: the bias alone
                for i in range(n_tiles * n_pix):
                    for c in range(block):
                        acc[i * block + c] = b_block[c]
            # a pass's weights stay in L1 while every tile uses them
            for r_lo in range(0, n_taps, per_pass):
                r_hi = min(n_taps, r_lo + per_pass)
                for c0 in range(0, span, chunk):
                    for i in range(n_tiles * n_pix):
                        xo[i] = base[i] + g * cig + c0
                    wc = w0 + c0 * block
                    length = min(chunk, span - c0)
                    begin = r_lo == 0 and c0 == 0
                    end = direct and r_hi == n_taps and c0 + chunk >= span
                    for t_i in range(n_tiles):
                        ao, xs = t_i * tile, t_i * n_pix
                        if CHECK_BOUNDS:
                            check_runs(acc, ao, flat, xo, xs, n_pix, tap_x, tap_w, r_lo, r_hi,
                                       weights, wc, length, b_block, d_flat, out, d_add, end,
                                       block, pair(block), pair(block), block * pair(block))
                        if block == 16:
                            _runs16(acc, ao, flat, xo, xs, tap_x, tap_w, r_lo, r_hi, weights,
                                    wc, length, b_block, begin, d_flat, out, d_add, end)
                        else:
                            _runs8(acc, ao, flat, xo, xs, tap_x, tap_w, r_lo, r_hi, weights, wc,
                                   length, b_block, begin, d_flat, out, d_add, end)
            for i in range(0 if direct else n_pixels):
                at = out[i] + d_add
                for c in range(n_c):
                    d_flat[np.uint64(at + c * s_ch)] = acc[i * block + c]
