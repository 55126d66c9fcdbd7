"""The fast path's threads: the catalogue's blocks shared among worker threads, and BLAS on
one thread while they run.

A step's large products (the scores against every item, and the table's gradient) are done
here in blocks of rows, each block a small BLAS product followed by the work on its result
(the ``exp``, the sums, Adam's update) while the block is in cache. :func:`for_row_blocks`
hands each thread a contiguous range of blocks; NumPy's products and the Numba loops release
the GIL, so Python threads run them on every core. Each thread owns its blocks, and a
block's result does not depend on which thread made it, so nothing depends on the thread
count. The thread count is Numba's (``numba.set_num_threads``), one knob for both.

BLAS must then stay on the thread that calls it: it would otherwise split each block among
its own threads too, and two callers would contend for its one pool (and a small product on
two threads waits longer for its second thread to wake than it saves).
:func:`blas_on_one_thread` sets NumPy's BLAS to one thread for exactly as long as the fast
path's blocks run, and back, through threadpoolctl (the library scikit-learn and NumPy's
own tooling use for this): a change scoped to the fast path's own work, made in every
program that uses it, a script or notebook as much as the command line. Where the BLAS is
one threadpoolctl cannot set, nothing is switched and the blocks run on the calling thread
alone, BLAS on its own threads: the same results, slower.
"""

from __future__ import annotations

import contextlib
from concurrent.futures import ThreadPoolExecutor

import numba
import numpy as np
from threadpoolctl import ThreadpoolController

__all__ = ["BLOCK", "blas_on_one_thread", "blas_threads", "for_row_blocks", "n_blocks",
           "split_among_threads", "switching"]

# rows per block: a block of the scores (B columns) or of the table (D) stays in a core's cache
BLOCK = 1024


def n_blocks(n_rows):
    """How many blocks of :data:`BLOCK` rows cover ``n_rows`` (the last one may be short)."""
    return -(-n_rows // BLOCK)


_blas = None  # threadpoolctl's handle on the BLAS libraries loaded, made on first use


def _controller():
    global _blas
    if _blas is None:
        _blas = ThreadpoolController().select(user_api="blas")
    return _blas


def blas_threads() -> int | None:
    """How many threads NumPy's BLAS uses now; None where it cannot be told."""
    info = _controller().info()
    return info[0]["num_threads"] if info else None


def switching() -> bool:
    """Whether the fast path can set BLAS's threads (threadpoolctl knows the BLAS loaded)."""
    return bool(_controller().lib_controllers)


@contextlib.contextmanager
def blas_on_one_thread():
    """Within the block, BLAS runs every product on its calling thread, if :func:`switching`;
    the count found on entry is restored on exit, also on an exception.

    threadpoolctl lets one thread at a time control a BLAS with a process-wide pool
    (OpenBLAS): the first to set it, as long as it lives -- in a script, the main thread.
    The blocks' own calls come from it; a block entered from another thread at the same
    time sets nothing and restores nothing, and the count is the controlling thread's.
    """
    if not switching():
        yield
        return
    libraries = _controller().lib_controllers
    before = [library.get_num_threads() for library in libraries]
    for library in libraries:
        library.set_num_threads(1)
    try:
        yield
    finally:
        for library, n in zip(libraries, before):
            library.set_num_threads(n)


_pool = None  # worker threads for split_among_threads, created on first use


def split_among_threads(fn, n, *args, n_threads=None):
    """``fn(lo, hi, *args)`` on contiguous ranges of ``0..n-1``, one per thread, and wait
    for all; a worker's exception is raised here, once every worker is done.

    ``n_threads`` defaults to Numba's thread count; the pool is made on first use, not on
    import. ``fn`` should release the GIL (NumPy's products, ``nogil`` Numba loops) for the
    threads to run at once. Idle workers wait on a queue: none spins on a core.
    """
    global _pool
    n_threads = max(1, min(numba.get_num_threads() if n_threads is None else n_threads, n))
    bounds = np.linspace(0, n, n_threads + 1).astype(int)
    if n_threads == 1:
        fn(0, n, *args)
        return
    if _pool is None:
        _pool = ThreadPoolExecutor(max_workers=numba.config.NUMBA_NUM_THREADS - 1,
                                   thread_name_prefix="srsan-rows")
    futures = [_pool.submit(fn, bounds[i], bounds[i + 1], *args) for i in range(1, n_threads)]
    errors = []
    try:
        fn(bounds[0], bounds[1], *args)  # the calling thread takes the first range
    except BaseException as error:  # raised below, once every worker is done
        errors.append(error)
    for future in futures:  # every worker finishes before the caller goes on
        if future.exception() is not None:
            errors.append(future.exception())
    if errors:
        raise errors[0]


def for_row_blocks(fn, n_blocks, *args):
    """:func:`split_among_threads` over ``n_blocks`` blocks, BLAS on one thread meanwhile
    (:func:`blas_on_one_thread`); without :func:`switching`, all of them on the calling
    thread (BLAS on its own threads)."""
    with blas_on_one_thread():
        split_among_threads(fn, n_blocks, *args, n_threads=None if switching() else 1)
