"""Depthwise correlation (one input channel per group) over whole output rows, unpadded source.

The same jobs and phase table as :mod:`numbadeconv._kernels.correlate` (read its docstring for
``phases``, ``toffs`` and the job order), with these differences:

- ``src`` ``[N, H, W*C]`` is *not* padded: ``meta[11]`` and ``meta[12]`` are the (top, left)
  padding that the tap offsets assume, and a tap whose source row or column falls outside
  ``src`` is skipped (it would read a zero). No padded copy of the input is made.
- ``groups == C`` and output channel ``c*mult + j`` reads input channel ``c`` only. The weights
  of a phase (from its WS column on) are tiles ``[mult, T, U, L]`` with
  ``tile[i] = w(channel i % C, j, t, u)``, ``L = meta[13]`` a multiple of C: along an output
  row laid out ``[Q, C]``, the weight of element ``i`` is ``tile[i % L]``.
- An output row (for each ``j``) is one contiguous vector of ``Q*C`` elements, written in
  ``dst`` itself when ``mult == 1``, the output column stride is 1 (a convolution) and ``dst``
  is NHWC, else in a row buffer that is then stored (channels first: ``meta[16]``).
- With at least one SIMD vector of channels, blocks of output rows whose row taps all read
  inside ``src`` are computed in explicit vector runs (LLVM IR), per pixel and channel vector
  with the rows' accumulators in registers: for a 3x3 window (:func:`_window_rows`) four rows
  from six consecutive source rows (stride 1), else two, the nine weight vectors in registers
  and each source vector loaded once for every row that reads it; for other windows
  (:func:`_window_any`) eight rows, each tap's weight vector loaded once for all of them. Edge
  pixels take runs of their own, their outside taps given zero weights.
- Other rows (rows near the top and bottom, fewer channels than a vector) are summed along the
  row in explicit vectors as well (:func:`_row_taps`: four vectors at a time, all taps
  innermost), over the pixels where every column tap reads inside ``src``; their edge pixels
  each with the taps that read inside.
- A source column stride ``ssw > 1`` makes a row's pixels non-contiguous. The vector runs step
  over them (``ssw*C`` elements per pixel); for the single rows, the source rows that a row
  needs are first split into column phases (pixel ``p`` to phase ``p % ssw``, position
  ``p // ssw``; only the phases that its taps read), so that every tap again reads a contiguous
  run.

The loops index flat arrays with unsigned offsets: Numba then emits no negative-index
wraparound, and LLVM vectorises them (with signed offsets it does not; with array views it
does, but each view costs reference counting). Every offset is in bounds by construction.
"""

import contextlib

import numpy as np
from llvmlite import ir
from numba import types
from numba.core import cgutils
from numba.extending import intrinsic

from .._jit import kernel
from . import copies, simd
from .correlate import C0, R0, _inside, _job, out_layout
from .simd import CHECK_BOUNDS


@kernel(internal=True)
def _fill(a, ao, b, e):
    """``a[ao:ao+e] = b[:e]``."""
    for i in range(np.uint64(e)):
        a[ao + i] = b[i]


