"""Embedding: lookup, scatter-add with repeated ids, finite differences, float32, threads."""

import numpy as np
import pytest

from srsan_np.gradcheck import check_gradient
from srsan_np.ops.embedding import embedding_backward, embedding_forward

B, T, D, V = 2, 5, 8, 11


def _inputs(dtype=np.float64, seed=0):
    rng = np.random.default_rng(seed)
    # repeated ids within and across rows, and padding 0, on purpose
    ids = np.array([[3, 7, 3, 3, 0], [7, 11, 1, 0, 0]], dtype=np.int32)
    W = rng.standard_normal((V + 1, D)).astype(dtype)
    dout = rng.standard_normal((B, T, D)).astype(dtype)
    return ids, W, dout


def test_forward_and_backward_match_numpy():
    ids, W, dout = _inputs()
    out, cache = embedding_forward(ids, W)
    np.testing.assert_array_equal(out, W[ids])
    dW = embedding_backward(dout, cache)
    expected = np.zeros_like(W)
    np.add.at(expected, ids, dout)  # accumulates repeated ids, unlike expected[ids] += dout
    np.testing.assert_allclose(dW, expected, rtol=1e-14)
    np.testing.assert_allclose(dW[3], dout[0, 0] + dout[0, 2] + dout[0, 3], rtol=1e-14)
    assert not dW[5].any()  # never looked up


def test_gradient_finite_differences():
    ids, W, dout = _inputs(seed=1)
    dW = embedding_backward(dout, embedding_forward(ids, W)[1])
    assert check_gradient(lambda: embedding_forward(ids, W)[0], W, dout, dW) < 1e-7


def test_length_one_and_int64_ids():
    ids, W, dout = _inputs()
    ids1 = ids[:, :1].astype(np.int64)  # (B, 1)
    out, cache = embedding_forward(ids1, W)
    assert out.shape == (B, 1, D)
    dW = embedding_backward(dout[:, :1], cache)
    assert check_gradient(lambda: embedding_forward(ids1, W)[0], W, dout[:, :1], dW) < 1e-7


def test_float32_and_repeated_runs():
    ids, W, dout = _inputs()
    out32, c32 = embedding_forward(ids, W.astype(np.float32))
    assert out32.dtype == np.float32
    dW32 = embedding_backward(dout.astype(np.float32), c32)
    assert dW32.dtype == np.float32
    np.testing.assert_allclose(dW32, embedding_backward(dout, embedding_forward(ids, W)[1]),
                               rtol=1e-5, atol=1e-6)
    runs = [embedding_backward(dout, embedding_forward(ids, W)[1]) for _ in range(3)]
    for r in runs[1:]:
        np.testing.assert_array_equal(r, runs[0])


def test_bad_ids_are_named():
    ids, W, _ = _inputs()
    with pytest.raises(ValueError, match=r"0\.\.11"):
        embedding_forward(ids + 1, W)
    with pytest.raises(ValueError, match="embedding_forward"):
        embedding_forward(ids - 1, W)
    with pytest.raises(TypeError, match="integers"):
        embedding_forward(ids.astype(np.float64), W)
