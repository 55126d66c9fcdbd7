"""Fast paths behind the ops' contracts, each checked against the readable computation.

- the last encoder layer at the read-out positions only (``last=...``) equals the full
  layer's rows there, values and gradients, in float64;
- ``model.loss_and_grads(read_out_only=True)`` (the default) equals the full computation,
  and the full computation passes finite differences too (the fast one does in
  ``test_model.py``);
- the key/value projection at the real (unmasked) positions only, and once per distinct
  id when ``x`` is a lookup, equals the all-rows projection there;
- ``embedding_backward(..., dW=...)`` adds into the given table.
"""

import numpy as np
import pytest

from srsan_np import model
from srsan_np.data import Sessions, make_batch
from srsan_np.gradcheck import rel_error, richardson_gradient
from srsan_np.ops.attention import (
    attention_backward,
    attention_forward,
    _first_of_each,
    key_rows,
    keys_values_backward,
    keys_values_forward,
)
from srsan_np.ops.embedding import embedding_backward, embedding_forward
from srsan_np.ops.encoder import encoder_layer_backward, encoder_layer_forward, layer_shapes
from test_model import CONFIGS, lively, make

B, T, D, H, F = 3, 5, 8, 2, 12
LAST = np.array([4, 0, 2], dtype=np.int64)
MASK = np.array([[1, 1, 1, 1, 1], [1, 0, 0, 0, 0], [1, 1, 1, 0, 0]], dtype=bool)


def close(a, b):
    """Largest difference relative to the largest entry (``rel_error`` is elementwise, and
    blows up on entries whose true value is exactly 0, such as the key bias's gradient)."""
    return np.abs(a - b).max() / np.abs(b).max()


def _scatter_rows(dq):
    """(B, 1, D) gradient at LAST -> (B, T, D) zero elsewhere."""
    full = np.zeros((B, T, dq.shape[-1]))
    full[np.arange(B), LAST] = dq[:, 0]
    return full


@pytest.mark.parametrize("mask", [None, MASK])
def test_attention_queries_at_last_equal_full_rows(mask):
    rng = np.random.default_rng(0)
    x = rng.standard_normal((B, T, D))
    weights = [rng.standard_normal(s) * 0.5 for s in [(3 * D, D), (3 * D,), (D, D), (D,)]]
    dq = rng.standard_normal((B, 1, D))
    full, full_cache = attention_forward(x, *weights, H, mask)
    fast, fast_cache = attention_forward(x, *weights, H, mask, last=LAST)
    assert fast.shape == (B, 1, D) and fast_cache.att.shape == (B, H, 1, T)
    assert rel_error(fast[:, 0], full[np.arange(B), LAST]) < 1e-13
    # the full layer with dout only at LAST gives the same gradients as the fast one
    for g_fast, g_full in zip(attention_backward(dq, fast_cache),
                              attention_backward(_scatter_rows(dq), full_cache)):
        assert close(g_fast, g_full) < 1e-12


# ids with repeats within and across rows, padding 0 included, as a faithful batch has
IDS = np.array([[3, 0, 0, 5, 3], [7, 0, 0, 0, 0], [5, 9, 3, 0, 0]], dtype=np.int64)


def _sum_by_id(dx, ids):
    """What the embedding lookup's backward makes of ``dx``: its rows summed per id."""
    return embedding_backward(dx, embedding_forward(ids, np.zeros((10, dx.shape[-1])))[1])


@pytest.mark.parametrize("mask, ids", [(MASK, None), (None, IDS), (MASK, IDS)])
def test_keys_values_once_per_row_equal_all_rows(mask, ids):
    """Masked keys not projected, shared ids projected once: same keys and values where
    they are read, same parameter gradients, same gradient for the table behind ``x``."""
    rng = np.random.default_rng(5)
    table = rng.standard_normal((10, D))
    x = table[IDS]  # (B, T, D): a lookup, so positions with one id hold one row
    w, b = rng.standard_normal((2 * D, D)), rng.standard_normal(2 * D)
    needed = np.ones((B, T), bool) if mask is None else mask
    rows = key_rows(mask, ids, x.shape)
    assert len(rows[0]) == (needed.sum() if ids is None else len(np.unique(IDS[needed])))
    full, full_cache = keys_values_forward(x, w, b, None)
    fast, fast_cache = keys_values_forward(x, w, b, rows)
    assert close(fast[needed], full[needed]) < 1e-14 and not fast[~needed].any()
    # attention sends exactly 0 to the masked rows
    dkv = rng.standard_normal((B, T, 2 * D)) * needed[..., None]
    dx_fast, *g_fast = keys_values_backward(dkv, fast_cache, rows)
    dx_full, *g_full = keys_values_backward(dkv, full_cache, None)
    for a, b_ in zip(g_fast, g_full):
        assert close(a, b_) < 1e-14
    assert close(_sum_by_id(dx_fast, IDS), _sum_by_id(dx_full, IDS)) < 1e-14
    if ids is None:  # each projected position keeps its own gradient
        assert close(dx_fast, dx_full) < 1e-14
    assert not dx_fast[~needed].any()


