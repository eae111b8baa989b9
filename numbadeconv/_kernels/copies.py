"""The copies some kernels read instead of the arguments: a padded input and packed filters.

Both run as jobs, serially (``X_serial`` over jobs ``first`` to ``last``) or spread over threads
(``X_parallel``): a serial copy would bound the speed-up of the kernel that follows it.

``pad``: the zero-padded copy of an NHWC input that the tiled, vector and filter-gradient
kernels read. ``out[n, i, j, c] = a[n, i - top, j - left, c]`` where that is inside ``a``, else
0, for ``out`` ``[N, height, width*C]`` (last two axes merged) and ``a`` ``[N, H, W*C]``; ``top``
and ``left`` are non-negative, and ``out`` may also crop ``a``. Job ``j`` writes row ``j`` of
the ``N*height`` rows.

``pack``: the outer-product kernel's filters ``out[G, blocks, taps, cig, B]`` (see
:mod:`.outer`), zero past the ``cog`` channels of a group: the weight of tap ``k``, group ``g``,
input channel ``ci``, output channel ``co`` is ``w[bases[k] + ci*s_ci + g*s_g + co*s_co]``, with
``meta = [cig, cog, groups, blocks, B, s_ci, s_g, s_co]``. Job ``j`` writes one (group, block,
tap).
"""

from numba import prange

from .._jit import kernel


@kernel()
def pad_serial(a, out, top, left, first, last):
    n_ch_w = a.shape[2]  # W*C
    height = a.shape[1]
    row_len = out.shape[2]
    for job in range(first, last):
        n = job // out.shape[1]
        i = job % out.shape[1]
        dst = out[n, i]
        r = i - top
        if r < 0 or r >= height:
            for k in range(row_len):
                dst[k] = 0
            continue
        src = a[n, r]
        lo = min(row_len, left)  # ``left`` counts elements (pixels x channels)
        hi = min(row_len, lo + n_ch_w)
        for k in range(lo):
            dst[k] = 0
        run = dst[lo:hi]
        for k in range(hi - lo):
            run[k] = src[k]
        for k in range(hi, row_len):
            dst[k] = 0


@kernel(parallel=True)
def pad_parallel(a, out, top, left):
    for j in prange(out.shape[0] * out.shape[1]):
        pad_serial(a, out, top, left, j, j + 1)


@kernel()
def pack_serial(w, bases, meta, out, first, last):
    cig, cog, blocks, width, s_ci, s_g, s_co = (meta[0], meta[1], meta[3], meta[4], meta[5],
                                                 meta[6], meta[7])
    n_taps = bases.shape[0]
    for job in range(first, last):
        k = job % n_taps
        b = job // n_taps % blocks
        g = job // (n_taps * blocks)
        dst = out[job * cig * width:(job + 1) * cig * width]
        for j in range(width):
            co = b * width + j
            if co >= cog:
                for ci in range(cig):
                    dst[ci * width + j] = 0
                continue
            o = bases[k] + g * s_g + co * s_co
            for ci in range(cig):
                dst[ci * width + j] = w[o + ci * s_ci]


@kernel(parallel=True)
def pack_parallel(w, bases, meta, out):
    for j in prange(meta[2] * meta[3] * bases.shape[0]):
        pack_serial(w, bases, meta, out, j, j + 1)
