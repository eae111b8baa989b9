"""Explicit SIMD vectors for the kernels that Numba's loop vectoriser does not schedule well.

The outer-product and depthwise micro-kernels are Numba intrinsics written in LLVM IR: their
accumulators and weights must stay in vector registers across a whole run, which LLVM does not
arrange from scalar loops. :class:`Vectors` gives their code generators one vocabulary: 32-byte
vectors (AVX2: 8 float32 or 4 float64 lanes), unaligned loads and stores at element offsets of
an array, fused multiply-adds. :func:`transpose_tile` transposes one tile of vectors in
registers, for the NCHW layout conversions. :func:`vex_only` and :func:`vex_only_here` keep a
function in AVX2's 16 registers where the target has AVX-512 (faster there, as measured).
"""

import functools

import numba
from llvmlite import ir
from numba import types
from numba.core import cgutils
from numba.extending import intrinsic

#: Bytes per vector register (AVX2; the 16 ``ymm`` registers the micro-kernels are sized for).
VECTOR_BYTES = 32

#: Bytes per vector of the outer-product kernel's widest tiles where the target has AVX-512
#: (``zmm``; :func:`.outer.vector_bytes`).
WIDE_VECTOR_BYTES = 64

#: Numba's bounds checking does not reach the vector loads and stores of these intrinsics; under
#: ``NUMBA_BOUNDSCHECK=1`` their callers check every run before it starts instead.
CHECK_BOUNDS = bool(numba.config.BOUNDSCHECK)

I64 = ir.IntType(64)


def _features(codegen) -> list[str]:
    """The features that Numba's ``codegen`` compiles for, as LLVM spells them (``+avx2``, ...).

    Its target machine's: the host's, or those that ``NUMBA_CPU_NAME`` / ``NUMBA_CPU_FEATURES``
    ask for.
    """
    return getattr(codegen, "_tm_features", "").split(",")


def _cpu_codegen():
    from numba.core.registry import cpu_target
    return cpu_target.target_context.codegen()


def _registers(features: list[str]) -> int:
    """The vector registers of a target with ``features`` (:func:`_features`).

    AVX-512's 32 (32-byte vectors in ``ymm0``-``ymm31``, which AVX512VL encodes), else AVX2's 16.
    """
    return 32 if {"+avx512f", "+avx512vl"} <= set(features) else 16


#: Vector registers that the micro-kernels' widest tiles may use (Numba's target's).
REGISTERS = _registers(_features(_cpu_codegen()))


def vex_only(context, function: ir.Function) -> None:
    """Compile ``function`` without AVX-512 where the target has it: AVX2's 16 ``ymm`` registers.

    With AVX-512's 32 registers (EVEX-encoded) LLVM spreads the outer-product loop's broadcasts
    over more of them, and that loop ran at 108-110 GFLOP/s on one Zen 4 core against 113-116 in
    16 registers (a C version of it: 116-117). Other targets are left as they are. The
    function's features are the target's (those Numba compiles for, which LLVM would otherwise
    replace) with ``avx512f`` and all that depends on it removed.
    """
    features = _features(context.codegen())
    if "+avx512f" in features:
        # llvmlite's attribute set takes named attributes only (it checks them against a list);
        # a string attribute goes past that check, and llvmlite prints it as given
        set.add(function.attributes, f'"target-features"="{",".join(features)},-avx512f"')


@intrinsic
def vex_only_here(typingctx):
    """Compile the calling kernel as :func:`vex_only` does (call it first thing in the kernel).

    The kernel is also kept out of line, so that its Python wrapper, compiled with the target's
    features, does not take its code in. For the row-wise kernel: in AVX-512's registers (with
    512-bit vectors) a 512x512 image's k3 s2 transpose took 1.28-1.35x the time.
    """
    def codegen(context, builder, signature, args):
        vex_only(context, builder.function)
        builder.function.attributes.add("noinline")
        return context.get_dummy_value()

    return types.void(), codegen


def lanes(dtype) -> int:
    """Elements of Numba type ``dtype`` (float32 or float64) per vector."""
    return VECTOR_BYTES // (4 if dtype == types.float32 else 8)


