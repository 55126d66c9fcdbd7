"""The files srsan-np writes and the directories it owns.

Every write goes to a temporary file beside its target, then ``os.replace`` -- so a reader
sees the old file or the new one, never half of each. A temporary name carries the
writer's pid (``.NAME.srsan-PID-XXXX.tmp``), so what a killed process left behind is
recognised and removed the next time srsan-np starts there (:func:`remove_leftovers`).
Files and folders get the permissions the user's umask gives, as ``open`` and ``mkdir``
would, not the owner-only ones of ``tempfile``.

A directory srsan-np writes (a prepared dataset, a training run) holds a marker file,
``.srsan-np``, naming what it is. A command refuses a non-empty directory without that
marker, and a directory that holds one of its own inputs, whatever the flags: nothing
srsan-np did not write is ever replaced. A training run is locked while it trains
(:func:`run_lock`), and the lock names the holder's pid.

Test hook. ``SRSAN_NP_TEST_KILL_AT=NAME:POINT:N`` makes the process SIGKILL itself at the
``N``-th write of a file called ``NAME`` (counted from 1 in this process), at ``POINT``:
``before`` (nothing written yet), ``during`` (the temporary file written, not yet renamed)
or ``after`` (renamed into place). The kill tests use it to stop training at every point
of a checkpoint write; it is not meant for anything else.
"""

from __future__ import annotations

import fcntl
import json
import os
import re
import shutil
import signal
import tempfile
from collections import Counter
from contextlib import contextmanager
from pathlib import Path

from srsan_np.errors import DataError

__all__ = ["atomic_write_stream", "atomic_write_bytes", "atomic_directory", "remove_leftovers",
           "write_marker", "marker_kind", "check_target", "check_file_target", "clear_run",
           "run_lock", "MARKER", "LOCK"]

MARKER = ".srsan-np"
LOCK = ".lock"
_LEFTOVER = re.compile(r"^\..*\.srsan-(\d+)-[^.]*\.(tmp|old)$")
_writes: Counter = Counter()


def _kill_point(name: str, point: str) -> None:
    """The test hook described in the module docstring."""
    wanted = os.environ.get("SRSAN_NP_TEST_KILL_AT")
    if not wanted:
        return
    if point == "before":
        _writes[name] += 1
    if wanted == f"{name}:{point}:{_writes[name]}":
        os.kill(os.getpid(), signal.SIGKILL)


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def _temp_prefix(path: Path) -> str:
    return f".{path.name}.srsan-{os.getpid()}-"


@contextmanager
def atomic_write_stream(path):
    """Yield a binary file that becomes ``path`` (via ``os.replace``) only if the block succeeds."""
    path = Path(path)
    _kill_point(path.name, "before")
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=_temp_prefix(path), suffix=".tmp")
    try:
        os.fchmod(fd, 0o666 & ~_umask())
        with os.fdopen(fd, "wb") as f:
            yield f
            f.flush()
            os.fsync(f.fileno())
            _kill_point(path.name, "during")
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    _kill_point(path.name, "after")


def atomic_write_bytes(path, data: bytes) -> None:
    """Write ``data`` to ``path`` via a temporary file in the same directory and ``os.replace``."""
    with atomic_write_stream(path) as f:
        f.write(data)


def _make_temp_dir(directory: Path, suffix: str) -> Path:
    tmp = Path(tempfile.mkdtemp(dir=directory.parent, prefix=_temp_prefix(directory), suffix=suffix))
    tmp.chmod(0o777 & ~_umask())
    return tmp


@contextmanager
def atomic_directory(directory):
    """Yield a temporary directory that replaces ``directory`` only if the block succeeds.

    The temporary directory is a sibling of ``directory`` (same file system, so the final
    rename is atomic). On any error it is removed, so no half-written output is left behind.
    An existing ``directory`` is replaced only after the new one is complete; callers check
    first that it is srsan-np's to replace (:func:`check_target`).
    """
    directory = Path(directory).resolve()  # `--out .` has no name to put beside it
    directory.parent.mkdir(parents=True, exist_ok=True)
    tmp = _make_temp_dir(directory, ".tmp")
    try:
        yield tmp
        if directory.exists():
            old = _make_temp_dir(directory, ".old")
            os.replace(directory, old / "d")
            os.replace(tmp, directory)
            shutil.rmtree(old)
        else:
            os.replace(tmp, directory)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _leftover(name: str) -> bool:
    """Whether ``name`` is a temporary file or folder of a write whose process is gone."""
    match = _LEFTOVER.match(name)
    return bool(match) and not _pid_alive(int(match.group(1)))


def remove_leftovers(directory) -> None:
    """Remove what killed srsan-np writes left in ``directory`` (their pid is no longer alive)."""
    directory = Path(directory)
    if not directory.is_dir():
        return
    for entry in directory.iterdir():
        if _leftover(entry.name):
            if entry.is_dir() and not entry.is_symlink():
                shutil.rmtree(entry, ignore_errors=True)
            else:
                entry.unlink(missing_ok=True)


