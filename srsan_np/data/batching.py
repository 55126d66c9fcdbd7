"""Mini-batches from the ragged store, in two modes.

``sequence`` mode is what a reader of the paper expects: each prefix's clicks in order,
right-padded with 0 to the longest prefix of the batch, a mask that is True on real
clicks, and the read-out at the last click.

``faithful`` mode is what the original SR-SAN code actually feeds its transformer (it
inherited SR-GNN's graph input): each prefix right-padded with 0 to ``len_max``, the
longest prefix of the whole example set, then replaced by ``np.unique`` of that padded
row -- its distinct items *sorted by id*, which includes 0 whenever the prefix is shorter
than ``len_max`` -- then right-padded with 0 to the largest distinct count in the batch.
There is no padding mask (the zeros take part in attention) and the read-out is the
position of the prefix's last click in the sorted list. Worked example, ``len_max = 4``::

    prefix [7, 3, 7]  -> padded [7, 3, 7, 0] -> unique [0, 3, 7]    last = 2 (item 7)
    prefix [2, 9, 5, 9] -> padded [2, 9, 5, 9] -> unique [2, 5, 9] last = 2 (item 9)
    batch inputs [[0, 3, 7], [2, 5, 9]]
"""

from __future__ import annotations

from typing import Iterator, NamedTuple, Optional

import numpy as np

from srsan_np.data.store import Sessions, copy_slices

MODES = ("sequence", "faithful")


class Batch(NamedTuple):
    """One mini-batch.

    inputs : (B, T) int32 ids fed to the embedding (0 = padding)
    key_mask : (B, T) bool, True at real tokens (faithful mode: all True)
    last : (B,) int64 index along T of the read-out position
    targets : (B,) int32, 1..V
    index : (B,) int64 example indices into the Sessions
    """

    inputs: np.ndarray
    key_mask: np.ndarray
    last: np.ndarray
    targets: np.ndarray
    index: np.ndarray


def _padded(sessions: Sessions, index: np.ndarray, lengths: np.ndarray, width: int) -> np.ndarray:
    """Prefixes ``index`` (of lengths ``lengths``) right-padded with 0 to ``width``: (B, width) int32."""
    rows = np.zeros((len(index), width), dtype=np.int32)               # (B, width)
    copy_slices(sessions.items, sessions.offsets[index], lengths, rows.reshape(-1),
                np.arange(len(index)) * width)
    return rows


def make_batch(sessions: Sessions, index, mode: str, len_max: Optional[int] = None) -> Batch:
    """The batch of examples ``index`` (see the module docstring for the two modes).

    Parameters
    ----------
    sessions : the examples.
    index : (B,) example indices.
    mode : "sequence" or "faithful".
    len_max : faithful mode: the length every prefix is padded to before ``np.unique``;
        default: the longest prefix in ``sessions`` (what the original computes per data set).
    """
    if mode not in MODES:
        raise ValueError(f"mode must be one of {MODES}, got {mode!r}")
    index = np.asarray(index, dtype=np.int64).reshape(-1)
    if len(index) == 0:
        raise ValueError("make_batch: empty index")
    targets = sessions.targets[index]
    lengths = sessions.offsets[index + 1] - sessions.offsets[index]   # (B,); O(B), not O(n)
    if mode == "sequence":
        inputs = _padded(sessions, index, lengths, int(lengths.max()))  # (B, T)
        key_mask = np.arange(inputs.shape[1]) < lengths[:, None]       # (B, T)
        return Batch(inputs, key_mask, lengths - 1, targets, index)

    if len_max is None:
        len_max = int(sessions.lengths().max())
    if lengths.max() > len_max:
        raise ValueError(f"make_batch: a prefix of length {lengths.max()} exceeds len_max={len_max}")
    rows = _padded(sessions, index, lengths, len_max)                  # (B, len_max)
    last_item = rows[np.arange(len(index)), lengths - 1]               # (B,)
    # np.unique per row, vectorised: sort each row, keep each value's first copy.
    ordered = np.sort(rows, axis=1)                                    # (B, len_max)
    first = np.ones_like(ordered, dtype=bool)
    first[:, 1:] = ordered[:, 1:] != ordered[:, :-1]
    n_unique = first.sum(axis=1)                                       # (B,)
    inputs = np.zeros((len(index), int(n_unique.max())), dtype=np.int32)  # (B, T)
    column = np.cumsum(first, axis=1) - 1                              # slot of each kept value
    inputs[np.nonzero(first)[0], column[first]] = ordered[first]
    # The last click's slot = how many distinct ids are smaller than it.
    last = (first & (ordered < last_item[:, None])).sum(axis=1).astype(np.int64)
    return Batch(inputs, np.ones(inputs.shape, dtype=bool), last, targets, index)


def iterate_batches(sessions: Sessions, batch_size: int, mode: str,
                    rng: Optional[np.random.Generator] = None,
                    len_max: Optional[int] = None) -> Iterator[Batch]:
    """Batches of ``batch_size`` over all examples; the last may be shorter.

    ``rng`` given: the order is ``rng.permutation(n)``, drawn once per call; None: in order.
    """
    if batch_size < 1:
        raise ValueError(f"batch_size must be >= 1, got {batch_size}")
    n = len(sessions)
    order = rng.permutation(n) if rng is not None else np.arange(n)
    if mode == "faithful" and len_max is None:
        len_max = int(sessions.lengths().max())
    for start in range(0, n, batch_size):
        yield make_batch(sessions, order[start:start + batch_size], mode, len_max)


def split_validation(sessions: Sessions, fraction: float, seed: int) -> tuple[Sessions, Sessions]:
    """Hold out a random ``fraction`` of the examples: returns (train, valid).

    As the original's ``split_validation``: shuffle, the first ``round(n * (1 - fraction))``
    examples train, the rest validate (here with a seeded Generator, not the global state).
    """
    if not 0.0 < fraction < 1.0:
        raise ValueError(f"validation fraction must be in (0, 1), got {fraction}")
    order = np.random.default_rng(seed).permutation(len(sessions))
    n_train, _ = validation_sizes(len(sessions), fraction)
    return sessions.subset(order[:n_train]), sessions.subset(order[n_train:])


def validation_sizes(n: int, fraction: float) -> tuple[int, int]:
    """How many of ``n`` examples :func:`split_validation` keeps to train and holds out."""
    n_train = int(np.round(n * (1.0 - fraction))) if fraction > 0 else n
    return n_train, n - n_train
