"""Checkpoints: one ``.npz`` of arrays with a JSON header.

A checkpoint is a single file so that it is either the old one or the new one, never half
of each: it goes through srsan-np's one writer (:func:`srsan_np.files.atomic_write_stream`:
a temporary file in the same directory, then renamed over the old one).
The JSON metadata travels inside the archive as a 0-d unicode array, so loading never
needs pickle. Whatever is in the file, loading it either succeeds or raises
:class:`~srsan_np.errors.DataError` naming it.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from srsan_np.errors import DataError
from srsan_np.files import atomic_write_stream, parse_json
from srsan_np.memory import check_stored

__all__ = ["save_checkpoint", "load_checkpoint"]

_META = "__meta__"


def save_checkpoint(path, arrays, meta):
    """Save ``arrays`` (name -> ndarray) and ``meta`` (JSON-able dict) to ``path``, atomically."""
    if _META in arrays:
        raise ValueError(f"save_checkpoint: {_META!r} is a reserved array name")
    with atomic_write_stream(path) as f:
        np.savez(f, **arrays, **{_META: np.array(json.dumps(meta))})


def load_checkpoint(path):
    """Load a checkpoint written by :func:`save_checkpoint`: ``(arrays, meta)``.

    Raises ``DataError`` (a ``ValueError``) naming the file when it is not such a
    checkpoint, ``FileNotFoundError`` when there is none.
    """
    path = Path(path)
    try:
        check_stored(path)  # before anything is inflated
        with np.load(path, allow_pickle=False) as archive:
            arrays = {name: archive[name] for name in archive.files if name != _META}
            meta = parse_json(str(archive[_META]), path) if _META in archive.files else None
    except (FileNotFoundError, IsADirectoryError, DataError):
        raise
    except Exception as err:  # a truncated zip, a pickle inside, unreadable, ...
        raise DataError(f"{path}: not a readable srsan-np checkpoint ({type(err).__name__}: "
                        f"{err})") from err
    if not isinstance(meta, dict):
        raise DataError(f"{path}: not an srsan-np checkpoint (no {_META} entry)")
    return arrays, meta
