"""The files srsan-np writes and the directories it owns: one writer, one ownership scheme.

Writing. Every write goes to a temporary file beside its target, then ``os.replace``, so a
reader sees the old file or the new one, never half of each (:func:`atomic_write_stream`,
and :func:`atomic_directory` for a directory made whole). A temporary name carries the
writer's pid (``.NAME.srsan-PID-XXXX.tmp``), so what a killed process left behind is
recognised and removed the next time srsan-np starts there (:func:`remove_leftovers`).
Files and folders get the permissions the user's umask gives, as ``open`` and ``mkdir``
would, not the owner-only ones of ``tempfile``.

Owning. A directory srsan-np writes holds a marker file, ``.srsan-np``: a JSON object with
the ``kind`` of what it is (``"dataset"``, ``"run"``, ``"plots"``) and the ``entries``
srsan-np wrote there where they are told apart from a user's (a folder of plots). A command
refuses a non-empty directory without that marker, one of another kind, and a directory
that holds one of its own inputs, whatever the flags (:func:`check_target`); in a folder of
plots it replaces only the entries its marker lists (:func:`claim`). Nothing srsan-np did
not write is ever replaced. A directory in use is locked (:func:`lock`); the lock file
names the holder's pid.

Reading. :func:`read_json` is the one reader of JSON a user can hand over or damage:
every failure is a :class:`~srsan_np.errors.DataError` naming the file.

Test hook. :func:`set_kill_point` (``SRSAN_NP_TEST_KILL_AT=NAME:POINT:N`` on the command
line, :mod:`srsan_np.runtime`) makes the process SIGKILL itself at the ``N``-th write of a
file called ``NAME`` (counted from 1 in this process), at ``POINT``: ``before`` (nothing
written yet), ``during`` (the temporary file written, not yet renamed) or ``after``
(renamed into place). The kill tests use it to stop training at every point of a
checkpoint write; it is not meant for anything else.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import tempfile
import time
from collections import Counter
from contextlib import contextmanager
from pathlib import Path

from srsan_np.errors import DataError

__all__ = ["atomic_write_stream", "atomic_write_bytes", "write_json", "read_json",
           "atomic_directory", "remove_leftovers", "write_marker", "marker_kind",
           "check_target", "check_file_target", "clear_directory", "claim", "lock",
           "set_kill_point", "MARKER", "LOCK"]

MARKER = ".srsan-np"
LOCK = ".lock"
_LEFTOVER = re.compile(r"^\..*\.srsan-(\d+)-[^.]*\.(tmp|old)$")
_kill = {"at": None, "writes": Counter()}


def set_kill_point(spec: str | None) -> None:
    """The test hook described in the module docstring (None: off)."""
    _kill["at"], _kill["writes"] = spec or None, Counter()


def _kill_point(name: str, point: str) -> None:
    if _kill["at"] is None:
        return
    if point == "before":
        _kill["writes"][name] += 1
    if _kill["at"] == f"{name}:{point}:{_kill['writes'][name]}":
        os.kill(os.getpid(), signal.SIGKILL)


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def _temp_prefix(path: Path) -> str:
    return f".{path.name}.srsan-{os.getpid()}-"


# --------------------------------------------------------------------------- writing

@contextmanager
def atomic_write_stream(path):
    """Yield a binary file that becomes ``path`` (via ``os.replace``) only if the block succeeds."""
    path = Path(path)
    _kill_point(path.name, "before")
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=_temp_prefix(path), suffix=".tmp")
    try:
        if hasattr(os, "fchmod"):  # POSIX: the umask's permissions, not mkstemp's 0600
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


def write_json(path, obj, indent=2) -> None:
    """Write ``obj`` as JSON to ``path``, atomically (``indent=None``: compact)."""
    text = json.dumps(obj, indent=indent, separators=None if indent else (",", ":"))
    atomic_write_bytes(path, (text + "\n").encode())


def read_json(path, hint=None):
    """The JSON value in ``path``; :class:`DataError` naming the file when it is missing
    (with ``hint``: what the file should have been), not UTF-8, or not JSON."""
    path = Path(path)
    try:
        return json.loads(path.read_bytes().decode("utf-8-sig"))
    except FileNotFoundError:
        raise DataError(f"{path}: missing" + (f" ({hint})" if hint else "")) from None
    except IsADirectoryError:
        raise DataError(f"{path}: is a directory, not a JSON file") from None
    except UnicodeDecodeError:
        raise DataError(f"{path}: not UTF-8 text") from None
    except json.JSONDecodeError as err:
        raise DataError(f"{path}: not valid JSON (line {err.lineno}: {err.msg})") from None


def _make_temp_dir(directory: Path, suffix: str) -> Path:
    tmp = Path(tempfile.mkdtemp(dir=directory.parent, prefix=_temp_prefix(directory),
                                suffix=suffix))
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
    """Whether process ``pid`` exists; it is probed, never signalled."""
    if os.name == "nt":  # os.kill(pid, 0) would end the process there
        import ctypes
        kernel32 = ctypes.windll.kernel32
        handle = kernel32.OpenProcess(0x1000, False, pid)  # PROCESS_QUERY_LIMITED_INFORMATION
        if not handle:
            return ctypes.GetLastError() == 5  # access denied: it exists
        code = ctypes.c_ulong()
        kernel32.GetExitCodeProcess(handle, ctypes.byref(code))
        kernel32.CloseHandle(handle)
        return code.value == 259  # STILL_ACTIVE
    try:
        os.kill(pid, 0)  # signal 0: the existence and permission check, nothing sent
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


# --------------------------------------------------------------------------- owning

def _read_marker(directory: Path):
    try:
        marker = json.loads((directory / MARKER).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    return marker if isinstance(marker, dict) and isinstance(marker.get("kind"), str) else None


def write_marker(directory, kind: str, entries=None) -> None:
    """Mark ``directory`` as srsan-np's ``kind``, with the ``entries`` it wrote there if
    they are told apart from others'."""
    marker = {"kind": kind} if entries is None else {"kind": kind, "entries": sorted(entries)}
    write_json(Path(directory) / MARKER, marker, indent=None)


