"""The fast path (``srsan_np.fast``) held to the textbook (``srsan_np.ops``).

- each fast function against the textbook op it replaces, values and gradients, float64;
- the fast functions with a backward of their own against finite differences;
- the whole model, ``kernels="fast"`` against ``kernels="reference"``, on batches of the
  real SR-GNN sample file: loss, every gradient and the scores to 1e-10, both modes, with
  and without positions, one and two layers.

(The softmax cross-entropy is in ``test_fast_scoring.py``, Adam in ``test_optim.py``.)
"""

import numpy as np
import pytest

from srsan_np import kernels, model
from srsan_np.data import Sessions, make_batch
from srsan_np.data.preprocess import preprocess
from srsan_np.data.readers import read_diginetica
from srsan_np.fast import attention as fast_attention
from srsan_np.fast import encoder as fast_encoder
from srsan_np.gradcheck import rel_error, richardson_gradient
from srsan_np.ops import attention, encoder
from srsan_np.ops.embedding import embedding_backward, embedding_forward
from test_model import lively

B, T, D, H, F = 3, 5, 8, 2, 12
LAST = np.array([4, 0, 2], dtype=np.int64)
MASK = np.array([[1, 1, 1, 1, 1], [1, 0, 0, 0, 0], [1, 1, 1, 0, 0]], dtype=bool)
# ids with repeats within and across rows, padding 0 included, as a faithful batch has
IDS = np.array([[3, 0, 0, 5, 3], [7, 0, 0, 0, 0], [5, 9, 3, 0, 0]], dtype=np.int64)


def close(a, b):
    """Largest difference relative to the largest entry (``rel_error`` is elementwise, and
    blows up on entries whose true value is exactly 0, such as the key bias's gradient)."""
    return np.abs(a - b).max() / np.abs(b).max()


def _scatter_rows(d):
    """(B, D) gradient at LAST -> (B, T, D) zero elsewhere."""
    full = np.zeros((B, T, d.shape[-1]))
    full[np.arange(B), LAST] = d
    return full


def _attention_weights(rng):
    return [rng.standard_normal(s) * 0.5 for s in [(3 * D, D), (3 * D,), (D, D), (D,)]]


def _layer(rng):
    return {k: rng.standard_normal(s) * 0.5 for k, s in encoder.layer_shapes(D, F).items()}


# --------------------------------------------------------------------------- attention

@pytest.mark.parametrize("mask", [None, MASK])
def test_attention_at_every_position_equals_the_textbook(mask):
    rng = np.random.default_rng(0)
    x = rng.standard_normal((B, T, D))
    weights = _attention_weights(rng)
    dout = rng.standard_normal((B, T, D))
    ref, ref_cache = attention.attention_forward(x, *weights, H, mask)
    fast, fast_cache = fast_attention.attention_forward(x, *weights, H, mask)
    assert rel_error(fast, ref) < 1e-13 and rel_error(fast_cache.att, ref_cache.att) < 1e-13
    for g_fast, g_ref in zip(fast_attention.attention_backward(dout, fast_cache),
                             attention.attention_backward(dout, ref_cache)):
        assert close(g_fast, g_ref) < 1e-12


@pytest.mark.parametrize("mask", [None, MASK])
def test_readout_attention_equals_the_textbook_rows(mask):
    """Keys and values folded into the query: the textbook's output and weights at LAST,
    and, given dout at LAST only, the textbook's gradients."""
    rng = np.random.default_rng(0)
    x = rng.standard_normal((B, T, D))
    weights = _attention_weights(rng)
    dq = rng.standard_normal((B, D))
    full, full_cache = attention.attention_forward(x, *weights, H, mask)
    fast, fast_cache = fast_attention.readout_attention_forward(x, *weights, H, mask, 0.0,
                                                                None, LAST)
    assert fast.shape == (B, D) and fast_cache.att.shape == (B, H, 1, T)
    assert rel_error(fast, full[np.arange(B), LAST]) < 1e-13
    assert close(fast_cache.att[:, :, 0], full_cache.att[np.arange(B), :, LAST]) < 1e-14
    # the full op with dout only at LAST gives the same gradients as the fast one
    for g_fast, g_full in zip(fast_attention.readout_attention_backward(dq, fast_cache),
                              attention.attention_backward(_scatter_rows(dq),
                                                           full_cache)):
        assert close(g_fast, g_full) < 1e-12


