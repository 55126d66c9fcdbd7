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
import time
from pathlib import Path
from typing import NamedTuple, Optional

import numpy as np

from srsan_np.data.store import DataError

BLOCK_BYTES = 16 << 20


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

def _to_int(column: list, name: str, lines: np.ndarray, where: str) -> np.ndarray:
    try:
        return np.array(column).astype(np.int64)
    except (ValueError, OverflowError):
        for value, line in zip(column, lines):
            try:
                int(value)
            except (ValueError, OverflowError):
                raise DataError(f"{where}: line {line}: {name} {value.decode(errors='replace')!r} "
                                f"is not an integer") from None
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
                                f"{v.decode(errors='replace')!r} is not a date YYYY-MM-DD") from None
        seconds[k] = cache[v]
    return seconds[inverse.reshape(-1)]


_DIGITS = [0, 1, 2, 3, 5, 6, 8, 9, 11, 12, 14, 15, 17, 18]


def _to_timestamp(column: list, name: str, lines: np.ndarray, where: str) -> np.ndarray:
    """``YYYY-MM-DDTHH:MM:SS...`` -> UTC seconds; like the original, only the first 19 characters count."""
    text = np.array(column).astype("S19")
    chars = text.view(np.uint8).reshape(len(text), 19)
    shape_ok = ((chars[:, [4, 7]] == ord("-")).all(1) & (chars[:, 10] == ord("T"))
                & (chars[:, [13, 16]] == ord(":")).all(1)
                & ((chars[:, _DIGITS] >= ord("0")) & (chars[:, _DIGITS] <= ord("9"))).all(1))
    bad = np.flatnonzero(~shape_ok)
    if len(bad) == 0:
        try:
            return text.astype("datetime64[s]").astype(np.int64)
        except ValueError:  # well shaped but impossible, e.g. month 13
            for k, v in enumerate(text):
                try:
                    np.datetime64(v.decode(), "s")
                except ValueError:
                    bad = np.array([k])
                    break
    k = bad[0]
    raise DataError(f"{where}: line {lines[k]}: {name} {column[k].decode(errors='replace')!r} "
                    f"is not a timestamp YYYY-MM-DDTHH:MM:SS")


# --------------------------------------------------------------------------- readers

def _open_with_header(path):
    path = Path(path)
    if not path.is_file():
        raise DataError(f"{path}: no such file")
    f = open(path, "rb")
    header = f.readline()
    if not header.strip():
        f.close()
        raise DataError(f"{path}: empty file (no header, no click rows)")
    return path, f, header


def _find_columns(names: list[str], wanted: dict, where: str) -> dict:
    found = {}
    for key, aliases in wanted.items():
        hits = [names.index(a) for a in aliases if a in names]
        if not hits:
            raise DataError(f"{where}: line 1: missing column {aliases[0]!r} "
                            f"(also accepted: {', '.join(aliases[1:]) or 'none'}); header is {names}")
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
    path, f, header = _open_with_header(path)
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
    path, f, first = _open_with_header(path)
    with f:
        names = first.decode(errors="replace").strip().split(",")
        if names[0].strip().lstrip("+-").isdigit():
            # No header (the real file): positional columns, and the first line is data.
            f.seek(0)
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
