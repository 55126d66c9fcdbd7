"""The files srsan-np writes and the directories it owns: one writer, one ownership scheme.

Writing. Every write goes to a temporary file beside its target, then ``os.replace``, so a
reader sees the old file or the new one, never half of each (:func:`atomic_write_stream`,
and :func:`atomic_directory` for a directory written whole). A temporary name carries the
writer's pid (``.NAME.srsan-PID-XXXX.tmp``), so what a killed process left behind is
recognised and removed the next time srsan-np starts there (:func:`remove_leftovers`).
Files and folders get the permissions the user's umask gives, as ``open`` and ``mkdir``
would, not the owner-only ones of ``tempfile``. A write that fails (the disk full, a file
size limit) names the file it was writing, never its temporary.

Owning. A directory srsan-np writes holds a marker file, ``.srsan-np``: a JSON object with
the ``kind`` of what it is (``"dataset"``, ``"run"``, ``"plots"``, ``"pickles"``), the
``entries`` srsan-np wrote there (a folder's name ends in ``/``; a folder srsan-np made
holds a marker of its own) and the name of its ``lock``. srsan-np owns what its marker
lists and nothing else (:func:`owned`): a user's files and folders beside its own are kept,
also by ``--overwrite`` (:func:`clear_directory`), and an entry of theirs where srsan-np
means to write is refused by name (:func:`claim`), as is a symbolic link, a FIFO or a device
there -- srsan-np makes none of those, so it never follows or replaces one. A command
refuses a non-empty directory without that marker, one of another kind, and a directory
that holds one of its own inputs, whatever the flags (:func:`check_target`). A directory
in use is locked (:func:`lock`) through the file its marker names, which holds the
holder's pid. A directory from before markers listed entries is recognised by its
``Layout``: the files that identify it, and the names its kind writes.

Reading. :func:`read_bytes` reads a file a user can hand over or damage with a size bound
(a regular file only: never a FIFO, which would block, or a device, which never ends);
:func:`read_json` is the one reader of such JSON, with a nesting bound: every failure is a
:class:`~srsan_np.errors.DataError` naming the file.

Test hook. :func:`set_kill_point` (``SRSAN_NP_TEST_KILL_AT=NAME:POINT:N`` on the command
line, :mod:`srsan_np.runtime`) makes the process SIGKILL itself at the ``N``-th write of a
file called ``NAME`` (counted from 1 in this process), at ``POINT``: ``before`` (nothing
written yet), ``during`` (the temporary file written, not yet renamed) or ``after``
(renamed into place). The kill tests use it to stop training at every point of a
checkpoint write; it is not meant for anything else.
"""

from __future__ import annotations

import errno
import fnmatch
import json
import os
import re
import secrets
import shutil
import signal
import stat
import tempfile
import time
from collections import Counter
from contextlib import contextmanager
from pathlib import Path
from typing import NamedTuple

from srsan_np import memory
from srsan_np.errors import DataError

__all__ = ["atomic_write_stream", "atomic_write_bytes", "write_json", "read_bytes",
           "read_json", "parse_json", "atomic_directory", "remove_leftovers", "Layout",
           "write_marker", "marker_kind", "start", "owned", "incomplete", "check_target",
           "check_file_target", "clear_directory", "claim", "lock", "set_kill_point",
           "MARKER", "LOCK", "JSON_LIMIT", "DEPTH_LIMIT"]

MARKER = ".srsan-np"
LOCK = ".lock"
JSON_LIMIT = 256 << 20  # the largest JSON file srsan-np reads (a long run's diagnostics: MBs)
DEPTH_LIMIT = 32  # the deepest nesting of a JSON value srsan-np reads (its own files: 4)
_LEFTOVER = re.compile(r"^\..*\.srsan-(\d+)-[^.]*\.(tmp|old)$")
_kill = {"at": None, "writes": Counter()}


class Layout(NamedTuple):
    """What a kind of directory holds, for one from before markers listed their entries:
    ``required``, the files that identify it, and ``names``, the patterns of the entries its
    kind writes (``fnmatch``; a folder's ends in ``/``)."""

    required: tuple = ()
    names: tuple = ()


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


_CREATE = (os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_NOFOLLOW", 0)
           | getattr(os, "O_BINARY", 0))  # a new file, never through a link (as mkstemp)


