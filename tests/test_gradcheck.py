"""The gradient checker itself, on functions whose gradients are known in closed form."""

import numpy as np
import pytest

from srsan_np.gradcheck import check_gradient, numerical_gradient, rel_error, richardson_gradient


def test_rel_error_matches_cs231n_formula():
    a = np.array([1.0, 0.0, -2.0])
    b = np.array([1.0, 1e-10, -2.2])
    # |a-b| / max(1e-8, |a|+|b|): 0, 1e-10 / 1e-8, 0.2 / 4.2
    assert rel_error(a, b) == pytest.approx(0.2 / 4.2)
    assert rel_error(a, a) == 0.0
    assert np.isnan(rel_error(np.array([np.nan]), np.array([1.0])))
    with pytest.raises(ValueError, match="shapes differ"):
        rel_error(np.zeros(2), np.zeros(3))


def test_numerical_gradient_of_elementwise_function():
    rng = np.random.default_rng(0)
    x = rng.standard_normal((2, 5, 3))
    dout = rng.standard_normal((2, 5, 3))
    x_before = x.copy()
    numeric = numerical_gradient(lambda: np.tanh(x) * x, x, dout)
    analytic = dout * (1 - np.tanh(x) ** 2) * x + dout * np.tanh(x)
    assert rel_error(numeric, analytic) < 1e-8
    assert np.array_equal(x, x_before)  # restored bit for bit


def test_scalar_loss_and_sampled_coordinates():
    rng = np.random.default_rng(1)
    A = rng.standard_normal((7, 4))
    x = rng.standard_normal((4, 3))
    # L = sum((A x)^2) / 2  =>  dL/dx = A^T A x
    loss = lambda: 0.5 * np.sum((A @ x) ** 2)  # noqa: E731
    analytic = A.T @ A @ x
    numeric, index = numerical_gradient(loss, x, 1.0, samples=5)
    assert index.shape == (5,) and len(set(index.tolist())) == 5
    assert rel_error(numeric, analytic.ravel()[index]) < 1e-8
    assert check_gradient(loss, x, 1.0, analytic, samples=5) < 1e-8
    assert check_gradient(loss, x, 1.0, analytic) < 1e-8
    # a wrong gradient is caught
    assert check_gradient(loss, x, 1.0, 1.01 * analytic) > 1e-3


def test_refuses_float32_and_non_contiguous():
    x32 = np.ones((3, 2), dtype=np.float32)
    with pytest.raises(TypeError, match="float64"):
        numerical_gradient(lambda: x32, x32, 1.0)
    x = np.ones((3, 4))[:, ::2]
    with pytest.raises(ValueError, match="contiguous"):
        numerical_gradient(lambda: x, x, 1.0)
    with pytest.raises(ValueError, match="analytic gradient has shape"):
        check_gradient(lambda: x, np.ones(3), 1.0, np.ones(4))


def test_x_restored_after_exception():
    x = np.arange(3.0)

    def boom():
        raise RuntimeError("forward failed")

    with pytest.raises(RuntimeError):
        numerical_gradient(boom, x, 1.0)
    assert np.array_equal(x, np.arange(3.0))


def test_richardson_cancels_the_second_order_error():
    """At a step where centred differences are off by ~h^2/6, Richardson is exact to ~h^4."""
    rng = np.random.default_rng(5)
    x = rng.uniform(-2, 2, (4, 3))
    dout = rng.standard_normal((4, 3))
    exact = np.cos(x) * dout  # d/dx sum(sin(x) * dout)
    h = 1e-2
    centred = numerical_gradient(lambda: np.sin(x), x, dout, h)
    better = richardson_gradient(lambda: np.sin(x), x, dout, h)
    assert rel_error(centred, exact) > 1e-6
    assert rel_error(better, exact) < 1e-9
    sampled, index = richardson_gradient(lambda: np.sin(x), x, dout, h, samples=5)
    np.testing.assert_allclose(sampled, better.reshape(-1)[index], rtol=1e-12)
    assert len(set(index.tolist())) == len(index)
