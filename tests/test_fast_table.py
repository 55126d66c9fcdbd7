"""The tied table's gradient left as its parts (``srsan_np.fast.table.TableGradient``):
its blocks and its array are the textbook's ``dE`` (the scores' share plus the lookup's),
they agree bit for bit with each other whatever the block size and thread count, the fast
Adam's block-by-block update is the textbook Adam's on the array, and a training step with
the gradient left to Adam equals one with it made whole."""

import numpy as np
import pytest

from srsan_np import kernels, model, optim
from srsan_np.data import iterate_batches, sample_dataset
from srsan_np.fast import optim as fast_optim
from srsan_np.fast import scoring, table, threads
from srsan_np.ops import scoring as reference
from srsan_np.ops.embedding import embedding_backward, embedding_forward

V, B, D, T = 23, 6, 5, 4


def _parts(dtype=np.float64, seed=0):
    """A scoring head and a lookup with repeated ids and padding: (h, E, targets, ids, dx)."""
    rng = np.random.default_rng(seed)
    h = rng.standard_normal((B, D)).astype(dtype)
    E = rng.standard_normal((V + 1, D)).astype(dtype)
    targets = np.array([3, 3, 17, 1, V, 9])  # a repeated target, the first and last items
    ids = rng.integers(0, V + 1, size=(B, T))
    ids[:, -1] = 0  # padding, row 0
    ids[0, :2] = 3  # a target's row looked up twice
    dx = rng.standard_normal((B, T, D)).astype(dtype)
    return h, E, targets, ids, dx


def _table_gradient(h, E, targets, ids, dx, cache=None):
    """The table's gradient of the head (from ``cache``, the forward's, if given) and the
    lookup."""
    if cache is None:
        _, cache = scoring.softmax_cross_entropy(h, E, targets)
    _, dE = scoring.softmax_cross_entropy_backward(1.0, cache)
    assert isinstance(dE, table.TableGradient)
    lookup = embedding_forward(ids, E)[1]
    assert table.embedding_backward(dx, lookup, dE) is dE
    return dE


def test_the_array_is_the_textbooks_sum_of_both_shares():
    h, E, targets, ids, dx = _parts()
    dE = _table_gradient(h, E, targets, ids, dx)
    _, ref_cache = reference.softmax_cross_entropy(h, E, targets)
    expected = reference.softmax_cross_entropy_backward(1.0, ref_cache)[1]
    embedding_backward(dx, embedding_forward(ids, E)[1], expected)
    got = np.asarray(dE)
    assert got.shape == dE.shape == E.shape and got.dtype == dE.dtype == E.dtype
    np.testing.assert_allclose(got, expected, rtol=1e-12, atol=1e-15)


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
def test_blocks_and_threads_change_no_bit(monkeypatch, dtype):
    h, E, targets, ids, dx = _parts(dtype)
    _, cache = scoring.softmax_cross_entropy(h, E, targets)  # the forward's blocks as they are
    whole = np.asarray(_table_gradient(h, E, targets, ids, dx, cache))
    monkeypatch.setattr(threads, "BLOCK", 4)  # the table's 24 rows: six blocks
    for n_threads in (1, 2):
        monkeypatch.setattr(threads.numba, "get_num_threads", lambda: n_threads)
        dE = _table_gradient(h, E, targets, ids, dx, cache)
        rows = np.full(E.shape, np.nan, dtype)

        def keep(lo, hi, block):
            rows[lo:hi] = block
        dE.for_blocks(keep)
        np.testing.assert_array_equal(rows, np.asarray(dE))
        # blocks of another size: the same numbers (one order per element)
        np.testing.assert_allclose(rows, whole, rtol=1e-6 if dtype == np.float32 else 1e-14)


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
def test_fast_adam_on_the_blocks_is_the_textbook_adam_on_the_array(monkeypatch, dtype):
    monkeypatch.setattr(threads, "BLOCK", 5)  # blocks of the table, the last one short
    h, E, targets, ids, dx = _parts(dtype)
    dE = _table_gradient(h, E, targets, ids, dx)
    params = {"embedding.weight": E.copy(), "bias": np.linspace(-1, 1, 7).astype(dtype)}
    grads = {"embedding.weight": dE, "bias": np.ones(7, dtype)}
    textbook = {k: v.copy() for k, v in params.items()}
    fast_adam = fast_optim.Adam(params, weight_decay=1e-2)
    textbook_adam = optim.Adam(textbook, weight_decay=1e-2)
    for _ in range(2):  # the moments of step 1 enter step 2
        fast_adam.step(grads)
        textbook_adam.step({k: np.asarray(g) for k, g in grads.items()})
    for k in params:
        np.testing.assert_array_equal(params[k], textbook[k])
        np.testing.assert_array_equal(fast_adam.m[k], textbook_adam.m[k])
        np.testing.assert_array_equal(fast_adam.v[k], textbook_adam.v[k])


def test_training_steps_with_the_gradient_left_to_adam_are_identical():
    """float32, dropout on: the table's gradient handed to Adam as the fast set makes it
    (as train.fit does) and as an array (``np.asarray``, as the diagnostics read it) give
    the same parameters, bit for bit."""
    data = sample_dataset(0)
    config = model.Config(n_items=data.n_items, hidden=16, heads=2, ff_mult=2)
    runs = []
    for as_array in (False, True):
        params = model.init_params(config, 0)
        adam = kernels.get("fast").Adam(params, weight_decay=1e-5)
        rng = np.random.default_rng(1)
        batches = iterate_batches(data.train, 100, config.mode, np.random.default_rng(0))
        for _, batch in zip(range(3), batches):
            grads = model.loss_and_grads(params, batch, config, rng, "fast")[1]
            assert isinstance(grads["embedding.weight"], table.TableGradient)
            if as_array:
                grads = {k: np.asarray(g) for k, g in grads.items()}
            adam.step(grads)
        runs.append(params)
    for k in runs[0]:
        np.testing.assert_array_equal(runs[0][k], runs[1][k])


def test_misuse_is_named():
    h, E, targets, ids, dx = _parts()
    dE = _table_gradient(h, E, targets, ids, dx)
    lookup = embedding_forward(ids, E)[1]
    with pytest.raises(ValueError, match="embedding_backward: dout"):
        table.embedding_backward(dx[:, :2], lookup, dE)
    whole = np.asarray(dE)
    kept = whole.copy()
    whole[...] = 0.0  # the caller's array: the gradient it came from is unchanged
    np.testing.assert_array_equal(np.asarray(dE), kept)
    with pytest.raises(RuntimeError, match="after its blocks"):
        table.embedding_backward(dx, lookup, dE)
