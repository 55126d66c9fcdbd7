"""Multi-head self-attention: finite differences, a NumPy reference, masks, threads."""

import numpy as np
import pytest

from srsan_np.gradcheck import rel_error, richardson_gradient
from srsan_np.ops.attention import attention_backward, attention_forward

B, T, D, H = 2, 5, 8, 2

MASKS = {
    "none": None,
    # session 0 has 5 real clicks, session 1 has 3 and 2 padding slots
    "padded": np.array([[1, 1, 1, 1, 1], [1, 1, 1, 0, 0]], dtype=bool),
    # session 1 has no real key at all: its rows must be zeros, not NaN
    "fully_masked": np.array([[1, 1, 0, 1, 1], [0, 0, 0, 0, 0]], dtype=bool),
}


def make_inputs(seed=0, dtype=np.float64):
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((B, T, D))
    in_w = rng.standard_normal((3 * D, D)) * 0.5
    in_b = rng.standard_normal(3 * D) * 0.5
    out_w = rng.standard_normal((D, D)) * 0.5
    out_b = rng.standard_normal(D) * 0.5
    dout = rng.standard_normal((B, T, D))
    return [a.astype(dtype) for a in (x, in_w, in_b, out_w, out_b)], dout.astype(dtype)


def reference_forward(x, in_w, in_b, out_w, out_b, n_heads, key_mask):
    """The same math in a few lines of plain NumPy (no dropout)."""
    b, t, d = x.shape
    dh = d // n_heads
    q, k, v = np.split(x @ in_w.T + in_b, 3, axis=-1)
    heads = lambda a: a.reshape(b, t, n_heads, dh).transpose(0, 2, 1, 3)  # noqa: E731
    s = heads(q) @ heads(k).transpose(0, 1, 3, 2) / np.sqrt(dh)  # (B, H, T, T)
    if key_mask is not None:
        s = np.where(key_mask[:, None, None, :], s, -np.inf)
    m = s.max(axis=-1, keepdims=True)
    e = np.exp(s - np.where(np.isfinite(m), m, 0.0))
    total = e.sum(axis=-1, keepdims=True)
    att = np.divide(e, total, out=np.zeros_like(e), where=total > 0)
    y = (att @ heads(v)).transpose(0, 2, 1, 3).reshape(b, t, d)
    return y @ out_w.T + out_b, att


@pytest.mark.parametrize("mask_name", list(MASKS))
def test_matches_numpy_reference(mask_name):
    (x, in_w, in_b, out_w, out_b), _ = make_inputs(1)
    mask = MASKS[mask_name]
    out, cache = attention_forward(x, in_w, in_b, out_w, out_b, H, mask, 0.0, None)
    ref_out, ref_att = reference_forward(x, in_w, in_b, out_w, out_b, H, mask)
    assert rel_error(out, ref_out) < 1e-12
    assert rel_error(cache.att, ref_att) < 1e-12


@pytest.mark.parametrize("mask_name", list(MASKS))
@pytest.mark.parametrize("p", [0.0, 0.3])
def test_gradients_finite_differences(mask_name, p):
    """Every input and parameter, float64, random dout; dropout on uses a fixed mask."""
    args, dout = make_inputs(2)
    mask = MASKS[mask_name]

    def forward():
        # a freshly seeded generator each call: the same dropout mask every time
        rng = np.random.default_rng(5) if p > 0 else None
        return attention_forward(*args, H, mask, p, rng)

    grads = attention_backward(dout, forward()[1])
    names = ["x", "in_w", "in_b", "out_w", "out_b"]
    for name, arg, grad in zip(names, args, grads):
        # attention is smooth (masks fixed): a step of 1e-3 is safe, and 100 times less
        # rounding noise resolves the key-projection coordinates that are 1e-5 of the largest
        numeric = richardson_gradient(lambda: forward()[0], arg, dout, h=1e-3)
        if name == "in_b":
            # The key bias adds q.b_k to a whole row of scores, which the softmax ignores:
            # its true gradient is exactly 0 and the finite difference is rounding noise
            # (~1e-11), for which a relative error means nothing. Check it is ~0, and the
            # query and value biases relatively.
            assert np.abs(grad[D : 2 * D]).max() < 1e-12
            assert np.abs(numeric[D : 2 * D]).max() < 1e-8
            keep = np.r_[0:D, 2 * D : 3 * D]
            numeric, grad = numeric[keep], grad[keep]
        err = rel_error(numeric, grad)
        assert err < 1e-7, f"{name}: relative error {err:.2e}"


