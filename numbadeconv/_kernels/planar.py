"""NCHW convolutions of few input channels, with a row's output pixels in the vector lanes.

The other kernels hold output channels in the lanes; for an NCHW result they then transpose
every row of pixels into the channels' planes, and for an NCHW input the engine converts it to
NHWC first. Where a pixel's reduction is short (a first layer's one to a few input channels),
those copies cost more than the multiply-adds (a 64x64 one-channel image to 32 channels: 1.5-1.9
ms in NCHW against 0.45-0.65 in NHWC). This kernel reads the input's planes and writes the
result's planes as they are: for a unit-step correlation (one phase, source steps 1, column taps
evenly spaced)::

    dst[n, co, y, x] = bias[g*Cout + co] + sum_{ci, t, u} src[n*C + ci, y + rows[t],
                                                              x + c0 + u*u_step]
                                           * weights[(((g*Cout + co)*C + ci)*T + t)*U + u]

with ``g = n % G``: ``C`` and ``Cout`` are a group's channels, and a grouped correlation's images
``n`` are its images' groups (an RGB image's per-channel filters: three images of one plane,
each with its own filters); ``G`` is 1 without groups.

``src`` ``[N*C, Hp, Wp]`` holds the input's planes, zero-padded as the padding needs (``rows`` and
the column offsets ``c0 + u*u_step`` are into them), with zero rows below each plane when a row of
``dst`` is shorter than a tile; ``dst`` is ``[N, Cout, OH, OW]``. A tile is ``n_pix`` output
channels (:func:`.outer.tile_pixels`) x ``2*lanes`` pixels of a row (16 float32, 8 float64) in
registers: the outer-product micro-kernel with the roles swapped (:func:`.outer._outer_runs`,
``strided``): the weights broadcast, the source rows loaded as vectors, one run per (input channel,
row tap) with the column taps as its elements. A tile's channels are stored a line of pixels each,
straight from the registers; a row's last tile ends at its last pixel, overlapping the tile before
it (those pixels are computed and stored twice), and a row shorter than a tile is computed in a
whole tile, which reads into the next rows (the zero rows, below the last), and only its own pixels
go to ``dst``. The last tile of channels repeats its last channel.

Fewer output channels than a tile holds (one, for a single-channel image's filter) would leave
most of it repeating them: a tile's channels are then ``band`` rows of each output channel
instead, pseudo-channel ``co*band + dy`` being row ``y + dy`` of channel ``co``. They share the
source rows of ``band + T - 1`` row taps, pseudo-channel ``dy`` with weight ``w[t]`` at row tap
``dy + t`` and zero at the others (the engine lays the weights out so, and ``toffs`` holds those
row taps). A zero weight times an Inf or NaN would put a NaN where no tap reads it: such a source
takes ``band`` 1 (the engine checks). A plane's rows go ``band`` at a time, the last ``band`` ending
at its last row (overlapping the ones before: those rows are computed again, from the same nonzero
terms in the same order, and stored twice).

``toffs`` holds the row taps' offsets ``rows``; ``meta`` (int64) is ``[C, Cout, T, U, u_step, c0,
OH, OW, Hp, Wp, rows_per_job, n_row_blocks, tiles_per_job, n_chunks, band, G]`` (rows of
``band`` output rows, ``T`` row taps as above). Job ``j`` is (image, block of rows of ``band``,
chunk of channel tiles), the chunk innermost.
"""

import numpy as np
from numba.extending import register_jitable

from .._jit import kernel
from . import simd
from .outer import check_runs, runs8_strided_inline, runs16_strided_inline, tile_pixels
from .simd import CHECK_BOUNDS


@register_jitable
def tile_shape(itemsize):
    """(output channels, pixels) of a tile of elements of ``itemsize`` bytes: 6 x two vectors."""
    block = 2 * simd.VECTOR_BYTES // itemsize
    return tile_pixels(block, itemsize, 1), block


@kernel()
def planar_serial(src, weights, dst, toffs, meta, bias, first, last):
    cig, n_out, n_t, n_u, u_step, c0 = meta[0], meta[1], meta[2], meta[3], meta[4], meta[5]
    oh, ow, hp, wp = meta[6], meta[7], meta[8], meta[9]
    rows, n_row_blocks, tiles, n_chunks, band = meta[10], meta[11], meta[12], meta[13], meta[14]
    n_pseudo = n_out * band  # the tiles' channels: row dy of channel co is co*band + dy
    groups = meta[15]  # grouped: image n is group n % groups (of C planes), with its filters
    n_pix, block = tile_shape(dst.itemsize)  # output channels x pixels
    tile = n_pix * block
    plane = hp * wp
    x = src.reshape(-1)
    d_flat = dst.reshape(-1)
    n_runs = cig * n_t  # a run: the column taps of one (input channel, row tap)
    runs_x = np.empty(n_runs, np.int64)  # in the weights (the broadcasts)
    runs_w = np.empty(n_runs, np.int64)  # in the source planes (the vectors)
    for r in range(n_runs):
        runs_x[r] = r * n_u
        runs_w[r] = r // n_t * plane + toffs[r % n_t] * wp + c0
    acc = np.empty(2 * tile, dst.dtype)  # the tile's biases, then a row shorter than a tile
    xo = np.empty(n_pix, np.int64)
    out = np.empty(n_pix, np.int64)
    n_tiles = -(-n_pseudo // n_pix)
    for job in range(first, last):
        chunk = job % n_chunks
        rest = job // n_chunks
        y_lo = rest % n_row_blocks * rows
        n = rest // n_row_blocks
        g = n % groups
        for t in range(chunk * tiles, min(n_tiles, (chunk + 1) * tiles)):
            for p in range(n_pix):
                pseudo = min(t * n_pix + p, n_pseudo - 1)
                co = pseudo // band
                xo[p] = (g * n_pseudo + pseudo) * n_runs * n_u
                out[p] = (n * n_out + co) * oh * ow + pseudo % band * ow
                for c in range(block):
                    acc[p * block + c] = bias[g * n_out + co]
            for r_band in range(y_lo, min(-(-oh // band), y_lo + rows)):
                y = min(r_band * band, oh - band)  # the tile's first row
                wo = n * cig * plane + y * wp
                for i in range(-(-ow // block)):
                    # a row's last tile ends at its last pixel (overlapping the one before it),
                    # unless the row is shorter than a tile
                    x0 = min(i * block, ow - block) if ow >= block else 0
                    direct = ow >= block
                    ao = 0 if direct else tile
                    if not direct:  # the row's last pixels: a tile into acc, then theirs to dst
                        for k in range(tile):
                            acc[tile + k] = acc[k]
                    if CHECK_BOUNDS:
                        check_runs(acc, ao, weights, xo, 0, n_pix, runs_x, runs_w, 0, n_runs, x,
                                   wo + x0, n_u, acc, d_flat, out, y * ow + x0, direct, block, 1,
                                   1, u_step)
                    if block == 16:
                        runs16_strided_inline(acc, ao, weights, xo, 0, runs_x, runs_w, 0, n_runs,
                                              x, wo + x0, n_u, acc, False, d_flat, out,
                                              y * ow + x0, direct, 1, 0, 1, u_step)
                    else:
                        runs8_strided_inline(acc, ao, weights, xo, 0, runs_x, runs_w, 0, n_runs,
                                             x, wo + x0, n_u, acc, False, d_flat, out,
                                             y * ow + x0, direct, 1, 0, 1, u_step)
                    if not direct:
                        for p in range(n_pix):
                            for c in range(ow):
                                d_flat[out[p] + y * ow + c] = acc[tile + p * block + c]
