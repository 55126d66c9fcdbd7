"""Streaming readers for the raw click logs (Diginetica, Yoochoose).

Both readers return a :class:`Clicks` of flat NumPy arrays, one entry per data row in file
order. The file is read in blocks of a few megabytes; each block is split into fields by
``bytes.split`` (C speed) and converted column-wise by NumPy, so a 33-million-row Yoochoose
file never exists as Python objects all at once. When a block does not parse, it is
re-read line by line to find and name the first bad line.

Formats
-------
Diginetica ``train-item-views.csv``: ``;``-separated with a header; columns
``sessionId|session_id``, ``itemId|item_id``, ``timeframe`` (integer, order of the
clicks within a session) and ``eventdate`` (``YYYY-MM-DD``); ``userId`` is ignored.

Yoochoose ``yoochoose-clicks.dat``: ``,``-separated, normally without a header; columns
session id, timestamp (``YYYY-MM-DDTHH:MM:SS.sssZ``), item id, category. A header naming
``session_id``, ``timestamp``, ``item_id`` is accepted.

Dates are seconds since the epoch in UTC. The original SR-GNN script used
``time.mktime`` (local time); the split falls on the same calendar boundaries either way,
but only UTC makes the numbers independent of the machine.
"""

from __future__ import annotations

import calendar
import os
import stat
import time
from pathlib import Path
from typing import NamedTuple, Optional

import numpy as np

from srsan_np import memory
from srsan_np.data.store import DataError

BLOCK_BYTES = 16 << 20
# The bytes preparing a log takes per byte of it, at most: its four int64 columns (about a
# byte of array per byte of text), the sorts and copies of the preprocessing, and every
# session's prefixes, which hold more clicks than the session itself.
RAW_BYTES_PER_BYTE = 8


class Clicks(NamedTuple):
    """Raw clicks in file order.

    Attributes
    ----------
    session : ndarray, shape (N,), int64  session id as written in the file
    item : ndarray, shape (N,), int64     raw item id
    date : ndarray, shape (N,), int64     seconds since the epoch, UTC
    timeframe : ndarray (N,) int64 or None
        Diginetica's within-session click order; None for Yoochoose (file order is kept).
    source : str                          the file, for messages
    """

    session: np.ndarray
    item: np.ndarray
    date: np.ndarray
    timeframe: Optional[np.ndarray]
    source: str


# --------------------------------------------------------------------------- splitting

def _split_lines_slow(block: bytes, delimiter: bytes, n_fields: int, first_line: int, where: str):
    """Split one block line by line, skipping blank lines; name the first malformed one."""
    fields, lines = [], []
    for k, line in enumerate(block.split(b"\n")):
        line = line.rstrip(b"\r")
        if not line.strip():
            continue
        parts = line.split(delimiter)
        if len(parts) != n_fields:
            raise DataError(f"{where}: line {first_line + k}: expected {n_fields} "
                            f"{delimiter.decode()!r}-separated fields, found {len(parts)}")
        fields.extend(parts)
        lines.append(first_line + k)
    return fields, np.asarray(lines, dtype=np.int64)


def _split_block(block: bytes, delimiter: bytes, n_fields: int, first_line: int, where: str):
    """Return (flat list of fields, line number of every row)."""
    body = block.replace(b"\r\n", b"\n")
    body = body[:-1] if body.endswith(b"\n") else body
    n_lines = body.count(b"\n") + 1
    fields = body.replace(b"\n", delimiter).split(delimiter)
    # Every line having exactly n_fields fields is the common case; anything else
    # (blank lines, a short row) takes the slow path, which also finds the culprit.
    if len(fields) == n_lines * n_fields and b"\n\n" not in body and b"\r" not in body:
        return fields, first_line + np.arange(n_lines, dtype=np.int64)
    return _split_lines_slow(body, delimiter, n_fields, first_line, where)


def _blocks(f, first_line: int):
    """Yield (line number of the block's first line, block of whole lines)."""
    rest = b""
    line = first_line
    while True:
        data = f.read(BLOCK_BYTES)
        if not data:
            if rest:
                yield line, rest
            return
        data = rest + data
        cut = data.rfind(b"\n")
        if cut < 0:
            rest = data
            continue
        block, rest = data[:cut + 1], data[cut + 1:]
        yield line, block
        line += block.count(b"\n")


# --------------------------------------------------------------------------- conversions

def _shown(value: bytes, limit: int = 60) -> str:
    """A field or line as a message quotes it: decoded, and cut short."""
    text = value.decode(errors="replace")
    return repr(text if len(text) <= limit else text[:limit] + "...")