@intrinsic
def _row_taps(typingctx, a, ao, b, x, xo, w, wo, wj, n_taps, first, end):
    """``a[ao + i] = b[i - s] + sum_k x[xo[k] + i] * w[wo[k] + wj + i - s]``, ``first <= i < end``.

    ``s`` is the start of ``i``'s chunk: ``first``, ``first + L``, ... (``L = len(b)``, the
    weight tiles' length); ``first`` is a multiple of the channel count (the tiles' period), and
    every tap ``k < n_taps`` (offsets ``xo`` and ``wo``, int64) is in bounds over the range. In
    explicit vectors (LLVM IR: it compiles faster than loops that LLVM vectorises itself): four
    at a time with the taps innermost, then one, then single elements.
    """
    sig = types.void(a, ao, b, x, xo, w, wo, wj, n_taps, first, end)

    def codegen(context, builder, signature, args):
        a_a, ao_v, b_a, x_a, xo_a, w_a, wo_a, wj_v, n_taps_v, first_v, end_v = args
        arg = signature.args
        v = simd.Vectors(context, builder, arg[0].dtype)
        scalar = v.type.element
        scalar_fma = cgutils.get_or_insert_function(
            builder.module, ir.FunctionType(scalar, [scalar] * 3),
            f"llvm.fma.{'f32' if arg[0].dtype == types.float32 else 'f64'}")
        tile = builder.extract_value(
            cgutils.create_struct_proxy(arg[2])(context, builder, value=b_a).shape, 0)
        a_p, b_p = v.at(v.data(a_a, arg[0]), ao_v), v.data(b_a, arg[2])
        x_p, xo_p = v.data(x_a, arg[3]), v.data(xo_a, arg[4])
        w_p, wo_p = v.at(v.data(w_a, arg[5]), wj_v), v.data(wo_a, arg[6])
        i64 = simd.I64

        def elements(count, width, start, s, e):
            """Elements ``start`` on of the ``e`` of chunk ``s``, ``count`` x ``width`` at a time.

            Returns where the next call starts.
            """
            def load(pointer, offset):
                return v.load(pointer, offset) if width > 1 else builder.load(v.at(pointer, offset))

            def fma(p, q, r):
                return v.fma(p, q, r) if width > 1 else builder.call(scalar_fma, [p, q, r])

            step = ir.Constant(i64, count * width)
            n_steps = builder.sdiv(builder.sub(e, start), step)
            with cgutils.for_range(builder, n_steps) as loop:
                i = builder.add(start, builder.mul(loop.index, step))  # within the chunk
                offsets = [builder.add(i, ir.Constant(i64, width * c)) for c in range(count)]
                slots = [cgutils.alloca_once_value(builder, load(b_p, o)) for o in offsets]
                x_i = v.at(x_p, builder.add(s, i))
                w_i = v.at(w_p, i)
                with cgutils.for_range(builder, n_taps_v) as taps:
                    x_k = v.at(x_i, builder.load(builder.gep(xo_p, [taps.index])))
                    w_k = v.at(w_i, builder.load(builder.gep(wo_p, [taps.index])))
                    for c, slot in enumerate(slots):
                        o = ir.Constant(i64, width * c)
                        builder.store(fma(load(x_k, o), load(w_k, o), builder.load(slot)), slot)
                out = v.at(a_p, builder.add(s, i))
                for c, slot in enumerate(slots):
                    value = builder.load(slot)
                    at = v.at(out, ir.Constant(i64, width * c))
                    if width == 1:
                        builder.store(value, at)
                    else:
                        v.store(value, at)
            return builder.add(start, builder.mul(n_steps, step))

        with cgutils.for_range_slice(builder, first_v, end_v, tile) as (s, _):
            rest = builder.sub(end_v, s)
            e = builder.select(builder.icmp_signed("<", rest, tile), rest, tile)
            done = elements(4, v.lanes, ir.Constant(i64, 0), s, e)
            done = elements(1, v.lanes, done, s, e)
            elements(1, 1, done, s, e)
        return context.get_dummy_value()

    return sig, codegen


@kernel(internal=True)
def _check_row_taps(a, ao, b, x, xo, w, wo, wj, n_taps, first, end):
    """Raise IndexError unless every element that a :func:`_row_taps` call touches is in bounds."""
    span = min(b.shape[0], end - first)  # of a chunk: weights and bias
    ok = first >= end or (0 <= ao + first and ao + end <= a.shape[0]
                          and n_taps <= xo.shape[0] and n_taps <= wo.shape[0])
    for k in range(n_taps if first < end else 0):
        ok = ok and 0 <= xo[k] + first and xo[k] + end <= x.shape[0]
        ok = ok and 0 <= wo[k] + wj and wo[k] + wj + span <= w.shape[0]
    if not ok:
        raise IndexError("depthwise kernel: a row would read or write out of bounds")


@kernel(internal=True)
def _edges(a, ao, n_ch, b, x, xo, w, wo, wj, n_taps, q_lo, q_hi, qa, qb, nq, xs, ws):
    """Pixels below ``qa`` and from ``qb`` to ``nq`` of the row at ``a[ao:]`` (``[nq, n_ch]``).

    As :func:`_row_taps`, pixel by pixel with the taps that read inside the source: tap ``k``
    (column tap ``k % len(q_lo)``) reads inside for pixels ``q_lo`` to ``q_hi`` only. ``xs``
    and ``ws`` (int64, ``n_taps`` each): scratch for a pixel's taps.
    """
    nu = q_lo.shape[0]
    for i in range(qa + nq - qb):
        q = i if i < qa else qb + i - qa
        n = 0
        for k in range(n_taps):
            if q_lo[k % nu] <= q < q_hi[k % nu]:
                xs[n], ws[n] = xo[k], wo[k]
                n += 1
        if CHECK_BOUNDS:
            _check_row_taps(a, ao, b, x, xs, w, ws, wj, n, q * n_ch, (q + 1) * n_ch)
        _row_taps(a, ao, b, x, xs, w, ws, wj, n, q * n_ch, (q + 1) * n_ch)


