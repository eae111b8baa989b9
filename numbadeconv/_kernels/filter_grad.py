"""The filter gradient of a strided, dilated, grouped 2-D convolution (a reduction over pixels).

::

    out[s, kh, kw, ci, g*cog + co] =
        sum over the rows (n, oh) of slab s, and ow, of
            src[n, oh*sh + kh*dh, (ow*sw + kw*dw)*C + g*cig + ci] * dy[n, oh, ow, g*d_g + co]

``src`` is the zero-padded NHWC input with its last two axes merged (``[N, Hs, Ws*C]``), ``dy`` the
output gradient ``[N, OH, OW, Cd]`` whose group ``g`` starts at channel ``g*d_g`` (``dy`` itself,
``d_g = cog``, or a copy whose groups are padded with zero channels to whole blocks),
``meta`` (int64) ``[C, sh, sw, dh, dw, groups, rows_per_slab, d_g, block, acc_bytes, chunks]``.
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
accumulators take longer passes, over copies of their pixels (:data:`LONG_PASS_PIXELS`).
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
    n_chunks = meta[10]
    per_chunk = -(-blocks // n_chunks)  # blocks per job
    acc = np.empty(per_chunk * n_tiles * tile, out.dtype)  # [blocks of the job, tiles, tile]
    runs_x = np.empty(rows_per_slab, np.int64)
    runs_w = np.empty(rows_per_slab, np.int64)
    long = acc.size * out.itemsize > meta[9]
    per_pass = max(1, (LONG_PASS_PIXELS if long else PASS_PIXELS) // n_ow)
    # long passes: their pixels' pairs [tiles, pixels, n_pix] and dy [blocks of the job, pixels,
    # block], copied; xo_pack: the pairs' offsets there
    p_max = per_pass * n_ow if long else 0
    x_pack = np.empty(n_tiles * p_max * n_pix, out.dtype)
    d_pack = np.empty(per_chunk * p_max * block, out.dtype)
    xo_pack = np.empty(n_tiles * n_pix, np.int64)
    for i in range(n_tiles * n_pix):
        xo_pack[i] = (i // n_pix * p_max) * n_pix + i % n_pix
    one_run = np.zeros(1, np.int64)
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
            # the micro-kernel's operands: the pass's rows in place (a run each), or copied (one)
            x, x_off, rx, rw, r0, r1, w = x_flat, xo, runs_x, runs_w, r_lo, r_hi, d_flat
            span, x_step, w_step, w_block, w_first = n_ow, sw * n_ch, d_ch, block, 0
            if long:
                for r in range(r_lo, r_hi):
                    for q in range(n_ow):
                        p = (r - r_lo) * n_ow + q
                        at = runs_x[r] + q * sw * n_ch
                        for i in range(np.uint64(n_tiles * n_pix)):
                            x_pack[np.uint64(xo_pack[i] + p * n_pix)] = x_flat[
                                np.uint64(at + xo[i])]
                        at = runs_w[r] + q * d_ch
                        for b in range(b_lo, b_hi):
                            to = np.uint64(((b - b_lo) * p_max + p) * block)
                            fr = np.uint64(at + b * block)
                            for c in range(np.uint64(block)):
                                d_pack[to + c] = d_flat[fr + c]
                x, x_off, rx, rw, r0, r1, w = x_pack, xo_pack, one_run, one_run, 0, 1, d_pack
                span, x_step, w_step = (r_hi - r_lo) * n_ow, n_pix, block
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
                    if block == 16:
                        runs16_strided(acc, ao, x, x_off, t * n_pix, rx, rw, r0, r1, w, wo,
                                       span, zeros, r_lo == 0, o_flat, ci_out, d_add, end,
                                       x_step, w_step)
                    else:
                        runs8_strided(acc, ao, x, x_off, t * n_pix, rx, rw, r0, r1, w, wo,
                                      span, zeros, r_lo == 0, o_flat, ci_out, d_add, end, x_step,
                                      w_step)
        if cog % block and b_hi == blocks:  # the last block is partial: from acc
            b = blocks - 1
            for k in range(fw * cig):
                at = ((b - b_lo) * n_tiles * n_pix + k) * block
                for c in range(cog - b * block):
                    o_flat[tap_out + b * block + k * n_out + c] = acc[at + c]


#: Elements of the depthwise filter gradient's tiles of pixels (rounded down to whole pixels):
#: 32 channels (MobileNet) 0.84 and 8 channels 0.55 of the time of one pixel at a time; 96
#: channels (one pixel per tile) 1.2x, so they go one pixel at a time.
TILE_ELEMENTS = 128


@kernel()
def depthwise_filter_grad_serial(src, dy, out, meta, first, last):
    """The filter gradient of a depthwise convolution (``cig == 1``, ``groups == C``).

    ``meta`` is the first 7 entries of :func:`filter_grad_serial`'s; each job owns a slab of
    rows and every tap. Output channel ``oc`` reads input channel ``oc // mult``: the
    gradient of a tap is a sum over pixels of products of vectors of channels.
    """
    n_ch, sh, sw, dh, dw, rows_per_slab = meta[0], meta[1], meta[2], meta[3], meta[4], meta[6]
    _, fh, fw, _, n_out = out.shape
    n_images, n_oh, n_ow, _ = dy.shape
    mult = np.uint64(n_out // n_ch)
    x_flat, d_flat, o_flat = src.reshape(-1), dy.reshape(-1), out.reshape(-1)
    # with unit strides and a few channels, a row's products go to tiles of several pixels,
    # L elements (element i of the row, channel i % n_out, to tile[i % L]), the row one
    # contiguous run; else to one pixel's channels at a time
    runs = sw == 1 and mult == 1 and 2 * n_out <= TILE_ELEMENTS
    tile = TILE_ELEMENTS // n_out * n_out if runs else n_out
    acc = np.empty(fh * fw * tile, out.dtype)  # [fh, fw, tile]
    row_len = np.uint64(n_ow * n_out)
    for job in range(first, last):
        acc[:] = 0
        row_lo = job * rows_per_slab
        for r in range(row_lo, min(row_lo + rows_per_slab, n_images * n_oh)):
            n, oh = r // n_oh, r % n_oh
            for kh in range(fh):
                x_row = (n * src.shape[1] + oh * sh + kh * dh) * src.shape[2]
                for kw in range(fw):
                    a0 = np.uint64((kh * fw + kw) * tile)
                    if runs:
                        x0 = np.uint64(x_row + kw * dw * n_ch)
                        d0 = np.uint64(r) * row_len
                        for i0 in range(np.uint64(0), row_len, np.uint64(tile)):
                            for i in range(min(np.uint64(tile), row_len - i0)):
                                acc[a0 + i] += x_flat[x0 + i0 + i] * d_flat[d0 + i0 + i]
                        continue
                    for ow in range(n_ow):
                        x0 = np.uint64(x_row + (ow * sw + kw * dw) * n_ch)
                        d0 = np.uint64((r * n_ow + ow) * n_out)
                        if mult == 1:
                            for c in range(np.uint64(n_out)):
                                acc[a0 + c] += x_flat[x0 + c] * d_flat[d0 + c]
                        else:
                            for c in range(np.uint64(n_out)):
                                acc[a0 + c] += x_flat[x0 + c // mult] * d_flat[d0 + c]
        o = job * fh * fw * n_out
        for k in range(fh * fw):
            for c in range(n_out):
                total = acc[k * tile + c]
                for j in range(n_out + c, tile, n_out):
                    total += acc[k * tile + j]
                o_flat[o + k * n_out + c] = total