def _to_int(column: list, name: str, lines: np.ndarray, where: str) -> np.ndarray:
    """Decimal integers, strictly: an optional ``-`` and digits. NumPy's own conversion, as
    Python's ``int``, would also take `` 1_0`` (as 10) and ``+3``: ids the original code,
    which keeps them as strings, tells apart from ``10`` and ``3``."""
    text = np.array(column)
    chars = text.view(np.uint8).reshape(len(text), -1)  # (N, width), zero-padded
    digit = (chars >= ord("0")) & (chars <= ord("9"))
    sign = (chars[:, 0] == ord("-")) & (digit[:, 1] if chars.shape[1] > 1 else False)
    digits_or_padding = digit | (chars == 0)
    strict = digits_or_padding.all(1) & digit[:, 0] | sign & digits_or_padding[:, 1:].all(1)
    bad = np.flatnonzero(~strict)
    if len(bad):
        raise DataError(f"{where}: line {lines[bad[0]]}: {name} {_shown(column[bad[0]])} is not "
                        f"an integer (digits, and a leading '-' at most)")
    try:
        return text.astype(np.int64)
    except (ValueError, OverflowError):
        for value, line in zip(column, lines):
            try:
                np.array([value]).astype(np.int64)
            except (ValueError, OverflowError):
                raise DataError(f"{where}: line {line}: {name} {_shown(value)} is not an "
                                f"integer in the int64 range") from None
        raise


def _day_seconds(text: str) -> int:
    """``YYYY-MM-DD`` -> seconds since the epoch at 00:00 UTC (strptime's rules, in UTC)."""
    return calendar.timegm(time.strptime(text, "%Y-%m-%d"))


def _to_day(column: list, name: str, lines: np.ndarray, where: str, cache: dict) -> np.ndarray:
    # A log spans a few hundred distinct days: parse each distinct string once.
    values, first, inverse = np.unique(np.array(column), return_index=True, return_inverse=True)
    seconds = np.empty(len(values), dtype=np.int64)
    for k, v in enumerate(values):
        if v not in cache:
            try:
                cache[v] = _day_seconds(v.decode())
            except (ValueError, UnicodeDecodeError):
                raise DataError(f"{where}: line {lines[first[k]]}: {name} "
                                f"{_shown(v)} is not a date YYYY-MM-DD") from None
        seconds[k] = cache[v]
    return seconds[inverse.reshape(-1)]


_DIGITS = [0, 1, 2, 3, 5, 6, 8, 9, 11, 12, 14, 15, 17, 18]
_MONTH_DAYS = np.array([0, 31, 28, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31])


def _days_from_civil(y, m, d):
    """Days since 1970-01-01 of the proleptic Gregorian dates ``y-m-d`` (Hinnant's algorithm)."""
    y = y - (m <= 2)
    era = y // 400
    yoe = y - era * 400
    doy = (153 * (m + np.where(m > 2, -3, 9)) + 2) // 5 + d - 1
    return era * 146097 + yoe * 365 + yoe // 4 - yoe // 100 + doy - 719468


def _to_timestamp(column: list, name: str, lines: np.ndarray, where: str) -> np.ndarray:
    """``YYYY-MM-DDTHH:MM:SS...`` -> UTC seconds; like the original, only the first 19 characters count.

    Every field is range-checked here and the seconds computed by integer arithmetic:
    NumPy's own ``datetime64`` parser is never handed a string (on some impossible
    dates in large arrays it crashed the process).
    """
    text = np.array(column).astype("S19")
    chars = text.view(np.uint8).reshape(len(text), 19)
    digits = chars.astype(np.int64) - ord("0")
    shape_ok = ((chars[:, [4, 7]] == ord("-")).all(1) & (chars[:, 10] == ord("T"))
                & (chars[:, [13, 16]] == ord(":")).all(1)
                & ((digits[:, _DIGITS] >= 0) & (digits[:, _DIGITS] <= 9)).all(1))

    def number(a, b):
        return (digits[:, a:b] * 10 ** np.arange(b - a - 1, -1, -1)).sum(1)

    year, month, day = number(0, 4), number(5, 7), number(8, 10)
    hour, minute, second = number(11, 13), number(14, 16), number(17, 19)
    leap = (year % 4 == 0) & ((year % 100 != 0) | (year % 400 == 0))
    month_ok = (month >= 1) & (month <= 12)
    month_days = _MONTH_DAYS[np.where(month_ok, month, 0)] + (leap & (month == 2))
    ok = (shape_ok & month_ok & (day >= 1) & (day <= month_days)
          & (hour < 24) & (minute < 60) & (second < 60))
    bad = np.flatnonzero(~ok)
    if len(bad) == 0:
        return (_days_from_civil(year, month, day) * 86400 + hour * 3600 + minute * 60 + second)
    k = bad[0]
    raise DataError(f"{where}: line {lines[k]}: {name} {_shown(column[k])} "
                    f"is not a timestamp YYYY-MM-DDTHH:MM:SS")


# --------------------------------------------------------------------------- readers

_BOM = b"\xef\xbb\xbf"


