"""The filter gradient of a strided, dilated, grouped 2-D convolution (a reduction over pixels).

::

    out[s, kh, kw, ci, g*cog + co] =
        sum over the rows (n, oh) of slab s, and ow, of
            src[n, oh*sh + kh*dh, (ow*sw + kw*dw)*C + g*cig + ci] * dy[n, oh, ow, g*d_g + co]

``src`` is the zero-padded NHWC input with its last two axes merged (``[N, Hs, Ws*C]``), ``dy`` the
output gradient ``[N, OH, OW, Cd]`` whose group ``g`` starts at channel ``g*d_g`` (``dy`` itself,
``d_g = cog``, or a copy whose groups are padded with zero channels to whole blocks),
``meta`` (int64) ``[C, sh, sw, dh, dw, groups, rows_per_slab, d_g, block]``. Each job owns one slab
``s`` (a range of ``rows_per_slab`` rows of the N*OH output rows), one row of taps ``kh`` and one
group, and writes only its own part of ``out`` ``[S, fh, fw, cig, Cout]``: threads never share
an output element, and the caller sums the slabs.

It is the outer-product kernel's micro-kernel (:mod:`.outer`) with the roles exchanged: a tile is
a few (column tap, input channel) pairs x a block of ``block`` output channels (16, or 8 where
that pads fewer: :func:`.outer.block_width`, unpaired) in vector registers (the taps of a row
read the same source rows, and few input channels still fill the tiles), reduced over the pixels
of every row of the slab (a row is a run: ``sw*C`` elements between its pixels in ``src``,
``Cd`` in ``dy``), a pass of rows at a time so that their rows of ``src`` and ``dy`` stay in
cache while every tile and every block of output channels reads them.
"""

import numpy as np

from .._jit import kernel
from .outer import check_runs, runs8_strided, runs16_strided, tile_pixels
from .simd import CHECK_BOUNDS

#: Pixels per pass (whole rows, at least one): their rows of src and dy stay in cache while every
#: tile and block reads them. Few: the pixels of a row are ``Cd`` (dy) and ``sw*C`` (src)
#: elements apart, often a multiple of 1 KiB, which puts them in a few sets of the L1 cache only
#: (256 float32 channels: 4 of 64). Against 256 pixels, 32 took 0.79-0.90 of the time (VAE
#: float64, DCGAN 8x8 and 16x16, ResNet), 16 up to 1.18x more ...
PASS_PIXELS = 32

#: ... unless a job's accumulators (every tile x block, reloaded by every pass) outgrow this
#: (the L2 cache): then passes of LONG_PASS_PIXELS (32 took 1.09x and 1.45x the time of 256 for
#: U-Net, 4 MiB of accumulators, and DCGAN 4x4x1024, 10 MiB).
ACC_CACHE_BYTES = 1024 * 1024
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
    n_tiles = -(-fw * cig // n_pix)
    tile = n_pix * block
    x_flat, d_flat, o_flat = src.reshape(-1), dy.reshape(-1), out.reshape(-1)
    # the tiles' (column tap kw, input channel ci) pairs i = kw*cig + ci (the last tile repeats
    # the last one): their offsets from a pixel's first source element, and their rows in out
    xo = np.empty(n_tiles * n_pix, np.int64)
    ci_out = np.empty(n_tiles * n_pix, np.int64)
    for i in range(n_tiles * n_pix):
        k = min(i, fw * cig - 1)
        xo[i] = k // cig * dw * n_ch + k % cig
        ci_out[i] = k * n_out
    zeros = np.zeros(block, out.dtype)
    acc = np.empty(blocks * n_tiles * tile, out.dtype)
    runs_x = np.empty(rows_per_slab, np.int64)
    runs_w = np.empty(rows_per_slab, np.int64)
    long = blocks * n_tiles * tile * out.itemsize > ACC_CACHE_BYTES
    per_pass = max(1, (LONG_PASS_PIXELS if long else PASS_PIXELS) // n_ow)
    for job in range(first, last):
        g = job % groups
        kh = job // groups % fh
        s = job // (groups * fh)
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
            for t in range(n_tiles):
                for b in range(blocks):
                    ao = (b * n_tiles + t) * tile
                    d_add = tap_out + b * block
                    # whole blocks go from the registers to out
                    end = cog - b * block >= block and r_hi == n_rows
                    if CHECK_BOUNDS:
                        check_runs(acc, ao, x_flat, xo, t * n_pix, n_pix, runs_x, runs_w, r_lo,
                                   r_hi, d_flat, b * block, n_ow, zeros, o_flat, ci_out, d_add,
                                   end, block, 1, sw * n_ch, d_ch)
                    if block == 16:
                        runs16_strided(acc, ao, x_flat, xo, t * n_pix, runs_x, runs_w, r_lo,
                                       r_hi, d_flat, b * block, n_ow, zeros, r_lo == 0, o_flat,
                                       ci_out, d_add, end, sw * n_ch, d_ch)
                    else:
                        runs8_strided(acc, ao, x_flat, xo, t * n_pix, runs_x, runs_w, r_lo,
                                      r_hi, d_flat, b * block, n_ow, zeros, r_lo == 0, o_flat,
                                      ci_out, d_add, end, sw * n_ch, d_ch)
        if cog % block:  # the last block is partial: from acc
            b = blocks - 1
            for k in range(fw * cig):
                at = (b * n_tiles * n_pix + k) * block
                for c in range(cog - b * block):
                    o_flat[tap_out + b * block + k * n_out + c] = acc[at + c]
