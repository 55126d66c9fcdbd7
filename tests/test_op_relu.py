"""ReLU: finite differences, NumPy reference, float32 vs float64."""

import numpy as np

from srsan_np.gradcheck import check_gradient
from srsan_np.ops.relu import relu_backward, relu_forward


def _inputs(seed=0):
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((2, 5, 8))
    x[np.abs(x) < 1e-3] = 0.5  # keep away from the kink, where finite differences straddle it
    return x, rng.standard_normal((2, 5, 8))


def test_forward_backward_match_numpy_and_finite_differences():
    x, dout = _inputs()
    out, cache = relu_forward(x)
    np.testing.assert_array_equal(out, np.maximum(x, 0))
    dx = relu_backward(dout, cache)
    np.testing.assert_array_equal(dx, dout * (x > 0))
    assert check_gradient(lambda: relu_forward(x)[0], x, dout, dx) < 1e-7


def test_zero_and_nan():
    x = np.array([0.0, -1.0, np.nan, 2.0])
    out, cache = relu_forward(x)
    np.testing.assert_array_equal(out, [0.0, 0.0, np.nan, 2.0])
    np.testing.assert_array_equal(relu_backward(np.ones(4), cache), [0.0, 0.0, 0.0, 1.0])


def test_float32_agrees_with_float64():
    x, dout = _inputs()
    out32, c32 = relu_forward(x.astype(np.float32))
    assert out32.dtype == np.float32
    np.testing.assert_allclose(out32, relu_forward(x)[0], rtol=1e-6)
    dx32 = relu_backward(dout.astype(np.float32), c32)
    assert dx32.dtype == np.float32
    np.testing.assert_allclose(dx32, relu_backward(dout, relu_forward(x)[1]), rtol=1e-6)
