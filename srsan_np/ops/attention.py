"""Multi-head scaled dot-product self-attention, as ``torch.nn.MultiheadAttention``.

SR-SAN (Fang, arXiv 2102.01922, section 3.2) feeds the session's item embeddings to a
Transformer encoder whose first block is self-attention: every position builds a query,
a key and a value from its own vector, and reads a mixture of all values weighted by how
well its query matches each key.

Shapes: ``x`` is ``(B, T, D)``; ``H`` heads each see ``dh = D / H`` of the ``D`` features.

The steps, forward (``h`` a head, ``t`` a query position, ``s`` a key position)::

    qkv  = x @ in_w.T + in_b                         (B, T, 3D)  rows of in_w: q, k, v
    q, k, v = qkv[..., :D], qkv[..., D:2D], qkv[..., 2D:]
    S[h, t, s] = (q_h[t] . k_h[s]) / sqrt(dh)        (B, H, T, T)  scores
    A[h, t, :] = softmax over the real keys s of S[h, t, :]      (0 on masked keys)
    Ad = dropout(A)                                              (B, H, T, T)
    y_h[t] = sum_s Ad[h, t, s] v_h[s]                (B, T, D)   heads side by side
    out = y @ out_w.T + out_b                        (B, T, D)

The projections are the shared :mod:`srsan_np.ops.linear` op and the per-head products
``q k^T`` and ``A v`` are batched NumPy ``@`` over ``(B, H)``: matrix products, so BLAS.
What is not a product, the softmax over the real keys (:func:`masked_softmax`), is a Numba
loop on one thread (a batch's ``B H T T`` weights are too few to repay waking others); its
backward is :func:`masked_softmax_backward`. Dropout sits where PyTorch puts it, on the
attention weights after the softmax and before they multiply the values.

The backward (docs/derivations.md, section 6) runs the same lines in reverse; each product
``C = A B`` gives ``dA = dC B^T`` and ``dB = A^T dC``.
"""

from __future__ import annotations

import math
from typing import Any, NamedTuple

import numpy as np
from numba import njit

# In a learner's workspace these two imports are the learner's own linear.py and
# dropout.py; `srsan-np exercises check DIR attention` serves the textbook's instead, so
# the attention can be checked before (or without) those.
from .dropout import dropout_backward, dropout_forward
from .linear import linear_backward, linear_forward

__all__ = [
    "AttentionCache",
    "attention_forward",
    "attention_backward",
    "masked_softmax",
    "masked_softmax_backward",
    "split_heads",
    "merge_heads",
]


class AttentionCache(NamedTuple):
    """What :func:`attention_backward` needs, plus the weights the notebooks plot."""

    in_cache: Any          # cache of the input projection x -> [q, k, v]
    q: np.ndarray          # (B, H, T, dh) queries, not yet scaled
    k: np.ndarray          # (B, H, T, dh) keys
    v: np.ndarray          # (B, H, T, dh) values
    att: np.ndarray        # (B, H, T, T) attention weights after the softmax
    att_drop: np.ndarray   # (B, H, T, T) the same after dropout (``att`` itself if none)
    drop_cache: Any        # cache of the dropout on the attention weights
    out_cache: Any         # cache of the output projection y -> out


@njit(cache=True)
def masked_softmax(scores, key_mask):
    """Softmax of each row of ``scores`` over the keys that ``key_mask`` marks real.

    Parameters
    ----------
    scores : (B, H, Tq, T) float
    key_mask : (B, T) bool, True where the key is a real token

    Returns
    -------
    att : (B, H, Tq, T), ``att[b, h, t, s] = exp(S_s - m) / sum_{real s'} exp(S_s' - m)``
        on real keys ``s`` (``m`` the largest real score of the row, so the largest term
        is exp(0) = 1 and nothing overflows), 0 on masked keys. A row whose keys are all
        masked stays all 0 instead of the 0/0 = NaN of the formula.
    """
    B, H, Tq, T = scores.shape
    att = np.zeros_like(scores)  # (B, H, Tq, T)
    for b in range(B):
        for h in range(H):
            for t in range(Tq):
                m = -np.inf
                for s in range(T):
                    if key_mask[b, s]:
                        m = max(m, scores[b, h, t, s])
                if m == -np.inf:
                    continue  # no real key: the row stays 0
                total = 0.0
                for s in range(T):
                    if key_mask[b, s]:
                        e = math.exp(scores[b, h, t, s] - m)
                        att[b, h, t, s] = e
                        total += e
                for s in range(T):
                    att[b, h, t, s] /= total
    return att


