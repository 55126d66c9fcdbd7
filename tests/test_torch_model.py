"""PyTorch parity: attention, encoder layer and the whole faithful model, given the same weights.

float64 and 1e-10 for outputs and every gradient; float32 tolerance for float32 scores.
Every test runs on both kernel paths, the textbook ops and the fast ones. Skips cleanly
without torch.
"""

import numpy as np
import pytest

torch = pytest.importorskip("torch")
nn = torch.nn

from srsan_np import kernels, model  # noqa: E402
from srsan_np.data import Sessions, make_batch  # noqa: E402
from srsan_np.fast import attention as fast_attention  # noqa: E402
from srsan_np.fast import encoder as fast_encoder  # noqa: E402
from srsan_np.model import Config  # noqa: E402
from srsan_np.ops import attention, encoder  # noqa: E402
from srsan_np.ops.encoder import LAYER_KEYS  # noqa: E402

PATHS = {"reference": (attention, encoder), "fast": (fast_attention, fast_encoder)}

B, T, D, H, F = 3, 5, 8, 2, 12
PADDED = np.array([[1, 1, 1, 1, 1], [1, 1, 1, 0, 0], [1, 0, 0, 0, 0]], dtype=bool)


def assert_close(ours, theirs, name, rtol=1e-10):
    theirs = theirs.detach().numpy() if isinstance(theirs, torch.Tensor) else np.asarray(theirs)
    atol = rtol * max(1.0, float(np.abs(theirs).max()))
    np.testing.assert_allclose(ours, theirs, rtol=rtol, atol=atol, err_msg=name)


def to_numpy(module):
    return {k: v.detach().numpy().copy() for k, v in module.state_dict().items()}


def seeded(module, seed):
    """Every parameter of ``module`` from N(0, 0.5^2) (LayerNorm gains near 1), float64."""
    gen = torch.Generator().manual_seed(seed)
    module.double()
    with torch.no_grad():
        for name, p in module.named_parameters():
            base = 1.0 if name.endswith(("norm1.weight", "norm2.weight")) else 0.0
            p.copy_(base + 0.5 * torch.randn(p.shape, generator=gen, dtype=torch.float64))
    return module


def inputs(seed):
    rng = np.random.default_rng(seed)
    return rng.standard_normal((B, T, D)), rng.standard_normal((B, T, D))


@pytest.mark.parametrize("path", list(PATHS))
@pytest.mark.parametrize("mask", [None, PADDED], ids=["unmasked", "padded"])
def test_attention_matches_multihead_attention(mask, path):
    attn_ops = PATHS[path][0]
    torch.manual_seed(0)
    mha = seeded(nn.MultiheadAttention(D, H, dropout=0.0), 1)  # sequence-first, like the original
    x, dout = inputs(2)
    xt = torch.tensor(x.transpose(1, 0, 2), requires_grad=True)  # (T, B, D)
    padding = None if mask is None else torch.tensor(~mask)  # torch: True = ignore this key
    out_t, weights_t = mha(xt, xt, xt, key_padding_mask=padding, need_weights=True,
                           average_attn_weights=False)
    out_t.backward(torch.tensor(dout.transpose(1, 0, 2)))

    w = to_numpy(mha)
    out, cache = attn_ops.attention_forward(x, w["in_proj_weight"], w["in_proj_bias"],
                                   w["out_proj.weight"], w["out_proj.bias"], H, mask, 0.0, None)
    assert_close(out, out_t.detach().numpy().transpose(1, 0, 2), "out")
    assert_close(cache.att, weights_t, "attention weights")  # (B, H, T, T)

    dx, d_in_w, d_in_b, d_out_w, d_out_b = attn_ops.attention_backward(dout, cache)
    assert_close(dx, xt.grad.numpy().transpose(1, 0, 2), "dx")
    assert_close(d_in_w, mha.in_proj_weight.grad, "in_proj_weight")
    assert_close(d_in_b, mha.in_proj_bias.grad, "in_proj_bias")
    assert_close(d_out_w, mha.out_proj.weight.grad, "out_proj.weight")
    assert_close(d_out_b, mha.out_proj.bias.grad, "out_proj.bias")


@pytest.mark.parametrize("path", list(PATHS))
@pytest.mark.parametrize("mask", [None, PADDED], ids=["unmasked", "padded"])
def test_encoder_layer_matches_transformer_encoder_layer(mask, path):
    """PyTorch's defaults (dropout 0.1, ReLU, post-LN, eps 1e-5) in eval mode: no dropout."""
    layer_ops = PATHS[path][1]
    layer_t = seeded(nn.TransformerEncoderLayer(D, H, dim_feedforward=F), 3).eval()
    x, dout = inputs(4)
    xt = torch.tensor(x.transpose(1, 0, 2), requires_grad=True)
    padding = None if mask is None else torch.tensor(~mask)
    out_t = layer_t(xt, src_key_padding_mask=padding)
    out_t.backward(torch.tensor(dout.transpose(1, 0, 2)))

    layer = to_numpy(layer_t)
    assert sorted(layer) == sorted(LAYER_KEYS)
    out, cache = layer_ops.encoder_layer_forward(x, layer, H, mask, 0.1, None)
    assert_close(out, out_t.detach().numpy().transpose(1, 0, 2), "out")
    dx, dlayer = layer_ops.encoder_layer_backward(dout, cache)
    assert_close(dx, xt.grad.numpy().transpose(1, 0, 2), "dx")
    grads_t = dict(layer_t.named_parameters())
    for key in LAYER_KEYS:
        assert_close(dlayer[key], grads_t[key].grad, key)