def _open_with_header(path):
    """``(path, file, first line, offset of the first line)``, or DataError for a file that
    is missing, empty, compressed or not text. A UTF-8 byte-order mark is skipped."""
    path = Path(path)
    try:
        mode = os.stat(path).st_mode
    except (FileNotFoundError, NotADirectoryError):
        raise DataError(f"{path}: no such file") from None
    if stat.S_ISDIR(mode):
        raise DataError(f"{path}: a directory, not a click log (give the log's file)")
    if not stat.S_ISREG(mode):
        raise DataError(f"{path}: not a regular file (a FIFO, a device or a socket); srsan-np "
                        f"reads a click log from a file")
    memory.check(RAW_BYTES_PER_BYTE * os.stat(path).st_size, f"{path}: preparing it needs",
                 " (prepare a fraction of it: preprocess --fraction, or a smaller log)")
    f = open(path, "rb")
    header = f.readline(1 << 16)
    start = len(_BOM) if header.startswith(_BOM) else 0
    header = header[start:]
    problem = None
    if not header.strip():
        problem = "empty file (no header, no click rows)"
    elif header.startswith(b"\x1f\x8b"):
        problem = "gzip-compressed: decompress it first (gunzip)"
    elif header.startswith((b"PK\x03\x04", b"BZh", b"\xfd7zXZ")):
        problem = "an archive or compressed file: extract the click log first"
    elif header.startswith(b"\x80"):
        problem = ("a pickle, not a click log: an SR-GNN dataset file? Give its folder as a "
                   "prepared dataset (--data DIR)")
    elif b"\x00" in header or not header.endswith(b"\n") and len(header) == 1 << 16:
        problem = "not a text click log (binary data, or a first line longer than 64 KB)"
    else:
        try:
            header.decode("utf-8")
        except UnicodeDecodeError:
            problem = "line 1: not UTF-8 text"
    if problem:
        f.close()
        raise DataError(f"{path}: {problem}")
    return path, f, header, start


def _find_columns(names: list[str], wanted: dict, where: str) -> dict:
    found = {}
    for key, aliases in wanted.items():
        hits = [names.index(a) for a in aliases if a in names]
        if not hits:
            raise DataError(f"{where}: line 1: missing column {aliases[0]!r} "
                            f"(also accepted: {', '.join(aliases[1:]) or 'none'}); header is "
                            f"{_shown(';'.join(names).encode(), 200)}")
        found[key] = hits[0]
    return found


def _read(path, f, first_line, delimiter, n_fields, columns, convert):
    """Stream the rows; ``convert(block_columns, lines)`` -> tuple of arrays per block."""
    parts = []
    for line, block in _blocks(f, first_line):
        fields, lines = _split_block(block, delimiter, n_fields, line, str(path))
        if len(lines) == 0:
            continue
        parts.append(convert({key: fields[c::n_fields] for key, c in columns.items()}, lines))
        del fields
    if not parts:
        raise DataError(f"{path}: empty file (no click rows after the header)")
    return [np.concatenate(col) for col in zip(*parts)]


def read_diginetica(path) -> Clicks:
    """Read Diginetica's ``train-item-views.csv`` (or the SR-GNN sample of it)."""
    path, f, header, _ = _open_with_header(path)
    with f:
        names = header.decode(errors="replace").strip().split(";")
        wanted = {"session": ("sessionId", "session_id"), "item": ("itemId", "item_id"),
                  "timeframe": ("timeframe",), "eventdate": ("eventdate",)}
        columns = _find_columns(names, wanted, str(path))
        day_cache: dict = {}

        def convert(cols, lines):
            return (_to_int(cols["session"], "session id", lines, str(path)),
                    _to_int(cols["item"], "item id", lines, str(path)),
                    _to_int(cols["timeframe"], "timeframe", lines, str(path)),
                    _to_day(cols["eventdate"], "eventdate", lines, str(path), day_cache))

        session, item, timeframe, date = _read(path, f, 2, b";", len(names), columns, convert)
    return Clicks(session, item, date, timeframe, str(path))


def read_yoochoose(path) -> Clicks:
    """Read Yoochoose's ``yoochoose-clicks.dat`` (header optional)."""
    path, f, first, start = _open_with_header(path)
    with f:
        names = first.decode(errors="replace").strip().split(",")
        if names[0].strip().lstrip("+-").isdigit():
            # No header (the real file): positional columns, and the first line is data.
            f.seek(start)
            first_line, n_fields = 1, len(names)
            columns = {"session": 0, "timestamp": 1, "item": 2}
            if n_fields < 3:
                raise DataError(f"{path}: line 1: expected session id, timestamp, item id, category; "
                                f"found {n_fields} fields")
        else:
            first_line, n_fields = 2, len(names)
            wanted = {"session": ("session_id", "sessionId"), "timestamp": ("timestamp",),
                      "item": ("item_id", "itemId")}
            columns = _find_columns(names, wanted, str(path))

        def convert(cols, lines):
            return (_to_int(cols["session"], "session id", lines, str(path)),
                    _to_int(cols["item"], "item id", lines, str(path)),
                    _to_timestamp(cols["timestamp"], "timestamp", lines, str(path)))

        session, item, date = _read(path, f, first_line, b",", n_fields, columns, convert)
    return Clicks(session, item, date, None, str(path))


READERS = {"diginetica": read_diginetica, "yoochoose": read_yoochoose}
