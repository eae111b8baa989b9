"""How every kernel is compiled and launched: the JIT decorator, caching, threads, serialisation.

Environment switches (read once, at import):

``NUMBADECONV_DISABLE_CACHE=1``
    Compile in memory only; never read or write Numba's on-disk cache.
``NUMBA_CACHE_DIR``
    Where Numba keeps its on-disk cache (default: ``__pycache__`` beside the package, or a user
    directory when that is read-only). When no location is writable, kernels are compiled without a
    cache instead of failing at import.
``NUMBA_NUM_THREADS`` / ``NUMBA_THREADING_LAYER``
    Numba's own: the most threads a parallel kernel may use, and the threading layer.

Fork: a child forked from a process whose Numba threading layer is GNU OpenMP (``omp`` with
libgomp, the PyPI wheel's default on Linux) would be terminated by Numba at its first parallel
launch ("fork() called from a process already using GNU OpenMP"); in such a child every call runs
the serial kernels instead (see :func:`parallel_allowed`). Other layers (``tbb``, ``workqueue``,
Intel or LLVM OpenMP) keep their parallel kernels after fork.
"""

from __future__ import annotations

import contextlib
import ctypes
import logging
import os
import sys
import threading
from collections.abc import Callable, Iterator

import numba
import numpy as np
from numba.core.caching import Cache
from numba.core.dispatcher import Dispatcher

logger = logging.getLogger("numbadeconv")

#: Fast-math flags for the reductions: reassociation and contraction let LLVM vectorise the
#: sums; NaN and Inf still propagate (no ``nnan``/``ninf``).
FASTMATH = {"reassoc", "contract", "nsz", "arcp"}

CACHE_ENABLED = os.environ.get("NUMBADECONV_DISABLE_CACHE", "").strip() in ("", "0")


def kernel(*, parallel: bool = False, internal: bool = False) -> Callable:
    """Compile a loops-only function with the project's Numba options.

    Lazy compilation, ``cache=True`` where a cache location is writable (falling back to an
    in-memory compile, with a DEBUG log record, where it is not). ``internal`` functions are
    called from other kernels only: they get no Python wrapper (less to compile), and no cache
    of their own: their code is linked into each kernel that calls them, whose cache entry holds
    it, and processes compiling different kernels at once (:func:`numbadeconv.warmup`) would
    otherwise write the same helper's cache files (Numba does not lock them). No kernel gets a
    C-callable wrapper: the parallel loop calls the kernels' own compiled code
    (:func:`numbadeconv._kernels.parallel.address`).
    """
    options = dict(nogil=True, fastmath=FASTMATH, parallel=parallel, error_model="numpy",
                   no_cpython_wrapper=internal, no_cfunc_wrapper=True)

    def decorate(func: Callable) -> Callable:
        if CACHE_ENABLED and not internal:
            try:
                return numba.njit(cache=True, **options)(func)
            except RuntimeError as exc:  # "cannot cache function ...: no locator available"
                logger.debug("numbadeconv: caching disabled for %s: %s", func.__name__, exc)
        return numba.njit(**options)(func)

    return decorate


def on_disk(dispatcher: Dispatcher, signature: tuple) -> bool | None:
    """Whether Numba's on-disk cache holds ``dispatcher``'s code for ``signature``.

    ``signature``: as passed to ``dispatcher.compile`` (the cache keys on it as given).
    None when ``dispatcher`` is not cached on disk. (Numba has no public query: this reads its
    cache index as its own loader does; any failure reads as not cached.)
    """
    cache = getattr(dispatcher, "_cache", None)
    if not isinstance(cache, Cache):
        return None
    try:
        key = cache._index_key(signature, dispatcher.targetctx.codegen())
        return key in cache._cache_file._load_index()
    except Exception as exc:  # a changed Numba internal: compile instead
        logger.debug("numbadeconv: cannot read the cache index of %s: %s",
                     dispatcher.py_func.__name__, exc)
        return False


# --- threads ------------------------------------------------------------------------------------


