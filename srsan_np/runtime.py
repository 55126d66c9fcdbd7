"""Thread settings for the libraries srsan-np runs on, made by an explicit call.

NumPy's BLAS (OpenBLAS) and Numba's parallel kernels (OpenMP) share the cores within a
training step, one after the other, every few milliseconds. Left at their defaults, both
keep their idle threads spinning after each call, holding a core the other one needs next.
:func:`configure_threads` asks both to sleep when idle instead, and lets the fast path set
OpenBLAS to one thread while its own threads share a product's blocks
(:mod:`srsan_np.fast.threads`). Importing ``srsan_np``
changes nothing: the command line (:func:`main`) and the benchmarks call this first, and a
notebook or script of yours may too.
"""

from __future__ import annotations

import os
import sys

__all__ = ["THREAD_SETTINGS", "configure_threads", "main"]

THREAD_SETTINGS = {
    # OpenMP workers (Numba's "omp" threading layer) sleep as soon as a parallel region ends
    # instead of spinning; read when libgomp starts, at Numba's first parallel kernel.
    "OMP_WAIT_POLICY": "passive",
    # OpenBLAS workers spin for 2^N cycles after a product before they sleep (default N=28);
    # read when OpenBLAS loads, i.e. when NumPy is first imported.
    "OPENBLAS_THREAD_TIMEOUT": "4",
    # srsan-np's fast path may set NumPy's OpenBLAS to one thread while its own threads
    # share a product's blocks, and set it back after (srsan_np.fast.threads); read at
    # each call. Unset (or "0"): it leaves BLAS's thread count alone and runs the blocks
    # on the calling thread: the same results, slower.
    "SRSAN_NP_BLAS_SWITCH": "1",
}


def configure_threads() -> dict[str, str]:
    """Set :data:`THREAD_SETTINGS` in ``os.environ`` where the user has not set them.

    A value already in the environment is kept: yours override these. Call it before
    NumPy is imported, or OpenBLAS will not see its setting (a warning says so).

    Returns
    -------
    dict[str, str]
        The settings in force afterwards.
    """
    if "numpy" in sys.modules and "OPENBLAS_THREAD_TIMEOUT" not in os.environ:
        print("srsan-np: warning: configure_threads() called after NumPy was imported; "
              "OPENBLAS_THREAD_TIMEOUT takes effect only if set before", file=sys.stderr)
    for name, value in THREAD_SETTINGS.items():
        os.environ.setdefault(name, value)
    return {name: os.environ[name] for name in THREAD_SETTINGS}


def main(argv=None) -> int:
    """The ``srsan-np`` command: thread settings first, then :func:`srsan_np.cli.main`."""
    configure_threads()
    from srsan_np.cli import main as cli_main

    return cli_main(argv)