@pytest.mark.parametrize("p", [0.0, 0.3])
def test_readout_attention_finite_differences(p):
    """Its own backward, against finite differences of every input, with the padding mask
    and with dropout off and on (a fixed seeded mask)."""
    rng = np.random.default_rng(6)
    x = rng.standard_normal((B, T, D))
    weights = _attention_weights(rng)
    dout = rng.standard_normal((B, D))

    def forward(cache=False):
        drop = np.random.default_rng(4) if p else None
        out, c = fast_attention.readout_attention_forward(x, *weights, H, MASK, p, drop, LAST)
        return (out, c) if cache else out

    out, cache = forward(cache=True)
    if p:
        assert not cache.drop_cache.keep.all()  # some weight was dropped
    grads = fast_attention.readout_attention_backward(dout, cache)
    for name, arg, grad in zip(["x", "in_w", "in_b", "out_w", "out_b"], [x, *weights], grads):
        numeric = richardson_gradient(forward, arg, dout, h=1e-3)
        assert close(numeric, grad) < 1e-8, name


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
    rows = fast_attention.key_rows(mask, ids, x.shape)
    assert len(rows[0]) == (needed.sum() if ids is None else len(np.unique(IDS[needed])))
    full, full_cache = fast_attention.keys_values_forward(x, w, b, None)
    fast, fast_cache = fast_attention.keys_values_forward(x, w, b, rows)
    assert close(fast[needed], full[needed]) < 1e-14 and not fast[~needed].any()
    # attention sends exactly 0 to the masked rows
    dkv = rng.standard_normal((B, T, 2 * D)) * needed[..., None]
    dx_fast, *g_fast = fast_attention.keys_values_backward(dkv, fast_cache, rows)
    dx_full, *g_full = fast_attention.keys_values_backward(dkv, full_cache, None)
    for a, b_ in zip(g_fast, g_full):
        assert close(a, b_) < 1e-14
    assert close(_sum_by_id(dx_fast, IDS), _sum_by_id(dx_full, IDS)) < 1e-14
    if ids is None:  # each projected position keeps its own gradient
        assert close(dx_fast, dx_full) < 1e-14
    assert not dx_fast[~needed].any()


@pytest.mark.parametrize("mask_name", ["none", "padded"])
def test_attention_with_ids_finite_differences(mask_name):
    """With ``ids``, keys and values are projected once per distinct id. The input is then
    a lookup ``x = table[ids]``, so the check is through it: the table's gradient (the
    lookup's backward of ``dx``) against finite differences of the table, and the output
    against the textbook op, which projects every position."""
    b, t = 2, 5
    mask = {"none": None, "padded": np.array([[1, 1, 1, 1, 1], [1, 1, 1, 0, 0]], bool)}[mask_name]
    rng = np.random.default_rng(9)
    in_w, in_b, out_w, out_b = _attention_weights(rng)
    dout = rng.standard_normal((b, t, D))
    ids = np.array([[4, 0, 4, 2, 0], [2, 1, 3, 0, 0]])  # repeats within and across rows
    table = rng.standard_normal((5, D))

    def forward():
        x, lookup = embedding_forward(ids, table)
        out, cache = fast_attention.attention_forward(x, in_w, in_b, out_w, out_b, H, mask,
                                                      ids=ids)
        return out, cache, lookup

    out, cache, lookup = forward()
    needed = np.ones((b, t), bool) if mask is None else mask
    assert len(cache.key_rows[0]) == len(np.unique(ids[needed]))  # one row per distinct id
    ref = attention.attention_forward(table[ids], in_w, in_b, out_w, out_b, H, mask)[0]
    assert rel_error(out, ref) < 1e-13
    dx, *grads = fast_attention.attention_backward(dout, cache)
    numeric = richardson_gradient(lambda: forward()[0], table, dout, h=1e-3)
    assert rel_error(numeric, embedding_backward(dx, lookup)) < 1e-7
    for name, arg, grad in zip(["in_w", "out_w", "out_b"], [in_w, out_w, out_b],
                               [grads[0], grads[2], grads[3]]):
        numeric = richardson_gradient(lambda: forward()[0], arg, dout, h=1e-3)
        assert rel_error(numeric, grad) < 1e-7, name