def _temp_prefix(path: Path) -> str:
    return f".{path.name}.srsan-{os.getpid()}-"


# --------------------------------------------------------------------------- writing

@contextmanager
def _temporary(path: Path):
    """Yield ``(binary file, its name)``: a new temporary file beside ``path``, written and
    synced when the block ends, removed if it fails. An error writing it names ``path``."""
    tmp = None
    try:  # the name is known before the file exists: a signal raised once it does removes it
        for _ in range(100):
            tmp = str(path.parent / f"{_temp_prefix(path)}{secrets.token_hex(4)}.tmp")
            try:  # the umask's permissions, as any file a program creates
                fd = os.open(tmp, _CREATE, 0o666)
                break
            except FileExistsError:
                tmp = None
        else:
            raise FileExistsError(errno.EEXIST, "no free temporary name", str(path))
        with os.fdopen(fd, "wb") as f:
            yield f, tmp
            f.flush()
            os.fsync(f.fileno())
    except OSError as err:
        if tmp is not None:
            Path(tmp).unlink(missing_ok=True)
        if err.filename not in (None, tmp):
            raise
        raise OSError(err.errno, err.strerror, str(path)) from None  # the disk full, a size limit
    except BaseException:
        if tmp is not None:
            Path(tmp).unlink(missing_ok=True)
        raise


@contextmanager
def atomic_write_stream(path):
    """Yield a binary file that becomes ``path`` (via ``os.replace``) only if the block succeeds."""
    path = Path(path)
    _kill_point(path.name, "before")
    tmp = None
    try:  # one handler from the temporary's creation to its rename: a signal raised between
        with _temporary(path) as (f, tmp):  # them (SIGTERM, Ctrl-C) leaves no temporary
            yield f
        _kill_point(path.name, "during")
        os.replace(tmp, path)
    except BaseException:
        if tmp is not None:
            Path(tmp).unlink(missing_ok=True)
        raise
    _kill_point(path.name, "after")


def atomic_write_bytes(path, data: bytes) -> None:
    """Write ``data`` to ``path`` via a temporary file in the same directory and ``os.replace``."""
    with atomic_write_stream(path) as f:
        f.write(data)


def _json_bytes(obj, indent=2) -> bytes:
    text = json.dumps(obj, indent=indent, separators=None if indent else (",", ":"))
    return (text + "\n").encode()


def write_json(path, obj, indent=2) -> None:
    """Write ``obj`` as JSON to ``path``, atomically (``indent=None``: compact)."""
    atomic_write_bytes(path, _json_bytes(obj, indent))


def _create(path: Path, data: bytes) -> bool:
    """Create ``path`` holding ``data``, whole or not at all; False if it exists already."""
    _kill_point(path.name, "before")
    tmp = None
    try:  # as in atomic_write_stream: the temporary goes, whatever ends this
        with _temporary(path) as (f, tmp):
            f.write(data)
        _kill_point(path.name, "during")
        try:
            os.link(tmp, path)  # fails if path exists, a link included: never replaces anything
        except FileExistsError:
            return False
        except OSError:  # a file system without hard links: created unless it exists
            if os.path.lexists(path):
                return False
            os.replace(tmp, path)
    finally:
        if tmp is not None:
            Path(tmp).unlink(missing_ok=True)
    _kill_point(path.name, "after")
    return True


def _what(mode: int) -> str:
    """What a non-regular file is, in a message."""
    return ("a directory" if stat.S_ISDIR(mode) else "a symbolic link" if stat.S_ISLNK(mode)
            else "a FIFO" if stat.S_ISFIFO(mode) else "a device" if stat.S_ISCHR(mode)
            or stat.S_ISBLK(mode) else "a socket" if stat.S_ISSOCK(mode) else "not a regular file")