class Original(nn.Module):
    """The original SR-SAN network as ORIGINAL.md describes it (written here from that)."""

    def __init__(self, n_node, hidden, heads, layers, ff):
        super().__init__()
        self.hidden = hidden
        self.embedding = nn.Embedding(n_node, hidden)
        self.transformerEncoderLayer = nn.TransformerEncoderLayer(hidden, heads, hidden * ff)
        self.transformerEncoder = nn.TransformerEncoder(
            self.transformerEncoderLayer, layers, enable_nested_tensor=False
        )
        bound = 1.0 / hidden**0.5
        for p in self.parameters():
            p.data.uniform_(-bound, bound)

    def forward(self, inputs, last):
        x = self.embedding(inputs).transpose(0, 1)  # (T, B, D): sequence-first
        x = self.transformerEncoder(x).transpose(0, 1)  # (B, T, D)
        h = x[torch.arange(x.shape[0]), last]  # (B, D)
        return h @ self.embedding.weight[1:].T  # (B, n_node - 1)


def faithful_batch(n_items):
    rng = np.random.default_rng(5)
    prefixes = [list(rng.integers(1, n_items + 1, size=rng.integers(1, 7))) for _ in range(6)]
    targets = list(rng.integers(1, n_items + 1, size=6))
    return make_batch(Sessions.from_lists(prefixes, targets), np.arange(6), "faithful")


@pytest.mark.parametrize("kernel_set", kernels.NAMES)
@pytest.mark.parametrize("layers", [1, 2])
@pytest.mark.parametrize("extra_rows", [0, 9], ids=["real-count", "hard-coded-bigger"])
def test_faithful_model_matches_the_original(layers, extra_rows, kernel_set):
    """Load the original's state dict; same scores, loss and every gradient in float64."""
    n_items = 13
    torch.manual_seed(layers)
    original = Original(n_items + 1 + extra_rows, D, H, layers, 4).double().eval()
    config = Config(n_items=n_items + extra_rows, hidden=D, heads=H, layers=layers)
    batch = faithful_batch(n_items)

    state = to_numpy(original)
    assert any(key.startswith("transformerEncoderLayer.") for key in state)  # ignored
    params = model.from_state_dict(state, config)
    assert params["embedding.weight"].dtype == np.float64

    scores_t = original(torch.tensor(batch.inputs, dtype=torch.long),
                        torch.tensor(batch.last))
    loss_t = nn.CrossEntropyLoss()(scores_t, torch.tensor(batch.targets, dtype=torch.long) - 1)
    loss_t.backward()
    assert_close(model.score(params, batch, config, kernel_set), scores_t, "scores")

    loss, grads = model.loss_and_grads(params, batch, config, None, kernel_set)
    assert abs(loss - loss_t.item()) < 1e-12 * abs(loss)
    grads_t = {name: p.grad for name, p in original.named_parameters()
               if not name.startswith("transformerEncoderLayer.")}
    ours = model.to_state_dict(grads, config)
    assert ours.keys() == grads_t.keys()
    for key, grad_t in grads_t.items():
        assert_close(ours[key], grad_t, key)


@pytest.mark.parametrize("kernel_set", kernels.NAMES)
def test_faithful_model_float32_scores(kernel_set):
    n_items = 13
    torch.manual_seed(7)
    original = Original(n_items + 1, 16, 2, 1, 4).eval()  # float32, the original's dtype
    config = Config(n_items=n_items, hidden=16, heads=2)
    batch = faithful_batch(n_items)
    params = model.from_state_dict(to_numpy(original), config)
    assert params["embedding.weight"].dtype == np.float32
    with torch.no_grad():
        scores_t = original(torch.tensor(batch.inputs, dtype=torch.long), torch.tensor(batch.last))
    assert_close(model.score(params, batch, config, kernel_set), scores_t, "scores", rtol=1e-5)


def test_export_loads_into_the_original():
    """Our weights, exported, drive the original network to the same scores."""
    n_items = 13
    config = Config(n_items=n_items, hidden=D, heads=H, layers=2)
    params = model.init_params(config, 11, np.float64)
    original = Original(n_items + 1, D, H, 2, 4).double().eval()
    state = {k: torch.tensor(v) for k, v in model.to_state_dict(params, config).items()}
    # the template layer is part of the original's state dict but unused: keep its values
    state.update({k: v for k, v in original.state_dict().items()
                  if k.startswith("transformerEncoderLayer.")})
    original.load_state_dict(state)
    batch = faithful_batch(n_items)
    with torch.no_grad():
        scores_t = original(torch.tensor(batch.inputs, dtype=torch.long), torch.tensor(batch.last))
    assert_close(model.score(params, batch, config), scores_t, "scores")
    round_trip = model.from_state_dict(to_numpy(original), config)
    np.testing.assert_array_equal(model.score(round_trip, batch, config),
                                  model.score(params, batch, config))
