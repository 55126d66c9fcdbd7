"""Export to and import from the original SR-GNN / SR-SAN pickle files.

The original code reads ``train.txt`` and ``test.txt``, each a pickled
``(list_of_prefixes, list_of_targets)``, and ``all_train_seq.txt``, a pickled list of the
training sessions. Exporting lets users of that code run on data prepared here; importing
lets us run on data they prepared.

A pickle is a program: loading one can call any function. Imports therefore go through
:func:`safe_load`, which first reads every opcode without executing anything and admits
only those that build lists, tuples and integers (plus framing and memo bookkeeping), and
then unpickles with a ``find_class`` that refuses every global.
"""

from __future__ import annotations

import io
import pickle
import pickletools
from pathlib import Path

import numpy as np

from srsan_np.data.store import DataError, Dataset, Sessions
from srsan_np.files import atomic_directory, write_marker

ALLOWED_OPCODES = frozenset({
    "PROTO", "FRAME", "STOP", "MARK", "POP", "POP_MARK",
    "EMPTY_LIST", "LIST", "APPEND", "APPENDS",
    "EMPTY_TUPLE", "TUPLE", "TUPLE1", "TUPLE2", "TUPLE3",
    "INT", "BININT", "BININT1", "BININT2", "LONG", "LONG1", "LONG4",
    "PUT", "BINPUT", "LONG_BINPUT", "MEMOIZE", "GET", "BINGET", "LONG_BINGET",
})
PROTOCOL = 4   # readable by every Python 3 the original code runs on


class _NoGlobals(pickle.Unpickler):
    def find_class(self, module, name):
        raise pickle.UnpicklingError(f"refused global {module}.{name}")


def safe_load(path):
    """Unpickle ``path`` if it holds only lists, tuples and integers; else raise DataError."""
    path = Path(path)
    if not path.is_file():
        raise DataError(f"{path}: no such file")
    data = path.read_bytes()
    if not data:
        raise DataError(f"{path}: empty file")
    try:
        for opcode, arg, pos in pickletools.genops(data):
            # Protocol 0 spells True/False as INT "01"/"00": those are bools, not ints.
            if opcode.name not in ALLOWED_OPCODES or (opcode.name == "INT" and isinstance(arg, bool)):
                raise DataError(f"{path}: refused: byte {pos} is opcode {opcode.name}; only lists, "
                                f"tuples and integers are allowed in a dataset pickle")
        return _NoGlobals(io.BytesIO(data)).load()
    except DataError:
        raise
    except Exception as e:  # a truncated or corrupt stream
        raise DataError(f"{path}: not a readable pickle ({e})") from None


def _examples(obj, path) -> Sessions:
    if not (isinstance(obj, (tuple, list)) and len(obj) == 2
            and isinstance(obj[0], list) and isinstance(obj[1], list)):
        raise DataError(f"{path}: expected (list_of_prefixes, list_of_targets)")
    prefixes, targets = obj
    if len(prefixes) != len(targets):
        raise DataError(f"{path}: {len(prefixes)} prefixes but {len(targets)} targets")
    for k, p in enumerate(prefixes):
        if not isinstance(p, list) or not p:
            raise DataError(f"{path}: prefix {k} is not a non-empty list of item ids")
    sessions = Sessions.from_lists(prefixes, targets)
    if len(sessions) and min(sessions.items.min(initial=1), sessions.targets.min()) < 1:
        raise DataError(f"{path}: item ids must be >= 1 (0 is padding)")
    return sessions


def import_pickles(directory) -> Dataset:
    """Read ``train.txt`` and ``test.txt`` of an original-code dataset directory.

    ``n_items`` is the largest id seen (the original code hard-codes its own count).
    """
    directory = Path(directory)
    train = _examples(safe_load(directory / "train.txt"), directory / "train.txt")
    test = _examples(safe_load(directory / "test.txt"), directory / "test.txt")
    if len(train) == 0:
        raise DataError(f"{directory / 'train.txt'}: no training examples")
    n_items = int(max(train.items.max(initial=0), train.targets.max(), test.items.max(initial=0),
                      test.targets.max(initial=0)))
    stats = {"source": str(directory), "n_items": n_items, "n_train": len(train), "n_test": len(test)}
    return Dataset(train, test, n_items, stats)


def sessions_from_examples(sessions: Sessions) -> tuple[np.ndarray, np.ndarray]:
    """Rebuild the sessions behind prefix-expanded examples, as ``(items, offsets)``.

    Each session contributes its prefixes longest first, down to length 1, so a session
    starts at example 0 and after every example whose prefix has length 1; the session is
    its first (longest) prefix followed by that prefix's target.
    """
    lengths = sessions.lengths()
    first = np.flatnonzero(np.concatenate([[True], lengths[:-1] == 1]))
    rebuilt = Sessions(sessions.items, sessions.offsets, sessions.targets).subset(first)
    items = np.insert(rebuilt.items, rebuilt.offsets[1:], rebuilt.targets)
    return items, rebuilt.offsets + np.arange(len(first) + 1)


def write_pickle_files(dataset: Dataset, directory, all_train_seq=None) -> None:
    """Write the three pickles into the existing ``directory`` (not atomic by itself).

    Parameters
    ----------
    all_train_seq : (items, offsets) of the full training sessions, from
        ``preprocess(...).train_sessions``; None rebuilds them from the training examples
        (exact except for a Yoochoose fraction, whose first session is cut).
    """
    directory = Path(directory)
    items, offsets = all_train_seq if all_train_seq is not None else sessions_from_examples(dataset.train)
    items, offsets = items.tolist(), offsets.tolist()
    files = {"train.txt": dataset.train.to_lists(), "test.txt": dataset.test.to_lists(),
             "all_train_seq.txt": [items[a:b] for a, b in zip(offsets[:-1], offsets[1:])]}
    for name, obj in files.items():
        (directory / name).write_bytes(pickle.dumps(obj, protocol=PROTOCOL))
    write_marker(directory, "pickles", files)


def export_pickles(dataset: Dataset, directory, all_train_seq=None) -> None:
    """Write ``train.txt``, ``test.txt``, ``all_train_seq.txt`` as the original code expects, atomically."""
    with atomic_directory(directory, "pickles") as tmp:
        write_pickle_files(dataset, tmp, all_train_seq)
