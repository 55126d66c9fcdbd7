"""One post-LN encoder layer, fast: the textbook layer (:mod:`srsan_np.ops.encoder`) on the
fast attention, and the model's last layer computed at the read-out alone.

Only the read-out position of each session feeds the loss, so the last layer's output is
needed there alone: its attention takes one query per row, at ``last``
(:func:`srsan_np.fast.attention.readout_attention_forward`), and everything after the
attention -- the residual, both layer norms and the feed-forward block, all position-wise
-- runs on ``B`` rows instead of ``B T``. Both layers share that tail, the textbook's own
feed-forward block included.
"""

from __future__ import annotations

from typing import Any, NamedTuple

import numpy as np

from ..ops.dropout import dropout_backward, dropout_forward
from ..ops.encoder import LAYER_KEYS, check_layer, feed_forward_backward, feed_forward_forward
from ..ops.layernorm import layernorm_backward, layernorm_forward
from .attention import (
    attention_backward,
    attention_forward,
    readout_attention_backward,
    readout_attention_forward,
)
from .threads import blas_on_one_thread

__all__ = [
    "encoder_layer_forward",
    "encoder_layer_backward",
    "readout_layer_forward",
    "readout_layer_backward",
]


class EncoderLayerCache(NamedTuple):
    """The caches of one layer, in forward order (the textbook's)."""

    attn: Any       # attention; ``attn.att`` are the attention weights
    drop_attn: Any  # dropout on the attention output
    norm1: Any
    ff: Any         # the textbook feed-forward block's cache


# the attention's parameters, in the order its functions take them and return their gradients
_ATTENTION_KEYS = ("self_attn.in_proj_weight", "self_attn.in_proj_bias",
                   "self_attn.out_proj.weight", "self_attn.out_proj.bias")


def _attention_args(layer):
    return tuple(layer[key] for key in _ATTENTION_KEYS)


def _attention_grads(g, grads):
    """``dx`` of an attention backward's ``(dx, d_in_w, d_in_b, d_out_w, d_out_b)``, its
    four parameter gradients stored in ``g`` under the layer's keys."""
    dx, *weights = grads
    g.update(zip(_ATTENTION_KEYS, weights))
    return dx


def _tail_forward(x, a, attn, layer, p, rng):
    """What follows the attention, position-wise: ``LN1(x + dropout(a))``, then the
    feed-forward block; ``x`` and ``a`` are (..., D) rows of the residual and the
    attention's output."""
    a, drop_attn = dropout_forward(a, p, rng)
    h, norm1 = layernorm_forward(x + a, layer["norm1.weight"], layer["norm1.bias"])
    out, ff = feed_forward_forward(h, layer, p, rng)
    return out, EncoderLayerCache(attn, drop_attn, norm1, ff)


def _tail_backward(dout, cache):
    """Backward of :func:`_tail_forward`: the gradient of the residual and of the
    attention's output (the same array: ``x + a`` reaches both), and the gradients of the
    tail's parameters."""
    # forward: out = feed_forward(h)
    dh, g = feed_forward_backward(dout, cache.ff)
    # forward: h = LN1(x + a)
    dsum, g["norm1.weight"], g["norm1.bias"] = layernorm_backward(dh, cache.norm1)
    # forward: a = dropout(Attn(x))
    return dsum, dropout_backward(dsum, cache.drop_attn), g


def encoder_layer_forward(x, layer, n_heads, key_mask=None, p=0.0, rng=None, ids=None):
    """The textbook layer's forward pass on the fast attention.

    Parameters
    ----------
    x, layer, n_heads, key_mask, p, rng
        As :func:`srsan_np.ops.encoder.encoder_layer_forward`.
    ids : (B, T) int or None
        The item ids when ``x`` is their embedding lookup (see
        :func:`srsan_np.fast.attention.attention_forward`).

    Returns
    -------
    out : (B, T, D)
    cache : EncoderLayerCache
    """
    check_layer("encoder_layer_forward", x, layer)
    a, attn = attention_forward(x, *_attention_args(layer), n_heads, key_mask, p, rng, ids)
    return _tail_forward(x, a, attn, layer, p, rng)


def encoder_layer_backward(dout, cache):
    """Backward of :func:`encoder_layer_forward`: ``dx`` (B, T, D) and the gradient of every
    parameter, keyed as :data:`srsan_np.ops.encoder.LAYER_KEYS`."""
    dsum, da, g = _tail_backward(dout, cache)
    dx = _attention_grads(g, attention_backward(da, cache.attn))
    dx += dsum  # x feeds both the residual and the attention
    return dx, {key: g[key] for key in LAYER_KEYS}


def readout_layer_forward(x, layer, n_heads, key_mask, p, rng, ids, last):
    """The model's last layer and the read-out: ``h[b] = layer(x)[b, last[b]]``, (B, D),
    computed at those positions only (``ids`` is not needed: no keys are projected).

    Its products have ``B`` rows; BLAS runs them on the calling thread
    (:func:`srsan_np.fast.threads.blas_on_one_thread`).
    """
    check_layer("readout_layer_forward", x, layer)
    with blas_on_one_thread():
        a, attn = readout_attention_forward(x, *_attention_args(layer), n_heads, key_mask, p,
                                            rng, last)  # (B, D)
        return _tail_forward(x[np.arange(x.shape[0]), last], a, attn, layer, p, rng)


def readout_layer_backward(dh, cache):
    """Backward of :func:`readout_layer_forward`: ``(dx (B, T, D), dlayer)``."""
    with blas_on_one_thread():
        dsum, da, g = _tail_backward(dh, cache)
        dx = _attention_grads(g, readout_attention_backward(da, cache.attn))
    last = cache.attn.last
    dx[np.arange(dx.shape[0]), last] += dsum  # the residual x[b, last[b]]: one row each
    return dx, {key: g[key] for key in LAYER_KEYS}
