"""One parallel loop for every kernel: the jobs of a serial kernel over ``prange``.

Every kernel is written as ``X_serial(*args, first, last)``, which runs jobs ``first`` to ``last``
(each job writes its own outputs, so jobs are independent and may run twice). :func:`run_jobs`
runs all of a call's jobs over the threads, calling the serial kernel's compiled code through its
address: a parallel loop that called the kernel by name would link a copy of its body, and
Numba would optimise that copy again for every kernel and dtype (about 60 % of all compile
time). This loop compiles in a fraction of a second per signature, whatever it calls.

Numba's parallel loops drop the errors of the functions they call; :func:`run_jobs` counts the
jobs that failed (an out-of-bounds index under ``NUMBA_BOUNDSCHECK=1``, or memory exhausted
for a job's buffers) so that the caller can run them again serially and raise the error.
"""

from __future__ import annotations

import numba
from numba import prange, types
from numba._dispatcher import compute_fingerprint
from numba.core.dispatcher import Dispatcher
from numba.extending import intrinsic

from .._jit import kernel


@intrinsic
def _call_job(typingctx, address, args, job):
    """Call ``serial(*args, job, job + 1)``, the serial kernel compiled at ``address``.

    Returns 1 if the call failed (raised), else 0.
    """
    sig = types.int64(address, args, job)

    def codegen(context, builder, signature, values):
        address_v, args_v, job_v = values
        i64 = types.int64
        first = context.cast(builder, job_v, job, i64)
        last = builder.add(first, context.get_constant(i64, 1))
        arg_types = [*args.types, i64, i64]
        arg_values = [builder.extract_value(args_v, i) for i in range(len(args))] + [first, last]
        function_type = context.call_conv.get_function_type(types.none, arg_types)
        function = builder.inttoptr(address_v, function_type.as_pointer())
        status, _ = context.call_conv.call_function(builder, function, types.none, arg_types,
                                                    arg_values)
        return builder.zext(status.is_error, context.get_value_type(i64))

    return sig, codegen


@kernel(parallel=True)
def run_jobs(address, n_jobs, args):
    """Run jobs 0 to ``n_jobs`` of the serial kernel at ``address`` on ``args`` over threads.

    Returns the number of jobs that failed.
    """
    failed = 0
    for j in prange(n_jobs):
        failed += _call_job(address, args, j)
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