def read_bytes(path, limit: int, what="file") -> bytes:
    """The contents of the regular file ``path``, at most ``limit`` bytes.

    :class:`DataError` naming ``path`` when it is a directory, a FIFO, a device or a socket
    (opened without blocking: a FIFO never hangs the reader), or larger than ``limit``;
    ``FileNotFoundError`` when it is missing. ``what`` says what it should have been.
    """
    path = Path(path)
    fd = os.open(path, os.O_RDONLY | getattr(os, "O_NONBLOCK", 0) | getattr(os, "O_BINARY", 0))
    with os.fdopen(fd, "rb") as f:
        mode = os.fstat(fd).st_mode
        if not stat.S_ISREG(mode):
            raise DataError(f"{path}: {_what(mode)}, not a {what}")
        data = f.read(limit + 1)
    if len(data) > limit:
        raise DataError(f"{path}: larger than {limit >> 20} MB, too large for a {what}")
    return data


def _depth_within(value, limit: int) -> bool:
    """Whether the JSON value ``value`` nests at most ``limit`` deep (iteratively: no recursion)."""
    stack = [(value, 1)]
    while stack:
        node, depth = stack.pop()
        for child in node.values() if isinstance(node, dict) else node:
            if isinstance(child, (dict, list)):
                if depth >= limit:
                    return False
                stack.append((child, depth + 1))
    return True


def parse_json(data, where):
    """The JSON value in ``data`` (bytes or str); :class:`DataError` naming ``where`` when it
    is not UTF-8, not JSON, or nested deeper than :data:`DEPTH_LIMIT`."""
    deep = DataError(f"{where}: nested more than {DEPTH_LIMIT} deep: not a file srsan-np reads")
    try:
        value = json.loads(data.decode("utf-8-sig") if isinstance(data, bytes) else data)
    except UnicodeDecodeError:
        raise DataError(f"{where}: not UTF-8 text") from None
    except json.JSONDecodeError as err:
        raise DataError(f"{where}: not valid JSON (line {err.lineno}: {err.msg})") from None
    except RecursionError:
        raise deep from None
    if isinstance(value, (dict, list)) and not _depth_within(value, DEPTH_LIMIT):
        raise deep
    return value


def read_json(path, hint=None, limit=JSON_LIMIT):
    """The JSON value in ``path``; :class:`DataError` naming the file when it is missing
    (with ``hint``: what the file should have been), not a regular file, larger than
    ``limit`` bytes, not UTF-8, not JSON, or nested too deep."""
    path = Path(path)
    try:
        data = read_bytes(path, limit, "JSON file")
    except FileNotFoundError:
        raise DataError(f"{path}: missing" + (f" ({hint})" if hint else "")) from None
    except IsADirectoryError:
        raise DataError(f"{path}: a directory, not a JSON file") from None
    memory.check(4 * len(data), f"{path}: reading it needs")  # a number's few bytes: an object
    return parse_json(data, path)


def _make_temp_dir(near: Path, suffix: str, inside=False) -> Path:
    """A new folder beside ``near`` (or, ``inside``, in it), named as a leftover of this pid."""
    parent = near if inside else near.parent
    tmp = Path(tempfile.mkdtemp(dir=parent, prefix=_temp_prefix(near), suffix=suffix))
    tmp.chmod(0o777 & ~_umask())
    return tmp


@contextmanager
def atomic_directory(directory, kind=None, layout=None, flag="--out"):
    """Yield a temporary directory whose entries become ``directory``'s only if the block
    succeeds; with ``kind``, it is marked srsan-np's ``kind``, its entries listed.

    A new ``directory`` appears whole: the temporary one, beside it, is renamed into place.
    An existing one -- empty, or srsan-np's ``kind`` (checked: never a foreign one) -- is
    kept, its permissions and a shell inside it (``--out .``) too: under its lock, the
    entries srsan-np wrote there before are replaced by the new ones and the rest is left
    alone. While the entries move in, its marker says so, so a process killed then leaves
    a directory that says it is incomplete (:func:`incomplete`), never a mix that looks
    whole. On any error the temporary directory is removed.
    """
    directory = Path(directory).resolve()  # `--out .` has no name to put beside it
    directory.parent.mkdir(parents=True, exist_ok=True)
    exists = directory.exists()
    if exists:
        if kind is None:
            raise ValueError("atomic_directory: an existing directory is filled only with a kind")
        check_target(directory, kind, overwrite=True, flag=flag, layout=layout)
        start(directory, kind, layout)
    with lock(directory, flag) if exists else _nothing():
        if exists:
            remove_leftovers(directory)
        tmp = _make_temp_dir(directory, ".tmp", inside=exists)
        try:
            yield tmp
            if kind is not None:
                write_marker(tmp, kind, _listing(tmp))
            if exists:
                _move_in(tmp, directory, kind, layout, flag)
            else:
                os.replace(tmp, directory)
        finally:
            shutil.rmtree(tmp, ignore_errors=True)


