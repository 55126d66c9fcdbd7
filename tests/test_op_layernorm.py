"""Layer norm: finite differences on off-centre inputs, NumPy reference, float32, threads."""

import numpy as np
import pytest

from srsan_np.gradcheck import check_gradient
from srsan_np.ops.layernorm import layernorm_backward, layernorm_forward

B, T, D = 2, 5, 8


def _inputs(shape=(B, T, D), dtype=np.float64, seed=0):
    rng = np.random.default_rng(seed)
    # off-centre and scaled rows: a wrong mean/variance path cannot hide behind x ~ N(0, 1)
    x = (3.0 * rng.standard_normal(shape) + 2.0).astype(dtype)
    gamma = (1.0 + 0.5 * rng.standard_normal(shape[-1])).astype(dtype)
    beta = rng.standard_normal(shape[-1]).astype(dtype)
    dout = rng.standard_normal(shape).astype(dtype)
    return x, gamma, beta, dout


def _numpy_layernorm(x, gamma, beta, eps=1e-5):
    mean = x.mean(axis=-1, keepdims=True)
    var = x.var(axis=-1, keepdims=True)
    return (x - mean) / np.sqrt(var + eps) * gamma + beta


def test_forward_matches_numpy():
    x, gamma, beta, _ = _inputs()
    out, _ = layernorm_forward(x, gamma, beta)
    np.testing.assert_allclose(out, _numpy_layernorm(x, gamma, beta), rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("shape", [(B, T, D), (B, 1, D), (T, D)])
def test_gradients(shape):
    x, gamma, beta, dout = _inputs(shape, seed=1)
    f = lambda: layernorm_forward(x, gamma, beta)[0]  # noqa: E731
    dx, dgamma, dbeta = layernorm_backward(dout, layernorm_forward(x, gamma, beta)[1])
    assert dx.shape == shape and dgamma.shape == (D,) and dbeta.shape == (D,)
    assert check_gradient(f, x, dout, dx) < 1e-7
    assert check_gradient(f, gamma, dout, dgamma) < 1e-7
    assert check_gradient(f, beta, dout, dbeta) < 1e-7


def test_float32_agrees_with_float64():
    x, gamma, beta, dout = _inputs()
    out64, c64 = layernorm_forward(x, gamma, beta)
    args32 = [a.astype(np.float32) for a in (x, gamma, beta)]
    out32, c32 = layernorm_forward(*args32)
    assert out32.dtype == np.float32
    np.testing.assert_allclose(out32, out64, rtol=1e-5, atol=1e-5)
    for g32, g64 in zip(
        layernorm_backward(dout.astype(np.float32), c32), layernorm_backward(dout, c64)
    ):
        assert g32.dtype == np.float32
        np.testing.assert_allclose(g32, g64, rtol=1e-4, atol=1e-5)


def test_repeated_runs_identical():
    x, gamma, beta, dout = _inputs((4, 7, D), seed=2)

    def run():
        out, cache = layernorm_forward(x, gamma, beta)
        return (out, *layernorm_backward(dout, cache))

    reference = run()
    runs = [run() for _ in range(3)]
    for r in runs:
        for a, b in zip(r, reference):
            np.testing.assert_array_equal(a, b)


def test_bad_input_is_named():
    x, gamma, beta, _ = _inputs()
    with pytest.raises(ValueError, match="layernorm_forward"):
        layernorm_forward(x, gamma[:3], beta)
    with pytest.raises(TypeError, match="dtype"):
        layernorm_forward(x, gamma.astype(np.float32), beta)
