"""The fast path's threads: the catalogue's blocks shared among worker threads, and BLAS on
one thread while they run.

A step's large products (the scores against every item, and the table's gradient) are done
here in blocks of rows, each block a small BLAS product followed by the work on its result
(the ``exp``, the sums, Adam's update) while the block is in cache. :func:`for_row_blocks`
hands each thread a contiguous range of blocks; NumPy's products and the Numba loops release
the GIL, so Python threads run them on every core. Each thread owns its blocks, and a
block's result does not depend on which thread made it, so nothing depends on the thread
count.

BLAS must then stay on the thread that calls it: OpenBLAS would otherwise split each block
among its own threads too, and two callers would contend for its one pool (and a small
product on two threads waits longer for its second thread to wake than it saves).
:func:`blas_on_one_thread` sets NumPy's OpenBLAS to one thread and back, through the
``*_set_num_threads`` function OpenBLAS exports. That is a process-wide setting, so the
library switches it only when asked: ``SRSAN_NP_BLAS_SWITCH=1`` in the environment, which
:func:`srsan_np.runtime.configure_threads` sets (the command line, the notebooks and the
benchmarks call it). Otherwise, and where NumPy's BLAS is not an OpenBLAS this module can
find, nothing is switched and the blocks run on the calling thread alone, BLAS on its own
threads: the same results, slower.
"""

from __future__ import annotations

import contextlib
import ctypes
import os
import threading
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numba
import numpy as np

__all__ = ["BLOCK", "blas_on_one_thread", "blas_threads", "for_row_blocks", "n_blocks",
           "switching"]

# rows per block: a block of the scores (B columns) or of the table (D) stays in a core's cache
BLOCK = 1024


def n_blocks(n_rows):
    """How many blocks of :data:`BLOCK` rows cover ``n_rows`` (the last one may be short)."""
    return -(-n_rows // BLOCK)


# the names OpenBLAS builds export: NumPy's own (scipy-openblas, 64-bit integers), then others
_PREFIXES = ("scipy_openblas", "openblas")
_SUFFIXES = ("64_", "")


def _find_openblas():
    """``(get_num_threads, set_num_threads)`` of the OpenBLAS NumPy ships, or None.

    NumPy's wheels carry it beside the package (``numpy.libs`` on Linux and Windows,
    ``numpy/.dylibs`` on macOS); loading it again returns the library already loaded.
    """
    package = Path(np.__file__).parent
    for folder in (package.parent / "numpy.libs", package / ".dylibs"):
        for path in sorted(folder.glob("*openblas*")) if folder.is_dir() else ():
            try:
                lib = ctypes.CDLL(str(path))
            except OSError:
                continue
            for prefix in _PREFIXES:
                for suffix in _SUFFIXES:
                    get = getattr(lib, f"{prefix}_get_num_threads{suffix}", None)
                    set_ = getattr(lib, f"{prefix}_set_num_threads{suffix}", None)
                    if get is not None and set_ is not None:
                        get.restype, set_.argtypes = ctypes.c_int, [ctypes.c_int]
                        return get, set_
    return None


_openblas = None  # (get, set), found on first use, not on import; False: not found


def _functions():
    global _openblas
    if _openblas is None:
        _openblas = _find_openblas() or False
    return _openblas


def blas_threads() -> int | None:
    """How many threads NumPy's OpenBLAS uses now; None where it cannot be told."""
    functions = _functions()
    return functions[0]() if functions else None


def switching() -> bool:
    """Whether the fast path may switch BLAS's threads: asked (``SRSAN_NP_BLAS_SWITCH=1``)
    and able (NumPy's OpenBLAS found)."""
    return os.environ.get("SRSAN_NP_BLAS_SWITCH") == "1" and bool(_functions())


_switch_lock = threading.Lock()
_switch = {"depth": 0, "before": 1}  # blocks in progress, and the count found by the first


@contextlib.contextmanager
def blas_on_one_thread():
    """Within the block, NumPy's OpenBLAS runs every product on its calling thread, if
    :func:`switching`; the count found on entry is restored when the last such block in
    progress (in any thread) exits, also on an exception."""
    if not switching():
        yield
        return
    get, set_ = _functions()
    with _switch_lock:
        if _switch["depth"] == 0:
            _switch["before"] = get()
            set_(1)
        _switch["depth"] += 1
    try:
        yield
    finally:
        with _switch_lock:
            _switch["depth"] -= 1
            if _switch["depth"] == 0:
                set_(_switch["before"])


_pool = None  # worker threads for for_row_blocks, created on first use


def for_row_blocks(fn, n_blocks, *args):
    """``fn(lo, hi, *args)`` on contiguous ranges of ``0..n_blocks-1``, one per thread, and
    wait for all; BLAS on one thread meanwhile (:func:`blas_on_one_thread`). Without
    :func:`switching`, all of them on the calling thread.

    The thread count is Numba's (``NUMBA_NUM_THREADS`` or ``numba.set_num_threads``), one
    knob for both; the pool is made on first use, not on import. A worker's exception is
    raised here.
    """
    global _pool
    n_threads = max(1, min(numba.get_num_threads(), n_blocks)) if switching() else 1
    bounds = np.linspace(0, n_blocks, n_threads + 1).astype(int)
    with blas_on_one_thread():
        if n_threads == 1:
            fn(0, n_blocks, *args)
            return
        if _pool is None:
            _pool = ThreadPoolExecutor(max_workers=numba.config.NUMBA_NUM_THREADS - 1,
                                       thread_name_prefix="srsan-rows")
        futures = [_pool.submit(fn, bounds[i], bounds[i + 1], *args)
                   for i in range(1, n_threads)]
        errors = []
        try:
            fn(bounds[0], bounds[1], *args)  # the calling thread takes the first range
        except BaseException as error:  # raised below, once every worker is done
            errors.append(error)
        for future in futures:  # every worker finishes before BLAS gets its threads back
            if future.exception() is not None:
                errors.append(future.exception())
        if errors:
            raise errors[0]