@contextmanager
def _nothing():
    yield


def _listing(directory: Path) -> set:
    """The entries of ``directory`` as a marker lists them (a folder's name ending in ``/``)
    but for the marker, the lock and leftovers of killed writes."""
    return {e.name + "/" * (e.is_dir() and not e.is_symlink()) for e in directory.iterdir()
            if e.name not in (MARKER, LOCK) and not _leftover(e.name)}


def _move_in(staged: Path, directory: Path, kind, layout, flag) -> None:
    """Replace what srsan-np wrote in ``directory`` by the entries of ``staged``."""
    new = _listing(staged)
    before = owned(directory, layout)
    claim(directory, kind, new, flag, layout, writing=True)  # refuses a foreign entry in the way
    for name in sorted(before - new):
        _remove(directory / name.rstrip("/"), name.endswith("/"))
    for name in sorted(new):
        source, target = staged / name.rstrip("/"), directory / name.rstrip("/")
        if name in before:
            _remove(target, name.endswith("/"))
        if name.endswith("/") and target.exists():  # a user's entries kept inside our folder
            _move_in(source, target, (_read_marker(source) or {"kind": kind})["kind"], None, flag)
        else:
            os.replace(source, target)
    kept = {n for n in before - new if os.path.lexists(directory / n.rstrip("/"))}
    write_marker(directory, kind, new | kept)


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
    """The marker of ``directory`` if it has one srsan-np wrote (a regular file holding a
    JSON object with a ``kind``), else None."""
    try:
        marker = parse_json(read_bytes(Path(directory) / MARKER, 1 << 20), MARKER)
    except (OSError, DataError):
        return None
    if not isinstance(marker, dict) or not isinstance(marker.get("kind"), str):
        return None
    entries, lock_name = marker.get("entries", []), marker.get("lock", LOCK)
    if not isinstance(entries, list) or not all(isinstance(e, str) for e in entries):
        return None
    if not isinstance(lock_name, str) or not _plain(lock_name):
        return None
    return marker


def _plain(name: str) -> bool:
    """Whether ``name`` names an entry of the directory itself (no path, no ``..``)."""
    return "/" not in name and "\\" not in name and name not in ("", ".", "..")


def write_marker(directory, kind: str, entries=(), writing=False) -> None:
    """Mark ``directory`` as srsan-np's ``kind`` holding ``entries`` (a folder's name ends in
    ``/``), locked through :data:`LOCK`; ``writing``: its entries are being replaced."""
    marker = {"kind": kind, "entries": sorted(entries), "lock": LOCK}
    write_json(Path(directory) / MARKER, {**marker, "writing": True} if writing else marker,
               indent=None)


def _layout_found(directory: Path, layout) -> bool:
    """Whether ``directory`` is one ``layout`` recognises from before markers: it holds the
    files ``layout`` requires, and no ``.srsan-np`` that is not srsan-np's marker."""
    return (layout is not None and not os.path.lexists(directory / MARKER)
            and all((directory / n).is_file() for n in layout.required))


def marker_kind(directory, layout=None):
    """The kind in ``directory``'s marker, else ``"legacy"`` when it holds every file
    ``layout`` requires (what srsan-np wrote before it wrote markers), else None."""
    directory = Path(directory)
    marker = _read_marker(directory)
    if marker is not None:
        return marker["kind"]
    return "legacy" if layout is not None and layout.required and _layout_found(directory, layout) \
        else None


def _is(path: Path, name: str) -> bool:
    """Whether ``path`` is what srsan-np writes as ``name``: a folder (``name`` ending in
    ``/``) or a regular file; never a symbolic link, a FIFO or a device."""
    try:
        mode = os.lstat(path).st_mode
    except FileNotFoundError:
        return False
    return stat.S_ISDIR(mode) if name.endswith("/") else stat.S_ISREG(mode)


