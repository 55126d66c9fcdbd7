"""SR-GNN's preprocessing, reproduced exactly, on flat arrays.

Every published SR-GNN / SR-SAN number was computed on data prepared by SR-GNN's
``datasets/preprocess.py``. This module does the same steps in the same order, with NumPy
arrays instead of a dict of lists per session so that 33 million Yoochoose clicks fit in a
few GB:

1. Group the clicks by session. A session is ordered as the file orders it; Diginetica
   sessions are then sorted by ``timeframe`` (stably: ties keep file order).
   A session's date is the date of its last row in the file.
2. Drop sessions of length 1.
3. Count every item over the remaining clicks; drop clicks on items seen fewer than 5
   times (one pass); drop sessions left shorter than 2.
4. ``split = max date - 7 days`` (Diginetica) or ``- 1 day`` (Yoochoose). Train = sessions
   dated before ``split``, test = dated after it; a session dated exactly on ``split`` is
   in neither.
5. Sort the training sessions by date (stable: ties keep the order in which the sessions
   first appear in the file). Renumber items ``1..V`` in order of first appearance in
   these sorted sessions.
6. Test sessions, sorted the same way: drop clicks on items unknown to training, drop
   sessions left shorter than 2.
7. Expand every session ``seq`` into its prefixes: for ``i = 1..len(seq) - 1`` the example
   ``(seq[:-i], seq[-i])``, longest prefix first.
8. Yoochoose 1/4 and 1/64: the last ``n // 4`` (``n // 64``) training examples, item ids
   kept from step 5 (``n_items`` stays the full dictionary size, as in the original,
   where the fraction's training data need not touch every item). The test set is the
   whole test set. If ``n // fraction == 0`` the original's ``examples[-0:]`` keeps every
   example, and so do we.
"""

from __future__ import annotations

from pathlib import Path
from typing import NamedTuple, Optional

import numpy as np

from srsan_np.data.readers import Clicks
from srsan_np.data.store import DataError, Dataset, Sessions, gather_ragged

SPLIT_DAYS = {"diginetica": 7, "yoochoose": 1}
MIN_ITEM_COUNT = 5
DAY = 86400


class Prepared(NamedTuple):
    """The prepared dataset and the full training sessions (the original's ``all_train_seq``).

    ``train_sessions`` is ``(items, offsets)``: session k is
    ``items[offsets[k]:offsets[k + 1]]``, renumbered ids, in date order. For a Yoochoose
    fraction it starts at the session of the fraction's first example, as in the original.
    """

    dataset: Dataset
    train_sessions: tuple


def _first_appearance_ids(values: np.ndarray):
    """Number the distinct values 0..K-1 in order of first appearance; return (ids, K)."""
    _, first, inverse = np.unique(values, return_index=True, return_inverse=True)
    rank = np.empty(len(first), dtype=np.int64)
    rank[np.argsort(first, kind="stable")] = np.arange(len(first))
    return rank[inverse.reshape(-1)], len(first)


def _sessions_in_order(clicks: Clicks):
    """Step 1: clicks grouped by session (sessions numbered by first appearance).

    Returns (items (N,), offsets (S + 1,), date (S,)).
    """
    sid, n_sessions = _first_appearance_ids(clicks.session)
    if clicks.timeframe is None:
        order = np.argsort(sid, kind="stable")
    else:
        order = np.lexsort((clicks.timeframe, sid))  # lexsort is stable
    items = clicks.item[order]
    offsets = np.zeros(n_sessions + 1, dtype=np.int64)
    np.cumsum(np.bincount(sid, minlength=n_sessions), out=offsets[1:])
    # The original overwrote a session's date at the end of each of its runs of rows,
    # so the date that stays is the one on the session's last row in the file.
    last_row = np.full(n_sessions, -1, dtype=np.int64)
    np.maximum.at(last_row, sid, np.arange(len(sid), dtype=np.int64))
    return items, offsets, clicks.date[last_row]


