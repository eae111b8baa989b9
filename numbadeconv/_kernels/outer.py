"""The channel-rich correlation kernel: register-blocked outer products in explicit SIMD vectors.

The same phase table and tap runs as the ``tiled`` kernel of
:mod:`numbadeconv._kernels.correlate` (read its docstring), with packed weights
``[G, n_blocks, all taps, cig, B]``: for each tap and input channel, ``B`` consecutive output
channels (zero past ``cog``), ``B = meta[17]``: 16, 8 where that pads a group's output channels
less, where the target has AVX-512's registers 4 of its vectors (64 float32, 32 float64) or 32
float32 (:func:`block_width`). The toffs
entries from a phase's WS column on are its taps' offsets within a block (``tap * cig * B``),
``meta[8]`` and ``meta[9]`` the block and group strides. A job is a block of rows of one phase,
for ``meta[14]`` images and ``meta[15]`` channel blocks: images are grouped so that the weights
of a block, loaded into cache once, serve enough pixels, and channel blocks are split when that
leaves too few jobs.

A tile is P pixels x B output channels held in vector registers, P as large as the registers
allow beside the block's weight vectors and a broadcast (:func:`tile_pixels`): in AVX2's 16,
float32 6 pixels x 2 vectors, of 8 channels for B = 16 and of 4 channels x 2 elements for B = 8
(12 pixels x 1 vector of 8 channels where the input channels are odd: :func:`pair`); tiles of 4
vectors (float32 B = 32, float64 B = 16; and of AVX-512's vectors of 64 bytes, float32 B = 64,
float64 B = 32: :func:`vector_bytes`) 6 pixels in AVX-512's 32, else 2. For each input
element the tile does one broadcast per pixel and one fused multiply-add per accumulator; the
accumulators stay in registers over all the runs (taps) of a pixel (in passes of at most
CHUNK_BYTES of weights), start from the bias and, for full blocks of an NHWC result, end in the
result itself; no horizontal sum is needed. LLVM does not find this schedule from scalar code
(it vectorises the reduction loop instead), so :func:`_outer_runs` writes it in LLVM IR.

Taps that read the zero padding only are skipped: a job's pixels go in segments that read inside
the same taps, each in tiles of its own (:mod:`.segments`; small images lose most to padding: a
4x4x1024 DCGAN transpose, 28 % of its taps). A segment's pixels past its whole tiles go in small
tiles (:func:`small_tile_pixels`) rather than in one more whole tile that repeats its last pixel
(the one-pixel columns at a ResNet layer's left and right edges). When ``meta[20]`` is 1, ``src``
is the source itself, not the padded frame (no padded copy of the input); when ``meta[21]`` is 1
too, an NCHW source as it is (no layout conversion): a tap's run is then its input channels, a
plane apart, one element per broadcast (no merged runs, no pairs), at the same speed where the
planes do not map a pixel's channels to few sets of the caches (``_engine``).
"""

import numpy as np
from llvmlite import ir
from numba import types
from numba.core import cgutils
from numba.extending import intrinsic, register_jitable

from .._jit import kernel
from . import copies, segments, simd
from .correlate import MERGED, M, U, _tap_runs, out_layout, src_layout
from .simd import CHECK_BOUNDS

#: Vector registers (AVX2's) of a tile of fewer than WIDE vectors per pixel: its accumulators,
#: its weight vectors and a broadcast ...
REGISTERS = 16

#: ... tiles of WIDE or more vectors per pixel take all of :data:`.simd.REGISTERS` (AVX-512's 32
#: where the target has them): 6 pixels x 4 vectors, where 16 registers hold 2 pixels. Tiles of
#: 2 vectors stay in 16 (with more pixels in 32, 8-12 of them, channel-rich layers took 1.07-1.31x
#: the time), in AVX2's encoding (:func:`.simd.vex_only`).
WIDE = 4

