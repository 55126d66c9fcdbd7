"""One post-LayerNorm Transformer encoder layer, as ``torch.nn.TransformerEncoderLayer``.

SR-SAN (Fang, arXiv 2102.01922, section 3.2) stacks ``L`` of these on the item embeddings
of a session. With PyTorch's defaults (``norm_first=False``, ReLU, LayerNorm eps 1e-5) and
``Dropout`` of probability ``p`` everywhere, one layer is::

    a  = Dropout(Attn(x))               multi-head self-attention (dropout p on its weights)
    h  = LN1(x + a)                     residual, then LayerNorm ("post-LN")
    f  = Dropout(W2 Dropout(ReLU(W1 h + b1)) + b2)
    out = LN2(h + f)

Every step is one of the shared ops, so this file is only their composition and its
reverse, in two sub-layers as the paper's figure draws them: the attention block (the
first line and the second) and the feed-forward block (the last two). The parameters of a
layer are a dict keyed as PyTorch names them inside the layer (:data:`LAYER_KEYS`), so a
state dict maps onto it one to one.
"""

from __future__ import annotations

from typing import Any, NamedTuple

# In a learner's workspace these imports are the learner's own files; `srsan-np exercises
# check DIR encoder` serves the textbook's instead, so the encoder can be checked alone.
from .attention import attention_backward, attention_forward
from .dropout import dropout_backward, dropout_forward
from .layernorm import layernorm_backward, layernorm_forward
from .linear import linear_backward, linear_forward
from .relu import relu_backward, relu_forward

__all__ = [
    "LAYER_KEYS",
    "layer_shapes",
    "check_layer",
    "encoder_layer_forward",
    "encoder_layer_backward",
    "feed_forward_forward",
    "feed_forward_backward",
]

LAYER_KEYS = (
    "self_attn.in_proj_weight",
    "self_attn.in_proj_bias",
    "self_attn.out_proj.weight",
    "self_attn.out_proj.bias",
    "linear1.weight",
    "linear1.bias",
    "linear2.weight",
    "linear2.bias",
    "norm1.weight",
    "norm1.bias",
    "norm2.weight",
    "norm2.bias",
)


def layer_shapes(hidden: int, ff: int) -> dict[str, tuple[int, ...]]:
    """Shape of every parameter of one layer, keyed as :data:`LAYER_KEYS`.

    ``hidden`` is ``D``, ``ff`` the feed-forward width (PyTorch's ``dim_feedforward``).
    """
    D, F = hidden, ff
    shapes = [
        (3 * D, D), (3 * D,),  # self_attn.in_proj_weight, in_proj_bias
        (D, D), (D,),  # self_attn.out_proj
        (F, D), (F,),  # linear1
        (D, F), (D,),  # linear2
        (D,), (D,), (D,), (D,),  # norm1, norm2
    ]
    return dict(zip(LAYER_KEYS, shapes))


class FeedForwardCache(NamedTuple):
    """The caches of the feed-forward block, in forward order."""

    linear1: Any
    relu: Any
    drop_ff: Any    # dropout between the two linear layers ("dropout" in PyTorch)
    linear2: Any
    drop_out: Any   # dropout on the feed-forward output ("dropout2")
    norm2: Any


class EncoderLayerCache(NamedTuple):
    """The caches of the ops of one layer, in forward order."""

    attn: Any       # attention; ``attn.att`` (B, H, T, T) are the attention weights
    drop_attn: Any  # dropout on the attention output ("dropout1" in PyTorch)
    norm1: Any
    ff: FeedForwardCache


def check_layer(name, x, layer):
    """Raise naming the first missing or misshapen parameter of ``layer`` for input ``x``."""
    if x.ndim != 3:
        raise ValueError(f"{name}: x must be (B, T, D), got shape {x.shape}")
    missing = [key for key in LAYER_KEYS if key not in layer]
    if missing:
        raise KeyError(f"{name}: layer is missing {missing}")
    D = x.shape[2]
    ff = layer["linear1.weight"].shape[0]
    for key, shape in layer_shapes(D, ff).items():
        if layer[key].shape != shape:
            raise ValueError(
                f"{name}: layer[{key!r}] has shape {layer[key].shape}, "
                f"expected {shape} for D={D}, feed-forward {ff}"
            )


