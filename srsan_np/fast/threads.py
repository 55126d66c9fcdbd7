"""The fast path's threads: the catalogue's blocks shared among worker threads, and BLAS on
one thread while they run.

A step's large products (the scores against every item, and their two backward products)
are done here in blocks of rows, each block a small BLAS product followed by the work on
its result (the ``exp``, the sums) while the block is in cache. :func:`for_row_blocks`
hands each thread a contiguous range of blocks; NumPy's products and the Numba loops
release the GIL, so Python threads run them on every core. Each thread owns its blocks, and
a block's result does not depend on which thread made it, so nothing depends on the thread
count.

BLAS must then stay on the thread that calls it: OpenBLAS would otherwise split each block
among its own threads too, and two callers would contend for its one pool (and a small
product on two threads waits longer for its second thread to wake than it saves).
:func:`blas_on_one_thread` sets NumPy's OpenBLAS to one thread and back, through the
``*_set_num_threads`` function OpenBLAS exports; where NumPy's BLAS is not an OpenBLAS this
module can find, it does nothing, and the results are the same, only slower.
"""

from __future__ import annotations

import contextlib
import ctypes
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numba
import numpy as np

__all__ = ["blas_on_one_thread", "blas_threads", "for_row_blocks"]

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


@contextlib.contextmanager
def blas_on_one_thread():
    """Within the block, NumPy's OpenBLAS runs every product on its calling thread; the
    thread count it had is restored on exit (also on an exception)."""
    functions = _functions()
    before = functions[0]() if functions else 1
    if before == 1:
        yield
        return
    functions[1](1)
    try:
        yield
    finally:
        functions[1](before)


_pool = None  # worker threads for for_row_blocks, created on first use


def for_row_blocks(fn, n_blocks, *args):
    """``fn(lo, hi, *args)`` on contiguous ranges of ``0..n_blocks-1``, one per thread, and
    wait for all; BLAS on one thread meanwhile (:func:`blas_on_one_thread`).

    The thread count is Numba's (``NUMBA_NUM_THREADS`` or ``numba.set_num_threads``), one
    knob for both; the pool is made on first use, not on import. A worker's exception is
    raised here.
    """
    global _pool
    n_threads = max(1, min(numba.get_num_threads(), n_blocks))
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
