"""The fast path's threads (``srsan_np.fast.threads``): BLAS on one thread within a block
and back after the last block in progress, only when asked (``SRSAN_NP_BLAS_SWITCH=1``,
which ``configure_threads`` sets and tests/conftest.py calls); every block done once whatever
the thread count; a worker's exception raised once all are done; and the same results when
nothing is switched, not asked or not able (NumPy's OpenBLAS not found)."""

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


def test_overlapping_blocks_restore_once_the_last_exits():
    before = threads.blas_threads()
    if before is None or before == 1:
        pytest.skip("needs NumPy's OpenBLAS on more than one thread")
    entered, release = threading.Event(), threading.Event()

    def other():
        with threads.blas_on_one_thread():
            entered.set()
            release.wait()

    worker = threading.Thread(target=other)
    with threads.blas_on_one_thread():
        worker.start()
        entered.wait()
    assert threads.blas_threads() == 1  # the other thread's block is still in progress
    release.set()
    worker.join()
    assert threads.blas_threads() == before


def test_not_asked_nothing_is_switched_and_all_runs_here(monkeypatch):
    monkeypatch.delenv("SRSAN_NP_BLAS_SWITCH", raising=False)
    monkeypatch.setattr(threads.numba, "get_num_threads", lambda: 2)
    before = threads.blas_threads()
    seen = []

    def fn(lo, hi):
        seen.append((lo, hi, threading.get_ident(), threads.blas_threads()))

    threads.for_row_blocks(fn, 5)
    assert seen == [(0, 5, threading.get_ident(), before)]


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


@pytest.mark.parametrize("how", ["not asked", "not able"])
def test_without_switching_the_results_are_the_same(monkeypatch, how):
    rng = np.random.default_rng(0)
    h, E = rng.standard_normal((6, 4)), rng.standard_normal((3000, 4))
    targets = rng.integers(1, 3000, 6)

    def run():
        loss, cache = scoring.softmax_cross_entropy(h, E, targets)
        return (np.array(loss), *scoring.softmax_cross_entropy_backward(1.0, cache))

    assert threads.switching() == (threads.blas_threads() is not None)
    found = run()
    if how == "not asked":
        monkeypatch.delenv("SRSAN_NP_BLAS_SWITCH")
    else:
        monkeypatch.setattr(threads, "_openblas", False)  # as if NumPy's BLAS were another
        assert threads.blas_threads() is None
    assert not threads.switching()
    for a, b in zip(run(), found):
        np.testing.assert_array_equal(a, b)