def owned(directory, layout=None) -> set:
    """The entries of ``directory`` srsan-np wrote, as its marker lists them: those its
    marker lists (a marker from before the lists: the names its kind writes), or, with no
    marker, the names ``layout`` says its kind writes, if it holds the files ``layout``
    requires. Only what is there and of the kind srsan-np made counts."""
    directory = Path(directory)
    marker = _read_marker(directory)
    if marker is not None and "entries" in marker:
        listed = marker["entries"]
    elif (marker is not None or _layout_found(directory, layout)) and layout is not None:
        present = [e.name + "/" * e.is_dir() for e in directory.iterdir()]
        listed = [n for n in present if any(fnmatch.fnmatchcase(n, p) for p in layout.names)]
    else:
        listed = []
    return {n for n in listed if _plain(n[:-1] if n.endswith("/") else n)
            and _is(directory / n.rstrip("/"), n)}


def incomplete(directory) -> bool:
    """Whether ``directory``'s entries were being replaced when its writer stopped."""
    marker = _read_marker(Path(directory))
    return marker is not None and marker.get("writing") is True


def start(directory, kind: str, layout=None) -> None:
    """Make ``directory`` (if needed) and, if it has no marker, mark it srsan-np's ``kind``
    (listing what ``layout`` recognises as srsan-np's), so that its lock is srsan-np's: the
    marker is created whole or not at all, and never over another."""
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    if _read_marker(directory) is None:
        marker = {"kind": kind, "entries": sorted(owned(directory, layout)), "lock": LOCK}
        _create(directory / MARKER, _json_bytes(marker, indent=None))


def _foreign(directory: Path, marker) -> list:
    """The entries of ``directory`` but for its marker and lock (if it is srsan-np's) and
    leftovers of killed writes."""
    ours = (MARKER, marker.get("lock", LOCK)) if marker is not None else ()
    return [e for e in directory.iterdir() if e.name not in ours and not _leftover(e.name)]


def _contains(outer: Path, path: Path) -> bool:
    outer, path = outer.resolve(), path.resolve()
    return outer == path or outer in path.parents


def check_target(out, kind: str, inputs=(), overwrite=False, resume=False, flag="--out",
                 layout=None) -> bool:
    """Whether the ``kind`` directory ``out`` already holds srsan-np's ``kind`` (True) or is
    new or empty (False); :class:`DataError` naming ``flag`` when srsan-np may not write it.

    Refused: a file, a directory holding one of ``inputs``, a non-empty directory without
    the marker (or, before markers, every file ``layout`` requires), one with another
    kind's marker, or one of srsan-np's own outputs when neither ``overwrite`` nor (for a
    run) ``resume`` says what to do with it. A ``.lock`` file counts as srsan-np's only in
    a directory its marker marks.
    """
    out = Path(out)
    for given in inputs:
        if given is not None and _contains(out, Path(given)):
            raise DataError(f"{flag} {out}: holds the input {given}; choose another directory")
    if not os.path.lexists(out):
        return False
    if not out.is_dir():
        raise DataError(f"{flag} {out}: exists and is not a directory")
    if not _foreign(out, _read_marker(out)):
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
    """Whether srsan-np may write the file ``out``: never an input, a directory, a symbolic
    link, a FIFO or a device; an existing regular file only with ``overwrite``."""
    out = Path(out)
    for given in inputs:
        if given is not None and _contains(Path(given), out):
            raise DataError(f"{flag} {out}: is the input {given}; choose another file")
    try:
        mode = os.lstat(out).st_mode
    except FileNotFoundError:
        return
    if stat.S_ISDIR(mode) or os.path.isdir(out):
        raise DataError(f"{flag} {out}: is a directory")
    if not stat.S_ISREG(mode):
        raise DataError(f"{flag} {out}: is {_what(mode)}, not a regular file; srsan-np "
                        f"replaces only files (choose another {flag})")
    if not overwrite:
        raise DataError(f"{flag} {out}: exists; pass --overwrite to replace it")


def _remove(path: Path, folder: bool) -> None:
    """Remove what srsan-np wrote at ``path``: a file; or, in a folder of its own, what the
    folder's marker lists, then the folder, unless a user's entries are left in it (it
    stays, marked, holding them). A folder from before markers: all of it."""
    if not folder:
        path.unlink()
        return
    if _read_marker(path) is None:
        shutil.rmtree(path)
        return
    clear_directory(path)
    remove_leftovers(path)
    if not _foreign(path, _read_marker(path)):
        (path / LOCK).unlink(missing_ok=True)
        (path / MARKER).unlink()
        path.rmdir()


