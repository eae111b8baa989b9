"""One parallel loop for every kernel and dtype: the jobs of a serial kernel over ``prange``.

Every kernel is written as ``X_serial(*args, first, last)``, which runs jobs ``first`` to ``last``
(each job writes its own outputs, so jobs are independent and may run twice). :func:`run_jobs`
runs all of a call's jobs over the threads, each thread's share of consecutive jobs in one call
of the serial kernel's compiled code, through its address: a parallel loop that called the
kernel by name would link a copy of its body, and Numba would optimise that copy again for every
kernel and dtype (about 60 % of all compile time). Its arguments are five integers whatever the
kernel: the kernel's arguments go through :func:`store`, which copies them into a buffer and
returns the address of a small function (a "thunk", compiled with it once per argument types)
that calls the kernel on them; so the parallel loop compiles once, for all kernels and both
dtypes (a loop per argument types took ~0.6 s each, four per dtype), and :func:`store` in a
fraction of that. The copy costs a launch about a microsecond (the smallest parallel calls,
~30 us, 1.00-1.03 of the time before).

Numba's parallel loops drop the errors of the functions they call; :func:`run_jobs` counts the
calls that failed (an out-of-bounds index under ``NUMBA_BOUNDSCHECK=1``, or memory exhausted
for a job's buffers) so that the caller can run the jobs again serially and raise the error.
"""

from __future__ import annotations

import numba
import numpy as np
from llvmlite import ir
from numba import prange, types
from numba._dispatcher import compute_fingerprint
from numba.core import cgutils
from numba.core.dispatcher import Dispatcher
from numba.extending import intrinsic

from .._jit import kernel
from .simd import I64

#: A thunk: ``thunk(address, block, first, last)`` calls the serial kernel at ``address`` on the
#: arguments stored at ``block``, for jobs ``first`` to ``last``; returns 1 if it raised, else 0.
_THUNK = ir.FunctionType(I64, [I64] * 4)


def _thunk(context, module, args: types.BaseTuple) -> ir.Function:
    """The thunk of serial kernels taking ``args`` (then ``first, last``), defined in ``module``.

    Internal to ``module``, which :func:`store` compiles for ``args`` alone: one name is enough.
    """
    try:
        return module.get_global("numbadeconv_jobs")
    except KeyError:
        pass
    thunk = ir.Function(module, _THUNK, "numbadeconv_jobs")
    thunk.linkage = "internal"
    builder = ir.IRBuilder(thunk.append_basic_block())
    address, block, first, last = thunk.args
    stored = builder.load(builder.inttoptr(block, context.get_value_type(args).as_pointer()),
                          align=1)
    arg_types = [*args.types, types.int64, types.int64]
    arg_values = [builder.extract_value(stored, i) for i in range(len(args))] + [first, last]
    function_type = context.call_conv.get_function_type(types.none, arg_types)
    function = builder.inttoptr(address, function_type.as_pointer())
    status, _ = context.call_conv.call_function(builder, function, types.none, arg_types,
                                                arg_values)
    builder.ret(builder.zext(status.is_error, I64))
    return thunk


@intrinsic
def _size(typingctx, args):
    """Bytes of ``args`` (a tuple) as :func:`_stored` stores it."""

    def codegen(context, builder, signature, values):
        return ir.Constant(I64, context.get_abi_sizeof(context.get_value_type(args)))

    return types.int64(args), codegen


@intrinsic
def _stored(typingctx, args, buffer):
    """Copy ``args`` (a tuple) into ``buffer`` (uint8, :func:`_size` bytes).

    Returns (the address of its thunk, the address of the copy). The copy's arrays own no
    reference (their NRT meminfo and parent are null): the caller keeps the arrays alive while
    the copy is in use.
    """

    def codegen(context, builder, signature, values):
        value, buffer_v = values
        for i, typ in enumerate(args.types):
            if isinstance(typ, types.Array):
                array = builder.extract_value(value, i)
                for field in (0, 1):  # meminfo, parent
                    array = builder.insert_value(
                        array, ir.Constant(array.type.elements[field], None), field)
                value = builder.insert_value(value, array, i)
        data = cgutils.create_struct_proxy(signature.args[1])(context, builder,
                                                               value=buffer_v).data
        builder.store(value, builder.bitcast(data, value.type.as_pointer()), align=1)
        addresses = [builder.ptrtoint(_thunk(context, builder.module, args), I64),
                     builder.ptrtoint(data, I64)]
        return context.make_tuple(builder, signature.return_type, addresses)

    return types.UniTuple(types.int64, 2)(args, buffer), codegen


@kernel()
def store(args):
    """``args`` (a tuple) for :func:`run_jobs`: (buffer, thunk, block).

    ``block`` is the address of the copy of ``args`` in ``buffer``; keep ``buffer`` and the
    arrays in ``args`` alive until :func:`run_jobs` returns.
    """
    buffer = np.empty(_size(args), np.uint8)
    thunk, block = _stored(args, buffer)
    return buffer, thunk, block


@intrinsic
def _call_jobs(typingctx, thunk, address, block, first, last):
    """``thunk(address, block, first, last)``: 1 if a job failed (raised), else 0."""

    def codegen(context, builder, signature, values):
        thunk_v, *arguments = (context.cast(builder, v, t, types.int64)
                               for v, t in zip(values, signature.args, strict=True))
        return builder.call(builder.inttoptr(thunk_v, _THUNK.as_pointer()), arguments)

    return types.int64(thunk, address, block, first, last), codegen


@kernel(parallel=True)
def run_jobs(thunk, address, block, n_jobs, n_calls):
    """Run jobs 0 to ``n_jobs`` of the serial kernel at ``address`` in ``n_calls`` calls.

    Its arguments are stored at ``block`` and ``thunk`` calls it on them (:func:`store`). Call
    ``r`` runs jobs ``r*n_jobs // n_calls`` to ``(r+1)*n_jobs // n_calls``: with a call per
    thread, each thread's jobs are those that Numba's static schedule of a loop over the jobs
    would give it, in one call of the kernel, which sets up its scratch once (a call per job, 2
    threads: a padded copy of 1104 rows of 138 floats took 38 us, not 16; packing the FCN layer's
    filters, 12288 packs, 1.14 ms, not 0.90). Returns the number of calls that failed.
    """
    failed = 0
    for r in prange(n_calls):
        failed += _call_jobs(thunk, address, block, r * n_jobs // n_calls,
                             (r + 1) * n_jobs // n_calls)
    return failed


_addresses: dict[tuple, int] = {}


def address(serial: Dispatcher, args: tuple) -> int:
    """The address of ``serial``'s compiled code for ``args`` (followed by ``first, last``).

    Compiles that specialisation (or loads it from the cache) on first use.
    """
    key = (serial, *map(compute_fingerprint, args))
    found = _addresses.get(key)
    if found is None:
        signature = (*map(numba.typeof, args), types.int64, types.int64)
        serial.compile(signature)
        compiled = serial.overloads[signature]
        found = compiled.library.get_pointer_to_function(compiled.fndesc.llvm_func_name)
        _addresses[key] = found
    return found
