"""Batching: the hand-worked faithful example, a per-row np.unique reference, sequence mode,
shuffling and the validation split."""

import numpy as np
import pytest

from srsan_np.data import Sessions, iterate_batches, make_batch, split_validation


def random_sessions(rng, n=40, n_items=9, max_len=7):
    prefixes = [rng.integers(1, n_items + 1, size=rng.integers(1, max_len + 1)).tolist() for _ in range(n)]
    return Sessions.from_lists(prefixes, rng.integers(1, n_items + 1, size=n).tolist())


def test_faithful_hand_worked_example():
    # len_max = 4 (the longest prefix in the set).
    s = Sessions.from_lists([[7, 3, 7], [2, 9, 5, 9], [4]], [1, 2, 3])
    b = make_batch(s, [0, 1, 2], "faithful")
    # [7,3,7,0] -> [0,3,7]; [2,9,5,9] (full length: no 0) -> [2,5,9]; [4,0,0,0] -> [0,4] + pad.
    assert b.inputs.tolist() == [[0, 3, 7], [2, 5, 9], [0, 4, 0]]
    assert b.last.tolist() == [2, 2, 1]                 # positions of 7, 9, 4
    assert b.key_mask.all() and b.targets.tolist() == [1, 2, 3] and b.index.tolist() == [0, 1, 2]
    assert b.inputs.dtype == np.int32 and b.last.dtype == np.int64
    # A longer len_max adds the 0 to the full-length prefix too.
    assert make_batch(s, [1], "faithful", len_max=5).inputs.tolist() == [[0, 2, 5, 9]]


def original_faithful(prefixes, len_max):
    """The original code's construction, row by row, as plainly as possible."""
    padded = [p + [0] * (len_max - len(p)) for p in prefixes]
    nodes = [np.unique(row) for row in padded]
    width = max(len(n) for n in nodes)
    inputs = [n.tolist() + [0] * (width - len(n)) for n in nodes]
    last = [int(np.where(n == p[-1])[0][0]) for n, p in zip(nodes, prefixes)]
    return inputs, last


def test_faithful_matches_the_original_construction():
    rng = np.random.default_rng(0)
    s = random_sessions(rng)
    len_max = int(s.lengths().max())
    for b in iterate_batches(s, 7, "faithful", rng=rng):
        inputs, last = original_faithful([s.prefix(i).tolist() for i in b.index], len_max)
        assert b.inputs.tolist() == inputs and b.last.tolist() == last


def test_sequence_mode():
    s = Sessions.from_lists([[7, 3, 7], [2, 9, 5, 9], [4]], [1, 2, 3])
    b = make_batch(s, [2, 0], "sequence")
    assert b.inputs.tolist() == [[4, 0, 0], [7, 3, 7]]
    assert b.key_mask.tolist() == [[True, False, False], [True, True, True]]
    assert b.last.tolist() == [0, 2] and b.targets.tolist() == [3, 1]


def test_iterate_batches_covers_every_example_once():
    s = random_sessions(np.random.default_rng(1), n=23)
    in_order = list(iterate_batches(s, 5, "sequence"))
    assert [len(b.index) for b in in_order] == [5, 5, 5, 5, 3]
    assert np.concatenate([b.index for b in in_order]).tolist() == list(range(23))
    a = np.concatenate([b.index for b in iterate_batches(s, 5, "sequence", rng=np.random.default_rng(3))])
    c = np.concatenate([b.index for b in iterate_batches(s, 5, "sequence", rng=np.random.default_rng(3))])
    assert sorted(a.tolist()) == list(range(23)) and a.tolist() == c.tolist() and a.tolist() != list(range(23))


def test_bad_arguments():
    s = random_sessions(np.random.default_rng(2), n=3)
    with pytest.raises(ValueError, match="mode"):
        make_batch(s, [0], "graph")
    with pytest.raises(ValueError, match="len_max"):
        make_batch(s, [int(np.argmax(s.lengths()))], "faithful", len_max=0)
    with pytest.raises(ValueError, match="fraction"):
        split_validation(s, 1.0, 0)


def test_split_validation_is_a_seeded_partition():
    s = random_sessions(np.random.default_rng(4), n=50)
    train, valid = split_validation(s, 0.1, seed=7)
    assert (len(train), len(valid)) == (45, 5)
    again, _ = split_validation(s, 0.1, seed=7)
    assert again.to_lists() == train.to_lists()

    def examples(sessions):
        return [(tuple(p), t) for p, t in zip(*sessions.to_lists())]

    assert sorted(examples(train) + examples(valid)) == sorted(examples(s))
