"""Multi-head self-attention, fast: the textbook op (:mod:`srsan_np.ops.attention`) with
two shortcuts, each exact, each tested against it (``tests/test_fast_paths.py``).

The read-out's attention, with the keys and values folded away. SR-SAN reads one position
per session (the last click), so the last encoder layer needs one query per session:
``B`` query rows instead of ``B T``. With one query, the key and value projections need not
be applied to the ``T`` positions at all. Per head ``h``, with ``k_s = W_k x_s + b_k``::

    q . k_s = (W_k^T q) . x_s + q . b_k
    sum_s a_s v_s = W_v (sum_s a_s x_s) + (sum_s a_s) b_v

so :func:`readout_attention_forward` maps the query back through ``W_k`` once (``B H``
vectors of width ``D``), takes its scores against the inputs ``x`` themselves, mixes the
inputs with the attention weights, and applies ``W_v`` to the ``B H`` mixtures: ``O(B H T D)``
work where projecting the keys and values costs ``O(B T D^2)``, and the same ``B H T``
weights. docs/derivations.md, section 13.1, derives it and its backward.

Keys and values once per distinct row, for the layers before the last (every position
queries there). Two things make rows of the key/value projection redundant, and
:func:`key_rows` finds both. With a key mask, a padded key gets weight exactly 0: its key
and value never matter, so they are not projected at all. And when ``x`` is the embedding
lookup itself (the first layer, no positions added), ``x[b, t]`` is a function of the item
id alone, so positions with one id share one key and one value: the caller passes the ids,
and each distinct id is projected once. In ``faithful`` mode, which has no mask, every
padding position holds item 0 and so shares one row.

The softmax kernels and the head reshapes are the textbook's. The read-out's three loops
over ``(B, H, T, D)`` are small Numba kernels on the calling thread: at ``B = 100`` their
work is a few hundred thousand multiply-adds, less than waking other threads costs.
"""

from __future__ import annotations

import math
from typing import Any, NamedTuple

import numpy as np
from numba import njit

from ..ops.attention import (
    check_attention_inputs,
    masked_softmax,
    masked_softmax_backward,
    merge_heads,
    split_heads,
)
from ..ops.dropout import dropout_backward, dropout_forward
from ..ops.embedding import embedding_backward, embedding_forward
from ..ops.linear import linear_backward, linear_forward

__all__ = [
    "attention_forward",
    "attention_backward",
    "readout_attention_forward",
    "readout_attention_backward",
    "key_rows",
]


class AttentionCache(NamedTuple):
    """What :func:`attention_backward` needs, plus the weights the notebooks plot."""

    q_cache: Any           # cache of the query projection x -> q
    kv_cache: Any          # cache of the key/value projection x -> [k, v]
    key_rows: Any          # (rows, index) from key_rows(), or None: every position
    q: np.ndarray          # (B, H, T, dh) queries, not yet scaled
    k: np.ndarray          # (B, H, T, dh) keys
    v: np.ndarray          # (B, H, T, dh) values
    att: np.ndarray        # (B, H, T, T) attention weights after the softmax
    att_drop: np.ndarray   # (B, H, T, T) the same after dropout (``att`` itself if none)
    drop_cache: Any        # cache of the dropout on the attention weights
    out_cache: Any         # cache of the output projection y -> out


class ReadoutAttentionCache(NamedTuple):
    """What :func:`readout_attention_backward` needs, plus the weights."""

    x: np.ndarray          # (B, T, D) the input: keys and values are read from it
    last: np.ndarray       # (B,) the query positions
    q_cache: Any           # cache of the query projection x[b, last[b]] -> q
    q: np.ndarray          # (B, H, dh) queries, not yet scaled
    qk: np.ndarray         # (B, H, D) c W_k,h^T q_h, c = 1 / sqrt(dh): the query against x
    att: np.ndarray        # (B, H, 1, T) attention weights after the softmax
    att_drop: np.ndarray   # (B, H, 1, T) the same after dropout (``att`` itself if none)
    drop_cache: Any        # cache of the dropout on the attention weights
    mix: np.ndarray        # (B, H, D) sum_s att_drop[s] x[s], the inputs mixed per head
    mass: np.ndarray       # (B, H) sum_s att_drop[s] (1 without dropout, 0 if all masked)
    kv_w: np.ndarray       # (2D, D) [W_k; W_v], the rows of in_w the fold replaces
    kv_b: np.ndarray       # (2D,) [b_k; b_v]
    out_cache: Any         # cache of the output projection y -> out


