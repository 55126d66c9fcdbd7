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

The two projections are the shared :mod:`srsan_np.ops.linear` op (BLAS through NumPy's
``@``). The middle
(scores, masked softmax, weighted sum) is a set of Numba kernels that loop over
``(b, h, t, s)`` the way llm.c does, parallel over the batch axis: each thread owns its
``b`` and writes nothing outside it, so the results do not depend on the thread count.
Dropout sits where PyTorch puts it, on the attention weights after the softmax and before
they multiply the values, and is the shared :mod:`srsan_np.ops.dropout` op.
"""

from __future__ import annotations

import math
from typing import Any, NamedTuple

import numpy as np
from numba import njit, prange

from .dropout import dropout_backward, dropout_forward
from .linear import linear_backward, linear_forward


class AttentionCache(NamedTuple):
    """What :func:`attention_backward` needs, plus the weights the notebooks plot."""

    in_cache: Any          # cache of the input projection x -> qkv
    q: np.ndarray          # (B, T, D) queries, heads side by side, not yet scaled
    k: np.ndarray          # (B, T, D) keys
    v: np.ndarray          # (B, T, D) values
    att: np.ndarray        # (B, H, T, T) attention weights after the softmax
    att_drop: np.ndarray   # (B, H, T, T) the same after dropout (``att`` itself if none)
    drop_cache: Any        # cache of the dropout on the attention weights
    out_cache: Any         # cache of the output projection y -> out


# ---------------------------------------------------------------------------------------
# Numba kernels: one (b, h) slice at a time, the batch axis in parallel.
# ---------------------------------------------------------------------------------------


@njit(cache=True, parallel=True)
def _softmax_scores_kernel(q, k, key_mask, n_heads):
    """Scaled scores and their softmax over the real keys.

    Parameters
    ----------
    q, k : (B, T, D) float arrays
    key_mask : (B, T) bool, True where the key is a real token
    n_heads : int

    Returns
    -------
    att : (B, H, T, T), ``att[b, h, t, s] = exp(S - m) / sum_{real s'} exp(S' - m)`` on
        real keys ``s`` (``m`` the row maximum, for stability), 0 on masked keys. A row
        whose keys are all masked stays all 0 instead of the 0/0 = NaN of the formula.
    """
    B, T, D = q.shape
    dh = D // n_heads
    scale = 1.0 / math.sqrt(dh)
    att = np.zeros((B, n_heads, T, T), dtype=q.dtype)  # (B, H, T, T)
    for b in prange(B):
        for h in range(n_heads):
            lo = h * dh
            for t in range(T):
                row = att[b, h, t]
                m = -np.inf
                for s in range(T):
                    if key_mask[b, s]:
                        dot = 0.0
                        for i in range(lo, lo + dh):
                            dot += q[b, t, i] * k[b, s, i]
                        row[s] = dot * scale
                        m = max(m, row[s])
                if m == -np.inf:
                    continue  # no real key: the row stays 0
                total = 0.0
                for s in range(T):
                    if key_mask[b, s]:
                        row[s] = math.exp(row[s] - m)
                        total += row[s]
                for s in range(T):
                    row[s] /= total
    return att


@njit(cache=True, parallel=True)
def _weighted_sum_kernel(att, v):
    """``y[b, t, h-block] = sum_s att[b, h, t, s] v[b, s, h-block]``: (B, T, D)."""
    B, H, T, _ = att.shape
    D = v.shape[2]
    dh = D // H
    y = np.zeros((B, T, D), dtype=v.dtype)  # (B, T, D)
    for b in prange(B):
        for h in range(H):
            lo = h * dh
            for t in range(T):
                for s in range(T):
                    a = att[b, h, t, s]
                    for i in range(lo, lo + dh):
                        y[b, t, i] += a * v[b, s, i]
    return y


@njit(cache=True, parallel=True)
def _weighted_sum_backward_kernel(dy, att, v):
    """Gradients of ``y = sum_s att[.., t, s] v[s]`` w.r.t. ``att`` and ``v``.

    Returns ``(datt (B, H, T, T), dv (B, T, D))``.
    """
    B, H, T, _ = att.shape
    D = v.shape[2]
    dh = D // H
    datt = np.zeros((B, H, T, T), dtype=v.dtype)  # (B, H, T, T)
    dv = np.zeros((B, T, D), dtype=v.dtype)  # (B, T, D)
    for b in prange(B):
        for h in range(H):
            lo = h * dh
            for t in range(T):
                for s in range(T):
                    # forward: y[t, i] += att[t, s] * v[s, i]
                    # so:      datt[t, s] += dy[t, i] * v[s, i];  dv[s, i] += att[t, s] * dy[t, i]
                    a = att[b, h, t, s]
                    g = 0.0
                    for i in range(lo, lo + dh):
                        g += dy[b, t, i] * v[b, s, i]
                        dv[b, s, i] += a * dy[b, t, i]
                    datt[b, h, t, s] = g
    return datt, dv


@njit(cache=True, parallel=True)
def _softmax_scores_backward_kernel(datt, att, q, k):
    """Gradients through the softmax and the scaled scores w.r.t. ``q`` and ``k``.

    Softmax backward per row: ``dS[s] = A[s] (dA[s] - sum_r A[r] dA[r])``. Masked keys have
    ``A = 0`` and so get ``dS = 0``; a fully masked row is all 0 and passes nothing back.
    Then ``S[t, s] = scale q[t] . k[s]`` gives ``dq[t] += scale dS[t, s] k[s]`` and
    ``dk[s] += scale dS[t, s] q[t]``.

    Returns ``(dq, dk)``, each (B, T, D).
    """
    B, H, T, _ = att.shape
    D = q.shape[2]
    dh = D // H
    scale = 1.0 / math.sqrt(dh)
    dq = np.zeros((B, T, D), dtype=q.dtype)  # (B, T, D)
    dk = np.zeros((B, T, D), dtype=q.dtype)  # (B, T, D)
    for b in prange(B):
        for h in range(H):
            lo = h * dh
            for t in range(T):
                # forward: A[t, s] = exp(S[t, s]) / sum_r exp(S[t, r])
                inner = 0.0
                for s in range(T):
                    inner += att[b, h, t, s] * datt[b, h, t, s]
                for s in range(T):
                    ds = att[b, h, t, s] * (datt[b, h, t, s] - inner) * scale
                    # forward: S[t, s] = scale * sum_i q[t, i] k[s, i]
                    for i in range(lo, lo + dh):
                        dq[b, t, i] += ds * k[b, s, i]
                        dk[b, s, i] += ds * q[b, t, i]
    return dq, dk


# ---------------------------------------------------------------------------------------
# The op: validation and the projections in Python, the middle in the kernels above.
# ---------------------------------------------------------------------------------------


def _check_inputs(x, in_w, in_b, out_w, out_b, n_heads, key_mask, p):
    if x.ndim != 3:
        raise ValueError(f"attention_forward: x must be (B, T, D), got shape {x.shape}")
    B, T, D = x.shape
    if not isinstance(n_heads, (int, np.integer)) or n_heads < 1 or D % n_heads:
        raise ValueError(
            f"attention_forward: n_heads={n_heads!r} must be a positive int dividing D={D}"
        )
    expected = {"in_w": (3 * D, D), "in_b": (3 * D,), "out_w": (D, D), "out_b": (D,)}
    for name, arr in zip(expected, (in_w, in_b, out_w, out_b)):
        if arr.shape != expected[name]:
            raise ValueError(
                f"attention_forward: {name} must have shape {expected[name]} for D={D}, "
                f"got {arr.shape}"
            )
        if arr.dtype != x.dtype:
            raise ValueError(
                f"attention_forward: {name} has dtype {arr.dtype}, x has {x.dtype}"
            )
    if key_mask is not None:
        key_mask = np.asarray(key_mask)
        if key_mask.shape != (B, T) or key_mask.dtype != np.bool_:
            raise ValueError(
                f"attention_forward: key_mask must be a ({B}, {T}) bool array, got "
                f"{key_mask.dtype} {key_mask.shape}"
            )
    if not 0.0 <= p < 1.0:
        raise ValueError(f"attention_forward: dropout p={p!r} must be in [0, 1)")


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
        True where the key is a real token, False for padding that no query may attend to.
        This is the *opposite* of PyTorch's ``key_padding_mask`` (there True = ignore).
        None: every key is attended to.
    p : float
        Dropout probability on the attention weights.
    rng : numpy.random.Generator or None
        Source of the dropout mask; None turns dropout off (evaluation).

    Returns
    -------
    out : (B, T, D)
    cache : AttentionCache
        ``cache.att`` (B, H, T, T) holds the attention weights after the softmax (rows sum
        to 1 over the real keys; a query whose keys are all masked has an all-zero row).

    Notes
    -----
    With ``dh = D / H`` and ``q, k, v`` the thirds of ``x W_in^T + b_in`` split into heads,

    .. math:: A_h = \\mathrm{softmax}\\big(q_h k_h^T / \\sqrt{d_h} + M\\big), \\qquad
              \\mathrm{out} = [\\mathrm{drop}(A_1) v_1, \\dots, \\mathrm{drop}(A_H) v_H]
              W_{out}^T + b_{out}

    where ``M`` is ``-inf`` on masked keys. Identical to ``nn.MultiheadAttention`` given
    the same weights and ``key_padding_mask = ~key_mask`` (which would give NaN on a fully
    masked row where this gives 0).
    """
    _check_inputs(x, in_w, in_b, out_w, out_b, n_heads, key_mask, p)
    B, T, D = x.shape
    if key_mask is None:
        key_mask = np.ones((B, T), dtype=np.bool_)
    key_mask = np.ascontiguousarray(key_mask)

    qkv, in_cache = linear_forward(x, in_w, in_b)  # (B, T, 3D)
    q = np.ascontiguousarray(qkv[..., :D])  # (B, T, D)
    k = np.ascontiguousarray(qkv[..., D : 2 * D])  # (B, T, D)
    v = np.ascontiguousarray(qkv[..., 2 * D :])  # (B, T, D)

    att = _softmax_scores_kernel(q, k, key_mask, n_heads)  # (B, H, T, T)
    att_drop, drop_cache = dropout_forward(att, p, rng)  # (B, H, T, T)
    att_drop = np.ascontiguousarray(att_drop)
    y = _weighted_sum_kernel(att_drop, v)  # (B, T, D)
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
    in_cache, q, k, v, att, att_drop, drop_cache, out_cache = cache
    if dout.shape != q.shape:
        raise ValueError(f"attention_backward: dout must have shape {q.shape}, got {dout.shape}")

    # forward: out = y @ out_w.T + out_b
    dy, d_out_w, d_out_b = linear_backward(dout, out_cache)
    dy = np.ascontiguousarray(dy)  # (B, T, D)

    # forward: y = att_drop @ v, per head
    datt_drop, dv = _weighted_sum_backward_kernel(dy, att_drop, v)
    # forward: att_drop = dropout(att)
    datt = np.ascontiguousarray(dropout_backward(datt_drop, drop_cache))  # (B, H, T, T)
    # forward: att = softmax(q k^T / sqrt(dh))
    dq, dk = _softmax_scores_backward_kernel(datt, att, q, k)

    # forward: qkv = x @ in_w.T + in_b, then split into q, k, v
    dqkv = np.concatenate([dq, dk, dv], axis=-1)  # (B, T, 3D)
    dx, d_in_w, d_in_b = linear_backward(dqkv, in_cache)
    return dx, d_in_w, d_in_b, d_out_w, d_out_b