def _preload_tbb() -> None:
    """Make the TBB runtime of the ``[tbb]`` extra findable by Numba when a TBB layer is asked for.

    pip puts ``libtbb.so.12`` in the environment's ``lib/``, which Numba's TBB layer (no RPATH)
    does not search: without this, ``NUMBA_THREADING_LAYER=tbb`` fails inside a virtualenv.
    Loading it first satisfies that dependency. It is not loaded otherwise: Numba would then pick
    TBB by default, and its OpenMP layer runs these kernels faster (ResNet case: 22 vs 31 ms).
    """
    requested = os.environ.get("NUMBA_THREADING_LAYER", "").strip().lower()
    lib = os.path.join(sys.prefix, "lib", "libtbb.so.12")
    if requested in ("tbb", "safe", "threadsafe", "forksafe") and os.path.exists(lib):
        try:
            ctypes.CDLL(lib, mode=ctypes.RTLD_GLOBAL)
        except OSError as exc:  # a broken install: Numba will then report the layer missing
            logger.debug("numbadeconv: could not load %s: %s", lib, exc)


_preload_tbb()

def resolve_threads(threads: int | None) -> int | None:
    """Validate a ``threads=`` argument: None (Numba's current setting) or 1..NUMBA_NUM_THREADS."""
    if threads is None:
        return None
    if isinstance(threads, bool) or not isinstance(threads, (int, np.integer)):
        raise TypeError(f"threads must be None or a positive int; got {threads!r}")
    if not 1 <= threads <= numba.config.NUMBA_NUM_THREADS:
        raise ValueError(
            f"threads must be between 1 and NUMBA_NUM_THREADS={numba.config.NUMBA_NUM_THREADS}; "
            f"got {threads}"
        )
    return int(threads)


# The workqueue threading layer aborts the process when two Python threads launch parallel
# kernels at once. Parallel launches are therefore serialised by this lock when that layer is in
# use. Which layer Numba picked is only known after the first parallel launch, which is made under
# the lock.
_launch_lock = threading.Lock()
_layer: str | None = None


@contextlib.contextmanager
def parallel_launch(threads: int) -> Iterator[None]:
    """Context for one parallel kernel launch on ``threads`` threads (thread-safe, restorable)."""
    global _layer
    serialise = _layer is None or _layer == "workqueue"
    if serialise:
        _launch_lock.acquire()
    previous = numba.get_num_threads()
    try:
        if threads != previous:  # each set costs microseconds
            numba.set_num_threads(threads)
        yield
    finally:
        if threads != previous:
            numba.set_num_threads(previous)
        if _layer is None:
            try:
                _layer = numba.threading_layer()
                logger.debug("numbadeconv: Numba threading layer is %r", _layer)
            except ValueError:  # the launch failed before any thread started
                pass
        if serialise:
            _launch_lock.release()


def threading_layer() -> str | None:
    """The Numba threading layer in use, or None before the first parallel kernel has run."""
    return _layer


# --- fork ---------------------------------------------------------------------------------------

_forked_from_gnu_openmp = False


def _gnu_openmp_in_use() -> bool:
    """Whether Numba has started its threading layer and that layer is GNU OpenMP (libgomp)."""
    try:
        layer = numba.threading_layer()
    except ValueError:  # not started: a child may start any layer itself
        return False
    if layer != "omp":
        return False
    try:
        from numba.np.ufunc import omppool
    except ImportError:  # pragma: no cover - the layer is omp, so the module was loaded
        return True
    return getattr(omppool, "openmp_vendor", "GNU") == "GNU"


def _after_fork_in_child() -> None:
    global _launch_lock, _forked_from_gnu_openmp
    # Another thread of the parent may have held the lock at fork time; it does not exist here.
    _launch_lock = threading.Lock()
    if _gnu_openmp_in_use():
        _forked_from_gnu_openmp = True


if hasattr(os, "register_at_fork"):  # POSIX
    os.register_at_fork(after_in_child=_after_fork_in_child)


def parallel_allowed() -> bool:
    """False in a process forked from one whose threading layer is GNU OpenMP.

    There Numba terminates the process at the first parallel launch, so the caller must run the
    serial kernels.
    """
    if _forked_from_gnu_openmp:
        logger.debug("numbadeconv: forked from a GNU OpenMP process; running serial kernels")
        return False
    return True