def test_fully_masked_row_is_zero_and_finite():
    args, dout = make_inputs(3)
    mask = MASKS["fully_masked"]
    out, cache = attention_forward(*args, H, mask, 0.0, None)
    assert np.all(cache.att[1] == 0.0)
    # no key to read: the output is the output-projection bias alone
    np.testing.assert_array_equal(out[1], np.broadcast_to(args[4], (T, D)))
    grads = attention_backward(dout, cache)
    assert all(np.all(np.isfinite(g)) for g in grads)
    np.testing.assert_array_equal(grads[0][1], 0.0)


def test_weights_are_a_distribution_over_real_keys():
    args, _ = make_inputs(4)
    mask = MASKS["padded"]
    _, cache = attention_forward(*args, H, mask, 0.0, None)
    assert cache.att.shape == (B, H, T, T)
    np.testing.assert_allclose(cache.att.sum(axis=-1), 1.0, rtol=1e-12)
    assert np.all(cache.att[1, :, :, 3:] == 0.0)


def test_dropout_zeroes_and_rescales_weights():
    args, _ = make_inputs(5)
    p = 0.5
    _, cache = attention_forward(*args, H, None, p, np.random.default_rng(0))
    kept = cache.att_drop != 0
    assert 0 < kept.mean() < 1
    np.testing.assert_allclose(cache.att_drop[kept], cache.att[kept] / (1 - p), rtol=1e-12)


def test_float32_agrees_with_float64():
    args64, dout64 = make_inputs(6)
    args32, dout32 = make_inputs(6, np.float32)
    mask = MASKS["padded"]
    out64, cache64 = attention_forward(*args64, H, mask, 0.0, None)
    out32, cache32 = attention_forward(*args32, H, mask, 0.0, None)
    assert out32.dtype == np.float32 and cache32.att.dtype == np.float32
    np.testing.assert_allclose(out32, out64, rtol=1e-4, atol=1e-5)
    for g32, g64 in zip(attention_backward(dout32, cache32), attention_backward(dout64, cache64)):
        assert g32.dtype == np.float32
        np.testing.assert_allclose(g32, g64, rtol=1e-4, atol=1e-4)


def test_repeated_runs_identical():
    rng = np.random.default_rng(7)
    b, t, d = 16, 9, 12
    x = rng.standard_normal((b, t, d)).astype(np.float32)
    in_w = rng.standard_normal((3 * d, d)).astype(np.float32) * 0.3
    in_b = rng.standard_normal(3 * d).astype(np.float32)
    out_w = rng.standard_normal((d, d)).astype(np.float32) * 0.3
    out_b = rng.standard_normal(d).astype(np.float32)
    mask = rng.random((b, t)) < 0.8
    dout = rng.standard_normal((b, t, d)).astype(np.float32)
    runs = []
    for _ in range(3):
        out, cache = attention_forward(x, in_w, in_b, out_w, out_b, 3, mask, 0.0, None)
        runs.append((out, cache.att, *attention_backward(dout, cache)))
    for other in runs[1:]:
        for a, b_ in zip(runs[0], other):
            np.testing.assert_array_equal(a, b_)


def test_bad_inputs_name_the_argument():
    (x, in_w, in_b, out_w, out_b), _ = make_inputs(8)
    with pytest.raises(ValueError, match="n_heads"):
        attention_forward(x, in_w, in_b, out_w, out_b, 3, None, 0.0, None)
    with pytest.raises(ValueError, match="in_w"):
        attention_forward(x, in_w[:-1], in_b, out_w, out_b, H, None, 0.0, None)
    with pytest.raises(ValueError, match="key_mask"):
        attention_forward(x, in_w, in_b, out_w, out_b, H, np.ones((B, T)), 0.0, None)
    with pytest.raises(ValueError, match="dtype"):
        attention_forward(x, in_w.astype(np.float32), in_b, out_w, out_b, H, None, 0.0, None)