# ------------------------------------------------------------- the read-out's kernels

@njit(cache=True, fastmath={"reassoc", "contract"})
def _dot_positions(w, x, c):
    """``out[b, h, s] = w[b, h] . x[b, s] + c[b, h]``: (B, H, D), (B, T, D), (B, H) ->
    (B, H, T).

    Only arithmetic here, so the one fast-math licence that lets LLVM vectorise a sum
    (reassociating it) is given; it changes the order the ``D`` terms are added in, the
    same on every run.
    """
    B, H, D = w.shape
    T = x.shape[1]
    out = np.empty((B, H, T), dtype=w.dtype)
    for b in range(B):
        for h in range(H):
            for s in range(T):
                total = c[b, h]
                for d in range(D):
                    total += w[b, h, d] * x[b, s, d]
                out[b, h, s] = total
    return out


@njit(cache=True)
def _mix_positions(a, x):
    """``out[b, h] = sum_s a[b, h, s] x[b, s]``: (B, H, T), (B, T, D) -> (B, H, D)."""
    B, H, T = a.shape
    D = x.shape[2]
    out = np.zeros((B, H, D), dtype=x.dtype)
    for b in range(B):
        for h in range(H):
            for s in range(T):
                weight = a[b, h, s]
                for d in range(D):
                    out[b, h, d] += weight * x[b, s, d]
    return out


@njit(cache=True)
def _add_mix_heads(a, w, out):
    """``out[b, s] += sum_h a[b, h, s] w[b, h]``: (B, H, T), (B, H, D) into (B, T, D)."""
    B, H, T = a.shape
    D = w.shape[2]
    for b in range(B):
        for s in range(T):
            for h in range(H):
                weight = a[b, h, s]
                for d in range(D):
                    out[b, s, d] += weight * w[b, h, d]


def _by_head(a, W, transpose=False):
    """Per head ``h``: ``a[:, h] @ W_h`` (or ``@ W_h^T``), with ``W_h`` the rows
    ``h dh .. (h+1) dh - 1`` of ``W`` (D, D), as the heads split a projection's output.

    ``a`` is (B, H, dh) -> (B, H, D), or with ``transpose`` (B, H, D) -> (B, H, dh).
    """
    H = a.shape[1]
    W_h = W.reshape(H, -1, W.shape[1])  # (H, dh, D)
    if transpose:
        W_h = W_h.transpose(0, 2, 1)  # (H, D, dh)
    return np.matmul(a.transpose(1, 0, 2), W_h).transpose(1, 0, 2)  # (B, H, *)


def _sum_by_head(a, b):
    """Per head ``h``: ``sum_n a[n, h]^T b[n, h]``: (B, H, M), (B, H, N) -> (H M, N)."""
    product = np.matmul(a.transpose(1, 2, 0), b.transpose(1, 0, 2))  # (H, M, N)
    return product.reshape(-1, b.shape[2])


@njit(cache=True)
def _first_of_each(values):
    """``np.unique(values, return_index=True, return_inverse=True)[1:]`` in one pass after
    a stable sort: ``first`` (G,) the position of each distinct value's first occurrence,
    in increasing order of the values, and ``group`` (N,) the rank of each value among the
    distinct ones, without the extra passes of NumPy's ``unique``."""
    order = np.argsort(values, kind="mergesort")  # stable: the first occurrence first
    first = np.empty(len(values), dtype=np.int64)
    group = np.empty(len(values), dtype=np.int64)
    g = -1
    for k in range(len(order)):
        i = order[k]
        if k == 0 or values[i] != values[order[k - 1]]:
            g += 1
            first[g] = i
        group[i] = g
    return first[: g + 1], group