@kernel(internal=True)
def _store(d_flat, at, col_step, s_ch, acc, ao, row_len, n_ch, mult):
    """``d_flat[at + q*col_step + (c*mult + j)*s_ch] = acc[ao + j*row_len + q*n_ch + c]``.

    For the row's pixels ``q``, channels ``c`` and multiplier ``j``: one output row from the row
    buffer. Adjacent pixels (``col_step == 1``: an NCHW convolution) go in register-tile
    transposes.
    """
    n_q = row_len // n_ch
    for j in range(mult):
        a0 = ao + j * row_len
        d0 = at + j * s_ch
        if col_step == 1:
            copies.transpose(acc, a0, n_ch, d_flat, d0, mult * s_ch, n_q, n_ch)
        else:
            for q in range(n_q):
                out = d0 + q * col_step
                for c in range(n_ch):
                    d_flat[np.uint64(out + c * mult * s_ch)] = acc[a0 + q * n_ch + c]


@contextlib.contextmanager
def _pixel_vectors(v: simd.Vectors, n_pix, n_ch, x_step):
    """IR loops over pixels ``p < n_pix`` and, inside, the channel vectors of a pixel.

    Yields ``(p*n_ch, p*x_step, c)``: the pixel's output and source offsets and the vector's
    first channel, ``c = min(i*lanes, n_ch - lanes)`` (the last vector overlaps the one before
    when ``n_ch`` is not a multiple of the lanes; ``n_ch`` must be at least one vector).
    """
    builder = v.builder
    lanes = ir.Constant(simd.I64, v.lanes)
    last = builder.sub(n_ch, lanes)
    n_vec = builder.sdiv(builder.add(last, ir.Constant(simd.I64, 2 * v.lanes - 1)), lanes)
    with cgutils.for_range(builder, n_pix) as pixels:
        pixel = builder.mul(pixels.index, n_ch)
        source = builder.mul(pixels.index, x_step)
        with cgutils.for_range(builder, n_vec) as vectors:
            c = builder.mul(vectors.index, lanes)
            yield pixel, source, builder.select(builder.icmp_signed("<", c, last), c, last)


def _window_rows(n_rows: int, shift: int):
    """An intrinsic computing ``n_rows`` output rows of a 3x3 window.

    ``run(a, ao, x, xo, cu, x_step, w, wk, b, bo, n_pix, n_ch)`` sets, for pixels ``p < n_pix``
    and channels ``c < n_ch`` (``n_ch`` at least one vector: 8 float32 or 4 float64),
    ``a[ao[h] + p*n_ch + c] = b[bo + c] + sum_{t,u} x[xo[h*shift + t] + cu[u] + p*x_step + c]
    * w[wk[3t + u] + c]``: output row ``h`` reads source rows ``h*shift`` to ``h*shift + 2`` of
    ``xo`` (int64 offsets, as ``ao``, ``cu`` and ``wk``). For each pixel, the channels go one
    vector at a time (the last vector overlaps the one before when ``n_ch`` is not a multiple of
    the lanes), its nine weight vectors in registers, each source vector loaded once and fed to
    every output row that reads it. All offsets must be in bounds.
    """
    n_src = (n_rows - 1) * shift + 3

    @intrinsic
    def run(typingctx, a, ao, x, xo, cu, x_step, w, wk, b, bo, n_pix, n_ch):
        sig = types.void(a, ao, x, xo, cu, x_step, w, wk, b, bo, n_pix, n_ch)

        def codegen(context, builder, signature, args):
            a_a, ao_a, x_a, xo_a, cu_a, x_step_v, w_a, wk_a, b_a, bo_v, n_pix_v, n_ch_v = args
            arg_types = signature.args
            v = simd.Vectors(context, builder, arg_types[0].dtype)
            w_p, wk_p = v.data(w_a, arg_types[6]), v.data(wk_a, arg_types[7])
            taps = [v.at(w_p, v.item(wk_p, k)) for k in range(9)]
            b_p = v.at(v.data(b_a, arg_types[8]), bo_v)
            cols = [v.item(v.data(cu_a, arg_types[4]), u) for u in range(3)]
            x_p, xo_p = v.data(x_a, arg_types[2]), v.data(xo_a, arg_types[3])
            rows = [v.at(x_p, v.item(xo_p, r)) for r in range(n_src)]
            a_p, ao_p = v.data(a_a, arg_types[0]), v.data(ao_a, arg_types[1])
            outs = [v.at(a_p, v.item(ao_p, h)) for h in range(n_rows)]
            with _pixel_vectors(v, n_pix_v, n_ch_v, x_step_v) as (pixel, source, c):
                weights = [v.load(tap, c) for tap in taps]
                acc = [v.load(b_p, c)] * n_rows
                for r in range(n_src):  # each source vector feeds the rows that read it
                    row = v.at(rows[r], builder.add(source, c))
                    for u in range(3):
                        s = v.load(row, cols[u])
                        for h in range(n_rows):
                            if 0 <= r - h * shift < 3:
                                acc[h] = v.fma(s, weights[3 * (r - h * shift) + u], acc[h])
                for h in range(n_rows):
                    v.store(acc[h], outs[h], builder.add(pixel, c))
            return context.get_dummy_value()

        return sig, codegen

    return run