@pytest.mark.parametrize("n, high", [(0, 5), (1, 5), (40, 3), (500, 1000)])
def test_first_of_each_is_numpy_unique(n, high):
    values = np.random.default_rng(n).integers(0, high, size=n).astype(np.int32)
    _, first, group = np.unique(values, return_index=True, return_inverse=True)
    got_first, got_group = fast_attention._first_of_each(values)
    np.testing.assert_array_equal(got_first, first)
    np.testing.assert_array_equal(got_group, group.reshape(-1))


def test_key_rows_without_mask_or_ids_is_every_position():
    assert fast_attention.key_rows(None, None, (B, T, D)) is None


def test_bad_hints_name_the_argument():
    rng = np.random.default_rng(8)
    x = rng.standard_normal((B, T, D))
    weights = _attention_weights(rng)
    with pytest.raises(ValueError, match="ids"):
        fast_attention.attention_forward(x, *weights, H, ids=np.ones((B, T)))
    with pytest.raises(ValueError, match="last"):
        fast_attention.readout_attention_forward(x, *weights, H, None, 0.0, None,
                                                 np.array([0, 1, T]))


# --------------------------------------------------------------------------- encoder layer

@pytest.mark.parametrize("mask", [None, MASK])
def test_encoder_layer_equals_the_textbook(mask):
    rng = np.random.default_rng(1)
    x = rng.standard_normal((B, T, D))
    layer = _layer(rng)
    dout = rng.standard_normal((B, T, D))
    ref, ref_cache = encoder.encoder_layer_forward(x, layer, H, mask)
    fast, fast_cache = fast_encoder.encoder_layer_forward(x, layer, H, mask)
    assert rel_error(fast, ref) < 1e-13
    dx_fast, g_fast = fast_encoder.encoder_layer_backward(dout, fast_cache)
    dx_ref, g_ref = encoder.encoder_layer_backward(dout, ref_cache)
    assert close(dx_fast, dx_ref) < 1e-12
    for key in g_ref:
        assert close(g_fast[key], g_ref[key]) < 1e-12, key


@pytest.mark.parametrize("mask", [None, MASK])
def test_readout_layer_equals_the_textbook_rows(mask):
    rng = np.random.default_rng(1)
    x = rng.standard_normal((B, T, D))
    layer = _layer(rng)
    dh = rng.standard_normal((B, D))
    full, full_cache = encoder.encoder_layer_forward(x, layer, H, mask)
    fast, fast_cache = fast_encoder.readout_layer_forward(x, layer, H, mask, 0.0, None, None,
                                                          LAST)
    assert fast.shape == (B, D)
    assert rel_error(fast, full[np.arange(B), LAST]) < 1e-13
    dx_fast, g_fast = fast_encoder.readout_layer_backward(dh, fast_cache)
    dx_full, g_full = encoder.encoder_layer_backward(_scatter_rows(dh), full_cache)
    assert close(dx_fast, dx_full) < 1e-12
    for key in g_full:
        assert close(g_fast[key], g_full[key]) < 1e-12, key


