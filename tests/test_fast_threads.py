"""The fast path's threads (``srsan_np.fast.threads``): BLAS on one thread within a block
and back after the last block in progress, in any program (no setting asked for); every
block done once whatever the thread count; a worker's exception raised once all are done;
and the same results when nothing can be switched (a BLAS threadpoolctl does not know) or
the blocks run on one thread."""

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


@pytest.mark.parametrize("first_out", ["this thread", "the other thread"])
def test_overlapping_blocks_leave_the_count_as_it_was(first_out):
    """Blocks entered from two threads at once, left in either order: BLAS on one thread
    while this (the controlling) thread's block lasts, its count back when both are out."""
    before = threads.blas_threads()
    if before is None or before == 1:
        pytest.skip("needs NumPy's BLAS on more than one thread")
    entered, release, left = threading.Event(), threading.Event(), threading.Event()

    def other():
        with threads.blas_on_one_thread():
            entered.set()
            release.wait()
        left.set()

    worker = threading.Thread(target=other)
    with threads.blas_on_one_thread():
        worker.start()
        entered.wait()
        assert threads.blas_threads() == 1
        if first_out == "the other thread":
            release.set()
            left.wait()
            assert threads.blas_threads() == 1  # this thread's block is still in progress
    release.set()
    worker.join()
    assert threads.blas_threads() == before


def _not_able(monkeypatch):
    """As if NumPy's BLAS were one threadpoolctl cannot set."""
    monkeypatch.setattr(threads, "_blas", threads._controller().select(user_api="none"))


def test_not_able_nothing_is_switched_and_all_runs_here(monkeypatch):
    _not_able(monkeypatch)
    monkeypatch.setattr(threads.numba, "get_num_threads", lambda: 2)
    assert threads.blas_threads() is None and not threads.switching()
    seen = []

    def fn(lo, hi):
        seen.append((lo, hi, threading.get_ident()))

    threads.for_row_blocks(fn, 5)
    assert seen == [(0, 5, threading.get_ident())]


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


@pytest.mark.parametrize("how", ["one thread", "not able"])
def test_without_switching_the_results_are_the_same(monkeypatch, how):
    rng = np.random.default_rng(0)
    h, E = rng.standard_normal((6, 4)), rng.standard_normal((3000, 4))
    targets = rng.integers(1, 3000, 6)

    def run():
        loss, cache = scoring.softmax_cross_entropy(h, E, targets)
        return (np.array(loss), *scoring.softmax_cross_entropy_backward(1.0, cache))

    assert threads.switching() == (threads.blas_threads() is not None)
    monkeypatch.setattr(threads.numba, "get_num_threads", lambda: 2)
    found = run()
    if how == "one thread":
        monkeypatch.setattr(threads.numba, "get_num_threads", lambda: 1)
    else:
        _not_able(monkeypatch)
        assert not threads.switching()
    for a, b in zip(run(), found):
        np.testing.assert_array_equal(np.asarray(a), np.asarray(b))
