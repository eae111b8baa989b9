"""The filter gradient of a strided, dilated, grouped 2-D convolution (a reduction over pixels).

::

    out[s, kh, kw, ci, g*cog + co] =
        sum over the rows (n, oh) of slab s, and ow, of
            src[n, oh*sh + kh*dh, (ow*sw + kw*dw)*C + g*cig + ci] * dy[n, oh, ow, g*cog + co]

``src`` is the zero-padded NHWC input with its last two axes merged (``[N, Hs, Ws*C]``), ``dy`` the
output gradient ``[N, OH, OW, Cout]``, ``meta`` (int64) ``[C, sh, sw, dh, dw, groups,
rows_per_slab]``. Each job owns one slab ``s`` (a range of ``rows_per_slab``
rows of the N*OH output rows), one tap, one group and a block of 4 input channels, and writes only
its own part of ``out`` ``[S, fh, fw, cig, Cout]``: threads never share an output element, and the
caller sums the slabs.
"""

import numpy as np

from .._jit import kernel

BLOCK = 4


@kernel()
def filter_grad_serial(src, dy, out, meta, first, last):
    for job in range(first, last):
        n_ch, sh, sw, dh, dw, groups, rows_per_slab = (meta[0], meta[1], meta[2], meta[3], meta[4],
                                                       meta[5], meta[6])
        fh = out.shape[1]
        fw = out.shape[2]
        cig = out.shape[3]
        cog = dy.shape[3] // groups
        n_blocks = (cig + BLOCK - 1) // BLOCK
        b = job % n_blocks
        g = (job // n_blocks) % groups
        kw = (job // (n_blocks * groups)) % fw
        kh = (job // (n_blocks * groups * fw)) % fh
        s = job // (n_blocks * groups * fw * fh)
        ci0 = b * BLOCK
        n_ci = min(BLOCK, cig - ci0)
        i1 = ci0 + min(1, n_ci - 1)
        i2 = ci0 + min(2, n_ci - 1)
        i3 = ci0 + min(3, n_ci - 1)
        acc = np.empty((BLOCK, cog), out.dtype)
        for i in range(BLOCK):
            for co in range(cog):
                acc[i, co] = 0.0
        acc0 = acc[0]
        acc1 = acc[1]
        acc2 = acc[2]
        acc3 = acc[3]
        n_out_rows = dy.shape[1]
        row_hi = min((s + 1) * rows_per_slab, dy.shape[0] * n_out_rows)
        ch = g * cig
        for row in range(s * rows_per_slab, row_hi):
            n = row // n_out_rows
            oh = row % n_out_rows
            srow = src[n, oh * sh + kh * dh]
            dyrow = dy[n, oh]
            for ow in range(dy.shape[2]):
                o = (ow * sw + kw * dw) * n_ch + ch
                x0 = srow[o + ci0]
                x1 = srow[o + i1]
                x2 = srow[o + i2]
                x3 = srow[o + i3]
                d = dyrow[ow, g * cog:(g + 1) * cog]
                for co in range(cog):
                    dv = d[co]
                    acc0[co] += x0 * dv
                    acc1[co] += x1 * dv
                    acc2[co] += x2 * dv
                    acc3[co] += x3 * dv
        for i in range(n_ci):
            dst = out[s, kh, kw, ci0 + i]
            for co in range(cog):
                dst[g * cog + co] = acc[i, co]