def marker_kind(directory, layout=()):
    """The kind in ``directory``'s marker, else ``"legacy"`` when it holds every file of
    ``layout`` (what srsan-np wrote before it wrote markers), else None."""
    directory = Path(directory)
    marker = _read_marker(directory)
    if marker is not None:
        return marker["kind"]
    return "legacy" if layout and all((directory / n).is_file() for n in layout) else None


def _own_entries(directory: Path):
    """The entries of ``directory`` other than the lock and leftovers of killed writes."""
    return [e for e in directory.iterdir() if e.name != LOCK and not _leftover(e.name)]


def _contains(outer: Path, path: Path) -> bool:
    outer, path = outer.resolve(), path.resolve()
    return outer == path or outer in path.parents


def check_target(out, kind: str, inputs=(), overwrite=False, resume=False, flag="--out",
                 layout=()) -> bool:
    """Whether the ``kind`` directory ``out`` already holds srsan-np's ``kind`` (True) or is
    new or empty (False); :class:`DataError` naming ``flag`` when srsan-np may not write it.

    Refused: a file, a directory holding one of ``inputs``, a non-empty directory without
    the marker (or, before markers, every file of ``layout``), one with another kind's
    marker, or one of srsan-np's own outputs when neither ``overwrite`` nor (for a run)
    ``resume`` says what to do with it.
    """
    out = Path(out)
    for given in inputs:
        if given is not None and _contains(out, Path(given)):
            raise DataError(f"{flag} {out}: holds the input {given}; choose another directory")
    if not out.exists():
        return False
    if not out.is_dir():
        raise DataError(f"{flag} {out}: exists and is not a directory")
    if not _own_entries(out):
        return False
    found = marker_kind(out, layout)
    if found is None:
        raise DataError(f"{flag} {out}: not empty and not written by srsan-np; refusing to "
                        f"replace it (choose a new or empty directory)")
    if found not in (kind, "legacy"):
        raise DataError(f"{flag} {out}: holds an srsan-np {found}, not a {kind}; refusing to "
                        f"replace it")
    if kind == "run" and not (overwrite or resume):
        raise DataError(f"{flag} {out}: already holds a training run; pass --resume to "
                        f"continue it or --overwrite to replace it")
    if kind != "run" and not overwrite:
        raise DataError(f"{flag} {out}: already holds a {kind}; pass --overwrite to replace it")
    return True


def check_file_target(out, inputs=(), overwrite=False, flag="--out") -> None:
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


def clear_directory(directory) -> None:
    """Empty ``directory`` (srsan-np's, checked) but for its lock."""
    for entry in Path(directory).iterdir():
        if entry.name == LOCK:
            continue
        if entry.is_dir() and not entry.is_symlink():
            shutil.rmtree(entry)
        else:
            entry.unlink()