def _window_any(n_rows: int):
    """An intrinsic computing ``n_rows`` output rows of any window (``nt`` x ``nu`` taps).

    ``run(a, ao, x, xo, cu, x_step, w, wk, b, bo, n_pix, n_ch, nt, nu)`` sets, for pixels
    ``p < n_pix`` and channels ``c < n_ch`` (at least one vector),
    ``a[ao[h] + p*n_ch + c] = b[bo + c] + sum_{t,u} x[xo[h*nt + t] + cu[u] + p*x_step + c]
    * w[wk[t*nu + u] + c]``. Per pixel and channel vector the accumulators of the rows stay in
    registers; each tap's weight vector is loaded once for all rows.
    """

    @intrinsic
    def run(typingctx, a, ao, x, xo, cu, x_step, w, wk, b, bo, n_pix, n_ch, nt, nu):
        sig = types.void(a, ao, x, xo, cu, x_step, w, wk, b, bo, n_pix, n_ch, nt, nu)

        def codegen(context, builder, signature, args):
            (a_a, ao_a, x_a, xo_a, cu_a, x_step_v, w_a, wk_a, b_a, bo_v, n_pix_v, n_ch_v, nt_v,
             nu_v) = args
            arg_types = signature.args
            v = simd.Vectors(context, builder, arg_types[0].dtype)
            w_p, wk_p = v.data(w_a, arg_types[6]), v.data(wk_a, arg_types[7])
            b_p = v.at(v.data(b_a, arg_types[8]), bo_v)
            cu_p = v.data(cu_a, arg_types[4])
            x_p, xo_p = v.data(x_a, arg_types[2]), v.data(xo_a, arg_types[3])
            a_p, ao_p = v.data(a_a, arg_types[0]), v.data(ao_a, arg_types[1])
            outs = [v.at(a_p, v.item(ao_p, h)) for h in range(n_rows)]
            # accumulators live in allocas, which LLVM promotes to registers
            slots = [cgutils.alloca_once(builder, v.type) for _ in range(n_rows)]
            with _pixel_vectors(v, n_pix_v, n_ch_v, x_step_v) as (pixel, source, c):
                bias = v.load(b_p, c)
                for slot in slots:
                    builder.store(bias, slot)
                at = builder.add(source, c)
                with cgutils.for_range(builder, nt_v) as taps_t:
                    t = taps_t.index
                    rows = [v.at(x_p, builder.add(at, builder.load(builder.gep(
                        xo_p, [builder.add(builder.mul(ir.Constant(simd.I64, h), nt_v), t)]))))
                        for h in range(n_rows)]
                    with cgutils.for_range(builder, nu_v) as taps_u:
                        u = taps_u.index
                        k = builder.add(builder.mul(t, nu_v), u)
                        weight = v.load(v.at(w_p, builder.load(builder.gep(wk_p, [k]))), c)
                        col = builder.load(builder.gep(cu_p, [u]))
                        for h, slot in enumerate(slots):
                            builder.store(v.fma(v.load(rows[h], col), weight,
                                                builder.load(slot)), slot)
                for h, slot in enumerate(slots):
                    v.store(builder.load(slot), outs[h], builder.add(pixel, c))
            return context.get_dummy_value()

        return sig, codegen

    return run


