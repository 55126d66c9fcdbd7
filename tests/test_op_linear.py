"""Linear layer: finite differences, float32 vs float64, bad input."""

import numpy as np
import pytest

from srsan_np.gradcheck import check_gradient
from srsan_np.ops.linear import linear_backward, linear_forward

B, T, DIN, DOUT = 2, 5, 8, 3


def _inputs(dtype=np.float64, seed=0):
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((B, T, DIN)).astype(dtype)
    W = rng.standard_normal((DOUT, DIN)).astype(dtype)
    b = rng.standard_normal(DOUT).astype(dtype)
    dout = rng.standard_normal((B, T, DOUT)).astype(dtype)
    return x, W, b, dout


def test_forward_matches_numpy():
    x, W, b, _ = _inputs()
    out, _ = linear_forward(x, W, b)
    assert out.shape == (B, T, DOUT)
    np.testing.assert_allclose(out, np.einsum("bti,oi->bto", x, W) + b, rtol=1e-13)


@pytest.mark.parametrize("shape", [(B, T, DIN), (B, DIN), (B, 1, DIN)])
def test_gradients(shape):
    rng = np.random.default_rng(1)
    x = rng.standard_normal(shape)
    W = rng.standard_normal((DOUT, DIN))
    b = rng.standard_normal(DOUT)
    dout = rng.standard_normal((*shape[:-1], DOUT))
    f = lambda: linear_forward(x, W, b)[0]  # noqa: E731
    dx, dW, db = linear_backward(dout, linear_forward(x, W, b)[1])
    assert check_gradient(f, x, dout, dx) < 1e-7
    assert check_gradient(f, W, dout, dW) < 1e-7
    assert check_gradient(f, b, dout, db) < 1e-7


def test_float32_agrees_with_float64():
    x, W, b, dout = _inputs()
    out64, c64 = linear_forward(x, W, b)
    x32, W32, b32, dout32 = (a.astype(np.float32) for a in (x, W, b, dout))
    out32, c32 = linear_forward(x32, W32, b32)
    assert out32.dtype == np.float32
    np.testing.assert_allclose(out32, out64, rtol=1e-5, atol=1e-5)
    for g32, g64 in zip(linear_backward(dout32, c32), linear_backward(dout, c64)):
        assert g32.dtype == np.float32
        np.testing.assert_allclose(g32, g64, rtol=1e-5, atol=1e-5)


def test_bad_input_is_named():
    x, W, b, dout = _inputs()
    with pytest.raises(ValueError, match="linear_forward"):
        linear_forward(x, W.T, b)
    with pytest.raises(TypeError, match="dtype"):
        linear_forward(x.astype(np.float32), W, b)
    with pytest.raises(ValueError, match="linear_backward"):
        linear_backward(dout[..., :2], linear_forward(x, W, b)[1])
