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
    np.testing.assert_allclose(got, expected, rtol=1e-5 if dtype == np.float32 else 1e-13,
                               atol=1e-5 if dtype == np.float32 else 1e-13)