def _filter(items, offsets, keep_click):
    """Keep the clicks ``keep_click`` (N,) bool; return (items, offsets) with same sessions."""
    session_of_click = np.repeat(np.arange(len(offsets) - 1), np.diff(offsets))
    new_offsets = np.zeros_like(offsets)
    np.cumsum(np.bincount(session_of_click[keep_click], minlength=len(offsets) - 1), out=new_offsets[1:])
    return items[keep_click], new_offsets


def _select(items, offsets, sessions):
    """The sessions ``sessions`` (indices, in that order) as (items, offsets)."""
    return gather_ragged(items, offsets[sessions], np.diff(offsets)[sessions])


def expand_prefixes(items, offsets, last: Optional[int] = None) -> tuple[Sessions, int]:
    """Step 7: all prefixes of every session, longest first; optionally only the last ``last``.

    Parameters
    ----------
    items, offsets : the sessions, session k = ``items[offsets[k]:offsets[k + 1]]``, each of length >= 2.
    last : keep only the last ``last`` examples (Yoochoose fractions); None keeps all.

    Returns
    -------
    (Sessions, first_session) : the examples, and the index of the session that the first
    kept example comes from.
    """
    lengths = np.diff(offsets)
    n_per_session = lengths - 1
    example_offsets = np.zeros(len(lengths) + 1, dtype=np.int64)
    np.cumsum(n_per_session, out=example_offsets[1:])
    n = int(example_offsets[-1])
    first = 0 if not last else n - last
    examples = np.arange(first, n, dtype=np.int64)
    session = np.searchsorted(example_offsets, examples, side="right") - 1
    i = examples - example_offsets[session] + 1            # the original's i = 1..len-1
    prefix_len = lengths[session] - i                      # seq[:-i]
    targets = items[offsets[session] + prefix_len]         # seq[-i]
    prefix_items, prefix_offsets = gather_ragged(items, offsets[session], prefix_len)
    first_session = int(session[0]) if len(session) else 0
    return Sessions(prefix_items, prefix_offsets, targets), first_session


def _drop_short_and_rare(items, offsets, where):
    """Steps 2-3: length-1 sessions out, then rare items (counted without those sessions);
    the clicks kept, and the sessions left with 2 or more."""
    lengths = np.diff(offsets)
    in_long_session = np.repeat(lengths >= 2, lengths)
    raw_ids, inverse = np.unique(items, return_inverse=True)
    inverse = inverse.reshape(-1)
    counts = np.bincount(inverse[in_long_session], minlength=len(raw_ids))
    items, offsets = _filter(items, offsets, in_long_session & (counts[inverse] >= MIN_ITEM_COUNT))
    kept = np.flatnonzero(np.diff(offsets) >= 2)
    if len(kept) == 0:
        raise DataError(f"{where}: no session left after filtering (sessions of length 1 and "
                        f"items seen fewer than {MIN_ITEM_COUNT} times removed)")
    return items, offsets, kept


def _split_by_date(date, kept, dataset, where):
    """Steps 4-5: the split instant, and the training and test sessions in date order
    (ties by first appearance, which the session numbers already are)."""
    split = int(date[kept].max()) - DAY * SPLIT_DAYS[dataset]
    train_sessions = kept[date[kept] < split]
    test_sessions = kept[date[kept] > split]
    train_sessions = train_sessions[np.argsort(date[train_sessions], kind="stable")]
    test_sessions = test_sessions[np.argsort(date[test_sessions], kind="stable")]
    if len(train_sessions) == 0:
        raise DataError(f"{where}: no training session left: every session is dated within the "
                        f"last {SPLIT_DAYS[dataset]} day(s) of the log")
    return split, train_sessions, test_sessions


