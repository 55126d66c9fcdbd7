"""SR-GNN preprocessing: the published figures on the real sample, and each rule by hand."""

import numpy as np
import pytest

from srsan_np.data.preprocess import expand_prefixes, preprocess
from srsan_np.data.readers import Clicks, read_diginetica
from srsan_np.data.store import DataError

DAY = 86400
T0 = 1_450_000_000 - 1_450_000_000 % DAY


def test_real_sample_reproduces_the_published_figures(real_sample_csv):
    prepared = preprocess(read_diginetica(real_sample_csv), "diginetica")
    d = prepared.dataset
    assert d.n_items == 309
    assert (len(d.train), len(d.test)) == (1205, 99)
    assert d.stats["split_date"] == 1464134400
    assert d.stats["n_train_sessions"] == 469
    assert round(d.stats["avg_length"], 3) == 3.567
    prefixes, targets = d.train.to_lists()
    assert list(zip(prefixes[:3], targets[:3])) == [([1, 2], 3), ([1], 2), ([4], 5)]
    prefixes, targets = d.test.to_lists()
    assert list(zip(prefixes[:3], targets[:3])) == [([282], 282), ([281, 308], 281), ([281], 308)]
    # Every item 1..309 appears in training, ids in order of first appearance.
    items, _ = prepared.train_sessions
    _, first = np.unique(items, return_index=True)
    assert np.all(np.diff(first) > 0) and items.max() == 309


def clicks(rows, timeframe=True):
    """rows: (session, item, day, timeframe) tuples, in file order."""
    s, i, day, tf = (np.array(c, dtype=np.int64) for c in zip(*rows))
    return Clicks(s, i, T0 + DAY * day, tf if timeframe else None, "hand")


def test_each_rule_on_a_hand_made_log():
    rows = []
    # Items 10, 11, 12 are frequent (>= 5 clicks in sessions of length >= 2); 99 is rare.
    # Session 1 (day 0) is written out of timeframe order.
    rows += [(1, 11, 0, 30), (1, 10, 0, 10), (1, 12, 0, 20)]
    rows += [(2, 12, 1, 1), (2, 99, 1, 2), (2, 10, 1, 3)]    # 99 dropped -> [12, 10]
    rows += [(3, 10, 0, 1)]                                   # length 1: dropped
    rows += [(4, 11, 2, 1), (4, 99, 2, 2)]                    # [11] after filtering: dropped
    rows += [(5, 10, 0, 1), (5, 11, 0, 2), (5, 12, 0, 3)]     # same day as session 1, later in file
    rows += [(6, 12, 10, 1), (6, 11, 10, 2)]                  # exactly on the split: neither
    rows += [(7, 10, 17, 1), (7, 11, 17, 2), (7, 10, 17, 3)]  # the last day: test
    rows += [(8, 12, 12, 1), (8, 10, 12, 2)]                  # test
    d = preprocess(clicks(rows), "diginetica").dataset
    assert d.stats["split_date"] == T0 + DAY * 10
    # Train sessions by date, ties by first appearance: 1 = [10, 12, 11], 5 = [10, 11, 12], 2 = [12, 10].
    # Renumbered by first appearance: 10 -> 1, 12 -> 2, 11 -> 3.
    assert d.n_items == 3
    assert d.train.to_lists() == ([[1, 2], [1], [1, 3], [1], [2]], [3, 2, 2, 3, 1])
    # Test sessions by date: 8 = [12, 10] (day 12) then 7 = [10, 11, 10] (day 17).
    assert d.test.to_lists() == ([[2], [1, 3], [1]], [1, 1, 3])


def test_test_items_unknown_to_training_are_dropped():
    # Training: items 11 (id 1) and 10 (id 2), six clicks each; item 20 is frequent but only in test.
    rows = [(s, 10 + s % 2, 0, s) for s in range(1, 7) for _ in range(2)]
    rows += [(50, 20, 9, 1), (50, 10, 9, 2), (50, 20, 9, 3), (50, 11, 9, 4)]
    rows += [(60, 20, 9, k) for k in range(4)] + [(61, 20, 9, k) for k in range(2)]
    rows += [(70, 10, 9, 1), (70, 20, 9, 2)]                  # -> [10] after dropping 20: gone
    d = preprocess(clicks(rows), "diginetica").dataset
    assert d.test.to_lists() == ([[2]], [1])                  # session 50 -> [10, 11] = [2, 1]


def test_yoochoose_keeps_file_order_and_takes_the_most_recent_fraction():
    # Yoochoose: no timeframe; clicks stay in file order; the date is the last row's.
    rows = [(s, 10 + (s + k) % 3, s % 5, 0) for s in range(1, 41) for k in range(3)]
    rows += [(99, 10, 6, 0), (99, 11, 6, 0)]                  # the last day: test
    c = clicks(rows, timeframe=False)
    full = preprocess(c, "yoochoose").dataset
    quarter = preprocess(c, "yoochoose", fraction=4)
    n = len(full.train)
    k = n // 4
    assert quarter.dataset.train.to_lists() == tuple(x[-k:] for x in full.train.to_lists())
    assert quarter.dataset.n_items == full.n_items
    assert quarter.dataset.test.to_lists() == full.test.to_lists()
    # n // 64 == 1 here; the kept sessions start at that example's session.
    tiny = preprocess(c, "yoochoose", fraction=64)
    assert len(tiny.dataset.train) == n // 64
    items, offsets = tiny.train_sessions
    prefixes, targets = full.train.to_lists()
    assert offsets.tolist() == [0, 3] and items.tolist() == prefixes[-2] + [targets[-2]]


def test_expand_prefixes_longest_first():
    sessions, first = expand_prefixes(np.array([5, 6, 7, 8, 9]), np.array([0, 3, 5]))
    assert sessions.to_lists() == ([[5, 6], [5], [8]], [7, 6, 9])
    last_two, first = expand_prefixes(np.array([5, 6, 7, 8, 9]), np.array([0, 3, 5]), last=2)
    assert last_two.to_lists() == ([[5], [8]], [6, 9]) and first == 0


@pytest.mark.parametrize("rows, reason", [
    ([(1, 10, 0, 1)] * 1 + [(2, 11, 0, 1)], "no session left"),            # all length 1
    ([(1, 10, 0, 1), (1, 11, 0, 2)], "no session left"),                   # items too rare
    ([(s, 10, 0, k) for s in range(1, 4) for k in range(2)], "no training session"),
])
def test_nothing_left_after_filtering_is_a_clear_error(rows, reason):
    with pytest.raises(DataError, match=reason):
        preprocess(clicks(rows), "diginetica")


def test_raw_ids_map_items_back_to_the_log():
    rows = [(1, 11, 0, 1), (1, 10, 0, 2), (1, 12, 0, 3), (2, 12, 1, 1), (2, 10, 1, 2),
            (3, 10, 0, 1), (3, 11, 0, 2), (4, 12, 1, 1), (4, 11, 1, 2),
            (6, 10, 2, 1), (6, 11, 2, 2), (6, 12, 2, 3), (7, 12, 3, 1), (7, 10, 3, 2),
            (5, 10, 12, 1), (5, 11, 12, 2)]  # every item clicked >= 5 times; 5 is the test
    d = preprocess(clicks(rows), "diginetica").dataset
    # renumbered by first appearance in the date-sorted training sessions: 11, 10, 12
    assert d.raw_ids.tolist() == [0, 11, 10, 12]
