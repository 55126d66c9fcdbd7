"""Ragged next-click examples and their ``.npz`` storage.

A prepared dataset is a list of ``(prefix, target)`` pairs. Prefixes have very different
lengths (1 to a few hundred clicks), so they are stored the way a CSR matrix stores its
rows: one flat array of item ids and an array of offsets, ``prefix i =
items[offsets[i]:offsets[i + 1]]``. Nothing is padded on disk; padding happens per batch
(see ``batching.py``).

A directory written by :func:`save_dataset` holds ``train.npz``, ``test.npz`` (arrays
``items``, ``offsets``, ``targets``, ``n_items``), ``stats.json``, ``raw_ids.npy`` when the
log's ids are known, and the marker ``.srsan-np`` that lists what srsan-np wrote there
(see ``srsan_np/files.py``): written again, it replaces those entries and keeps the rest.
:func:`srsan_np.data.load_dataset` reads it, or a folder of the original code's pickles
(``srsan_np/data/pickles.py``), telling which it is given by what it holds.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Optional

import numpy as np
from numba import njit

from srsan_np.errors import DataError
from srsan_np import files, memory


# a dataset directory from before markers listed their entries: recognised by its three
# files; what it wrote
LAYOUT = files.Layout(("train.npz", "test.npz", "stats.json"),
                      ("train.npz", "test.npz", "stats.json", "raw_ids.npy", "pickles/"))


@dataclass(frozen=True)
class Sessions:
    """Ragged next-click examples: prefix i = ``items[offsets[i]:offsets[i+1]]``, target ``targets[i]``.

    Attributes
    ----------
    items : ndarray, shape (total,), int32
        Item ids ``1..V`` of all prefixes, concatenated.
    offsets : ndarray, shape (n + 1,), int64
        ``offsets[0] == 0``, non-decreasing, ``offsets[-1] == total``.
    targets : ndarray, shape (n,), int32
        The next click after each prefix, ``1..V``.
    """

    items: np.ndarray
    offsets: np.ndarray
    targets: np.ndarray

    def __post_init__(self):
        # Normalise dtypes once so every consumer can rely on them -- after checking that
        # the values are integers that fit: a cast would wrap 2**32 + 1 to 1 and cut 1.7 to 1.
        for name, dtype in (("items", np.int32), ("offsets", np.int64), ("targets", np.int32)):
            object.__setattr__(self, name, np.ascontiguousarray(
                _checked(np.asarray(getattr(self, name)), dtype, f"Sessions.{name}"), dtype=dtype))
        offsets = self.offsets
        if offsets.ndim != 1 or len(offsets) != len(self.targets) + 1:
            raise ValueError(f"Sessions: offsets must have shape (n + 1,) = ({len(self.targets) + 1},), "
                             f"got {offsets.shape}")
        if offsets[0] != 0 or offsets[-1] != len(self.items) or np.any(np.diff(offsets) < 0):
            raise ValueError("Sessions: offsets must start at 0, never decrease and end at len(items)")

    def __len__(self) -> int:
        return len(self.targets)

    def prefix(self, i: int) -> np.ndarray:
        """Prefix ``i`` as an int32 view, shape (length_i,)."""
        return self.items[self.offsets[i]:self.offsets[i + 1]]

    def lengths(self) -> np.ndarray:
        """Prefix lengths, shape (n,), int64."""
        return np.diff(self.offsets)

    def subset(self, index) -> "Sessions":
        """The examples ``index[0], index[1], ...``, in that order (repeats allowed)."""
        index = np.asarray(index, dtype=np.int64).reshape(-1)
        starts = self.offsets[index]
        # Not self.lengths()[index]: that would cost O(n) per call, i.e. per mini-batch.
        items, offsets = gather_ragged(self.items, starts, self.offsets[index + 1] - starts)
        return Sessions(items, offsets, self.targets[index])

    @classmethod
    def from_lists(cls, prefixes, targets) -> "Sessions":
        """Build from Python lists: ``prefixes[i]`` a list of ids, ``targets[i]`` an id."""
        if len(prefixes) != len(targets):
            raise ValueError(f"Sessions.from_lists: {len(prefixes)} prefixes but {len(targets)} targets")
        lengths = np.fromiter((len(p) for p in prefixes), dtype=np.int64, count=len(prefixes))
        offsets = np.zeros(len(prefixes) + 1, dtype=np.int64)
        np.cumsum(lengths, out=offsets[1:])
        items = np.fromiter((i for p in prefixes for i in p), dtype=np.int64, count=int(offsets[-1]))
        return cls(_checked_int32(items, "item id"), offsets,
                   _checked_int32(np.asarray(targets, dtype=np.int64).reshape(-1), "target"))

    def to_lists(self) -> tuple[list[list[int]], list[int]]:
        """``(prefixes, targets)`` as Python lists of ints (the original code's layout)."""
        items = self.items.tolist()
        offsets = self.offsets.tolist()
        prefixes = [items[a:b] for a, b in zip(offsets[:-1], offsets[1:])]
        return prefixes, self.targets.tolist()


def gather_ragged(items: np.ndarray, starts: np.ndarray, lengths: np.ndarray):
    """Concatenate the slices ``items[starts[k]:starts[k] + lengths[k]]``.

    Returns ``(flat, offsets)``: flat has ``items.dtype`` and shape (sum(lengths),),
    offsets is int64 of shape (len(starts) + 1,). Only the output is allocated, which
    matters when millions of prefixes are cut out of one click array.
    """
    lengths = np.asarray(lengths, dtype=np.int64)
    offsets = np.zeros(len(starts) + 1, dtype=np.int64)
    np.cumsum(lengths, out=offsets[1:])
    out = np.empty(offsets[-1], dtype=items.dtype)
    copy_slices(items, np.asarray(starts, dtype=np.int64), lengths, out, offsets)
    return out, offsets


@njit(cache=True)
def copy_slices(items, starts, lengths, out, out_starts):
    """``out[out_starts[k]:][:lengths[k]] = items[starts[k]:][:lengths[k]]`` for every ``k``.

    Back to back (``out_starts`` the running sum of the lengths) this concatenates the
    slices; ``out_starts = k * width`` in a flattened ``(n, width)`` array pads them.
    """
    for k in range(len(starts)):
        a, b = starts[k], out_starts[k]
        for p in range(lengths[k]):
            out[b + p] = items[a + p]


def _checked_int32(values: np.ndarray, what: str) -> np.ndarray:
    if values.size and (values.min() < 0 or values.max() > np.iinfo(np.int32).max):
        raise ValueError(f"{what} out of the int32 range 0..{np.iinfo(np.int32).max}")
    return values.astype(np.int32)


def _checked(values: np.ndarray, dtype, what: str) -> np.ndarray:
    """``values``, if they are integers that ``dtype`` holds (ValueError naming ``what``
    otherwise): checked before any cast, which would wrap or truncate them silently."""
    if values.dtype == dtype:
        return values
    if values.dtype.kind not in "iub":
        raise ValueError(f"{what} must be integers, got {values.dtype}")
    info = np.iinfo(dtype)
    if values.size and (int(values.min()) < info.min or int(values.max()) > info.max):
        raise ValueError(f"{what} outside the {np.dtype(dtype).name} range {info.min}..{info.max}")
    return values


@dataclass(frozen=True)
class Dataset:
    """A prepared dataset: training and test examples over items ``1..n_items`` (0 = padding).

    ``raw_ids`` (V + 1,) int64, when known: ``raw_ids[i]`` is the id item ``i`` has in the
    raw log (``raw_ids[0] = 0``, padding), so recommendations can be read in the log's ids.
    """

    train: Sessions
    test: Sessions
    n_items: int
    stats: dict
    raw_ids: Optional[np.ndarray] = None


# --------------------------------------------------------------------------- .npz store

def _write_split(path: Path, sessions: Sessions, n_items: int) -> None:
    with open(path, "wb") as f:
        np.savez(f, items=sessions.items, offsets=sessions.offsets, targets=sessions.targets,
                 n_items=np.int64(n_items))


def write_dataset_files(dataset: Dataset, directory) -> None:
    """Write ``train.npz``, ``test.npz``, ``stats.json`` (and ``raw_ids.npy``) into ``directory``.

    Not atomic by itself: call it inside :func:`atomic_directory` (as :func:`save_dataset` does).
    """
    directory = Path(directory)
    _write_split(directory / "train.npz", dataset.train, dataset.n_items)
    _write_split(directory / "test.npz", dataset.test, dataset.n_items)
    if dataset.raw_ids is not None:
        np.save(directory / "raw_ids.npy", dataset.raw_ids)
    stats = dict(dataset.stats, n_items=int(dataset.n_items))
    (directory / "stats.json").write_text(json.dumps(stats, indent=2, sort_keys=True) + "\n")


def save_dataset(dataset: Dataset, directory) -> None:
    """Write ``train.npz``, ``test.npz`` and ``stats.json`` into ``directory``, atomically:
    a new or empty directory, or one srsan-np prepared, whose other entries are kept
    (:func:`srsan_np.files.atomic_directory`)."""
    with files.atomic_directory(directory, "dataset", LAYOUT, flag="directory") as tmp:
        write_dataset_files(dataset, tmp)


def _read_split(path: Path) -> tuple[Sessions, int]:
    if not path.is_file():
        raise DataError(f"{path}: missing (a prepared dataset directory holds train.npz, test.npz, "
                        f"stats.json; an SR-GNN one train.txt or all_train_seq.txt, and test.txt)")
    memory.check_stored(path)  # before anything is inflated
    try:
        # allow_pickle=False: a .npz may not smuggle objects in.
        with np.load(path, allow_pickle=False) as z:
            sessions = Sessions(z["items"], z["offsets"], z["targets"])
            n_items = int(z["n_items"])
    except Exception as e:  # a truncated zip, a missing array, a wrong shape, ...
        raise DataError(f"{path}: not a prepared split ({type(e).__name__}: {e})") from None
    if len(sessions) == 0:
        raise DataError(f"{path}: no examples")
    if len(sessions.items) and (sessions.items.min() < 1 or sessions.items.max() > n_items):
        raise DataError(f"{path}: item ids outside 1..{n_items}")
    if len(sessions) and (sessions.targets.min() < 1 or sessions.targets.max() > n_items):
        raise DataError(f"{path}: targets outside 1..{n_items}")
    return sessions, n_items


def load_prepared(directory) -> Dataset:
    """Read a dataset directory written by :func:`save_dataset` (a folder of the original
    code's pickles is read by :func:`srsan_np.data.load_dataset`)."""
    directory = Path(directory)
    if not directory.is_dir():
        raise DataError(f"{directory}: no such dataset directory")
    if files.incomplete(directory):
        raise DataError(f"{directory}: its files were being replaced when srsan-np stopped; "
                        f"prepare it again (srsan-np preprocess --overwrite)")
    train, n_items = _read_split(directory / "train.npz")
    test, n_items_test = _read_split(directory / "test.npz")
    if n_items != n_items_test:
        raise DataError(f"{directory}: train.npz says {n_items} items, test.npz {n_items_test}")
    stats_path = directory / "stats.json"
    stats = files.read_json(stats_path) if stats_path.is_file() else {}
    if not isinstance(stats, dict):
        raise DataError(f"{stats_path}: expected a JSON object, found {type(stats).__name__}")
    return Dataset(train, test, n_items, stats, load_raw_ids(directory / "raw_ids.npy", n_items))


def fingerprint(dataset: Dataset) -> str:
    """A SHA-256 of the examples and the item count: the same data, the same string."""
    h = hashlib.sha256(str(int(dataset.n_items)).encode())
    for split in (dataset.train, dataset.test):
        for array in (split.items, split.offsets, split.targets):
            h.update(np.ascontiguousarray(array).tobytes())
    return h.hexdigest()


def load_raw_ids(path, n_items=None):
    """The raw-id array saved at ``path`` (``(n_items + 1,)`` if given), or None if there is none."""
    path = Path(path)
    if not path.is_file():
        return None
    memory.check_stored(path)
    try:
        raw_ids = np.load(path, allow_pickle=False)
    except Exception as e:  # a truncated or foreign file
        raise DataError(f"{path}: not a raw-id array ({type(e).__name__}: {e})") from None
    expected = (n_items + 1,) if n_items is not None else (len(raw_ids),)
    if raw_ids.ndim != 1 or raw_ids.shape != expected or raw_ids.dtype.kind not in "iu":
        raise DataError(f"{path}: expected {expected[0]} integer ids, got {raw_ids.dtype}{raw_ids.shape}")
    return raw_ids
