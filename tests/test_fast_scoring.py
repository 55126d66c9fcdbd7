"""The fast softmax cross-entropy: its float32 exp against NumPy's in ulp; the textbook
op's loss and gradients, in each base, in and out of the range where the max pass is
skipped, in float32 and float64."""

import warnings

import numpy as np
import pytest

from srsan_np.fast import scoring, threads
from srsan_np.fast.scoring import softmax_cross_entropy, softmax_cross_entropy_backward
from srsan_np.gradcheck import rel_error, richardson_gradient
from srsan_np.ops import scoring as reference
from test_op_scoring import _head, numpy_loss


@pytest.fixture(params=["exp", "exp2"])
def base(request, monkeypatch):
    """Run a test with each float64 exponential the op may pick (it picks by the CPU);
    float32 has one, :func:`scoring._expf`."""
    exp, ln_base = (np.exp, 1.0) if request.param == "exp" else (np.exp2, np.log(2.0))
    monkeypatch.setattr(scoring, "_EXP", exp)
    monkeypatch.setattr(scoring, "_LN_BASE", ln_base)
    return request.param


def _expf(x):
    y = np.array(x, dtype=np.float32)
    scoring._expf_in_place(y.reshape(-1))
    return y


def _ulps(got, x):
    """|got - exp(x)| in units of the last place of float32 at exp(x) (exp in float64)."""
    want = np.exp(x.astype(np.float64))
    return np.abs(got.astype(np.float64) - want) / np.spacing(want.astype(np.float32))


def test_float32_exp_is_within_2_ulp_where_exp_is_normal():
    x = np.linspace(-87.0, 88.0, 3_000_001, dtype=np.float32)  # steps of ~6e-5: every k, r
    x = np.concatenate([x, np.nextafter(np.float32(np.log(2) / 2) * np.arange(-250, 255,
                        dtype=np.float32), np.float32(np.inf))])  # both sides of |r| = ln2/2
    x = x[(x >= -87.0) & (x <= 88.0)]
    assert _ulps(_expf(x), x).max() <= 2.0


def test_float32_exp_special_values():
    x = np.array([0.0, -0.0, np.inf, -np.inf, np.nan, 200.0, -200.0, 88.8, -104.0, -1e30,
                  1e30], dtype=np.float32)
    want = np.array([1.0, 1.0, np.inf, 0.0, np.nan, np.inf, 0.0, np.inf, 0.0, 0.0, np.inf],
                    dtype=np.float32)
    np.testing.assert_array_equal(_expf(x), want)  # NaN where NaN, and nowhere else
    # the largest finite result, and results in the subnormal range: within a subnormal's
    # spacing, never negative
    top = np.float32(88.72)
    assert np.isfinite(_expf(top)) and _ulps(_expf(top), top) <= 2.0
    x = np.linspace(-103.0, -87.5, 100_001, dtype=np.float32)
    got = _expf(x)
    assert got.min() >= 0.0 and (got < np.finfo(np.float32).tiny).all()
    tiniest = float(np.finfo(np.float32).smallest_subnormal)
    assert np.abs(got.astype(np.float64) - np.exp(x.astype(np.float64))).max() <= tiniest


def _equals_reference(h, E, targets, dloss=0.7, tol=1e-12):
    """Loss, probabilities and both gradients against the textbook op."""
    loss, cache = softmax_cross_entropy(h, E, targets)
    ref_loss, ref_cache = reference.softmax_cross_entropy(h, E, targets)
    assert loss == pytest.approx(ref_loss, rel=tol)
    np.testing.assert_allclose(cache.probs, ref_cache.probs, rtol=tol, atol=tol * 1e-3)
    for got, want in zip(softmax_cross_entropy_backward(dloss, cache),
                         reference.softmax_cross_entropy_backward(dloss, ref_cache)):
        assert got.dtype == want.dtype and got.shape == want.shape
        assert np.abs(got - want).max() <= tol * np.abs(want).max()
    return loss, cache


@pytest.mark.parametrize("seed", [0, 1])
def test_equals_the_textbook_op(seed, base):
    h, E, targets = _head(seed=seed, scale=0.5)
    _equals_reference(h, E, targets, tol=1e-13)