def key_rows(key_mask, ids, shape):
    """Which rows of ``x`` (B, T, D) the keys and values are projected from.

    Parameters
    ----------
    key_mask : (B, T) bool or None
        True on real keys; a masked key needs no key or value (its weight is exactly 0).
    ids : (B, T) int or None
        Given when ``x[b, t]`` is a function of ``ids[b, t]`` alone (``x`` is an embedding
        lookup): positions with one id then share one key and one value.
    shape : (B, T, D), the shape of ``x``

    Returns
    -------
    None when every position needs its own row (no mask, no ids), else ``(rows, index)``:
    ``rows`` (G,) the flat positions ``b * T + t`` projected, one per distinct key, and
    ``index`` (B, T) int64 in ``0..G``, the projected row each position reads (``G``, one
    past the last, is an all-zero row: a masked key).
    """
    B, T, _ = shape
    if key_mask is None and ids is None:
        return None
    needed = np.flatnonzero(key_mask) if key_mask is not None else np.arange(B * T)
    if ids is None:
        rows, group = needed, np.arange(len(needed))
    else:  # the first position of each distinct id stands for all of them
        first, group = _first_of_each(ids.reshape(-1)[needed])
        rows = needed[first]
    index = np.full(B * T, len(rows), dtype=np.int64)  # masked keys read the zero row
    index[needed] = group
    return rows, index.reshape(B, T)


def keys_values_forward(x, w, b, rows):
    """The key/value projection ``[k, v] = x w^T + b``: (B, T, D) -> (B, T, 2D).

    ``rows`` None: at every position. Given (from :func:`key_rows`): the projection of the
    ``G`` rows ``rows[0]`` only, then looked up per position with the embedding op (a table
    of those ``G`` rows and a zero row for the masked keys). A masked key gets attention
    weight exactly 0, so its key and value never reach the output and their gradients are
    exactly 0; positions sharing an id share their input row, so their keys and values are
    equal. Both are tested against the all-rows projection.
    """
    if rows is None:
        return linear_forward(x, w, b)
    B, T, D = x.shape
    kv_rows, linear_cache = linear_forward(x.reshape(B * T, D)[rows[0]], w, b)  # (G, 2D)
    table = np.concatenate([kv_rows, np.zeros((1, w.shape[0]), dtype=x.dtype)])  # (G + 1, 2D)
    kv, lookup_cache = embedding_forward(rows[1], table)  # (B, T, 2D)
    return kv, (linear_cache, lookup_cache)


def keys_values_backward(dkv, cache, rows):
    """Backward of :func:`keys_values_forward`: ``(dx (B, T, D), dw, db)``.

    With ``rows``: the lookup's backward sums the gradients of the positions that share a
    projected row (the embedding op's scatter-add), and ``dx`` is nonzero only at the
    projected positions ``rows[0]``: the forward read nothing else. (When ``x`` is an
    embedding lookup, the lookup's own backward then sums ``dx`` by id, which gives the
    table the same gradient as projecting every position would.)
    """
    if rows is None:
        return linear_backward(dkv, cache)
    B, T, _ = dkv.shape
    linear_cache, lookup_cache = cache
    dtable = embedding_backward(dkv, lookup_cache)  # (G + 1, 2D)
    dx_rows, dw, db = linear_backward(dtable[:-1], linear_cache)  # (G, D); the zero row is no one's
    dx = np.zeros((B * T, dx_rows.shape[1]), dtype=dkv.dtype)  # (B T, D)
    dx[rows[0]] = dx_rows
    return dx.reshape(B, T, dx_rows.shape[1]), dw, db


