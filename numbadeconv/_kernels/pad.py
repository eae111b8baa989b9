"""The zero-padded copy of an NHWC input that the tiled, vector and filter-gradient kernels read.

``out[n, i, j, c] = a[n, i - top, j - left, c]`` where that is inside ``a``, else 0, for
``out`` ``[N, height, width*C]`` (last two axes merged) and ``a`` ``[N, H, W*C]``; ``top`` and
``left`` are non-negative, and ``out`` may also crop ``a``. Each job
writes one row of ``out``; the parallel form spreads the rows over threads (a serial copy
would bound the speed-up of the kernels that follow it).
"""

from numba import prange

from .._jit import kernel


@kernel()
def pad_serial(a, out, top, left, first, last):
    """Rows ``first`` to ``last`` of ``out``; ``left`` counts elements (pixels x channels).

    Row ``j`` is row ``j % height`` of image ``j // height``.
    """
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
        lo = min(row_len, left)
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
