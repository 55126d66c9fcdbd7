"""Multi-head self-attention, one step at a time: each step of the forward and its local gradient.

The fused backward of :mod:`srsan_np.ops.attention` is seven small backward passes in a
row; here each is a function of its own, written and checked alone, then chained. For
``x`` (B, T, D), ``H`` heads of ``dh = D / H`` features, ``key_mask`` (B, T) True on real
keys::

    qkv = x @ in_w.T + in_b                projection_forward(x, in_w, in_b)     (B, T, 3D)
    q   = qkv[..., :D] split into heads    split_heads_forward(qkv[..., :D], H)  (B, H, T, dh)
                                           (k and v likewise from the next thirds)
    S   = q @ k^T                          scores_forward(q, k)                  (B, H, T, T)
    Ss  = S * scale, scale = 1/sqrt(dh)    scale_forward(S, scale)               (B, H, T, T)
    A   = softmax of Ss over real keys     softmax_forward(Ss, key_mask)         (B, H, T, T)
    Ad  = A * keep * (1 / (1 - p))         dropout_forward(A, keep, keep_scale)  (B, H, T, T)
    Y   = Ad @ v                           weighted_sum_forward(Ad, v)           (B, H, T, dh)
    y   = Y with its heads side by side    merge_heads_forward(Y)                (B, T, D)
    out = y @ out_w.T + out_b              projection_forward(y, out_w, out_b)   (B, T, D)

Every ``<step>_backward`` takes the upstream gradient of the step's output and the step's
inputs, and returns the gradient of each float input, in the order of the forward's
arguments (``n_heads``, ``key_mask``, ``keep`` and the scales are constants: no gradient).
The checker tests each step on its own, then the chain: :func:`attention_backward` runs the
steps in reverse. ``x`` feeds the queries, the keys and the values, so its gradient is the
sum of all three (one ``projection_backward`` of the three thirds side by side).

The dropout mask is an input of its step, drawn by the chain exactly as
:func:`srsan_np.ops.dropout.dropout_forward` draws it (``rng.random(A.shape) >= p``), so
the chain with a seeded generator gives the fused op's output.
"""

from __future__ import annotations

import numpy as np


def projection_forward(x, W, b):
    return x @ W.T + b  # (B, T, Dout)


def projection_backward(dout, x, W, b):
    """dx (B, T, Din), dW (Dout, Din), db (Dout,): W and b are shared by every position."""
    # >>> solution
    rows = tuple(range(dout.ndim - 1))
    return dout @ W, np.tensordot(dout, x, axes=(rows, rows)), dout.sum(axis=rows)
    # <<< solution


