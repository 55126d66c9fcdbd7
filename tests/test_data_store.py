"""The ragged store, .npz round trip, atomic directories, and the original's pickles."""

import pickle

import numpy as np
import pytest

from srsan_np.data import Dataset, Sessions, load_dataset, save_dataset
from srsan_np.data.pickles import export_pickles, import_pickles, safe_load, sessions_from_examples
from srsan_np.data.store import DataError
from srsan_np.files import atomic_directory

PREFIXES = [[1, 2], [1], [4], [3, 3, 5]]
TARGETS = [3, 2, 5, 1]


@pytest.fixture
def dataset():
    train = Sessions.from_lists(PREFIXES, TARGETS)
    test = Sessions.from_lists([[5], [2, 4]], [4, 1])
    return Dataset(train, test, 5, {"source": "hand"})


def test_sessions_views_and_subset():
    s = Sessions.from_lists(PREFIXES, TARGETS)
    assert len(s) == 4 and s.items.dtype == np.int32 and s.offsets.dtype == np.int64
    assert s.prefix(3).tolist() == [3, 3, 5] and s.lengths().tolist() == [2, 1, 1, 3]
    sub = s.subset([3, 0, 3])
    assert sub.to_lists() == ([[3, 3, 5], [1, 2], [3, 3, 5]], [1, 3, 1])
    assert s.subset([]).to_lists() == ([], [])
    with pytest.raises(ValueError, match="offsets"):
        Sessions(np.array([1, 2]), np.array([0, 3]), np.array([1]))


def test_save_load_round_trip(tmp_path, dataset):
    save_dataset(dataset, tmp_path / "d")
    back = load_dataset(tmp_path / "d")
    assert back.n_items == 5 and back.stats["source"] == "hand"
    assert back.train.to_lists() == dataset.train.to_lists()
    assert back.test.to_lists() == dataset.test.to_lists()
    save_dataset(Dataset(dataset.test, dataset.test, 5, {}), tmp_path / "d")   # replaces atomically
    assert load_dataset(tmp_path / "d").train.to_lists() == dataset.test.to_lists()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["d"]


def test_load_errors(tmp_path):
    with pytest.raises(DataError, match="no such dataset directory"):
        load_dataset(tmp_path / "nope")
    (tmp_path / "d").mkdir()
    with pytest.raises(DataError, match="train.npz: missing"):
        load_dataset(tmp_path / "d")


def test_atomic_directory_leaves_nothing_on_error(tmp_path):
    with pytest.raises(RuntimeError):
        with atomic_directory(tmp_path / "out") as tmp:
            (tmp / "half.npz").write_bytes(b"x")
            raise RuntimeError("boom")
    assert list(tmp_path.iterdir()) == []


def test_pickle_round_trip_is_identical(tmp_path, dataset):
    export_pickles(dataset, tmp_path / "p")
    assert pickle.loads((tmp_path / "p" / "train.txt").read_bytes()) == (PREFIXES, TARGETS)
    assert pickle.loads((tmp_path / "p" / "all_train_seq.txt").read_bytes()) == [[1, 2, 3], [4, 5], [3, 3, 5, 1]]
    back = import_pickles(tmp_path / "p")
    assert back.train.to_lists() == dataset.train.to_lists()
    assert back.test.to_lists() == dataset.test.to_lists()
    assert back.n_items == 5
    export_pickles(back, tmp_path / "q")
    for name in ("train.txt", "test.txt", "all_train_seq.txt"):
        assert (tmp_path / "p" / name).read_bytes() == (tmp_path / "q" / name).read_bytes()


def test_real_sample_pickle_round_trip(tmp_path, real_sample_csv):
    from srsan_np.data.preprocess import preprocess
    from srsan_np.data.readers import read_diginetica
    prepared = preprocess(read_diginetica(real_sample_csv), "diginetica")
    export_pickles(prepared.dataset, tmp_path / "p", prepared.train_sessions)
    back = import_pickles(tmp_path / "p")
    assert back.train.to_lists() == prepared.dataset.train.to_lists()
    assert back.test.to_lists() == prepared.dataset.test.to_lists()
    items, offsets = sessions_from_examples(prepared.dataset.train)
    np.testing.assert_array_equal(items, prepared.train_sessions[0])
    np.testing.assert_array_equal(offsets, prepared.train_sessions[1])


class _RunsCode:
    def __reduce__(self):
        import os
        return (os.system, ("echo pwned",))


@pytest.mark.parametrize("payload", [
    pickle.dumps(([[1]], [_RunsCode()])),
    pickle.dumps(([[1]], [2]), protocol=0).replace(b"I2\n", b"I01\n"),   # protocol-0 True
    pickle.dumps(([[1]], ["2"])),
    pickle.dumps({"train": [[1]]}),
    pickle.dumps(([[1.5]], [2])),
    pickle.dumps(([[1]], [True])),
])
def test_restricted_unpickler_refuses_anything_but_lists_tuples_ints(tmp_path, payload):
    path = tmp_path / "train.txt"
    path.write_bytes(payload)
    with pytest.raises(DataError, match=f"{path}: refused"):
        safe_load(path)


def test_import_rejects_wrong_shapes(tmp_path):
    (tmp_path / "train.txt").write_bytes(pickle.dumps([1, 2, 3]))
    with pytest.raises(DataError, match="expected \\(list_of_prefixes, list_of_targets\\)"):
        import_pickles(tmp_path)
    (tmp_path / "train.txt").write_bytes(pickle.dumps(([[1, 2], [0]], [3, 1])))
    (tmp_path / "test.txt").write_bytes(pickle.dumps(([], [])))
    with pytest.raises(DataError, match="prefix 1 holds the item id 0"):
        import_pickles(tmp_path)
    (tmp_path / "train.txt").write_bytes(b"\x80\x04\x95")
    with pytest.raises(DataError, match="not a readable pickle"):
        import_pickles(tmp_path)


def test_raw_ids_round_trip_and_check(tmp_path, dataset):
    with_ids = Dataset(dataset.train, dataset.test, 5, {}, np.array([0, 50, 40, 30, 20, 10]))
    save_dataset(with_ids, tmp_path / "d")
    assert load_dataset(tmp_path / "d").raw_ids.tolist() == [0, 50, 40, 30, 20, 10]
    save_dataset(dataset, tmp_path / "e")
    assert load_dataset(tmp_path / "e").raw_ids is None
    np.save(tmp_path / "d" / "raw_ids.npy", np.arange(3))
    with pytest.raises(DataError, match="raw_ids.npy"):
        load_dataset(tmp_path / "d")