#: Most pixels per tile (each takes a general register for its source pointer).
MAX_PIXELS = 12

#: Bytes of weights (a chunk of every run x B) per pass over a job's tiles: an L2 cache. Each
#: tile reads them from L2 and keeps its accumulators in registers over all of them; passes of
#: half an L1 cache (16 KiB), whose weights stayed in L1, stored and reloaded the accumulators
#: between passes and took 1.01-1.06x the time of channel-rich layers on two threads (256 KiB:
#: 1.00-1.04x).
CHUNK_BYTES = 1024 * 1024


def block_width(cig: int, cog: int, itemsize: int, widest: bool = True) -> int:
    """Output channels per block for groups of ``cig`` -> ``cog`` channels: 8 to 64.

    For elements of ``itemsize`` bytes, where the target has the registers for tiles of
    :data:`WIDE` vectors (AVX-512's, :data:`.simd.REGISTERS`) and the channels are whole blocks
    of them: with ``widest``, 4 of AVX-512's vectors (64 float32, 32 float64: tiles of 6 pixels x
    4 ``zmm`` registers, :func:`vector_bytes`; a kernel-only test of 3x3 64 -> 64 jobs on 56x56,
    229-230 GFLOP/s against 226-227 in blocks of 32, on 28x28x256 232 against 230), else 4
    AVX2 vectors of float32 (32: a broadcast for every 4 vectors of multiply-adds, not 2;
    channel-rich layers 0.88-0.98 of the time of blocks of 16, on one thread and on two; the
    first layer, 1 -> 32, 0.79-0.85). Else 8 where that pads fewer channels than 16 would (8 or
    fewer, 24, 40, ...): a tile of either does about as many multiply-adds per vector of
    weights loaded, so the one with fewer padding channels does less work (24 channels:
    1.2-1.3x faster than in blocks of 16; 3 -> 3 channels, unpaired (:func:`pair`): 1.35x).
    Float64 blocks of 16 are 4 vectors already (6 pixels of them in 32 registers; a VAE
    decoder layer's 0.92-0.96 of the time of blocks of 32, 2 pixels x 8 vectors).
    """
    if simd.REGISTERS >= 32:
        for vector in (simd.WIDE_VECTOR_BYTES, simd.VECTOR_BYTES)[0 if widest else 1:]:
            wide = WIDE * vector // itemsize
            if wide > 16 and cog % wide == 0:
                return wide
    return 8 if -(-cog // 8) * 8 < -(-cog // 16) * 16 else 16


@register_jitable
def vector_bytes(block, itemsize):
    """Bytes per vector of the tiles of ``block`` channels: AVX-512's for blocks of 4 of them."""
    if block * itemsize >= WIDE * simd.WIDE_VECTOR_BYTES:
        return simd.WIDE_VECTOR_BYTES
    return simd.VECTOR_BYTES


@register_jitable
def pair(block, cig):
    """Input elements per broadcast: 2 for blocks of 8 channels of an even ``cig``, else 1.

    A block of 8 then holds 4 channels x 2 input elements per float32 vector, so that a broadcast
    (of a pair) still serves two vectors; the pairs are summed when the tile leaves the
    registers. Runs must be of even length, hence an even ``cig`` (odd: 12 pixels x 8 channels
    of single elements, 1.1-1.25x slower per multiply-add than pairs).
    """
    return 2 if block == 8 and cig % 2 == 0 else 1


@register_jitable
def _pixel_vectors(block, itemsize, n_pair):
    """Vector registers of a tile's pixel: ``block`` channels of ``n_pair`` elements each."""
    return block * n_pair * itemsize // vector_bytes(block, itemsize)


@register_jitable
def tile_pixels(block, itemsize, n_pair):
    """Pixels per tile of ``block`` channels of ``itemsize`` bytes, ``n_pair`` elements each.

    As many as the vector registers hold beside the block's weight vectors and a broadcast
    (:data:`REGISTERS`, or :data:`.simd.REGISTERS` for :data:`WIDE` tiles), at most MAX_PIXELS.
    ``n_pair``: :func:`pair` of the block, or 1 for strided runs.
    """
    n_vec = _pixel_vectors(block, itemsize, n_pair)
    registers = simd.REGISTERS if n_vec >= WIDE else REGISTERS
    return min(MAX_PIXELS, (registers - 1 - n_vec) // n_vec)


#: Accumulators of a segment's last, smaller tiles (:func:`small_tile_pixels`): as many as a core's
#: two fused multiply-add pipes of 4 cycles' latency keep busy (Zen 4, and Intel's since Skylake).
#: Against whole tiles that repeat a segment's last pixel, 2 threads: the ResNet 1x1 bottleneck
#: 0.97-0.985 of the time, sparse coding's 11x11 1 -> 32 0.96-0.98, a first layer 0.96-0.98, a
#: grouped transpose 0.96-0.985, ResNet 3x3 56x56x64 0.985-0.993; the others within noise.
SMALL_TILE_ACCUMULATORS = 8


@register_jitable
def small_tile_pixels(block, itemsize, n_pair):
    """Pixels per small tile: a segment's pixels past its whole tiles (:func:`tile_pixels`).

    As many as hold :data:`SMALL_TILE_ACCUMULATORS` vectors: 2 pixels of 4 vectors, 4 of 2.
    """
    return min(tile_pixels(block, itemsize, n_pair),
               max(1, SMALL_TILE_ACCUMULATORS // _pixel_vectors(block, itemsize, n_pair)))


def _outer_runs(block: int, n_pair: int = 1, strided: bool = False, x_strided: bool = False,
                inline: bool = False):
    """The micro-kernel of ``block`` output channels, ``n_pair`` elements per broadcast.

    ``run(acc, ao, x, xo, xs, runs_x, runs_w, r_lo, r_hi, w, wo, span, b, first, dst, out,
    d_add, direct, n_tiles, n_small, x_step, w_step)`` computes ``n_tiles`` consecutive tiles'
    runs ``r_lo`` to ``r_hi``, ``span`` elements of each, a tile at a time in registers, then
    ``n_small`` smaller tiles' (of :func:`small_tile_pixels`)::

        acc[ao + p*B + c] += sum_{r, k} x[xo[xs + p] + runs_x[r] + k*x_step]
                                        * w[wo + runs_w[r] + k*w_step + c]

    for the tiles' pixels ``p < n_tiles * P + n_small * S`` (``B = block``, ``P`` pixels per tile,
    :func:`tile_pixels`, ``S`` per small tile; with ``n_pair`` 2, element pairs ``k`` and
    ``k + 1``, ``x_step`` 2 and ``w_step`` 2B, their weights interleaved, :func:`pair`, ``span``
    a multiple of 2): ``acc[ao:]`` holds the tiles between calls;
    ``xo[xs:]`` (int64) the pixels' offsets in ``x``, ``runs_x`` and ``runs_w`` (int64) the runs'
    offsets. With ``first`` a tile starts from the bias ``b[:B]`` instead of ``acc``; with
    ``direct`` it ends in ``dst[out[xs + p] + d_add:]`` instead of ``acc``. The steps are
    compiled in (``n_pair`` and ``n_pair*B``) unless ``strided`` (both taken at run time; no
    small tiles, ``n_small`` 0: the filter gradient's and the planar kernel's runs) or
    ``x_strided`` (``x_step`` at run time, ``w_step`` B: the runs of an NHWC source, step 1, or
    an NCHW one, a plane); single elements when either. All offsets are in bounds.

    The tiles' code is a function of its own in the calling kernel's module, compiled in AVX2's
    16 vector registers (:func:`.simd.vex_only`) unless its tiles are :data:`WIDE`, and unless
    ``inline``: inlined into its own loops, the outer-product kernel took 1.09-1.12x the time of
    channel-rich layers (the same instructions in the loop; the cause is not known), and tiles
    of 2 vectors in AVX-512's registers 1.02-1.07x. The filter gradient's strided runs are out
    of line too (tiles of 2 vectors in AVX2's registers: 0.96-0.98 of the channel-rich filter
    gradients' time); the planar kernel's, short and called from a simpler loop, are inlined.
    """
    def codegen(context, builder, signature, args):
        (acc_a, ao_v, x_a, xo_a, xs_v, rx_a, rw_a, r_lo_v, r_hi_v, w_a, wo_v, span_v, b_a,
         first_v, dst_a, out_a, d_add_v, direct_v, n_tiles_v, n_small_v, x_step_v, w_step_v) = args
        arg = signature.args
        v = simd.Vectors(context, builder, arg[0].dtype)
        # the arrays' data pointers, at the offsets the call gives, and the scalars
        pointers = [v.at(v.data(acc_a, arg[0]), ao_v), v.data(x_a, arg[2]),
                    v.at(v.data(xo_a, arg[3]), xs_v), v.data(rx_a, arg[5]),
                    v.data(rw_a, arg[6]), v.at(v.data(w_a, arg[9]), wo_v),
                    v.data(b_a, arg[12]), v.at(v.data(dst_a, arg[14]), d_add_v),
                    v.at(v.data(out_a, arg[15]), xs_v)]
        flags = [context.cast(builder, first_v, arg[13], types.boolean),
                 context.cast(builder, direct_v, arg[17], types.boolean)]
        scalars = [r_lo_v, r_hi_v, span_v, n_tiles_v, n_small_v, x_step_v, w_step_v]
        function = tile_function(context, builder.module, arg[0].dtype,
                                 [p.type for p in pointers])
        builder.call(function, [*pointers, *flags, *scalars])
        return context.get_dummy_value()

    def tile_function(context, module, dtype, pointer_types):
        """The tiles' code, as a function of its own in ``module`` (emitted once per module)."""
        name = (f"numbadeconv.outer_runs.{block}.{n_pair}.{int(strided)}.{int(x_strided)}."
                f"{int(inline)}.{dtype}")
        found = module.globals.get(name)
        if found is not None:
            return found
        flag = ir.IntType(1)
        function = ir.Function(module, ir.FunctionType(
            ir.VoidType(), [*pointer_types, flag, flag, *[simd.I64] * 7]), name)
        function.linkage = "internal"
        function.attributes.add("alwaysinline" if inline else "noinline")
        builder = ir.IRBuilder(function.append_basic_block("entry"))
        (acc_0, x_p, xo_0, rx_p, rw_p, w_p, b_p, d_p, out_0, first_v, direct_v, r_lo_v,
         r_hi_v, span_v, n_tiles_v, n_small_v, x_step_v, w_step_v) = function.args
        itemsize = 4 if dtype == types.float32 else 8
        v = simd.Vectors(context, builder, dtype, vector_bytes(block, itemsize))
        lanes = v.lanes
        n_out = block // lanes  # vectors of a pixel's channels in acc, b and dst
        n_vec = n_out * n_pair  # ... and in registers
        if not inline and n_vec < WIDE:
            simd.vex_only(context, function)
        n_pix = tile_pixels(block, itemsize, n_pair)
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
        slots = [builder.alloca(v.type) for _ in range(n_pix * n_vec)]

        def tiles(count, n_pix, acc_0, xo_0, out_0):
            """``count`` tiles of ``n_pix`` pixels: accumulators at acc_0, pixels at xo_0."""
            with cgutils.for_range(builder, count) as loop:
                acc_p = v.at(acc_0, builder.mul(loop.index, ir.Constant(simd.I64, n_pix * block)))
                xo_p, out_p = (v.at(p, builder.mul(loop.index, ir.Constant(simd.I64, n_pix)))
                               for p in (xo_0, out_0))
                with builder.if_else(first_v) as (from_bias, from_acc):
                    with from_bias:
                        bias = spread(b_p)
                        for i, slot in enumerate(slots[:n_pix * n_vec]):
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
                    x_step = x_step_v if strided or x_strided else ir.Constant(simd.I64, n_pair)
                    w_step = w_step_v if strided else ir.Constant(simd.I64, block * n_pair)
                    n_steps = builder.sdiv(span_v, ir.Constant(simd.I64, n_pair))
                    with cgutils.for_range(builder, n_steps) as steps:
                        k = steps.index
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
                with builder.if_else(direct_v) as (to_dst, to_acc):
                    with to_dst:
                        for j, vecs in enumerate(results):
                            d_j = v.at(d_p, v.item(out_p, j))
                            for o, vec in enumerate(vecs):
                                v.store(vec, d_j, lanes * o)
                    with to_acc:
                        for j, vecs in enumerate(results):
                            for o, vec in enumerate(vecs):
                                v.store(vec, acc_p, block * j + lanes * o)

        tiles(n_tiles_v, n_pix, acc_0, xo_0, out_0)
        if not strided:  # then the small tiles
            n_small = small_tile_pixels(block, itemsize, n_pair)
            done = builder.mul(n_tiles_v, ir.Constant(simd.I64, n_pix))
            tiles(n_small_v, n_small, v.at(acc_0, builder.mul(done,
                                                              ir.Constant(simd.I64, block))),
                  v.at(xo_0, done), v.at(out_0, done))
        builder.ret_void()
        return function

    @intrinsic
    def run(typingctx, acc, ao, x, xo, xs, runs_x, runs_w, r_lo, r_hi, w, wo, span, b, first,
            dst, out, d_add, direct, n_tiles, n_small, x_step, w_step):
        return types.void(acc, ao, x, xo, xs, runs_x, runs_w, r_lo, r_hi, w, wo, span, b, first,
                          dst, out, d_add, direct, n_tiles, n_small, x_step, w_step), codegen

    return run


#: This kernel's: blocks of 64 to 8 channels over runs of any steps (an NHWC source's elements
#: adjacent, an NCHW source's a plane apart), and blocks of 8 over pairs.
_runs64 = _outer_runs(64, x_strided=True)
_runs32 = _outer_runs(32, x_strided=True)
_runs16 = _outer_runs(16, x_strided=True)
_runs8_single = _outer_runs(8, x_strided=True)
_runs8 = _outer_runs(8, 2)
#: Blocks of 32, 16 and 8 channels over runs of any steps, no small tiles: the filter
#: gradient's, and inlined, the planar kernel's.
runs32_strided = _outer_runs(32, strided=True)
runs16_strided = _outer_runs(16, strided=True)
runs8_strided = _outer_runs(8, strided=True)
runs16_strided_inline = _outer_runs(16, strided=True, inline=True)
runs8_strided_inline = _outer_runs(8, strided=True, inline=True)


@kernel(internal=True)
def check_runs(acc, ao, x, xo, xs, n_pix, runs_x, runs_w, r_lo, r_hi, w, wo, span, b, dst, out,
               d_add, direct, block, step, x_step, w_step):
    """Raise IndexError unless every element that a call of ``_outer_runs`` touches is in bounds.

    Its arguments, with the tile's ``n_pix`` and ``block``: ``step`` elements of a run (a pair,
    or one) are ``x_step`` apart in ``x`` and ``w_step`` in ``w`` (the unit-step runs:
    ``n_pair`` and ``block * n_pair``, :func:`pair`).
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
    n_ch, groups = meta[0], meta[5]
    n_pair = pair(block, n_ch // groups)
    n_pix = tile_pixels(block, dst.itemsize, n_pair)
    n_small = small_tile_pixels(block, dst.itemsize, n_pair)
    w_block, w_group = meta[8], meta[9]
    cig = n_ch // groups
    d_flat = dst.reshape(-1)
    _, n_cols, n_out, s_img, s_row, s_col, s_ch = out_layout(dst, meta)
    _, x_row, x_col, x_ch = src_layout(src, meta)  # x_ch 1 (NHWC) or a plane (NCHW)
    adjacent = meta[4] * s_col == 1  # a row's pixels adjacent in dst (an NCHW convolution)
    lanes = simd.VECTOR_BYTES // dst.itemsize
    cog = n_out // groups
    blocks = -(-cog // block)  # per group
    b_block = np.zeros(block, dst.dtype)
    # scratch for the call's jobs, each of which fills what it reads (calls split jobs anywhere)
    tap_x = np.empty(toffs.shape[0], np.int64)  # toffs holds every phase's T*U taps
    tap_w = np.empty_like(tap_x)
    m_ranges = np.empty((3, meta[7] + 3), np.int64)  # see _tap_ranges
    q_ranges = np.empty((3, n_cols + 3), np.int64)
    for job in range(first, last):
        n_lo, n_hi, p, m_lo, m_hi, b_lo, b_hi = _outer_job(phases, meta, groups * blocks,
                                                             dst.shape[0], job)
        nu = phases[p, U]
        merged = phases[p, MERGED] != 0 and x_ch == 1
        n_taps, span = _tap_runs(phases, toffs, p, merged, x_col, cig, x_row, tap_x, tap_w)
        per_row = 1 if merged else nu  # runs per row tap
        # a pass takes runs whose weights fit in CHUNK_BYTES, or a chunk of one run
        most = max(1, CHUNK_BYTES // (block * dst.itemsize))
        chunk = max(1, -(-span // max(1, -(-span // most))))  # equal chunks of at most `most`
        chunk = -(-chunk // n_pair) * n_pair
        per_pass = max(1, most // max(1, span))
        # The job's pixels (images n_lo to n_hi, rows m_lo to m_hi) in segments that read
        # inside the same taps, each in tiles of n_pix (then of n_small) that skip the others'
        # runs (or the parts of merged runs)
        m_first, n_rc, q_first, n_cc, seg_slots, base, out = segments.split(
            src, meta, phases, toffs, p, n_lo, n_hi, m_lo, m_hi, s_img, s_row, s_col, n_pix,
            n_small, cig, m_ranges, q_ranges)
        n_seg = n_rc * n_cc
        n_used = seg_slots[n_seg]
        xo = np.empty(n_used, np.int64)
        acc = np.empty(n_used * block, dst.dtype)
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
            direct = n_c == block and s_ch == 1
            d_add = (g * cog + cb) * s_ch
            for s in range(n_seg):
                rc, cc = m_first + s // n_cc, q_first + s % n_cc  # its runs of rows, columns
                t_lo, t_hi = m_ranges[1, rc], m_ranges[2, rc]
                u_lo, u_hi = q_ranges[1, cc], q_ranges[2, cc]
                reads = t_lo < t_hi and u_lo < u_hi  # else only zeros (and no runs below)
                # the segment's tiles, then small tiles: their accumulators at ao, their pixels
                # at xs in xo
                n_slots = seg_slots[s + 1] - seg_slots[s]
                n_tiles = n_slots // n_pix
                n_rest = (n_slots - n_tiles * n_pix) // n_small
                ao, xs = seg_slots[s] * block, seg_slots[s]
                if not reads:  # the bias alone
                    for c in range(ao, ao + n_slots * block):
                        acc[c] = b_block[c % block]
                # the segment's runs: row taps t_lo to t_hi, each with runs a_lo to a_hi (their
                # last: last_run) and their elements first_e to end_e (merged: the columns'
                # channels); the runs of all row taps are contiguous when whole
                a_lo, a_hi = (0, 1) if merged else (u_lo, u_hi)
                first_e, end_e = (u_lo * cig, u_hi * cig) if merged else (0, span)
                whole = a_lo == 0 and a_hi == per_row
                last_run = (t_hi - 1) * per_row + a_hi - 1
                begin = True
                # passes of at most CHUNK_BYTES of weights, each over all the tiles
                for r_lo in range(0, n_taps, per_pass):
                    r_hi = min(n_taps, r_lo + per_pass)
                    for c0 in range(max(0, first_e - first_e % chunk), end_e, chunk):
                        e_lo, e_hi = max(c0, first_e), min(c0 + chunk, end_e)
                        for j in range(np.uint64(xs), np.uint64(xs + n_slots)):
                            xo[j] = base[j] + (g * cig + e_lo) * x_ch
                        wc = w0 + e_lo * block
                        t = t_lo
                        while t < t_hi:
                            lo = max(r_lo, t * per_row + a_lo)
                            hi = min(r_hi, t_hi * per_row if whole else t * per_row + a_hi)
                            t = t_hi if whole else t + 1
                            if lo >= hi:
                                continue
                            end = direct and hi == last_run + 1 and e_hi == end_e
                            if CHECK_BOUNDS:  # every slot's runs, accumulators and result
                                check_runs(acc, ao, flat, xo, xs, n_slots, tap_x, tap_w, lo, hi,
                                           weights, wc, e_hi - e_lo, b_block, d_flat, out, d_add,
                                           end, block, n_pair, n_pair * x_ch, block * n_pair)
                            if block == 64:
                                _runs64(acc, ao, flat, xo, xs, tap_x, tap_w, lo, hi, weights, wc,
                                        e_hi - e_lo, b_block, begin, d_flat, out, d_add, end,
                                        n_tiles, n_rest, x_ch, block)
                            elif block == 32:
                                _runs32(acc, ao, flat, xo, xs, tap_x, tap_w, lo, hi, weights, wc,
                                        e_hi - e_lo, b_block, begin, d_flat, out, d_add, end,
                                        n_tiles, n_rest, x_ch, block)
                            elif block == 16:
                                _runs16(acc, ao, flat, xo, xs, tap_x, tap_w, lo, hi, weights, wc,
                                        e_hi - e_lo, b_block, begin, d_flat, out, d_add, end,
                                        n_tiles, n_rest, x_ch, block)
                            elif n_pair == 2:
                                _runs8(acc, ao, flat, xo, xs, tap_x, tap_w, lo, hi, weights, wc,
                                       e_hi - e_lo, b_block, begin, d_flat, out, d_add, end,
                                       n_tiles, n_rest, 2, 2 * block)
                            else:
                                _runs8_single(acc, ao, flat, xo, xs, tap_x, tap_w, lo, hi,
                                              weights, wc, e_hi - e_lo, b_block, begin, d_flat,
                                              out, d_add, end, n_tiles, n_rest, x_ch, block)
                            begin = False
                if direct and reads:
                    continue
                # results not stored from the registers go from acc to dst: an NCHW result's
                # pixels lie together, its channels a plane apart (a plane of 4 KB multiples puts
                # a pixel's channels in one L1 set: a 64x64 1 -> 32 layer stored pixel by pixel
                # took 8x the time): a convolution's rows (adjacent pixels) in register-tile
                # transposes, else a channel at a time
                length = q_ranges[0, cc + 1] - q_ranges[0, cc]  # a row's pixels in the segment
                if adjacent and n_c >= lanes:
                    for r in range((n_hi - n_lo) * (m_ranges[0, rc + 1] - m_ranges[0, rc])):
                        j = xs + r * length
                        copies.transpose(acc, j * block, block, d_flat, out[j] + d_add, s_ch,
                                         length, n_c)
                    continue
                for c in range(n_c):
                    at = d_add + c * s_ch
                    for j in range(xs, xs + n_slots):
                        d_flat[np.uint64(out[j] + at)] = acc[j * block + c]