@pytest.mark.parametrize("n, high", [(0, 5), (1, 5), (40, 3), (500, 1000)])
def test_first_of_each_is_numpy_unique(n, high):
    values = np.random.default_rng(n).integers(0, high, size=n).astype(np.int32)
    _, first, group = np.unique(values, return_index=True, return_inverse=True)
    got_first, got_group = _first_of_each(values)
    np.testing.assert_array_equal(got_first, first)
    np.testing.assert_array_equal(got_group, group.reshape(-1))


def test_key_rows_without_mask_or_ids_is_every_position():
    assert key_rows(None, None, (B, T, D)) is None


@pytest.mark.parametrize("mask", [None, MASK])
def test_encoder_layer_at_last_equals_full_rows(mask):
    rng = np.random.default_rng(1)
    x = rng.standard_normal((B, T, D))
    layer = {k: rng.standard_normal(s) * 0.5 for k, s in layer_shapes(D, F).items()}
    dq = rng.standard_normal((B, 1, D))
    full, full_cache = encoder_layer_forward(x, layer, H, mask)
    fast, fast_cache = encoder_layer_forward(x, layer, H, mask, last=LAST)
    assert fast.shape == (B, 1, D)
    assert rel_error(fast[:, 0], full[np.arange(B), LAST]) < 1e-13
    dx_fast, g_fast = encoder_layer_backward(dq, fast_cache)
    dx_full, g_full = encoder_layer_backward(_scatter_rows(dq), full_cache)
    assert close(dx_fast, dx_full) < 1e-12
    for key in g_full:
        assert close(g_fast[key], g_full[key]) < 1e-12, key


def test_encoder_layer_at_last_finite_differences():
    rng = np.random.default_rng(2)
    x = rng.standard_normal((B, T, D))
    layer = {k: rng.standard_normal(s) * 0.5 for k, s in layer_shapes(D, F).items()}
    dq = rng.standard_normal((B, 1, D))
    _, cache = encoder_layer_forward(x, layer, H, MASK, last=LAST)
    assert np.abs(cache.relu.x).min() > 5e-4  # steps up to 2h = 2e-4 stay off the ReLU kink
    dx, grads = encoder_layer_backward(dq, cache)

    def forward():
        return encoder_layer_forward(x, layer, H, MASK, last=LAST)[0]

    assert rel_error(richardson_gradient(forward, x, dq, h=1e-4), dx) < 1e-7
    for key in ("self_attn.in_proj_weight", "linear1.weight", "norm2.weight"):
        numeric = richardson_gradient(forward, layer[key], dq, h=1e-4)
        assert rel_error(numeric, grads[key]) < 1e-7, key


@pytest.mark.parametrize("name", list(CONFIGS))
def test_model_read_out_only_equals_full_computation(name):
    config, params, batch = make(name)
    lively(params, seed=3)
    loss_fast, grads_fast = model.loss_and_grads(params, batch, config, None)
    loss_full, grads_full = model.loss_and_grads(params, batch, config, None, read_out_only=False)
    assert loss_fast == pytest.approx(loss_full, rel=1e-14)
    for key in params:
        assert close(grads_fast[key], grads_full[key]) < 1e-11, key
    x_full, _, _ = model._forward(params, batch, config, None)
    h_full = x_full[np.arange(len(batch.last)), batch.last]
    scores = h_full @ params["embedding.weight"][1:].T
    assert rel_error(model.score(params, batch, config), scores) < 1e-13


def test_model_full_computation_finite_differences():
    config, params, batch = make("sequence-1")
    lively(params, seed=4)
    _, grads = model.loss_and_grads(params, batch, config, None, read_out_only=False)

    def loss():
        return model.loss_and_grads(params, batch, config, None, read_out_only=False)[0]

    for key in ("embedding.weight", "layers.0.linear2.weight", "layers.0.norm1.bias"):
        numeric, index = richardson_gradient(loss, params[key], 1.0, h=1e-4, samples=40)
        grad = grads[key].reshape(-1)[index]
        resolved = np.abs(grad) > 3e-5
        assert np.all(np.abs(numeric - grad)[~resolved] < 3e-11), key
        assert rel_error(numeric[resolved], grad[resolved]) < 1e-6, key


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_embedding_backward_accumulates_into_given_table(dtype):
    rng = np.random.default_rng(5)
    W = rng.standard_normal((7, 4)).astype(dtype)
    ids = np.array([[1, 3, 1], [0, 6, 1]])
    dout = rng.standard_normal((2, 3, 4)).astype(dtype)
    _, cache = embedding_forward(ids, W)
    base = rng.standard_normal(W.shape).astype(dtype)
    into = base.copy()
    assert embedding_backward(dout, cache, dW=into) is into
    np.testing.assert_allclose(into, base + embedding_backward(dout, cache), rtol=1e-6)
    with pytest.raises(ValueError, match="embedding_backward: dW"):
        embedding_backward(dout, cache, dW=np.zeros((6, 4), dtype))


def test_read_out_only_with_dropout_runs_on_length_one_sessions():
    config = model.Config(n_items=11, hidden=8, heads=2, ff_mult=2, mode="sequence")
    params = model.init_params(config, 0, np.float64)
    batch = make_batch(Sessions.from_lists([[5], [3], [2, 7]], [1, 2, 3]), np.arange(3),
                       "sequence")
    loss, grads = model.loss_and_grads(params, batch, config, np.random.default_rng(0))
    assert np.isfinite(loss) and all(np.isfinite(g).all() for g in grads.values())
