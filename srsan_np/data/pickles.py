"""Export to and import from the original SR-GNN / SR-SAN pickle files.

The original code reads ``train.txt`` and ``test.txt``, each a pickled
``(list_of_prefixes, list_of_targets)``, and ``all_train_seq.txt``, a pickled list of the
training sessions. Exporting lets users of that code run on data prepared here; importing
lets us run on data they prepared. A folder of them is a dataset wherever one is accepted
(:func:`srsan_np.data.load_dataset` tells the two kinds apart by what the folder holds):
``train.txt`` + ``test.txt``, or ``all_train_seq.txt`` + ``test.txt`` -- the form SR-GNN's
descendants ship, ``train.txt`` being too large for git -- whose training examples are
rebuilt by SR-GNN's own prefix expansion, in its order.

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

from srsan_np.data.preprocess import expand_prefixes
from srsan_np.data.store import DataError, Dataset, Sessions, gather_ragged
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


FOLDER_FILES = ("train.txt", "all_train_seq.txt", "test.txt")


def _ragged(lists, path, what, shape) -> tuple[np.ndarray, np.ndarray]:
    """``(items, offsets)`` of a list of lists of item ids; DataError naming the first bad
    one, and the ``shape`` expected of the whole if it is not even a list of lists."""
    k = next((k for k, x in enumerate(lists) if not isinstance(x, list)), None)
    if k is not None:
        raise DataError(f"{path}: {what} {k} is not a list of item ids (expected {shape})")
    offsets = np.zeros(len(lists) + 1, dtype=np.int64)
    np.cumsum(np.fromiter(map(len, lists), dtype=np.int64, count=len(lists)), out=offsets[1:])
    try:
        items = np.fromiter((i for x in lists for i in x), dtype=np.int64, count=int(offsets[-1]))
    except (TypeError, ValueError, OverflowError):  # a nested list, or an id beyond int64
        k = next(k for k, x in enumerate(lists) if not all(isinstance(i, int) for i in x)
                 or max(map(abs, x), default=0) >= 2 ** 63)
        raise DataError(f"{path}: {what} {k} is not a list of item ids") from None
    _check_ids(items, offsets, path, what)
    return items, offsets


def _check_ids(items, offsets, path, what) -> None:
    """DataError naming the first ``what`` (``items[offsets[k]:offsets[k + 1]]``) with an
    id outside 1..int32 max."""
    bad = np.flatnonzero((items < 1) | (items > np.iinfo(np.int32).max))
    if len(bad):
        k = int(np.searchsorted(offsets, bad[0], side="right")) - 1
        raise DataError(f"{path}: {what} {k} holds the item id {items[bad[0]]}; ids must be "
                        f"1..{np.iinfo(np.int32).max} (0 is padding)")


def _examples(obj, path) -> Sessions:
    """The examples of a ``train.txt`` / ``test.txt`` pickle, ``(prefixes, targets)``."""
    if not (isinstance(obj, (tuple, list)) and len(obj) == 2
            and isinstance(obj[0], list) and isinstance(obj[1], list)):
        raise DataError(f"{path}: expected (list_of_prefixes, list_of_targets)")
    prefixes, targets = obj
    if len(prefixes) != len(targets):
        raise DataError(f"{path}: {len(prefixes)} prefixes but {len(targets)} targets")
    items, offsets = _ragged(prefixes, path, "prefix", "(list_of_prefixes, list_of_targets)")
    empty = np.flatnonzero(np.diff(offsets) == 0)
    if len(empty):
        raise DataError(f"{path}: prefix {empty[0]} is empty")
    k = next((k for k, t in enumerate(targets) if not isinstance(t, int) or abs(t) >= 2 ** 63), None)
    if k is not None:
        raise DataError(f"{path}: target {k} is not an item id")
    target_ids = np.array(targets, dtype=np.int64)
    _check_ids(target_ids, np.arange(len(targets) + 1), path, "target")
    return Sessions(items, offsets, target_ids)


def _expanded_sessions(obj, path) -> Sessions:
    """The training examples of an ``all_train_seq.txt`` pickle (a list of sessions), as
    SR-GNN's ``process_seqs`` makes them: for each session ``s`` in order, for ``i`` in
    ``1..len(s)-1``, the prefix ``s[:-i]`` and the target ``s[-i]``. A session shorter
    than 2 gives no example there, so none here."""
    shape = "a list of sessions, each a list of item ids"
    if not isinstance(obj, list):
        raise DataError(f"{path}: expected {shape}")
    items, offsets = _ragged(obj, path, "session", shape)
    long_enough = np.flatnonzero(np.diff(offsets) >= 2)
    items, offsets = gather_ragged(items, offsets[long_enough], np.diff(offsets)[long_enough])
    return expand_prefixes(items, offsets)[0]


def is_pickle_folder(directory) -> bool:
    """Whether ``directory`` holds any of the original code's dataset pickles."""
    return any((Path(directory) / name).is_file() for name in FOLDER_FILES)


def import_pickles(directory) -> Dataset:
    """The dataset of an original-code folder: ``train.txt`` (else ``all_train_seq.txt``,
    prefix-expanded) and ``test.txt``.

    ``n_items`` is the largest id seen (the original code hard-codes its own count; a
    model can be told a larger one). ``stats["form"]`` says which training file was read.
    """
    directory = Path(directory)
    if (directory / "train.txt").is_file():
        form = "train.txt"
        train = _examples(safe_load(directory / form), directory / form)
    elif (directory / "all_train_seq.txt").is_file():
        form = "all_train_seq.txt"
        train = _expanded_sessions(safe_load(directory / form), directory / form)
    else:
        raise DataError(f"{directory}: no train.txt or all_train_seq.txt (an SR-GNN dataset "
                        f"folder holds train.txt or all_train_seq.txt, and test.txt)")
    if not (directory / "test.txt").is_file():
        raise DataError(f"{directory}: no test.txt beside {form} (an SR-GNN dataset folder "
                        f"holds train.txt or all_train_seq.txt, and test.txt)")
    test = _examples(safe_load(directory / "test.txt"), directory / "test.txt")
    if len(train) == 0:
        raise DataError(f"{directory / form}: no training examples")
    if len(test) == 0:
        raise DataError(f"{directory / 'test.txt'}: no test examples")
    n_items = int(max(train.items.max(initial=0), train.targets.max(), test.items.max(initial=0),
                      test.targets.max()))
    stats = {"source": str(directory), "form": f"{form} + test.txt", "n_items": n_items,
             "n_train": len(train), "n_test": len(test)}
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