class Vectors:
    """IR building blocks for vectors of ``dtype`` inside one intrinsic's ``codegen``.

    Vectors of ``vector_bytes``: VECTOR_BYTES, or WIDE_VECTOR_BYTES on targets with AVX-512.
    """

    def __init__(self, context, builder, dtype, vector_bytes: int = VECTOR_BYTES):
        self.context, self.builder = context, builder
        self.lanes = lanes(dtype) * vector_bytes // VECTOR_BYTES
        scalar = context.get_value_type(dtype)
        self.type = ir.VectorType(scalar, self.lanes)
        self._fma = cgutils.get_or_insert_function(
            builder.module, ir.FunctionType(self.type, [self.type] * 3),
            f"llvm.fma.v{self.lanes}{'f32' if dtype == types.float32 else 'f64'}")

    def data(self, array, array_type):
        """The data pointer of Numba array value ``array`` (of type ``array_type``)."""
        return cgutils.create_struct_proxy(array_type)(self.context, self.builder,
                                                       value=array).data

    def item(self, pointer, index: int):
        """The scalar ``pointer[index]``."""
        return self.builder.load(self.builder.gep(pointer, [ir.Constant(I64, index)]))

    def at(self, pointer, offset):
        """``pointer + offset`` (elements; ``offset`` an IR value or an int)."""
        if isinstance(offset, int):
            offset = ir.Constant(I64, offset)
        return self.builder.gep(pointer, [offset])

    def load(self, pointer, offset=0):
        """The vector at ``pointer + offset`` (unaligned)."""
        at = self.builder.bitcast(self.at(pointer, offset), self.type.as_pointer())
        return self.builder.load(at, align=1)

    def store(self, value, pointer, offset=0) -> None:
        """Store vector ``value`` at ``pointer + offset`` (unaligned)."""
        at = self.builder.bitcast(self.at(pointer, offset), self.type.as_pointer())
        self.builder.store(value, at, align=1)

    def fma(self, a, b, c):
        """``a * b + c``, fused."""
        return self.builder.call(self._fma, [a, b, c])

    def repeat(self, pointer, count: int):
        """The ``count`` elements at ``pointer`` repeated over the lanes (``count`` divides them).

        One load (unaligned) and a shuffle: a broadcast of ``count * 4`` or ``* 8`` bytes.
        """
        group = ir.VectorType(self.type.element, count)
        loaded = self.builder.load(self.builder.bitcast(pointer, group.as_pointer()), align=1)
        return _shuffle(self.builder, loaded, ir.Constant(group, ir.Undefined),
                        [i % count for i in range(self.lanes)])

    def interleave(self, a, b, lanes_from: list[int]):
        """The vector whose lane ``i`` is lane ``lanes_from[i]`` of ``a`` ++ ``b``."""
        return _shuffle(self.builder, a, b, lanes_from)


def _shuffle(builder, a, b, mask):
    return builder.shuffle_vector(a, b, ir.Constant(ir.VectorType(ir.IntType(32), len(mask)),
                                                    mask))


def _transposed(builder, rows: list, lanes: int) -> list:
    """The columns of the ``lanes`` x ``lanes`` tile whose rows are the vectors ``rows``."""
    sh = functools.partial(_shuffle, builder)
    if lanes == 4:  # float64
        t = [sh(rows[i], rows[i + 1], m) for i in (0, 2) for m in ([0, 4, 2, 6], [1, 5, 3, 7])]
        return [sh(t[0], t[2], [0, 1, 4, 5]), sh(t[1], t[3], [0, 1, 4, 5]),
                sh(t[0], t[2], [2, 3, 6, 7]), sh(t[1], t[3], [2, 3, 6, 7])]
    # float32: interleave pairs of rows, then pairs of pairs, then the 128-bit halves
    lo, hi = [0, 8, 1, 9, 4, 12, 5, 13], [2, 10, 3, 11, 6, 14, 7, 15]
    t = [sh(rows[i], rows[i + 1], m) for i in (0, 2, 4, 6) for m in (lo, hi)]
    lo2, hi2 = [0, 1, 8, 9, 4, 5, 12, 13], [2, 3, 10, 11, 6, 7, 14, 15]
    u = [sh(t[i], t[i + 2], m) for i in (0, 1, 4, 5) for m in (lo2, hi2)]
    # u[j] (j < 4): columns j and j + 4 of rows 0-3; u[4 + j]: the same of rows 4-7
    low, high = [0, 1, 2, 3, 8, 9, 10, 11], [4, 5, 6, 7, 12, 13, 14, 15]
    return ([sh(u[j], u[4 + j], low) for j in range(4)]
            + [sh(u[j], u[4 + j], high) for j in range(4)])