# --------------------------------------------------------------------------- markers

def write_marker(directory, kind: str) -> None:
    """Mark ``directory`` as srsan-np's ``kind`` ("dataset" or "run")."""
    atomic_write_bytes(Path(directory) / MARKER, (json.dumps({"kind": kind}) + "\n").encode())


# What srsan-np wrote before it wrote markers: recognised by the full set of its files.
_UNMARKED_LAYOUTS = {"run": ("config.json", "data.json", "last.npz"),
                     "dataset": ("train.npz", "test.npz", "stats.json")}


def marker_kind(directory):
    """The kind in ``directory``'s marker (or of an unmarked srsan-np layout), else None."""
    directory = Path(directory)
    try:
        kind = json.loads((directory / MARKER).read_text(encoding="utf-8")).get("kind")
    except (OSError, ValueError, AttributeError):
        kind = next((k for k, names in _UNMARKED_LAYOUTS.items()
                     if all((directory / n).is_file() for n in names)), None)
    return kind if isinstance(kind, str) else None


def _own_entries(directory: Path):
    """The entries of ``directory`` other than the run lock and leftovers of killed writes."""
    return [e for e in directory.iterdir() if e.name != LOCK and not _leftover(e.name)]


def _contains(outer: Path, path: Path) -> bool:
    outer, path = outer.resolve(), path.resolve()
    return outer == path or outer in path.parents


def check_target(out, kind: str, inputs=(), overwrite=False, resume=False, flag="--out"):
    """Whether srsan-np may write the ``kind`` directory ``out``: ``"new"`` or ``"own"``.

    ``"new"``: it does not exist or is empty. ``"own"``: it holds srsan-np's ``kind``, and
    ``overwrite`` (or, for a run, ``resume``) says what to do with it. Anything else raises
    :class:`DataError` naming ``flag``: a file, a directory holding one of ``inputs``, a
    non-empty directory without the marker, one with another kind's marker, or one of
    srsan-np's own outputs when neither ``overwrite`` nor ``resume`` is given.
    """
    out = Path(out)
    for given in inputs:
        if given is not None and _contains(out, Path(given)):
            raise DataError(f"{flag} {out}: holds the input {given}; choose another directory")
    if not out.exists():
        return "new"
    if not out.is_dir():
        raise DataError(f"{flag} {out}: exists and is not a directory")
    if not _own_entries(out):
        return "new"
    found = marker_kind(out)
    if found is None:
        raise DataError(f"{flag} {out}: not empty and not written by srsan-np; refusing to "
                        f"replace it (choose a new or empty directory)")
    if found != kind:
        raise DataError(f"{flag} {out}: holds an srsan-np {found}, not a {kind}; refusing to "
                        f"replace it")
    if kind == "run" and not (overwrite or resume):
        raise DataError(f"{flag} {out}: already holds a training run; pass --resume to "
                        f"continue it or --overwrite to replace it")
    if kind != "run" and not overwrite:
        raise DataError(f"{flag} {out}: already holds a {kind}; pass --overwrite to replace it")
    return "own"


def check_file_target(out, inputs=(), overwrite=False, flag="--out"):
    """Whether srsan-np may write the file ``out``: never an input or a directory; an
    existing file only with ``overwrite``."""
    out = Path(out)
    for given in inputs:
        if given is not None and _contains(Path(given), out):
            raise DataError(f"{flag} {out}: is the input {given}; choose another file")
    if out.is_dir():
        raise DataError(f"{flag} {out}: is a directory")
    if out.exists() and not overwrite:
        raise DataError(f"{flag} {out}: exists; pass --overwrite to replace it")


def clear_run(directory) -> None:
    """Empty the run ``directory`` (srsan-np's, checked) but for its lock, for ``--overwrite``."""
    for entry in Path(directory).iterdir():
        if entry.name == LOCK:
            continue
        if entry.is_dir() and not entry.is_symlink():
            shutil.rmtree(entry)
        else:
            entry.unlink()


# --------------------------------------------------------------------------- the run lock

@contextmanager
def run_lock(directory):
    """Hold ``directory/.lock`` for the block; :class:`DataError` naming the holder if taken.

    The lock is an advisory ``flock``: the kernel releases it when its process ends, however
    it ends, so the lock of a killed run is simply taken over; the file keeps the pid of the
    last holder for the message.
    """
    path = Path(directory) / LOCK
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o666)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = os.read(fd, 32).decode(errors="replace").strip() or "unknown"
            raise DataError(f"{directory}: in use by another srsan-np run (pid {holder}); "
                            f"wait for it to end or choose another --out") from None
        os.ftruncate(fd, 0)
        os.write(fd, f"{os.getpid()}\n".encode())
        yield
    finally:
        os.close(fd)
