"""The process around srsan-np: what the command line sets up before anything else, and the
one place environment variables are read.

The library reads no environment variable: its settings are parameters, and the fast path
is fast by default, in a script or notebook as on the command line. The command line's
defaults come from these (docs/cli.md, "Environment"):

``TQDM_DISABLE``
    Set: no progress bars (else a bar while an epoch trains, on a terminal only).
``SRSAN_EXERCISES``
    The learner's workspace, where no directory is named.
``SRSAN_NP_TEST_KILL_AT``
    The kill tests' hook (:func:`srsan_np.files.set_kill_point`); not meant for anything else.
``NUMBA_CACHE_DIR``
    Read by Numba; where it is unset and Numba cannot cache beside the package or in the
    user's cache folder, :func:`numba_cache_fallback` picks a folder.

and :func:`configure_threads` gives two libraries, which read only the environment, the
command line's defaults for their idle threads.
"""

from __future__ import annotations

import os
import sys
import tempfile
from pathlib import Path

__all__ = ["THREAD_SETTINGS", "configure_threads", "progress_bars", "exercises_directory",
           "child_environment", "test_kill_point", "numba_cache_fallback"]

THREAD_SETTINGS = {
    # OpenMP workers (Numba's "omp" threading layer) sleep as soon as a parallel region ends
    # instead of spinning; read when libgomp starts, at Numba's first parallel kernel.
    "OMP_WAIT_POLICY": "passive",
    # OpenBLAS workers spin for 2^N cycles after a product before they sleep (default N=28);
    # read when OpenBLAS loads, i.e. when NumPy is first imported.
    "OPENBLAS_THREAD_TIMEOUT": "4",
}


def configure_threads() -> dict[str, str]:
    """Set :data:`THREAD_SETTINGS` in ``os.environ`` where the user has not set them: idle
    OpenMP and OpenBLAS threads sleep instead of spinning on a core the other needs next.

    The command line calls it first; a script may too. A value already in the environment
    is kept. Call it before NumPy is imported, or OpenBLAS will not see its setting (a
    warning says so).
    """
    if "numpy" in sys.modules and "OPENBLAS_THREAD_TIMEOUT" not in os.environ:
        print("srsan-np: warning: configure_threads() called after NumPy was imported; "
              "OPENBLAS_THREAD_TIMEOUT takes effect only if set before", file=sys.stderr)
    for name, value in THREAD_SETTINGS.items():
        os.environ.setdefault(name, value)
    return {name: os.environ[name] for name in THREAD_SETTINGS}


def progress_bars() -> bool | None:
    """``TQDM_DISABLE``: False when set, else None (a bar on a terminal only)."""
    return False if os.environ.get("TQDM_DISABLE") else None


def exercises_directory() -> Path | None:
    """``SRSAN_EXERCISES``, the learner's workspace, or None if unset."""
    value = os.environ.get("SRSAN_EXERCISES")
    return Path(value) if value else None


def child_environment(**changes) -> dict[str, str]:
    """This process's environment with ``changes``: for a child process of srsan-np's."""
    return {**os.environ, **changes}


def test_kill_point() -> str | None:
    """``SRSAN_NP_TEST_KILL_AT``, the kill tests' hook, or None."""
    return os.environ.get("SRSAN_NP_TEST_KILL_AT") or None


def numba_cache_fallback() -> None:
    """Give Numba a cache directory it can write, before any cached function is defined.

    Numba caches beside the sources, else in the user's cache folder, and raises at import
    when it can write neither (a read-only install, no writable HOME). Then the cache goes
    to a folder of the temporary directory, or, if that cannot be written either, compiled
    code is not cached at all; one warning either way. ``NUMBA_CACHE_DIR``, when set, is
    the user's choice and is kept. Set through ``numba.config``: no environment variable
    changes.
    """
    import numba
    if numba.config.CACHE_DIR:
        return
    from numba.misc.appdirs import AppDirs

    def writable(folder):
        try:
            Path(folder).mkdir(parents=True, exist_ok=True)
            with tempfile.TemporaryFile(dir=folder):
                return True
        except OSError:
            return False

    package = Path(__file__).resolve().parent
    beside = all(writable(d / "__pycache__") for d in {p.parent for p in package.rglob("*.py")})
    if beside or writable(AppDirs(appname="numba", appauthor=False).user_cache_dir):
        return
    try:
        fallback = Path(tempfile.gettempdir()) / f"srsan-np-numba-cache-{os.getuid()}"
    except (OSError, AttributeError):  # no usable temporary folder; no getuid on Windows
        fallback = None
    if fallback is not None and writable(fallback):
        numba.config.CACHE_DIR = str(fallback)
        where = f"compiled code is cached in {fallback}"
    else:
        # Numba has no switch for "cache nowhere": its dispatchers keep the no-op cache
        # they start with when enabling a cache is made a no-op
        from numba.core.dispatcher import Dispatcher
        Dispatcher.enable_caching = lambda self: None
        where = "compiled code is not cached (each command compiles what it uses)"
    print(f"srsan-np: warning: cannot write Numba's cache beside the package or in the user "
          f"cache folder; {where}", file=sys.stderr)
