"""Post-LN encoder layer: finite differences on the input and all twelve parameters."""

import numpy as np
import pytest

from srsan_np.gradcheck import rel_error, richardson_gradient
from srsan_np.ops.encoder import (
    LAYER_KEYS,
    encoder_layer_backward,
    encoder_layer_forward,
    layer_shapes,
)
from test_op_attention import MASKS  # (B, T) = (2, 5) there too; the op checks the shape

B, T, D, H, F = 2, 5, 8, 2, 12


def make_layer(seed=0, dtype=np.float64):
    rng = np.random.default_rng(seed)
    layer = {}
    for key, shape in layer_shapes(D, F).items():
        # LayerNorm gains off 1 and biases off 0, so no parameter sits at a special value
        base = 1.0 if key.endswith("norm1.weight") or key.endswith("norm2.weight") else 0.0
        layer[key] = (base + 0.4 * rng.standard_normal(shape)).astype(dtype)
    x = rng.standard_normal((B, T, D)).astype(dtype)
    dout = rng.standard_normal((B, T, D)).astype(dtype)
    return x, layer, dout


@pytest.mark.parametrize("mask_name", list(MASKS))
@pytest.mark.parametrize("p", [0.0, 0.2])
def test_gradients_finite_differences(mask_name, p):
    """float64, random dout, dropout off or with fixed seeded masks: every tensor < 1e-7."""
    x, layer, dout = make_layer(3)
    mask = MASKS[mask_name]

    def forward(cache=False):
        rng = np.random.default_rng(4) if p > 0 else None  # a fixed dropout mask
        out, c = encoder_layer_forward(x, layer, H, mask, p, rng)
        return (out, c) if cache else out

    _, cache = forward(cache=True)
    # differences are meaningless across the ReLU kink: keep every pre-activation away from 0
    assert np.abs(cache.ff.relu.x).min() > 1e-3
    dx, dlayer = encoder_layer_backward(dout, cache)
    assert list(dlayer) == list(LAYER_KEYS)

    checks = [("x", x, dx)] + [(key, layer[key], dlayer[key]) for key in LAYER_KEYS]
    for name, arg, grad in checks:
        numeric = richardson_gradient(forward, arg, dout)
        if name == "self_attn.in_proj_bias":
            # the key bias shifts a whole softmax row: true gradient exactly 0 (see
            # test_op_attention); compare the query and value thirds relatively
            assert np.abs(grad[D : 2 * D]).max() < 1e-12
            keep = np.r_[0:D, 2 * D : 3 * D]
            numeric, grad = numeric[keep], grad[keep]
        err = rel_error(numeric, grad)
        assert err < 1e-7, f"{name}: relative error {err:.2e}"


def test_post_ln_output_is_normalised():
    x, layer, _ = make_layer(2)
    layer["norm2.weight"][:] = 1.0
    layer["norm2.bias"][:] = 0.0
    out, cache = encoder_layer_forward(x, layer, H, MASKS["padded"], 0.0, None)
    np.testing.assert_allclose(out.mean(axis=-1), 0.0, atol=1e-12)
    np.testing.assert_allclose(out.var(axis=-1), 1.0, rtol=1e-3)  # var / (var + eps)
    assert cache.attn.att.shape == (B, H, T, T)


def test_fully_masked_row_gives_finite_gradients():
    x, layer, dout = make_layer(3)
    out, cache = encoder_layer_forward(x, layer, H, MASKS["fully_masked"], 0.0, None)
    dx, dlayer = encoder_layer_backward(dout, cache)
    assert np.all(np.isfinite(out)) and np.all(np.isfinite(dx))
    assert all(np.all(np.isfinite(g)) for g in dlayer.values())


def test_float32_agrees_with_float64():
    x64, layer64, dout64 = make_layer(4)
    x32, layer32, dout32 = make_layer(4, np.float32)
    mask = MASKS["padded"]
    out64, c64 = encoder_layer_forward(x64, layer64, H, mask, 0.0, None)
    out32, c32 = encoder_layer_forward(x32, layer32, H, mask, 0.0, None)
    assert out32.dtype == np.float32
    np.testing.assert_allclose(out32, out64, rtol=1e-4, atol=1e-4)
    dx64, g64 = encoder_layer_backward(dout64, c64)
    dx32, g32 = encoder_layer_backward(dout32, c32)
    np.testing.assert_allclose(dx32, dx64, rtol=1e-3, atol=1e-4)
    for key in LAYER_KEYS:
        assert g32[key].dtype == np.float32, key
        np.testing.assert_allclose(g32[key], g64[key], rtol=1e-3, atol=1e-4, err_msg=key)


def test_dropout_is_seeded():
    x, layer, _ = make_layer(5)

    def run(seed):
        return encoder_layer_forward(x, layer, H, None, 0.3, np.random.default_rng(seed))[0]

    np.testing.assert_array_equal(run(0), run(0))
    assert not np.array_equal(run(0), run(1))


def test_bad_layer_names_the_key():
    x, layer, _ = make_layer(6)
    del layer["norm2.bias"]
    with pytest.raises(KeyError, match="norm2.bias"):
        encoder_layer_forward(x, layer, H)
    x, layer, _ = make_layer(6)
    layer["linear2.weight"] = layer["linear2.weight"].T.copy()
    with pytest.raises(ValueError, match="linear2.weight"):
        encoder_layer_forward(x, layer, H)