def split_heads_forward(a, n_heads):
    B, T, D = a.shape
    return a.reshape(B, T, n_heads, D // n_heads).transpose(0, 2, 1, 3)  # (B, H, T, dh)


def split_heads_backward(dheads, a, n_heads):
    """da (B, T, D): the heads put back side by side (a split forward is a merge backward)."""
    # >>> solution
    B, H, T, dh = dheads.shape
    return dheads.transpose(0, 2, 1, 3).reshape(B, T, H * dh)
    # <<< solution


def scores_forward(q, k):
    return q @ k.transpose(0, 1, 3, 2)  # (B, H, T, T): S[t, s] = q[t] . k[s]


def scores_backward(dS, q, k):
    """dq (B, H, T, dh), dk (B, H, T, dh)."""
    # >>> solution
    return dS @ k, dS.transpose(0, 1, 3, 2) @ q
    # <<< solution


def scale_forward(S, scale):
    return S * scale  # (B, H, T, T)


def scale_backward(dSs, S, scale):
    """dS (B, H, T, T)."""
    # >>> solution
    return dSs * scale
    # <<< solution


def softmax_forward(Ss, key_mask):
    """Each row's softmax over its real keys (0 on masked keys; a row with none stays 0)."""
    real = key_mask[:, None, None, :]  # (B, 1, 1, T)
    top = np.where(real, Ss, -np.inf).max(axis=-1, keepdims=True)  # (B, H, T, 1)
    top = np.where(np.isfinite(top), top, 0.0)  # a row with no real key: anything finite
    e = np.where(real, np.exp(Ss - top), 0.0)  # (B, H, T, T)
    total = e.sum(axis=-1, keepdims=True)
    return np.divide(e, total, out=np.zeros_like(e), where=total > 0)


def softmax_backward(dA, Ss, key_mask):
    """dSs (B, H, T, T): per row, ``dSs[s] = A[s] (dA[s] - sum_r A[r] dA[r])``."""
    # >>> solution
    A = softmax_forward(Ss, key_mask)
    return A * (dA - (A * dA).sum(axis=-1, keepdims=True))
    # <<< solution


def dropout_forward(A, keep, keep_scale):
    return A * keep * keep_scale  # (B, H, T, T)


def dropout_backward(dAd, A, keep, keep_scale):
    """dA (B, H, T, T): the forward's own mask and scale."""
    # >>> solution
    return dAd * keep * keep_scale
    # <<< solution


def weighted_sum_forward(Ad, v):
    return Ad @ v  # (B, H, T, dh): Y[t] = sum_s Ad[t, s] v[s]


def weighted_sum_backward(dY, Ad, v):
    """dAd (B, H, T, T), dv (B, H, T, dh)."""
    # >>> solution
    return dY @ v.transpose(0, 1, 3, 2), Ad.transpose(0, 1, 3, 2) @ dY
    # <<< solution


def merge_heads_forward(Y):
    B, H, T, dh = Y.shape
    return Y.transpose(0, 2, 1, 3).reshape(B, T, H * dh)  # (B, T, D)


def merge_heads_backward(dy, Y):
    """dY (B, H, T, dh): a merge forward is a split backward."""
    # >>> solution
    B, H, T, dh = Y.shape
    return dy.reshape(B, T, H, dh).transpose(0, 2, 1, 3)
    # <<< solution


def attention_forward(x, in_w, in_b, out_w, out_b, n_heads, key_mask=None, p=0.0, rng=None):
    """The steps in order: ``out`` (B, T, D) and every intermediate, keyed by name."""
    B, T, D = x.shape
    if key_mask is None:
        key_mask = np.ones((B, T), dtype=bool)  # every key is real
    qkv = projection_forward(x, in_w, in_b)
    q, k, v = (split_heads_forward(qkv[..., i * D:(i + 1) * D], n_heads) for i in range(3))
    scale = 1.0 / np.sqrt(D // n_heads)
    S = scores_forward(q, k)
    Ss = scale_forward(S, scale)
    A = softmax_forward(Ss, key_mask)
    dropping = rng is not None and p > 0.0
    keep = rng.random(A.shape) >= p if dropping else np.ones(A.shape, dtype=bool)
    keep_scale = 1.0 / (1.0 - p) if dropping else 1.0
    Ad = dropout_forward(A, keep, keep_scale)
    Y = weighted_sum_forward(Ad, v)
    y = merge_heads_forward(Y)
    out = projection_forward(y, out_w, out_b)
    return out, dict(x=x, in_w=in_w, in_b=in_b, out_w=out_w, out_b=out_b, n_heads=n_heads,
                     key_mask=key_mask, qkv=qkv, q=q, k=k, v=v, scale=scale, S=S, Ss=Ss, A=A,
                     keep=keep, keep_scale=keep_scale, Ad=Ad, Y=Y, y=y)


def attention_backward(dout, steps):
    """The steps in reverse: ``dx, d_in_w, d_in_b, d_out_w, d_out_b``."""
    s = steps
    D = s["x"].shape[-1]
    dy, d_out_w, d_out_b = projection_backward(dout, s["y"], s["out_w"], s["out_b"])
    dY = merge_heads_backward(dy, s["Y"])
    dAd, dv = weighted_sum_backward(dY, s["Ad"], s["v"])
    dA = dropout_backward(dAd, s["A"], s["keep"], s["keep_scale"])
    dSs = softmax_backward(dA, s["Ss"], s["key_mask"])
    dS = scale_backward(dSs, s["S"], s["scale"])
    dq, dk = scores_backward(dS, s["q"], s["k"])
    # x feeds q, k and v: their gradients side by side, one projection backward sums them
    dqkv = np.concatenate([split_heads_backward(d, s["qkv"][..., i * D:(i + 1) * D], s["n_heads"])
                           for i, d in enumerate((dq, dk, dv))], axis=-1)  # (B, T, 3D)
    dx, d_in_w, d_in_b = projection_backward(dqkv, s["x"], s["in_w"], s["in_b"])
    return dx, d_in_w, d_in_b, d_out_w, d_out_b