#: Eight output rows of any window.
_any_rows = _window_any(8)


#: Four output rows from six consecutive source rows (a 3x3 window at stride 1).
_four_rows = _window_rows(4, 1)

#: Two output rows from any six source rows.
_two_rows = _window_rows(2, 3)


@kernel(internal=True)
def _check_rows(a, ao, n_rows, x, xo, n_src, cu, x_step, w, wk, b, bo, n_pix, n_ch):
    """Raise IndexError unless every element that a run touches is in bounds.

    The run's source rows are ``xo[:n_src]``, its column offsets ``cu`` and weights ``wk``.
    """
    span = n_pix * n_ch
    x_span = (n_pix - 1) * x_step + n_ch
    ok = n_ch * a.itemsize >= simd.VECTOR_BYTES and 0 <= bo and bo + n_ch <= b.shape[0]
    for k in range(wk.shape[0]):
        ok = ok and 0 <= wk[k] and wk[k] + n_ch <= w.shape[0]
    for h in range(n_rows):
        ok = ok and 0 <= ao[h] and ao[h] + span <= a.shape[0]
    for r in range(n_src):
        for u in range(cu.shape[0]):
            ok = ok and 0 <= xo[r] + cu[u] and xo[r] + cu[u] + x_span <= x.shape[0]
    if not ok:
        raise IndexError("depthwise kernel: a run would read or write out of bounds")


@kernel(internal=True)
def _rows(a, a_off, n_rows, b, bo, x, xo, c_off, x_step, w, wo, n_ch, q_lo, q_hi, nq, nt,
          ao, rows, cu, wk):
    """``n_rows`` output rows of an ``nt`` x ``nu`` window, all their row taps inside the source.

    Row ``h``'s tap ``(t, u)`` reads ``x[xo[h, t*nu + u] + q*x_step + c]`` for pixel ``q`` and
    channel ``c``, with weight ``w[wo + (t*nu + u)*n_ch + c]``, where the pixel is inside the
    source (``q_lo[u] <= q < q_hi[u]``); ``w[wo + nt*nu*n_ch:]`` holds ``n_ch`` zeros. A 3x3
    window takes :func:`_window_rows` runs (four rows: six consecutive source rows; two rows:
    any), other windows eight rows of :func:`_window_any`. The pixels where every tap reads
    inside go in one run; each other pixel in a run of its own, its outside taps pointed at an
    inside column with the zero weights (the bias alone when no tap reads inside). Scratch: ``ao``
    (8), ``rows`` (at least 6 and ``8*nt``), ``cu`` (``nu``), ``wk`` (``nt*nu``) int64.
    """
    nu = cu.shape[0]
    three = nt == 3 and nu == 3
    if (n_rows != 4 and n_rows != 2) if three else n_rows != 8:
        raise ValueError("depthwise kernel: no vector run for this many rows")
    qa, qb = 0, nq
    for u in range(nu):
        qa, qb = max(qa, q_lo[u]), min(qb, q_hi[u])
    q = 0
    while q < nq:
        end = max(qb, q + 1) if q == qa else q + 1
        inside = -1  # a column tap that reads inside at pixel q
        for u in range(nu):
            if q_lo[u] <= q < q_hi[u]:
                inside = u
        for u in range(nu):
            ok = q_lo[u] <= q < q_hi[u]
            # no tap inside: every tap reads the row start (in bounds), with zero weights
            cu[u] = c_off[u if ok else inside] if inside >= 0 else 0
            for t in range(nt):
                wk[t * nu + u] = wo + (t * nu + u if ok else nt * nu) * n_ch
        shift = q * x_step - c_off[0] if inside >= 0 else -c_off[0]
        for h in range(n_rows):
            ao[h] = a_off[h] + q * n_ch
        if three:
            for t in range(3):
                rows[t] = xo[0, 3 * t] + shift
                rows[3 + t] = xo[1 if n_rows == 2 else t + 1, 6 if n_rows == 4 else 3 * t] + shift
        else:
            for h in range(n_rows):
                for t in range(nt):
                    rows[h * nt + t] = xo[h, t * nu] + shift
        if CHECK_BOUNDS:
            _check_rows(a, ao, n_rows, x, rows, 6 if three else n_rows * nt, cu, x_step, w, wk,
                        b, bo, end - q, n_ch)
        if not three:
            _any_rows(a, ao, x, rows, cu, x_step, w, wk, b, bo, end - q, n_ch, nt, nu)
        elif n_rows == 4:
            _four_rows(a, ao, x, rows, cu, x_step, w, wk, b, bo, end - q, n_ch)
        else:
            _two_rows(a, ao, x, rows, cu, x_step, w, wk, b, bo, end - q, n_ch)
        q = end


