"""Ahead-of-time compilation of every kernel (:func:`warmup`), in worker processes where it helps.

Numba compiles one function at a time in a process (its compiler lock), so a cold warmup compiles
the kernels that the on-disk cache lacks in worker processes, one per core: each worker takes the
next kernel (all its signatures) whenever it is free, compiles it into the cache, and this process
then loads them all. Each kernel is compiled by one process only, and the helpers that kernels
share are not cached (:func:`numbadeconv._jit.kernel`), so no two processes write the same cache
file. Without a writable cache, on one core, or with ``processes=1``, everything compiles here.
"""

from __future__ import annotations

import logging
import os
import queue
import subprocess
import sys
import threading
import time
from collections.abc import Sequence

import numba
import numpy as np
from numba import types
from numba.core.dispatcher import Dispatcher

from . import _jit
from ._engine import _CORRELATE
from ._kernels import copies, filter_grad, parallel, planar

logger = logging.getLogger("numbadeconv")

#: What a worker process runs (arguments: the dtype, the directory holding this package): it
#: imports this very package, whatever its working directory holds, and compiles the units whose
#: indices arrive on its stdin.
_WORKER = ("import sys; sys.path.insert(0, sys.argv[2]); "
           "from numbadeconv._warmup import _serve; _serve(sys.argv[1])")


def _units(dtype: np.dtype) -> list[tuple[Dispatcher, list[tuple]]]:
    """Every kernel with the signatures the operations call it with, for ``dtype``.

    Longest compile first (measured on one dtype: the depthwise kernel 5.5-8.6 s, the
    outer-product kernel 4.5-6 s, the tiled kernel, the filter gradient and the filter packing
    2-3.8 s each, the row-wise and planar kernels 1.4-2 s, the others 0.3-1.4 s, the parallel
    loop ~0.5 s (one signature for every kernel and dtype), its argument stores 0.1-0.4 s per
    signature), so that the workers finish together.
    """
    f = types.float32 if dtype == np.float32 else types.float64
    i64 = types.int64
    ints = types.Array(i64, 1, "C")
    correlate_args = (types.Array(f, 3, "C"), types.Array(f, 1, "C"), types.Array(f, 4, "C"),
                      types.Array(i64, 2, "C"), ints, ints, types.Array(f, 1, "C"))
    grad_args = (types.Array(f, 3, "C"), types.Array(f, 4, "C"), types.Array(f, 5, "C"), ints)
    pad_args = (types.Array(f, 4, "C"), types.Array(f, 3, "C"), i64, i64)  # both layouts
    pack_args = (types.Array(f, 1, "C"), ints, ints, types.Array(f, 1, "C"))
    planar_args = (types.Array(f, 3, "C"), types.Array(f, 1, "C"), types.Array(f, 4, "C"), ints,
                   ints, types.Array(f, 1, "C"))
    kernels = [(_CORRELATE["depthwise"], correlate_args), (_CORRELATE["outer"], correlate_args),
               (_CORRELATE["tiled"], correlate_args),
               (filter_grad.filter_grad_serial, grad_args), (copies.pack_serial, pack_args),
               (_CORRELATE["rowwise"], correlate_args), (planar.planar_serial, planar_args),
               (filter_grad.depthwise_filter_grad_serial, grad_args),
               (copies.pad_channels_first_serial, pad_args), (copies.pad_serial, pad_args),
               (copies.pad_planes_serial, pad_args),
               (filter_grad.sum_slabs_serial,
                (types.Array(f, 2, "C"), types.Array(f, 1, "C"), i64))]
    launches = sorted({types.BaseTuple.from_types(args) for _, args in kernels}, key=str)
    units = [(serial, [(*args, i64, i64)]) for serial, args in kernels]
    units[8:8] = [(parallel.run_jobs, [(i64, i64, i64, i64, i64)]),
                  (parallel.store, [(args,) for args in launches])]
    return units


def _serve(dtype_name: str) -> None:
    """A worker: compile the units whose indices come on stdin, one line each; answer each."""
    units = _units(np.dtype(dtype_name))
    for line in sys.stdin:
        dispatcher, signatures = units[int(line)]
        try:
            for signature in signatures:
                dispatcher.compile(signature)
            reply = "ok"
        except Exception as exc:  # reported to the parent, which compiles the unit itself
            reply = f"failed: {type(exc).__name__}: {exc}".replace("\n", " ")
        print(reply, flush=True)