def clear_directory(directory, layout=None) -> None:
    """Remove from ``directory`` what srsan-np wrote there (:func:`owned`) but for its
    marker and lock; everything else in it stays. The marker then lists what is left of
    srsan-np's (folders that hold a user's entries)."""
    directory = Path(directory)
    marker = _read_marker(directory)
    for name in sorted(owned(directory, layout)):
        _remove(directory / name.rstrip("/"), name.endswith("/"))
    if marker is not None:
        write_marker(directory, marker["kind"], owned(directory, layout))


def _in_the_way(path: Path, kind: str) -> str:
    """What the entry at ``path`` is, said of an entry srsan-np will not replace."""
    mode = os.lstat(path).st_mode
    if stat.S_ISREG(mode) or stat.S_ISDIR(mode):
        return f"exists and was not written by srsan-np {kind}"
    return f"is {_what(mode)}, which srsan-np never writes or follows"


def claim(directory, kind: str, names, flag="--out", layout=None, writing=False) -> None:
    """Make ``directory`` (if needed) and record ``names`` (a folder's ending in ``/``) in
    its marker as srsan-np's ``kind``, so that they may be written there now and replaced
    later; :class:`DataError` naming ``flag`` and the entry if one of them exists and is
    not srsan-np's (:func:`owned`: a user's file or folder, a symbolic link, a FIFO), or
    the directory is srsan-np's of another kind. Other entries are left alone."""
    directory = Path(directory)
    if os.path.lexists(directory) and not directory.is_dir():
        raise DataError(f"{flag} {directory}: exists and is not a directory")
    directory.mkdir(parents=True, exist_ok=True)
    marker = _read_marker(directory)
    if marker is None and os.path.lexists(directory / MARKER):
        raise DataError(f"{flag} {directory}: its {MARKER} is not srsan-np's marker (not a "
                        f"file of its JSON); move it away or choose another {flag}")
    if marker is not None and marker["kind"] != kind:
        raise DataError(f"{flag} {directory}: holds an srsan-np {marker['kind']}; choose "
                        f"another {flag}")
    ours = owned(directory, layout)
    for name in sorted(names):
        path = directory / name.rstrip("/")
        if os.path.lexists(path) and name not in ours:
            raise DataError(f"{flag} {directory}: {name.rstrip('/')} {_in_the_way(path, kind)}; "
                            f"move it away or choose another {flag}")
    write_marker(directory, kind, ours | set(names), writing)


# --------------------------------------------------------------------------- the lock

@contextmanager
def lock(directory, flag="--out"):
    """Hold ``directory``'s lock for the block; :class:`DataError` naming the holder if taken.

    The lock is the file the directory's marker names (:data:`LOCK` by default; the callers
    mark the directory first, so that a ``.lock`` of the user's is never taken for one). It
    is opened without following a symbolic link, and must be a regular file: a link, a
    FIFO or a folder there is refused by name, never written through. Where the system has
    ``flock`` (POSIX), the lock is an advisory ``flock`` on the file: the kernel releases
    it when its process ends, however it ends. Elsewhere (Windows) the file is created
    exclusively and holds the holder's pid; a file whose pid is no longer alive is a killed
    holder's, and is taken over. Either way the file names the last holder's pid, for the
    message.
    """
    marker = _read_marker(Path(directory))
    path = Path(directory) / (marker.get("lock", LOCK) if marker is not None else LOCK)
    if os.path.lexists(path) and not stat.S_ISREG(os.lstat(path).st_mode):
        raise DataError(f"{flag} {directory}: its lock {path.name} {_in_the_way(path, '')}; "
                        f"remove it")
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
    flags = os.O_RDWR | os.O_CREAT | getattr(os, "O_NOFOLLOW", 0) | getattr(os, "O_NONBLOCK", 0)
    fd = os.open(path, flags, 0o666)
    try:
        if not stat.S_ISREG(os.fstat(fd).st_mode):  # swapped in since it was looked at
            raise DataError(f"{path}: not a regular file; srsan-np will not lock through it")
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