@pytest.mark.parametrize("p", [0.0, 0.2])
def test_readout_layer_finite_differences(p):
    """The last layer at the read-out has its own backward: finite differences, with
    dropout off and with a fixed seeded mask."""
    rng = np.random.default_rng(2)
    x = rng.standard_normal((B, T, D))
    layer = _layer(rng)
    dh = rng.standard_normal((B, D))

    def forward(cache=False):
        drop = np.random.default_rng(4) if p else None
        h, c = fast_encoder.readout_layer_forward(x, layer, H, MASK, p, drop, None, LAST)
        return (h, c) if cache else h

    _, cache = forward(cache=True)
    assert np.abs(cache.ff.relu.x).min() > 5e-4  # steps up to 2h = 2e-4 stay off the kink
    dx, grads = fast_encoder.readout_layer_backward(dh, cache)
    assert rel_error(richardson_gradient(forward, x, dh, h=1e-4), dx) < 1e-7
    for key in ("self_attn.in_proj_weight", "linear1.weight", "norm2.weight"):
        numeric = richardson_gradient(forward, layer[key], dh, h=1e-4)
        assert rel_error(numeric, grads[key]) < 1e-7, key


# --------------------------------------------------------------------------- the model

REAL_CONFIGS = {
    "faithful-1": dict(mode="faithful", layers=1),
    "faithful-2": dict(mode="faithful", layers=2),
    "sequence-1": dict(mode="sequence", layers=1),
    "sequence-2": dict(mode="sequence", layers=2),
    "sequence-1-positions": dict(mode="sequence", layers=1, positions=True),
    "sequence-2-positions": dict(mode="sequence", layers=2, positions=True),
}


@pytest.fixture
def real_dataset(real_sample_csv):
    return preprocess(read_diginetica(real_sample_csv), "diginetica").dataset


@pytest.mark.parametrize("name", list(REAL_CONFIGS))
def test_model_fast_equals_reference_on_the_real_sample(name, real_dataset):
    """float64, dropout off, two batches of the real file (its first 60 examples, and 60
    from further on, with longer sessions): loss, every gradient, the scores."""
    config = model.Config(n_items=real_dataset.n_items, hidden=16, heads=2, ff_mult=2, max_len=80,
                          **REAL_CONFIGS[name])
    params = model.init_params(config, 3, np.float64)
    lively(params, seed=4)
    for index in (np.arange(60), np.arange(600, 660)):
        batch = make_batch(real_dataset.train, index, config.mode)
        loss_ref, grads_ref = model.loss_and_grads(params, batch, config, None, "reference")
        loss_fast, grads_fast = model.loss_and_grads(params, batch, config, None, "fast")
        assert loss_fast == pytest.approx(loss_ref, rel=1e-10)
        for key in params:
            assert close(grads_fast[key], grads_ref[key]) < 1e-10, key
        scores_ref = model.score(params, batch, config, "reference")
        assert close(model.score(params, batch, config, "fast"), scores_ref) < 1e-10
        for a, b in zip(model.attention_maps(params, batch, config, "fast"),
                        model.attention_maps(params, batch, config, "reference")):
            assert close(a, b) < 1e-10


def test_unknown_kernels_are_named():
    with pytest.raises(ValueError, match="kernels must be one of"):
        kernels.get("quick")


def test_read_out_only_with_dropout_runs_on_length_one_sessions():
    config = model.Config(n_items=11, hidden=8, heads=2, ff_mult=2, mode="sequence")
    params = model.init_params(config, 0, np.float64)
    batch = make_batch(Sessions.from_lists([[5], [3], [2, 7]], [1, 2, 3]), np.arange(3),
                       "sequence")
    for name in kernels.NAMES:
        loss, grads = model.loss_and_grads(params, batch, config, np.random.default_rng(0),
                                           name)
        assert np.isfinite(loss) and all(np.isfinite(g).all() for g in grads.values())
