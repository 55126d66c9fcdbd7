"""The fast path's threads (``srsan_np.fast.threads``): BLAS on one thread within a block
and back after, every block done once whatever the thread count, a worker's exception
raised once all are done, and the same results where NumPy's OpenBLAS cannot be found."""

import threading

import numpy as np
import pytest

from srsan_np.fast import scoring, threads


def test_blas_on_one_thread_sets_and_restores():
    before = threads.blas_threads()
    if before is None:
        pytest.skip("NumPy's BLAS is not an OpenBLAS this module finds")
    with threads.blas_on_one_thread():
        assert threads.blas_threads() == 1
    assert threads.blas_threads() == before
    with pytest.raises(RuntimeError), threads.blas_on_one_thread():
        raise RuntimeError("inside")
    assert threads.blas_threads() == before


@pytest.mark.parametrize("n_threads", [1, 2, 3])
@pytest.mark.parametrize("n_blocks", [1, 2, 7])
def test_every_block_once(monkeypatch, n_threads, n_blocks):
    monkeypatch.setattr(threads.numba, "get_num_threads", lambda: n_threads)
    seen = np.zeros(n_blocks, int)
    lock = threading.Lock()

    def fn(lo, hi, out):
        with lock:
            out[lo:hi] += 1

    threads.for_row_blocks(fn, n_blocks, seen)
    np.testing.assert_array_equal(seen, 1)


def test_a_workers_exception_is_raised_after_all_finish(monkeypatch):
    monkeypatch.setattr(threads.numba, "get_num_threads", lambda: 2)
    done = []

    def fn(lo, hi):
        if lo > 0:
            raise ValueError(f"block {lo}")
        done.append(lo)

    with pytest.raises(ValueError, match="block"):
        threads.for_row_blocks(fn, 4)
    assert done == [0]
    before = threads.blas_threads()
    assert before is None or before == threads.blas_threads()


def test_without_openblas_the_results_are_the_same(monkeypatch):
    rng = np.random.default_rng(0)
    h, E = rng.standard_normal((6, 4)), rng.standard_normal((3000, 4))
    targets = rng.integers(1, 3000, 6)

    def run():
        loss, cache = scoring.softmax_cross_entropy(h, E, targets)
        return (np.array(loss), *scoring.softmax_cross_entropy_backward(1.0, cache))

    found = run()
    monkeypatch.setattr(threads, "_openblas", False)  # as if NumPy's BLAS were another one
    assert threads.blas_threads() is None
    for a, b in zip(run(), found):
        np.testing.assert_array_equal(a, b)