def test_stable_for_huge_scores(base):
    h, E, targets = _head(scale=1e4)  # scores ~ 1e4: exp without a shift overflows
    loss, cache = softmax_cross_entropy(h, E, targets)
    dh, dE = softmax_cross_entropy_backward(1.0, cache)
    assert np.isfinite(loss) and np.isfinite(dh).all() and np.isfinite(dE).all()
    assert loss == pytest.approx(numpy_loss(h, E, targets), rel=1e-12)


def _rows_in_and_out_of_range(dtype=np.float64):
    """Row 0 ordinary; row 1 with scores from about 60 to 110 (exp overflows float32, the
    sum leaves 2^64 in either dtype); row 2 with every score below -60 (the sum falls under
    2^-64): the last two must take the max-shift path."""
    h, E, targets = _head(dtype)
    E[:, 0] = 1.0 + np.abs(E[:, 0])  # every item's first feature in [1, ~3.5]
    E[:, 1:] *= 0.1
    h[1], h[2] = 0.0, 0.0
    h[1, 0], h[2, 0] = 45.0, -45.0
    s = h.astype(np.float64) @ E[1:].T.astype(np.float64)
    assert np.all(s[1] > 40) and np.all(s[2] < -40) and np.abs(s[0]).max() < 20
    return h, E, targets


def test_rows_outside_the_safe_range_are_shifted_by_their_max(base):
    h, E, targets = _rows_in_and_out_of_range()
    loss, cache = _equals_reference(h, E, targets)
    assert cache.total[1] <= 2.0 ** 64 and cache.total[2] >= 1.0  # shifted: max term is 1
    dloss = 0.7
    dh, dE = softmax_cross_entropy_backward(dloss, cache)
    f = lambda: softmax_cross_entropy(h, E, targets)[0]  # noqa: E731
    # scores of 100 make the loss sharply curved in E: Richardson's O(step^4) error, not a
    # centred difference's O(step^2)
    assert rel_error(richardson_gradient(f, h, dloss, h=1e-4), dh) < 1e-7
    assert rel_error(richardson_gradient(f, E, dloss, h=1e-4), dE) < 1e-7
    h32, E32, _ = _rows_in_and_out_of_range(np.float32)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # the expected overflow is not a user's concern
        loss32, cache32 = softmax_cross_entropy(h32, E32, targets)
    assert np.isfinite(cache32.exp_shifted_t).all()
    assert loss32 == pytest.approx(loss, rel=1e-5)


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
def test_nan_scores_give_a_nan_loss(base, dtype):
    h, E, targets = _head(dtype)
    h[1, 0] = np.nan
    loss, cache = softmax_cross_entropy(h, E, targets)
    assert np.isnan(loss) and np.isnan(cache.total[1]) and np.isfinite(cache.total[[0, 2]]).all()


def test_float32_agrees_with_the_textbook_op(base):
    h, E, targets = (a.astype(np.float32) if a.dtype.kind == "f" else a for a in _head())
    loss, cache = softmax_cross_entropy(h, E, targets)
    ref_loss, ref_cache = reference.softmax_cross_entropy(h, E, targets)
    assert cache.probs.dtype == np.float32
    assert loss == pytest.approx(ref_loss, rel=1e-6)
    for got, want in zip(softmax_cross_entropy_backward(1.0, cache),
                         reference.softmax_cross_entropy_backward(1.0, ref_cache)):
        assert got.dtype == np.float32
        np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-7)


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
def test_repeated_runs_and_thread_counts_are_identical(monkeypatch, dtype):
    """Item blocks on one thread or on several: each thread owns its blocks, and the
    blocks' sums are added in one order."""
    monkeypatch.setattr(threads, "BLOCK", 3)  # V = 11: four blocks, the last one short
    h, E, targets = _head(dtype)
    h = np.repeat(h, 7, axis=0)  # 21 rows: several blocks
    targets = np.repeat(targets, 7)

    def run():
        loss, cache = softmax_cross_entropy(h, E, targets)
        return (np.array(loss), cache.probs, *softmax_cross_entropy_backward(1.0, cache))

    first = run()
    monkeypatch.setattr(threads.numba, "get_num_threads", lambda: 1)
    for other in (run(), run()):
        for a, b in zip(other, first):
            np.testing.assert_array_equal(a, b)


def test_bad_input_is_named():
    h, E, targets = _head()
    with pytest.raises(ValueError, match=r"1\.\.V = 1\.\.11"):
        softmax_cross_entropy(h, E, targets - 4)  # contains 0, the padding id