def _renumber(train_items):
    """Step 5: items ``1..V`` in order of first appearance; ``(new items, the log's ids in
    sorted order, each one's new id)``."""
    known, first, inverse = np.unique(train_items, return_index=True, return_inverse=True)
    new_id = np.empty(len(known), dtype=np.int64)
    new_id[np.argsort(first, kind="stable")] = np.arange(1, len(known) + 1)
    return new_id[inverse.reshape(-1)], known, new_id


def _known_test_clicks(test_items, test_offsets, known, new_id):
    """Step 6: test clicks on items unknown to training out (the rest renumbered), then
    sessions shorter than 2."""
    pos = np.minimum(np.searchsorted(known, test_items), len(known) - 1)
    test_items, test_offsets = _filter(new_id[pos], test_offsets, known[pos] == test_items)
    return _select(test_items, test_offsets, np.flatnonzero(np.diff(test_offsets) >= 2))


def preprocess(clicks: Clicks, dataset: str, fraction: Optional[int] = None) -> Prepared:
    """Prepare raw clicks exactly as SR-GNN's ``preprocess.py`` (see the module docstring).

    Parameters
    ----------
    clicks : from ``read_diginetica`` / ``read_yoochoose`` (or the generator).
    dataset : "diginetica" or "yoochoose" (decides the test window, 7 days or 1).
    fraction : Yoochoose only: 4 or 64 for the most recent 1/4 or 1/64 of the training examples.

    Raises
    ------
    DataError : when no session is left after filtering, or nothing to train or test on.
    """
    if dataset not in SPLIT_DAYS:
        raise ValueError(f"dataset must be one of {sorted(SPLIT_DAYS)}, got {dataset!r}")
    if fraction is not None and fraction not in (4, 64):
        raise ValueError(f"fraction must be 4, 64 or None, got {fraction!r}")
    where = clicks.source or "clicks"
    items, offsets, date = _sessions_in_order(clicks)
    n_raw_sessions = len(date)
    items, offsets, kept = _drop_short_and_rare(items, offsets, where)
    split, train_sessions, test_sessions = _split_by_date(date, kept, dataset, where)
    train_items, train_offsets = _select(items, offsets, train_sessions)
    train_items, known, new_id = _renumber(train_items)
    test_items, test_offsets = _known_test_clicks(*_select(items, offsets, test_sessions),
                                                  known, new_id)
    del items, offsets

    # Step 7 (and 8).
    n_train_examples = int(train_offsets[-1]) - len(train_sessions)
    last = None if fraction is None else n_train_examples // fraction
    train, first_session = expand_prefixes(train_items, train_offsets, last)
    test, _ = expand_prefixes(test_items, test_offsets)
    if len(test) == 0:
        raise DataError(f"{where}: no test session left after filtering (dated after "
                        f"{split}, with 2 or more clicks on training items)")
    n_items = len(known)
    stats = {
        "dataset": dataset, "source": Path(where).name, "fraction": fraction,
        "n_rows": int(len(clicks.session)), "n_raw_sessions": int(n_raw_sessions),
        "n_items": int(n_items), "n_train": len(train), "n_test": len(test),
        "n_train_sessions": int(len(train_sessions)),
        "n_test_sessions": int(len(test_offsets) - 1),
        "avg_length": float((train_offsets[-1] + test_offsets[-1])
                            / (len(train_sessions) + len(test_offsets) - 1)),
        "max_prefix_length_train": int(train.lengths().max()),
        "max_prefix_length_test": int(test.lengths().max()),
        "split_date": int(split), "max_date": int(split) + DAY * SPLIT_DAYS[dataset],
    }
    kept_train = train_offsets[first_session:] - train_offsets[first_session]
    all_train_seq = (train_items[train_offsets[first_session]:].astype(np.int32), kept_train)
    log_ids = np.zeros(n_items + 1, dtype=np.int64)  # item id -> the log's id; 0 is padding
    log_ids[new_id] = known
    return Prepared(Dataset(train, test, n_items, stats, log_ids), all_train_seq)