def masked_softmax_backward(datt, att):
    """Gradient of a row softmax: ``dS[s] = A[s] (dA[s] - sum_r A[r] dA[r])``.

    Parameters
    ----------
    datt : (B, H, Tq, T) the gradient of the weights ``att``
    att : (B, H, Tq, T) the weights :func:`masked_softmax` returned

    Returns
    -------
    dscores : (B, H, Tq, T)
        Masked keys have ``A = 0`` and so get ``dS = 0``; a fully masked row is all 0 and
        passes nothing back.
    """
    # >>> solution
    return _masked_softmax_backward_kernel(np.ascontiguousarray(datt), att)
    # <<< solution


# >>> solution
@njit(cache=True)
def _masked_softmax_backward_kernel(datt, att):
    # a Numba loop on one thread, as masked_softmax
    B, H, Tq, T = att.shape
    dscores = np.empty_like(att)  # (B, H, Tq, T)
    for b in range(B):
        for h in range(H):
            for t in range(Tq):
                inner = 0.0
                for s in range(T):
                    inner += att[b, h, t, s] * datt[b, h, t, s]
                for s in range(T):
                    dscores[b, h, t, s] = att[b, h, t, s] * (datt[b, h, t, s] - inner)
    return dscores
# <<< solution


def split_heads(a, n_heads):
    """(B, T, D) -> (B, H, T, dh), a view."""
    B, T, D = a.shape
    return a.reshape(B, T, n_heads, D // n_heads).transpose(0, 2, 1, 3)


def merge_heads(a):
    """(B, H, T, dh) -> (B, T, H * dh), heads side by side."""
    B, H, T, dh = a.shape
    return a.transpose(0, 2, 1, 3).reshape(B, T, H * dh)


def check_attention_inputs(name, x, in_w, in_b, out_w, out_b, n_heads, key_mask, p):
    """Raise ``ValueError`` naming the first argument of ``name`` that does not fit."""
    if x.ndim != 3:
        raise ValueError(f"{name}: x must be (B, T, D), got shape {x.shape}")
    B, T, D = x.shape
    if not isinstance(n_heads, (int, np.integer)) or n_heads < 1 or D % n_heads:
        raise ValueError(f"{name}: n_heads={n_heads!r} must be a positive int dividing D={D}")
    expected = {"in_w": (3 * D, D), "in_b": (3 * D,), "out_w": (D, D), "out_b": (D,)}
    for arg, arr in zip(expected, (in_w, in_b, out_w, out_b)):
        if arr.shape != expected[arg]:
            raise ValueError(
                f"{name}: {arg} must have shape {expected[arg]} for D={D}, got {arr.shape}"
            )
        if arr.dtype != x.dtype:
            raise ValueError(f"{name}: {arg} has dtype {arr.dtype}, x has {x.dtype}")
    if key_mask is not None:
        key_mask = np.asarray(key_mask)
        if key_mask.shape != (B, T) or key_mask.dtype != np.bool_:
            raise ValueError(
                f"{name}: key_mask must be a ({B}, {T}) bool array, got "
                f"{key_mask.dtype} {key_mask.shape}"
            )
    if not 0.0 <= p < 1.0:
        raise ValueError(f"{name}: dropout p={p!r} must be in [0, 1)")


def attention_forward(x, in_w, in_b, out_w, out_b, n_heads, key_mask=None, p=0.0, rng=None):
    """Multi-head self-attention forward pass (``q = k = v = x``).

    Parameters
    ----------
    x : (B, T, D) float32 or float64
    in_w : (3D, D)
        Fused input projection, rows ``[W_q; W_k; W_v]`` (PyTorch's ``in_proj_weight``).
    in_b : (3D,)
        ``[b_q; b_k; b_v]`` (``in_proj_bias``).
    out_w : (D, D), out_b : (D,)
        Output projection (``out_proj.weight`` / ``.bias``).
    n_heads : int
        ``H``; must divide ``D``.
    key_mask : (B, T) bool or None
        True where the key is a real token, False for padding that no query may attend to
        (the *opposite* of PyTorch's ``key_padding_mask``); None: every key is real.
    p : float
        Dropout probability on the attention weights.
    rng : numpy.random.Generator or None
        Source of the dropout mask; None turns dropout off (evaluation).

    Returns
    -------
    out : (B, T, D)
    cache : AttentionCache
        ``cache.att`` (B, H, T, T) holds the attention weights after the softmax (rows
        sum to 1 over the real keys; a query whose keys are all masked has an all-zero row).

    Notes
    -----
    With ``dh = D / H`` and ``q, k, v`` the thirds of ``x W_in^T + b_in`` split into heads,

    .. math:: A_h = \\mathrm{softmax}\\big(q_h k_h^T / \\sqrt{d_h} + M\\big), \\qquad
              \\mathrm{out} = [\\mathrm{drop}(A_1) v_1, \\dots, \\mathrm{drop}(A_H) v_H]
              W_{out}^T + b_{out}

    where ``M`` is ``-inf`` on masked keys: ``nn.MultiheadAttention`` with the same weights
    and ``key_padding_mask = ~key_mask`` (which gives NaN on a fully masked row, this 0).
    """
    check_attention_inputs("attention_forward", x, in_w, in_b, out_w, out_b, n_heads,
                           key_mask, p)
    B, T, D = x.shape
    key_mask = np.ones((B, T), np.bool_) if key_mask is None else np.ascontiguousarray(key_mask)

    qkv, in_cache = linear_forward(x, in_w, in_b)  # (B, T, 3D)
    q = split_heads(qkv[..., :D], n_heads)  # (B, H, T, dh)
    k = split_heads(qkv[..., D : 2 * D], n_heads)  # (B, H, T, dh)
    v = split_heads(qkv[..., 2 * D :], n_heads)  # (B, H, T, dh)
    scale = x.dtype.type(1.0 / math.sqrt(D // n_heads))

    scores = (q @ k.transpose(0, 1, 3, 2)) * scale  # (B, H, T, T)
    att = masked_softmax(scores, key_mask)  # (B, H, T, T)
    att_drop, drop_cache = dropout_forward(att, p, rng)  # (B, H, T, T)
    y = merge_heads(att_drop @ v)  # (B, T, D)
    out, out_cache = linear_forward(y, out_w, out_b)  # (B, T, D)

    cache = AttentionCache(in_cache, q, k, v, att, att_drop, drop_cache, out_cache)
    return out, cache


def attention_backward(dout, cache):
    """Multi-head self-attention backward pass.

    Parameters
    ----------
    dout : (B, T, D)
        Gradient of the loss w.r.t. ``out``.
    cache : AttentionCache
        From :func:`attention_forward`.

    Returns
    -------
    dx : (B, T, D)
    d_in_w : (3D, D)
    d_in_b : (3D,)
    d_out_w : (D, D)
    d_out_b : (D,)
    """
    # >>> solution
    in_cache, q, k, v, att, att_drop, drop_cache, out_cache = cache
    B, H, T, dh = q.shape
    if dout.shape != (B, T, H * dh):
        raise ValueError(
            f"attention_backward: dout must have shape {(B, T, H * dh)}, got {dout.shape}"
        )
    scale = dout.dtype.type(1.0 / math.sqrt(dh))

    # forward: out = y @ out_w.T + out_b
    dy, d_out_w, d_out_b = linear_backward(dout, out_cache)
    dy = split_heads(dy, H)  # (B, H, T, dh)
    # forward: y = att_drop @ v
    datt_drop = dy @ v.transpose(0, 1, 3, 2)  # (B, H, T, T)
    dv = att_drop.transpose(0, 1, 3, 2) @ dy  # (B, H, T, dh)
    # forward: att_drop = dropout(att)
    datt = dropout_backward(datt_drop, drop_cache)  # (B, H, T, T)
    # forward: att = softmax(scores) over the real keys
    dscores = masked_softmax_backward(datt, att)  # (B, H, T, T)
    # forward: scores = (q @ k^T) * scale
    dscores *= scale
    dq = dscores @ k  # (B, H, T, dh)
    dk = dscores.transpose(0, 1, 3, 2) @ q  # (B, H, T, dh)
    # forward: q, k, v = thirds of qkv, split into heads
    dqkv = np.concatenate([merge_heads(dq), merge_heads(dk), merge_heads(dv)], axis=-1)
    # forward: qkv = x @ in_w.T + in_b
    dx, d_in_w, d_in_b = linear_backward(dqkv, in_cache)  # (B, T, D)
    return dx, d_in_w, d_in_b, d_out_w, d_out_b
    # <<< solution