def claim(directory, kind: str, names, flag="--out") -> None:
    """Make ``directory`` (if needed) and record ``names`` in it as srsan-np's ``kind``, so
    that they may be written there now and replaced later; :class:`DataError` naming
    ``flag`` if one of them exists and srsan-np did not write it, or the directory is
    srsan-np's of another kind. Other entries of the directory are left alone."""
    directory = Path(directory)
    if directory.exists() and not directory.is_dir():
        raise DataError(f"{flag} {directory}: exists and is not a directory")
    directory.mkdir(parents=True, exist_ok=True)
    marker = _read_marker(directory) or {"kind": kind, "entries": []}
    if marker["kind"] != kind:
        raise DataError(f"{flag} {directory}: holds an srsan-np {marker['kind']}; choose "
                        f"another {flag}")
    ours = set(marker.get("entries", []))
    foreign = [n for n in names if (directory / n).exists() and n not in ours]
    if foreign:
        raise DataError(f"{flag} {directory}: {foreign[0]} exists and was not written by "
                        f"srsan-np {kind}; choose another {flag}")
    write_marker(directory, kind, ours | set(names))


# --------------------------------------------------------------------------- the lock

@contextmanager
def lock(directory, flag="--out"):
    """Hold ``directory/.lock`` for the block; :class:`DataError` naming the holder if taken.

    Where the system has ``flock`` (POSIX), the lock is an advisory ``flock`` on the file:
    the kernel releases it when its process ends, however it ends. Elsewhere (Windows) the
    file is created exclusively and holds the holder's pid; a file whose pid is no longer
    alive is a killed holder's, and is taken over. Either way the file names the last
    holder's pid, for the message.
    """
    path = Path(directory) / LOCK
    try:
        import fcntl
    except ImportError:  # no flock here: the pid file alone
        fcntl = None
    with (_flock(path, fcntl) if fcntl else _pid_lock(path)) as holder:
        if holder is not None:
            raise DataError(f"{directory}: in use by another srsan-np run (pid {holder}); "
                            f"wait for it to end or choose another {flag}")
        yield


@contextmanager
def _flock(path, fcntl):
    """Yield None while holding the flock of ``path``, or the holder's pid if it is taken."""
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o666)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            yield os.read(fd, 32).decode(errors="replace").strip() or "unknown"
            return
        os.ftruncate(fd, 0)
        os.write(fd, f"{os.getpid()}\n".encode())
        yield None
    finally:
        os.close(fd)


def _read_pid(path: Path):
    """The pid a lock or token file holds, None if it holds none, "gone" if it is not there."""
    try:
        text = path.read_text(errors="replace").strip()
    except FileNotFoundError:
        return "gone"
    return int(text) if text.isdigit() else None


def _create_holding_pid(path: Path) -> bool:
    """Create ``path`` holding this pid, whole or not at all: False if it exists."""
    tmp = path.with_name(f"{_temp_prefix(path)}new.tmp")
    tmp.write_text(f"{os.getpid()}\n")
    try:
        os.link(tmp, path)  # fails if path exists: no one ever sees it empty
        return True
    except FileExistsError:
        return False
    finally:
        tmp.unlink()


def _take_over(path: Path, dead) -> bool:
    """Replace the lock ``path`` of the dead holder ``dead`` by one of this pid; one taker
    at a time, through an exclusive token file (the token of a killed taker is dropped)."""
    token = path.with_name(path.name + ".takeover")
    if not _create_holding_pid(token):
        taker = _read_pid(token)
        if taker is None or (taker != "gone" and not _pid_alive(taker)):
            token.unlink(missing_ok=True)
        time.sleep(0.01)
        return False
    try:
        if _read_pid(path) != dead:  # released or taken meanwhile: start again
            return False
        tmp = path.with_name(f"{_temp_prefix(path)}take.tmp")
        tmp.write_text(f"{os.getpid()}\n")
        os.replace(tmp, path)
        return True
    finally:
        token.unlink()


@contextmanager
def _pid_lock(path):
    """Yield None while ``path`` holds this pid, or the holder's pid while it is alive."""
    while not _create_holding_pid(path):
        holder = _read_pid(path)
        if holder == "gone":  # released meanwhile
            continue
        if holder is not None and _pid_alive(holder):
            yield holder
            return
        if _take_over(path, holder):
            break
    try:
        yield None
    finally:
        path.unlink(missing_ok=True)