@kernel(internal=True)
def _split_row(split, so, split_len, srow, ssw, n_ch, phases):
    """Column phase ``phases[k]`` of ``srow`` (``[W*n_ch]``) to ``split[so + k*split_len:]``.

    Pixel ``i*ssw + phases[k]`` goes to position ``i``.
    """
    width = srow.shape[0] // n_ch
    for k in range(phases.shape[0]):
        for i in range((width - phases[k] + ssw - 1) // ssw):
            o = np.uint64((i * ssw + phases[k]) * n_ch)
            d = np.uint64(so + k * split_len + i * n_ch)
            for c in range(np.uint64(n_ch)):
                split[d + c] = srow[o + c]


@kernel()
def depthwise_serial(src, weights, dst, phases, toffs, meta, bias, first, last):
    n_ch, ssh, ssw, rs, cs = meta[0], meta[1], meta[2], meta[3], meta[4]
    top, left, tile = meta[11], meta[12], meta[13]
    height = src.shape[1]
    width = src.shape[2] // n_ch
    _, _, n_out, s_img, s_row, s_col, s_ch = out_layout(dst, meta)
    mult = n_out // n_ch
    direct = mult == 1 and cs == 1 and not meta[16]  # accumulate in dst itself (NHWC)
    split_len = -(-width // ssw) * n_ch  # elements per column phase of a split source row
    w = weights
    b = bias.reshape(mult, tile)
    d_flat = dst.reshape(-1)
    for job in range(first, last):
        n, p, m_lo, m_hi, nq, nt, nu, th, tw, ws = _job(phases, meta, job)
        row_len = nq * n_ch
        acc = np.empty(0 if direct else 8 * mult * row_len, dst.dtype)
        a = d_flat if direct else acc
        # column taps: the split phase and the pixel shift they read, their valid pixels [lo, hi)
        c_phase = np.empty(nu, np.int64)
        c_shift = np.empty(nu, np.int64)
        q_lo = np.empty(nu, np.int64)
        q_hi = np.empty(nu, np.int64)
        # pixels where every column tap is valid (np.int64: with a literal 0, Numba would also
        # compile the helpers that take qa for that literal)
        qa, qb = np.int64(0), nq
        for u in range(nu):
            off = toffs[tw + u] - left  # source column of pixel q: q*ssw + off
            c_phase[u] = off % ssw
            c_shift[u] = off // ssw
            q_lo[u], q_hi[u] = _inside(off, ssw, width, nq)
            qa = max(qa, q_lo[u])
            qb = min(qb, q_hi[u])
        qb = max(qa, qb)
        # split source rows (for the single rows of a column stride > 1): only the column phases
        # that some tap reads, ``phase_of[u]`` the index of tap u's among them; source row r is
        # in slot r % n_slots when the taps span few rows (so that rows shared with the next
        # output row are kept), else tap row t in slot t
        used = np.empty(nu, np.int64)
        phase_of = np.empty(nu, np.int64)
        n_used = 0
        for u in range(nu):
            phase_of[u] = -1
            for k in range(n_used):
                if used[k] == c_phase[u]:
                    phase_of[u] = k
            if phase_of[u] < 0:
                used[n_used] = c_phase[u]
                phase_of[u] = n_used
                n_used += 1
        row_span = toffs[th + nt - 1] - toffs[th] + 1 + ssh if nt > 0 else 0
        by_row = row_span <= 2 * nt
        n_slots = 0 if ssw == 1 else (row_span if by_row else nt)
        slot_len = n_used * split_len
        split = np.empty(n_slots * slot_len, dst.dtype)
        held = np.full(n_slots, -1, np.int64)  # the source row each slot holds
        x_src = src[n].reshape(-1)
        x = x_src if ssw == 1 else split  # the single rows' source
        # column taps' offsets within a source row (the runs' source) and within a split row
        c_src = np.empty(nu, np.int64)
        c_off = np.empty(nu, np.int64)
        for u in range(nu):
            c_src[u] = (toffs[tw + u] - left) * n_ch
            c_off[u] = c_shift[u] * n_ch + phase_of[u] * split_len if ssw > 1 else c_src[u]
        # several rows at a time in vector runs when the channels fill a vector: for a 3x3 window
        # four (consecutive source rows) or two (a stride, a dilation; also where four do not
        # fit), for other windows eight
        runs = nt > 0 and nu > 0 and n_ch * dst.itemsize >= simd.VECTOR_BYTES
        three = nt == 3 and nu == 3
        block = (8 if not three else 4 if ssh == 1 and toffs[th + 1] == toffs[th] + 1
                 and toffs[th + 2] == toffs[th] + 2 else 2)
        xo = np.empty((8, nt * nu), np.int64)
        wo = np.empty(nt * nu, np.int64)
        a_off = np.empty(8, np.int64)
        slot_x = np.empty(nt * nu, np.int64)  # scratch for _edges
        slot_w = np.empty_like(slot_x)
        run_a = np.empty(8, np.int64)  # scratch for _rows
        run_x = np.empty(max(6, 8 * nt), np.int64)
        run_c = np.empty(nu, np.int64)
        run_w = np.empty(nt * nu, np.int64)
        # the weights of the runs: [mult, nt*nu + 1, n_ch], the taps' channels (the first n_ch
        # elements of their tiles, which lie a tile apart: the same L1 sets), then zeros
        n_w = nt * nu + 1
        w_runs = np.zeros(mult * n_w * n_ch if runs else 0, dst.dtype)
        for j in range(mult if runs else 0):
            for k in range(nt * nu):
                _fill(w_runs, np.uint64((j * n_w + k) * n_ch),
                      w[ws + (j * nt * nu + k) * tile:], n_ch)
        m = m_lo
        while m < m_hi:
            # as many rows as the block allows whose taps all read inside src (else one)
            n_rows = 1
            if runs and m * ssh + toffs[th] - top >= 0:
                for rows in (block, 2 if three else block):
                    if (m + rows <= m_hi
                            and (m + rows - 1) * ssh + toffs[th + nt - 1] - top < height):
                        n_rows = rows
                        break
            n_taps = np.int64(0)  # np.int64: as qa above
            for h in range(n_rows):
                n_taps = 0
                for t in range(nt):
                    r = (m + h) * ssh + toffs[th + t] - top
                    if r < 0 or r >= height:
                        continue
                    row, cols = r * width * n_ch, c_src
                    if ssw > 1 and n_rows == 1:  # runs read src itself, single rows split rows
                        slot = r % n_slots if by_row else t
                        if held[slot] != r:
                            _split_row(split, slot * slot_len, split_len, src[n, r], ssw, n_ch,
                                       used[:n_used])
                            held[slot] = r
                        row, cols = slot * slot_len, c_off
                    for u in range(nu):
                        xo[h, n_taps] = row + cols[u]
                        wo[n_taps] = ws + (t * nu + u) * tile
                        n_taps += 1
            for j in range(mult):
                for h in range(n_rows):
                    a_off[h] = (n * s_img + (phases[p, R0] + (m + h) * rs) * s_row
                                + phases[p, C0] * s_col if direct else (h * mult + j) * row_len)
                w_j = j * nt * nu * tile
                if n_rows > 1:
                    _rows(a, a_off, n_rows, bias, j * tile, x_src, xo, c_src, ssw * n_ch, w_runs,
                          j * n_w * n_ch, n_ch, q_lo, q_hi, nq, nt, run_a, run_x, run_c, run_w)
                else:
                    if CHECK_BOUNDS:
                        _check_row_taps(a, a_off[0], b[j], x, xo[0], w, wo, w_j, n_taps,
                                        qa * n_ch, qb * n_ch)
                    _row_taps(a, a_off[0], b[j], x, xo[0], w, wo, w_j, n_taps, qa * n_ch,
                              qb * n_ch)
                    _edges(a, a_off[0], n_ch, b[j], x, xo[0], w, wo, w_j, n_taps, q_lo, q_hi,
                           qa, qb, nq, slot_x, slot_w)
            if not direct:
                for h in range(n_rows):
                    _store(d_flat, n * s_img + (phases[p, R0] + (m + h) * rs) * s_row
                           + phases[p, C0] * s_col, cs * s_col, s_ch, acc, h * mult * row_len,
                           row_len, n_ch, mult)
            m += n_rows