def feed_forward_forward(h, layer, p=0.0, rng=None):
    """The feed-forward block: ``out = LN2(h + Dropout(W2 Dropout(ReLU(W1 h + b1)) + b2))``.

    Position-wise: ``h`` may have any leading axes, ``(..., D)``. Returns ``out`` (the
    shape of ``h``) and a :class:`FeedForwardCache`.
    """
    f, linear1 = linear_forward(h, layer["linear1.weight"], layer["linear1.bias"])  # (..., F)
    f, relu = relu_forward(f)
    f, drop_ff = dropout_forward(f, p, rng)
    f, linear2 = linear_forward(f, layer["linear2.weight"], layer["linear2.bias"])  # (..., D)
    f, drop_out = dropout_forward(f, p, rng)
    out, norm2 = layernorm_forward(h + f, layer["norm2.weight"], layer["norm2.bias"])
    return out, FeedForwardCache(linear1, relu, drop_ff, linear2, drop_out, norm2)


def feed_forward_backward(dout, cache):
    """Backward of :func:`feed_forward_forward`: ``dh`` (the shape of ``dout``) and a dict
    of the block's six parameter gradients, keyed as :data:`LAYER_KEYS`."""
    # >>> solution
    g = {}
    # forward: out = LN2(h + f)
    dsum, g["norm2.weight"], g["norm2.bias"] = layernorm_backward(dout, cache.norm2)
    # forward: f = dropout(f)
    df = dropout_backward(dsum, cache.drop_out)
    # forward: f = linear2(f)
    df, g["linear2.weight"], g["linear2.bias"] = linear_backward(df, cache.linear2)
    # forward: f = dropout(f); f = relu(f)
    df = relu_backward(dropout_backward(df, cache.drop_ff), cache.relu)
    # forward: f = linear1(h); h feeds both the residual and the feed-forward block
    dh_ff, g["linear1.weight"], g["linear1.bias"] = linear_backward(df, cache.linear1)
    return dsum + dh_ff, g  # the residual branch: d(h + f)/dh = identity
    # <<< solution


def encoder_layer_forward(x, layer, n_heads, key_mask=None, p=0.0, rng=None):
    """Forward pass of one post-LN encoder layer.

    Parameters
    ----------
    x : (B, T, D) float32 or float64
    layer : dict[str, np.ndarray]
        The layer's parameters keyed as :data:`LAYER_KEYS` (same dtype as ``x``).
    n_heads : int
    key_mask : (B, T) bool or None
        True on real tokens (see :func:`srsan_np.ops.attention.attention_forward`).
    p : float
        Dropout probability of all four dropouts (PyTorch uses one ``dropout`` argument).
    rng : numpy.random.Generator or None
        None: evaluation, every dropout is the identity.

    Returns
    -------
    out : (B, T, D)
    cache : EncoderLayerCache

    Notes
    -----
    .. math:: h = \\mathrm{LN}_1(x + \\mathrm{drop}(\\mathrm{Attn}(x))), \\qquad
              \\mathrm{out} = \\mathrm{LN}_2\\big(h + \\mathrm{drop}(W_2\\,
              \\mathrm{drop}(\\mathrm{ReLU}(W_1 h + b_1)) + b_2)\\big)

    The dropouts are drawn in this order from ``rng``: attention weights, attention
    output, feed-forward hidden, feed-forward output.
    """
    check_layer("encoder_layer_forward", x, layer)
    a, attn = attention_forward(
        x,
        layer["self_attn.in_proj_weight"],
        layer["self_attn.in_proj_bias"],
        layer["self_attn.out_proj.weight"],
        layer["self_attn.out_proj.bias"],
        n_heads,
        key_mask,
        p,
        rng,
    )  # (B, T, D)
    a, drop_attn = dropout_forward(a, p, rng)
    h, norm1 = layernorm_forward(x + a, layer["norm1.weight"], layer["norm1.bias"])
    out, ff = feed_forward_forward(h, layer, p, rng)  # (B, T, D)
    return out, EncoderLayerCache(attn, drop_attn, norm1, ff)


def encoder_layer_backward(dout, cache):
    """Backward pass of one post-LN encoder layer.

    Parameters
    ----------
    dout : (B, T, D)
    cache : EncoderLayerCache

    Returns
    -------
    dx : (B, T, D)
    dlayer : dict[str, np.ndarray]
        The gradient of every parameter, keyed as :data:`LAYER_KEYS`.
    """
    # >>> solution
    # forward: out = feed_forward(h)
    dh, g = feed_forward_backward(dout, cache.ff)
    # forward: h = LN1(x + a)
    dsum, g["norm1.weight"], g["norm1.bias"] = layernorm_backward(dh, cache.norm1)
    # forward: a = dropout(Attn(x)); x feeds both the residual and the attention
    da = dropout_backward(dsum, cache.drop_attn)
    (
        dx_attn,
        g["self_attn.in_proj_weight"],
        g["self_attn.in_proj_bias"],
        g["self_attn.out_proj.weight"],
        g["self_attn.out_proj.bias"],
    ) = attention_backward(da, cache.attn)
    dx = dx_attn + dsum
    return dx, {key: g[key] for key in LAYER_KEYS}
    # <<< solution
