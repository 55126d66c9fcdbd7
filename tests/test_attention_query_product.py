"""The per-head ``a^T b`` of the attention backward: its one-query branch equals the sum."""

import numpy as np
import pytest

from srsan_np.ops.attention import _query_sum_product


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("n_queries", [1, 4])
def test_query_sum_product_is_the_sum_over_queries(dtype, n_queries):
    rng = np.random.default_rng(n_queries)
    a = rng.standard_normal((3, 2, n_queries, 5)).astype(dtype)  # (B, H, Tq, M)
    b = rng.standard_normal((3, 2, n_queries, 7)).astype(dtype)  # (B, H, Tq, N)
    expected = np.einsum("bhqm,bhqn->bhmn", a.astype(np.float64), b.astype(np.float64))
    got = _query_sum_product(a, b)
    assert got.shape == (3, 2, 5, 7) and got.dtype == dtype
    tol = 1e-5 if dtype == np.float32 else 1e-13
    np.testing.assert_allclose(got, expected, rtol=tol, atol=tol)
    # into a strided view, as the attention backward does: the same values
    halves = np.zeros((3, 5, 2, 2 * 7), dtype=dtype)  # (B, M, 2, H * N)
    view = halves[:, :, 1].reshape(3, 5, 2, 7).transpose(0, 2, 1, 3)  # (B, H, M, N)
    _query_sum_product(a, b, out=view)
    np.testing.assert_array_equal(view, got)
    assert not halves[:, :, 0].any()