@intrinsic
def transpose_tile(typingctx, src, s0, s_step, dst, d0, d_step):
    """``dst[d0 + j*d_step + i] = src[s0 + i*s_step + j]`` for ``i, j < lanes``: one vector tile.

    ``lanes`` is 8 for float32, 4 for float64 (:func:`lanes`); all offsets must be in bounds.
    """
    sig = types.void(src, s0, s_step, dst, d0, d_step)

    def codegen(context, builder, signature, args):
        src_a, s0_v, s_step_v, dst_a, d0_v, d_step_v = args
        v = Vectors(context, builder, signature.args[0].dtype)
        s_p = v.at(v.data(src_a, signature.args[0]), s0_v)
        d_p = v.at(v.data(dst_a, signature.args[3]), d0_v)
        rows = [v.load(s_p, builder.mul(s_step_v, ir.Constant(I64, i))) for i in range(v.lanes)]
        for j, column in enumerate(_transposed(builder, rows, v.lanes)):
            v.store(column, d_p, builder.mul(d_step_v, ir.Constant(I64, j)))
        return context.get_dummy_value()

    return sig, codegen


def channel_planes(n_ch: int, to_planes: bool):
    """An intrinsic moving ``lanes`` pixels' ``n_ch`` channels between pixels and planes.

    ``run(src, s0, dst, d0, plane)`` sets, for pixels ``i < lanes`` (:func:`lanes`) and channels
    ``c < n_ch``, ``dst[d0 + c*plane + i] = src[s0 + i*n_ch + c]`` (``to_planes``), else
    ``dst[d0 + i*n_ch + c] = src[s0 + c*plane + i]``: ``n_ch`` vector loads, shuffles of their
    lanes and ``n_ch`` vector stores. All offsets must be in bounds.
    """

    @intrinsic
    def run(typingctx, src, s0, dst, d0, plane):
        sig = types.void(src, s0, dst, d0, plane)

        def codegen(context, builder, signature, args):
            src_a, s0_v, dst_a, d0_v, plane_v = args
            v = Vectors(context, builder, signature.args[0].dtype)
            n = v.lanes
            s_p = v.at(v.data(src_a, signature.args[0]), s0_v)
            d_p = v.at(v.data(dst_a, signature.args[2]), d0_v)
            planes = [builder.mul(plane_v, ir.Constant(I64, c)) for c in range(n_ch)]
            parts = [v.load(s_p, n * c if to_planes else planes[c]) for c in range(n_ch)]
            if to_planes:  # vector c: channel c of every pixel
                order = [[i * n_ch + c for i in range(n)] for c in range(n_ch)]
            else:  # the pixels' channels in turn, n lanes a vector
                lanes_from = [c * n + i for i in range(n) for c in range(n_ch)]
                order = [lanes_from[j * n:(j + 1) * n] for j in range(n_ch)]
            for j, lanes_from in enumerate(order):
                # lane l is lane lanes_from[l] % n of part lanes_from[l] // n: the parts folded
                # in, two operands of n lanes a shuffle
                out = _shuffle(builder, parts[0], parts[1],
                               [f if f < 2 * n else 0 for f in lanes_from])
                for k in range(2, n_ch):
                    out = _shuffle(builder, out, parts[k],
                                   [f - k * n + n if f // n == k else lane
                                    for lane, f in enumerate(lanes_from)])
                v.store(out, d_p, planes[j] if to_planes else n * j)
            return context.get_dummy_value()

        return sig, codegen

    return run