def _usable_cores() -> int:
    """The cores this process may run on."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not Linux
        return os.cpu_count() or 1


def _compile_in_workers(dtype: np.dtype, todo: list[int], n_workers: int) -> None:
    """Compile units ``todo`` of ``_units(dtype)`` into the on-disk cache in worker processes.

    Best effort: a unit that a worker could not compile is left to the caller.
    """
    env = dict(os.environ)
    package_root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    if numba.config.CACHE_DIR:  # also when set in this process after import
        env["NUMBA_CACHE_DIR"] = numba.config.CACHE_DIR
    pending: queue.SimpleQueue[int] = queue.SimpleQueue()
    for index in todo:
        pending.put(index)

    def drive() -> None:
        try:
            with subprocess.Popen([sys.executable, "-c", _WORKER, dtype.name, package_root],
                                  env=env, stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                  stderr=subprocess.DEVNULL, text=True) as worker:
                while True:
                    try:
                        index = pending.get_nowait()
                    except queue.Empty:
                        break
                    worker.stdin.write(f"{index}\n")
                    worker.stdin.flush()
                    reply = worker.stdout.readline().strip()
                    if reply != "ok":
                        logger.debug("numbadeconv: warmup worker on unit %d: %s", index,
                                     reply or "exited")
                        if not reply:
                            break
                worker.stdin.close()
        except OSError as exc:  # no interpreter to start, or the worker's pipe broke
            logger.debug("numbadeconv: warmup worker: %s", exc)

    drivers = [threading.Thread(target=drive, daemon=True) for _ in range(n_workers)]
    for driver in drivers:
        driver.start()
    for driver in drivers:
        driver.join()


def warmup(dtypes: Sequence[str] = ("float32", "float64"),
           processes: int | None = None) -> dict[str, float]:
    """Compile (or load from the on-disk cache) every kernel for ``dtypes``.

    Compiles by explicit signature: exactly the specialisations the operations call. Kernels that
    the on-disk cache lacks are compiled in up to ``processes`` worker processes at once, which
    write them to the cache, and then loaded here (the work is the same; on 2 cores it takes
    about half the time).

    Parameters
    ----------
    dtypes : {"float32", "float64"} or a sequence of them (or of the NumPy dtypes)
    processes : int, optional
        Most processes compiling at once. Default: one per core this process may run on.
        1 compiles everything in this process. Without a writable on-disk cache
        (``NUMBADECONV_DISABLE_CACHE=1``, or no writable location) everything compiles here.

    Returns
    -------
    dict
        Seconds spent per dtype (compiling, or loading from the cache).
    """
    if processes is not None:
        if isinstance(processes, bool) or not isinstance(processes, (int, np.integer)):
            raise TypeError(f"processes must be None or a positive int; got {processes!r}")
        if processes < 1:
            raise ValueError(f"processes must be at least 1; got {processes}")
    if isinstance(dtypes, (str, np.dtype, type)):  # one dtype
        dtypes = (dtypes,)
    checked = []
    for name in dtypes:
        try:
            dtype = np.dtype(name)
        except TypeError:  # not a dtype at all
            dtype = None
        if dtype not in (np.float32, np.float64):
            raise ValueError(f"warmup dtypes must be 'float32' or 'float64'; got {name!r}")
        checked.append(dtype)
    timings = {}
    for dtype in checked:
        start = time.perf_counter()
        units = _units(dtype)
        cached = [[_jit.on_disk(dispatcher, s) for s in signatures]
                  for dispatcher, signatures in units]
        todo = [i for i, found in enumerate(cached) if not all(found)]
        n_workers = min(len(todo), _usable_cores() if processes is None else int(processes))
        if n_workers > 1 and sys.executable and all(
                found is not None for unit in cached for found in unit):
            _compile_in_workers(dtype, todo, n_workers)
        for dispatcher, signatures in units:
            for signature in signatures:
                dispatcher.compile(signature)
        timings[dtype.name] = time.perf_counter() - start
    return timings