def _check_inputs(name, x, in_w, in_b, out_w, out_b, n_heads, key_mask, p, last=None,
                  ids=None):
    check_attention_inputs(name, x, in_w, in_b, out_w, out_b, n_heads, key_mask, p)
    B, T, _ = x.shape
    if last is not None:
        last = np.asarray(last)
        if last.shape != (B,) or last.dtype.kind not in "iu" or (
            last.size and (last.min() < 0 or last.max() >= T)
        ):
            raise ValueError(
                f"{name}: last must be ({B},) integers in 0..{T - 1}, got "
                f"{last.dtype} {last.shape}"
            )
    if ids is not None:
        ids = np.asarray(ids)
        if ids.shape != (B, T) or ids.dtype.kind not in "iu":
            raise ValueError(
                f"{name}: ids must be a ({B}, {T}) integer array, got {ids.dtype} {ids.shape}"
            )


def attention_forward(x, in_w, in_b, out_w, out_b, n_heads, key_mask=None, p=0.0, rng=None,
                      ids=None):
    """Multi-head self-attention forward pass at every position, keys and values once per
    distinct row.

    Parameters
    ----------
    x, in_w, in_b, out_w, out_b, n_heads, key_mask, p, rng
        As :func:`srsan_np.ops.attention.attention_forward`.
    ids : (B, T) int or None
        The item ids when ``x`` is their embedding lookup (``x[b, t]`` a function of
        ``ids[b, t]`` alone): keys and values are then projected once per distinct id, from
        its first position, and the gradient ``dx`` of the key/value path goes to that
        position (see :func:`key_rows`). None: every real position is projected.

    Returns
    -------
    out : (B, T, D)
    cache : AttentionCache
        ``cache.att`` (B, H, T, T), as the textbook's.
    """
    _check_inputs("attention_forward", x, in_w, in_b, out_w, out_b, n_heads, key_mask, p,
                  ids=ids)
    B, T, D = x.shape
    rows = key_rows(key_mask, ids, x.shape)  # None: every position projects its own row
    key_mask = np.ones((B, T), np.bool_) if key_mask is None else np.ascontiguousarray(key_mask)

    # the fused projection qkv = x in_w^T + in_b, as its query rows and key/value rows
    q, q_cache = linear_forward(x, in_w[:D], in_b[:D])  # (B, T, D)
    kv, kv_cache = keys_values_forward(x, in_w[D:], in_b[D:], rows)  # (B, T, 2D)
    q = split_heads(q, n_heads)  # (B, H, T, dh)
    k = split_heads(kv[..., :D], n_heads)  # (B, H, T, dh)
    v = split_heads(kv[..., D:], n_heads)  # (B, H, T, dh)
    scale = x.dtype.type(1.0 / math.sqrt(D // n_heads))

    scores = (q @ k.transpose(0, 1, 3, 2)) * scale  # (B, H, T, T)
    att = masked_softmax(scores, key_mask)  # (B, H, T, T)
    att_drop, drop_cache = dropout_forward(att, p, rng)  # (B, H, T, T)
    y = merge_heads(att_drop @ v)  # (B, T, D)
    out, out_cache = linear_forward(y, out_w, out_b)  # (B, T, D)

    cache = AttentionCache(
        q_cache, kv_cache, rows, q, k, v, att, att_drop, drop_cache, out_cache
    )
    return out, cache


def attention_backward(dout, cache):
    """Backward of :func:`attention_forward`: ``(dx (B, T, D), d_in_w, d_in_b, d_out_w,
    d_out_b)``, those of :func:`srsan_np.ops.attention.attention_backward`."""
    q_cache, kv_cache, rows, q, k, v, att, att_drop, drop_cache, out_cache = cache
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
    datt = np.ascontiguousarray(dropout_backward(datt_drop, drop_cache))  # (B, H, T, T)
    # forward: att = softmax(scores) over the real keys
    dscores = masked_softmax_backward(datt, att)  # (B, H, T, T)
    # forward: scores = (q @ k^T) * scale
    dscores *= scale
    dq = dscores @ k  # (B, H, T, dh)
    dk = dscores.transpose(0, 1, 3, 2) @ q  # (B, H, T, dh)

    # forward: [k, v] = x @ in_w[D:].T + in_b[D:], split into heads
    dkv = np.concatenate([merge_heads(dk), merge_heads(dv)], axis=-1)  # (B, T, 2D)
    dx, d_kv_w, d_kv_b = keys_values_backward(dkv, kv_cache, rows)  # (B, T, D)
    # forward: q = x @ in_w[:D].T + in_b[:D]
    dxq, d_q_w, d_q_b = linear_backward(merge_heads(dq), q_cache)  # (B, T, D)
    dx += dxq
    d_in_w = np.concatenate([d_q_w, d_kv_w])  # (3D, D)
    d_in_b = np.concatenate([d_q_b, d_kv_b])  # (3D,)
    return dx, d_in_w, d_in_b, d_out_w, d_out_b


def readout_attention_forward(x, in_w, in_b, out_w, out_b, n_heads, key_mask, p, rng, last):
    """The attention's output at position ``last[b]`` of each row, keys and values folded
    into the query.

    Parameters
    ----------
    x, in_w, in_b, out_w, out_b, n_heads, key_mask, p, rng
        As :func:`srsan_np.ops.attention.attention_forward`.
    last : (B,) int
        The query position of each row; it attends to every real key of its row.

    Returns
    -------
    out : (B, D)
        ``out[b]`` equals the textbook op's ``out[b, last[b]]``.
    cache : ReadoutAttentionCache
        ``cache.att`` (B, H, 1, T) are the attention weights, the textbook's rows at
        ``last``.

    Notes
    -----
    Per head ``h`` and row ``b``, with ``q = W_q x[last] + b_q`` split into heads and
    ``c = 1 / sqrt(dh)``::

        qk   = c W_k,h^T q_h                  (D,)   the query, mapped back through W_k
        S[s] = qk . x[s] + c q_h . b_k,h             = c q_h . k_h[s]
        A    = softmax over the real keys of S;  Ad = dropout(A)
        mix  = sum_s Ad[s] x[s],  mass = sum_s Ad[s]
        y_h  = W_v,h mix + mass b_v,h                = sum_s Ad[s] v_h[s]
        out  = [y_1, ..., y_H] W_out^T + b_out
    """
    _check_inputs("readout_attention_forward", x, in_w, in_b, out_w, out_b, n_heads,
                  key_mask, p, last=last)
    B, T, D = x.shape
    H = n_heads
    key_mask = np.ones((B, T), np.bool_) if key_mask is None else np.ascontiguousarray(key_mask)
    w_k, w_v = in_w[D:2 * D], in_w[2 * D:]
    b_k, b_v = in_b[D:2 * D].reshape(H, -1), in_b[2 * D:].reshape(H, -1)  # (H, dh)
    scale = x.dtype.type(1.0 / math.sqrt(D // H))

    q, q_cache = linear_forward(x[np.arange(B), last], in_w[:D], in_b[:D])  # (B, D)
    q = q.reshape(B, H, -1)  # (B, H, dh)
    qk = np.ascontiguousarray(_by_head(q, w_k)) * scale  # (B, H, D)
    scores = _dot_positions(qk, x, (q * b_k).sum(axis=2) * scale)  # (B, H, T)
    att = masked_softmax(scores[:, :, None], key_mask)  # (B, H, 1, T)
    att_drop, drop_cache = dropout_forward(att, p, rng)  # (B, H, 1, T)
    mix = _mix_positions(att_drop[:, :, 0], x)  # (B, H, D)
    mass = att_drop[:, :, 0].sum(axis=2)  # (B, H)
    y = _by_head(mix, w_v, transpose=True) + mass[:, :, None] * b_v  # (B, H, dh)
    out, out_cache = linear_forward(y.reshape(B, D), out_w, out_b)  # (B, D)

    cache = ReadoutAttentionCache(x, last, q_cache, q, qk, att, att_drop, drop_cache, mix,
                                  mass, in_w[D:], in_b[D:], out_cache)
    return out, cache


def readout_attention_backward(dout, cache):
    """Backward of :func:`readout_attention_forward`: ``(dx (B, T, D), d_in_w, d_in_b,
    d_out_w, d_out_b)``, the textbook op's gradients given ``dout`` at ``last`` and 0
    elsewhere.

    Notes
    -----
    The forward's lines in reverse (docs/derivations.md, section 13.1); ``dx`` gets the
    query's gradient at ``last`` and, at every position, what the scores and the mixture
    read from it: ``dx[s] = sum_h dS_h[s] qk_h + Ad_h[s] dmix_h``.
    """
    x, last, q_cache, q, qk, att, att_drop, drop_cache, mix, mass, kv_w, kv_b, out_cache = cache
    B, T, D = x.shape
    H = q.shape[1]
    if dout.shape != (B, D):
        raise ValueError(
            f"readout_attention_backward: dout must have shape {(B, D)}, got {dout.shape}"
        )
    w_k, w_v = kv_w[:D], kv_w[D:]
    b_k, b_v = kv_b[:D].reshape(H, -1), kv_b[D:].reshape(H, -1)  # (H, dh)
    scale = x.dtype.type(1.0 / math.sqrt(D // H))

    # forward: out = y @ out_w.T + out_b
    dy, d_out_w, d_out_b = linear_backward(dout, out_cache)
    dy = dy.reshape(B, H, -1)  # (B, H, dh)
    # forward: y_h = W_v,h mix_h + mass_h b_v,h
    d_w_v = _sum_by_head(dy, mix)  # (D, D)
    d_b_v = (mass[:, :, None] * dy).sum(axis=0).reshape(-1)  # (D,)
    dmix = np.ascontiguousarray(_by_head(dy, w_v))  # (B, H, D)
    dmass = (dy * b_v).sum(axis=2)  # (B, H)
    # forward: mix = sum_s Ad[s] x[s], mass = sum_s Ad[s]
    datt_drop = _dot_positions(dmix, x, dmass)[:, :, None]  # (B, H, 1, T)
    # forward: Ad = dropout(A); A = softmax(S) over the real keys
    datt = np.ascontiguousarray(dropout_backward(datt_drop, drop_cache))
    dscores = masked_softmax_backward(datt, att)[:, :, 0]  # (B, H, T)
    # forward: S[s] = qk . x[s] + c q . b_k
    dqk = _mix_positions(dscores, x)  # (B, H, D)
    dq_bias = dscores.sum(axis=2) * scale  # (B, H) d(q_h . b_k,h) = c sum_s dS[s]
    dx = np.zeros_like(x)  # (B, T, D)
    _add_mix_heads(dscores, qk, dx)
    _add_mix_heads(np.ascontiguousarray(att_drop[:, :, 0]), dmix, dx)
    # forward: qk = c W_k,h^T q_h
    dq = _by_head(dqk, w_k, transpose=True) * scale + dq_bias[:, :, None] * b_k  # (B, H, dh)
    d_w_k = _sum_by_head(q, dqk) * scale  # (D, D)
    d_b_k = (dq_bias[:, :, None] * q).sum(axis=0).reshape(-1)  # (D,)
    # forward: q = x[b, last[b]] @ in_w[:D].T + in_b[:D]
    dxq, d_w_q, d_b_q = linear_backward(dq.reshape(B, D), q_cache)  # (B, D)
    dx[np.arange(B), last] += dxq  # one position per row: the fancy-index += drops nothing
    d_in_w = np.concatenate([d_w_q, d_w_k, d_w_v])  # (3D, D)
    d_in_b = np.concatenate([d_b_q, d_b_k, d_b_v])  # (3D,)
    return dx, d_in_w, d_in_b, d_out_w, d_out_b
