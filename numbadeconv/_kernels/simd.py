"""Explicit SIMD vectors for the kernels that Numba's loop vectoriser does not schedule well.

The outer-product and depthwise micro-kernels are Numba intrinsics written in LLVM IR: their
accumulators and weights must stay in vector registers across a whole run, which LLVM does not
arrange from scalar loops. :class:`Vectors` gives their code generators one vocabulary: 32-byte
vectors (AVX2: 8 float32 or 4 float64 lanes), unaligned loads and stores at element offsets of
an array, fused multiply-adds.
"""

import numba
from llvmlite import ir
from numba import types
from numba.core import cgutils

#: Bytes per vector register (AVX2; the 16 ``ymm`` registers the micro-kernels are sized for).
VECTOR_BYTES = 32

#: Numba's bounds checking does not reach the vector loads and stores of these intrinsics; under
#: ``NUMBA_BOUNDSCHECK=1`` their callers check every run before it starts instead.
CHECK_BOUNDS = bool(numba.config.BOUNDSCHECK)

I64 = ir.IntType(64)


def lanes(dtype) -> int:
    """Elements of Numba type ``dtype`` (float32 or float64) per vector."""
    return VECTOR_BYTES // (4 if dtype == types.float32 else 8)


class Vectors:
    """IR building blocks for vectors of ``dtype`` inside one intrinsic's ``codegen``."""

    def __init__(self, context, builder, dtype):
        self.context, self.builder = context, builder
        self.lanes = lanes(dtype)
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

    def splat(self, scalar):
        """A vector with ``scalar`` in every lane."""
        undef = ir.Constant(self.type, ir.Undefined)
        first = self.builder.insert_element(undef, scalar, ir.Constant(ir.IntType(32), 0))
        return self.builder.shuffle_vector(
            first, undef, ir.Constant(ir.VectorType(ir.IntType(32), self.lanes), [0] * self.lanes))
