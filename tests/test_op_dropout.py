"""Dropout: identity cases, mask statistics, finite differences with a fixed mask."""

import numpy as np
import pytest

from srsan_np.gradcheck import check_gradient
from srsan_np.ops.dropout import dropout_backward, dropout_forward

P = 0.3


def test_identity_when_rng_none_or_p_zero():
    x = np.random.default_rng(0).standard_normal((2, 5, 8))
    for p, rng in [(P, None), (0.0, np.random.default_rng(1))]:
        out, cache = dropout_forward(x, p, rng)
        assert out is x
        assert cache.keep is None
        dout = np.ones_like(x)
        assert dropout_backward(dout, cache) is dout


def test_inverted_scaling_and_seeded_mask():
    x = np.ones((200, 300))
    out, cache = dropout_forward(x, P, np.random.default_rng(2))
    assert set(np.unique(out)) == {0.0, 1.0 / (1.0 - P)}
    assert abs(cache.keep.mean() - (1.0 - P)) < 0.01
    assert abs(out.mean() - 1.0) < 0.02  # E[out] = x
    again, _ = dropout_forward(x, P, np.random.default_rng(2))
    np.testing.assert_array_equal(out, again)


def test_gradient_with_fixed_mask():
    rng = np.random.default_rng(3)
    x = rng.standard_normal((2, 5, 8))
    dout = rng.standard_normal((2, 5, 8))
    f = lambda: dropout_forward(x, P, np.random.default_rng(4))[0]  # noqa: E731
    _, cache = dropout_forward(x, P, np.random.default_rng(4))
    dx = dropout_backward(dout, cache)
    np.testing.assert_allclose(dx, dout * cache.keep / (1.0 - P), rtol=1e-15)
    assert check_gradient(f, x, dout, dx) < 1e-7


def test_float32_draws_the_same_mask():
    x = np.random.default_rng(5).standard_normal((2, 5, 8))
    out64, c64 = dropout_forward(x, P, np.random.default_rng(6))
    out32, c32 = dropout_forward(x.astype(np.float32), P, np.random.default_rng(6))
    assert out32.dtype == np.float32
    np.testing.assert_array_equal(c32.keep, c64.keep)
    np.testing.assert_allclose(out32, out64, rtol=1e-6)


def test_bad_input():
    x = np.ones(3)
    with pytest.raises(ValueError, match="0 <= p < 1"):
        dropout_forward(x, 1.0, np.random.default_rng(0))
    with pytest.raises(TypeError, match="Generator"):
        dropout_forward(x, 0.5, 42)
