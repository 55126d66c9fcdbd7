"""One post-LN encoder layer, fast: the textbook layer (:mod:`srsan_np.ops.encoder`) on the
fast attention, and the model's last layer computed at the read-out alone.

Only the read-out position of each session feeds the loss, so the last layer's output is
needed there alone: its attention takes queries at ``last`` (keys and values from every
position), and everything after the attention -- the residual, both layer norms and the
feed-forward block, all position-wise -- runs on ``B`` rows instead of ``B T``. The
feed-forward block is the textbook's own function, applied to those rows.
"""

from __future__ import annotations

from typing import Any, NamedTuple

from ..ops.dropout import dropout_backward, dropout_forward
from ..ops.encoder import LAYER_KEYS, check_layer, feed_forward_backward, feed_forward_forward
from ..ops.layernorm import layernorm_backward, layernorm_forward
from .attention import add_query_gradient, attention_backward, attention_forward, select_queries

__all__ = [
    "encoder_layer_forward",
    "encoder_layer_backward",
    "readout_layer_forward",
    "readout_layer_backward",
]


class EncoderLayerCache(NamedTuple):
    """The caches of one layer, in forward order (the textbook's, plus ``last``)."""

    last: Any       # (B,) the positions computed, or None: every position
    attn: Any       # attention; ``attn.att`` (B, H, Tq, T) are the attention weights
    drop_attn: Any  # dropout on the attention output
    norm1: Any
    ff: Any         # the textbook feed-forward block's cache


def encoder_layer_forward(x, layer, n_heads, key_mask=None, p=0.0, rng=None, ids=None,
                          last=None):
    """The textbook layer's forward pass, with the attention's shortcuts.

    Parameters
    ----------
    x, layer, n_heads, key_mask, p, rng
        As :func:`srsan_np.ops.encoder.encoder_layer_forward`.
    ids : (B, T) int or None
        The item ids when ``x`` is their embedding lookup (see
        :func:`srsan_np.fast.attention.attention_forward`).
    last : (B,) int or None
        None: the output at every position. Given: only at position ``last[b]`` of each
        row, ``out`` (B, 1, D) -- the same values as ``out_full[b, last[b]]``.

    Returns
    -------
    out : (B, T, D), or (B, 1, D) when ``last`` is given
    cache : EncoderLayerCache
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
        last,
        ids,
    )  # (B, Tq, D), Tq = T or 1
    a, drop_attn = dropout_forward(a, p, rng)
    xq = select_queries(x, last)  # (B, Tq, D) the residual at the computed positions
    h, norm1 = layernorm_forward(xq + a, layer["norm1.weight"], layer["norm1.bias"])
    out, ff = feed_forward_forward(h, layer, p, rng)  # (B, Tq, D)
    return out, EncoderLayerCache(last, attn, drop_attn, norm1, ff)


def encoder_layer_backward(dout, cache):
    """Backward of :func:`encoder_layer_forward`: ``dx`` (B, T, D) and the gradient of every
    parameter, keyed as :data:`srsan_np.ops.encoder.LAYER_KEYS`."""
    # forward: out = feed_forward(h)
    dh, g = feed_forward_backward(dout, cache.ff)
    # forward: h = LN1(xq + a), xq = select_queries(x, last)
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
    dx = add_query_gradient(dx_attn, dsum, cache.last)
    return dx, {key: g[key] for key in LAYER_KEYS}


def readout_layer_forward(x, layer, n_heads, key_mask, p, rng, ids, last):
    """The model's last layer and the read-out: ``h[b] = layer(x)[b, last[b]]``, (B, D),
    computed at those positions only."""
    out, cache = encoder_layer_forward(x, layer, n_heads, key_mask, p, rng, ids, last)
    return out[:, 0], cache  # (B, D)


def readout_layer_backward(dh, cache):
    """Backward of :func:`readout_layer_forward`: ``(dx (B, T, D), dlayer)``."""
    return encoder_layer_backward(dh[:, None, :], cache)  # (B, 1, D), the computed rows
