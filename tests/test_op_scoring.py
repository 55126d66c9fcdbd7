"""Read-out, tied scores and the fused softmax cross-entropy (the textbook op)."""

import numpy as np
import pytest

from srsan_np.gradcheck import check_gradient, rel_error, richardson_gradient
from srsan_np.ops.scoring import (
    readout_backward,
    readout_forward,
    scores_forward,
    softmax_cross_entropy,
    softmax_cross_entropy_backward,
)

B, T, D, V = 3, 5, 8, 11


def _head(dtype=np.float64, seed=0, scale=1.0):
    rng = np.random.default_rng(seed)
    h = (scale * rng.standard_normal((B, D))).astype(dtype)
    E = rng.standard_normal((V + 1, D)).astype(dtype)
    targets = np.array([4, 11, 4], dtype=np.int32)  # a repeated target and the last item
    return h, E, targets


def numpy_loss(h, E, targets):
    """The loss as a log-sum-exp in plain NumPy, written apart from the op."""
    s = h @ E[1:].T
    m = s.max(axis=1, keepdims=True)
    lse = m[:, 0] + np.log(np.exp(s - m).sum(axis=1))
    return np.mean(lse - s[np.arange(len(targets)), targets - 1])


@pytest.mark.parametrize("T_", [T, 1])
def test_readout_gradient(T_):
    rng = np.random.default_rng(1)
    x = rng.standard_normal((B, T_, D))
    last = np.array([T_ - 1, 0, T_ // 2], dtype=np.int64)
    dh = rng.standard_normal((B, D))
    h, cache = readout_forward(x, last)
    np.testing.assert_array_equal(h, x[np.arange(B), last])
    dx = readout_backward(dh, cache)
    assert check_gradient(lambda: readout_forward(x, last)[0], x, dh, dx) < 1e-7


def test_scores_skip_padding_row():
    h, E, _ = _head()
    scores = scores_forward(h, E)
    assert scores.shape == (B, V)
    np.testing.assert_allclose(scores[:, 2], h @ E[3], rtol=1e-13)  # column j is item j + 1


def test_loss_matches_numpy():
    h, E, targets = _head()
    loss, cache = softmax_cross_entropy(h, E, targets)
    assert loss == pytest.approx(numpy_loss(h, E, targets), rel=1e-13)
    np.testing.assert_allclose(cache.probs.sum(axis=1), 1.0, rtol=1e-13)


@pytest.mark.parametrize("seed", [0, 1])
def test_loss_gradients(seed):
    h, E, targets = _head(seed=seed, scale=0.5)
    dloss = 0.7  # a random-ish upstream gradient for a scalar loss
    _, cache = softmax_cross_entropy(h, E, targets)
    dh, dE = softmax_cross_entropy_backward(dloss, cache)
    assert not dE[0].any()  # padding is never a candidate
    f = lambda: softmax_cross_entropy(h, E, targets)[0]  # noqa: E731
    assert check_gradient(f, h, dloss, dh) < 1e-7  # about 1e-10
    # Some entries of dE are tiny (~1e-4, sums that nearly cancel over the batch) while the
    # rounding noise of a centred difference is ~ eps * |loss| / h ~ 5e-11 at h = 1e-5, a
    # relative 1e-7..1e-6 that says nothing about the formula. The loss is smooth, so a
    # larger step (truncation error O(h^2)) measures dE properly: 1e-9..1e-8.
    assert check_gradient(f, E, dloss, dE, h=1e-4) < 1e-7


def test_stable_for_huge_scores():
    h, E, targets = _head(scale=1e4)  # scores ~ 1e4: naive exp overflows
    loss, cache = softmax_cross_entropy(h, E, targets)
    dh, dE = softmax_cross_entropy_backward(1.0, cache)
    assert np.isfinite(loss) and np.isfinite(dh).all() and np.isfinite(dE).all()
    assert loss == pytest.approx(numpy_loss(h, E, targets), rel=1e-12)


def test_nan_scores_give_a_nan_loss():
    h, E, targets = _head()
    h[1, 0] = np.nan
    with np.errstate(invalid="ignore"):
        loss, cache = softmax_cross_entropy(h, E, targets)
    assert np.isnan(loss) and np.isnan(cache.probs[1]).all() and np.isfinite(cache.probs[[0, 2]]).all()


def test_float32_agrees_with_float64():
    h, E, targets = _head()
    loss64, c64 = softmax_cross_entropy(h, E, targets)
    loss32, c32 = softmax_cross_entropy(h.astype(np.float32), E.astype(np.float32), targets)
    assert c32.probs.dtype == np.float32
    assert loss32 == pytest.approx(loss64, rel=1e-5)
    for g32, g64 in zip(softmax_cross_entropy_backward(1.0, c32),
                        softmax_cross_entropy_backward(1.0, c64)):
        assert g32.dtype == np.float32
        np.testing.assert_allclose(g32, g64, rtol=1e-4, atol=1e-6)


def test_repeated_runs_are_identical():
    h, E, targets = _head()

    def run():
        loss, cache = softmax_cross_entropy(h, E, targets)
        return (np.array(loss), cache.probs, *softmax_cross_entropy_backward(1.0, cache))

    reference = run()
    for _ in range(2):
        for a, b in zip(run(), reference):
            np.testing.assert_array_equal(a, b)


def test_bad_input_is_named():
    h, E, targets = _head()
    with pytest.raises(ValueError, match=r"1\.\.V = 1\.\.11"):
        softmax_cross_entropy(h, E, targets - 4)  # contains 0, the padding id
    with pytest.raises(ValueError, match="softmax_cross_entropy"):
        softmax_cross_entropy(h, E[:, :3], targets)
    with pytest.raises(TypeError, match="dtype"):
        scores_forward(h.astype(np.float32), E)
    with pytest.raises(ValueError, match="readout_forward"):
        readout_forward(np.zeros((B, T, D)), np.array([0, T, 1]))
