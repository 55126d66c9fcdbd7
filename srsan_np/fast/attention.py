"""Multi-head self-attention, fast: the textbook op (:mod:`srsan_np.ops.attention`) with
two shortcuts, each exact, each tested against it (``tests/test_fast_paths.py``).

Queries at the read-out only. SR-SAN reads one position per session (the last click), so
the last encoder layer needs its output there alone: keys and values from every position,
a query from one. ``last`` selects those query positions (``Tq = 1`` instead of ``T``);
every step of the textbook op is the same with ``Tq`` query rows, and the input projection
is done as its query third (on the selected rows) and its key/value two thirds (on all
rows).

Keys and values once per distinct row. Two things make rows of the key/value projection
redundant, and :func:`key_rows` finds both. With a key mask, a padded key gets weight
exactly 0: its key and value never matter, so they are not projected at all. And when
``x`` is the embedding lookup itself (the first layer, no positions added), ``x[b, t]`` is
a function of the item id alone, so positions with one id share one key and one value:
the caller passes the ids, and each distinct id is projected once. Batches are padded to
their longest session, so this is most of the projection's work; in ``faithful`` mode,
which has no mask, every padding position holds item 0 and so shares one row.

The softmax kernels and the head reshapes are the textbook's.
"""

from __future__ import annotations

import math
from typing import Any, NamedTuple

import numpy as np
from numba import njit, prange

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


class AttentionCache(NamedTuple):
    """What :func:`attention_backward` needs, plus the weights the notebooks plot."""

    q_cache: Any           # cache of the query projection xq -> q
    kv_cache: Any          # cache of the key/value projection x -> [k, v]
    key_rows: Any          # (rows, index) from key_rows(), or None: every position
    last: Any              # (B,) query positions, or None: every position is a query
    q: np.ndarray          # (B, H, Tq, dh) queries, not yet scaled
    k: np.ndarray          # (B, H, T, dh) keys
    v: np.ndarray          # (B, H, T, dh) values
    att: np.ndarray        # (B, H, Tq, T) attention weights after the softmax
    att_drop: np.ndarray   # (B, H, Tq, T) the same after dropout (``att`` itself if none)
    drop_cache: Any        # cache of the dropout on the attention weights
    out_cache: Any         # cache of the output projection y -> out


@njit(cache=True, parallel=True)
def _outer_product_kernel(a, b, out):
    """``out[i, h, m, n] = a[i, h, 0, m] b[i, h, 0, n]``, parallel over ``i`` (each thread
    owns its rows of ``out``, which may have any strides)."""
    B, H, M, N = out.shape
    for i in prange(B):
        for h in range(H):
            for m in range(M):
                a_m = a[i, h, 0, m]
                for n in range(N):
                    out[i, h, m, n] = a_m * b[i, h, 0, n]


def _query_sum_product(a, b, out=None):
    """``a^T b`` per head, summed over the queries: (B, H, Tq, M), (B, H, Tq, N) -> (B, H, M, N).

    ``out`` (any strides) receives the result, as in NumPy; the backward pass writes the
    key and value gradients straight into their halves of one (B, T, 2D) array this way.

    With one query (``Tq = 1``, the read-out path) the sum has one term, an outer product,
    done by a Numba loop: NumPy's batched ``@`` with an inner dimension of 1 skips BLAS for
    a generic loop, and a broadcast multiply into the strided halves is slower than the
    loop too. Both branches compute the same sum (tested).
    """
    if a.shape[2] == 1:
        if out is None:
            out = np.empty((a.shape[0], a.shape[1], a.shape[3], b.shape[3]), dtype=a.dtype)
        _outer_product_kernel(a, b, out)
        return out
    return np.matmul(a.transpose(0, 1, 3, 2), b, out=out)  # (B, H, M, Tq) @ (B, H, Tq, N)


def select_queries(x, last):
    """The query rows of ``x`` (B, T, D): all of them (``last`` None) or ``x[b, last[b]]``
    as (B, 1, D)."""
    if last is None:
        return x
    return x[np.arange(x.shape[0]), last][:, None, :]  # (B, 1, D)


def add_query_gradient(dx, dxq, last):
    """Backward of :func:`select_queries`, added into ``dx`` (B, T, D) in place.

    Each ``(b, last[b])`` is one position per row, so the fancy-index ``+=`` drops nothing.
    """
    if last is None:
        dx += dxq
    else:
        dx[np.arange(dx.shape[0]), last] += dxq[:, 0]
    return dx


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


def _check_inputs(x, in_w, in_b, out_w, out_b, n_heads, key_mask, p, last, ids):
    check_attention_inputs("attention_forward", x, in_w, in_b, out_w, out_b, n_heads,
                           key_mask, p)
    B, T, _ = x.shape
    if last is not None:
        last = np.asarray(last)
        if last.shape != (B,) or last.dtype.kind not in "iu" or (
            last.size and (last.min() < 0 or last.max() >= T)
        ):
            raise ValueError(
                f"attention_forward: last must be ({B},) integers in 0..{T - 1}, got "
                f"{last.dtype} {last.shape}"
            )
    if ids is not None:
        ids = np.asarray(ids)
        if ids.shape != (B, T) or ids.dtype.kind not in "iu":
            raise ValueError(
                f"attention_forward: ids must be a ({B}, {T}) integer array, got "
                f"{ids.dtype} {ids.shape}"
            )


def attention_forward(
    x, in_w, in_b, out_w, out_b, n_heads, key_mask=None, p=0.0, rng=None, last=None, ids=None
):
    """Multi-head self-attention forward pass (``q = k = v = x``), with the shortcuts.

    The arguments up to ``rng`` and the results are those of
    :func:`srsan_np.ops.attention.attention_forward`; ``last`` and ``ids`` choose the
    shortcuts.

    Parameters
    ----------
    x, in_w, in_b, out_w, out_b, n_heads, key_mask, p, rng
        As the textbook op.
    last : (B,) int or None
        None: every position queries (``Tq = T``). Given: only position ``last[b]`` of
        row ``b`` does (``Tq = 1``), attending to every key of its row; the output is then
        row ``last[b]`` of the full output.
    ids : (B, T) int or None
        The item ids when ``x`` is their embedding lookup (``x[b, t]`` a function of
        ``ids[b, t]`` alone): keys and values are then projected once per distinct id, from
        its first position, and the gradient ``dx`` of the key/value path goes to that
        position (see :func:`key_rows`). None: every position is projected.

    Returns
    -------
    out : (B, Tq, D)
    cache : AttentionCache
        ``cache.att`` (B, H, Tq, T) holds the attention weights after the softmax (rows
        sum to 1 over the real keys; a query whose keys are all masked has an all-zero row).

    Notes
    -----
    The textbook op's formula, computed for the ``Tq`` query rows only.
    """
    _check_inputs(x, in_w, in_b, out_w, out_b, n_heads, key_mask, p, last, ids)
    B, T, D = x.shape
    rows = key_rows(key_mask, ids, x.shape)  # None: every position projects its own row
    if key_mask is None:
        key_mask = np.ones((B, T), dtype=np.bool_)
    else:
        key_mask = np.ascontiguousarray(key_mask)

    # the fused projection qkv = x in_w^T + in_b, as its query rows and key/value rows
    q, q_cache = linear_forward(select_queries(x, last), in_w[:D], in_b[:D])  # (B, Tq, D)
    kv, kv_cache = keys_values_forward(x, in_w[D:], in_b[D:], rows)  # (B, T, 2D)
    q = split_heads(q, n_heads)  # (B, H, Tq, dh)
    k = split_heads(kv[..., :D], n_heads)  # (B, H, T, dh)
    v = split_heads(kv[..., D:], n_heads)  # (B, H, T, dh)
    scale = x.dtype.type(1.0 / math.sqrt(D // n_heads))

    scores = (q @ k.transpose(0, 1, 3, 2)) * scale  # (B, H, Tq, T)
    att = masked_softmax(scores, key_mask)  # (B, H, Tq, T)
    att_drop, drop_cache = dropout_forward(att, p, rng)  # (B, H, Tq, T)
    y = merge_heads(att_drop @ v)  # (B, Tq, D)
    out, out_cache = linear_forward(y, out_w, out_b)  # (B, Tq, D)

    cache = AttentionCache(
        q_cache, kv_cache, rows, last, q, k, v, att, att_drop, drop_cache, out_cache
    )
    return out, cache


def attention_backward(dout, cache):
    """Multi-head self-attention backward pass, with the shortcuts of the forward.

    ``dout`` is (B, Tq, D), the shape of the forward's output; the gradients returned,
    ``(dx (B, T, D), d_in_w, d_in_b, d_out_w, d_out_b)``, are those of
    :func:`srsan_np.ops.attention.attention_backward`.
    """
    q_cache, kv_cache, rows, last, q, k, v, att, att_drop, drop_cache, out_cache = cache
    B, H, Tq, dh = q.shape
    if dout.shape != (B, Tq, H * dh):
        raise ValueError(
            f"attention_backward: dout must have shape {(B, Tq, H * dh)}, got {dout.shape}"
        )
    scale = dout.dtype.type(1.0 / math.sqrt(dh))

    # forward: out = y @ out_w.T + out_b
    dy, d_out_w, d_out_b = linear_backward(dout, out_cache)
    dy = split_heads(dy, H)  # (B, H, T, dh)
    # forward: y = att_drop @ v
    dkv = np.empty((B, k.shape[2], 2 * H * dh), dtype=dout.dtype)  # (B, T, 2D): [dk, dv]
    datt_drop = dy @ v.transpose(0, 1, 3, 2)  # (B, H, Tq, T)
    _query_sum_product(att_drop, dy, out=split_heads(dkv[..., H * dh:], H))  # dv = att_drop^T dy
    # forward: att_drop = dropout(att)
    datt = np.ascontiguousarray(dropout_backward(datt_drop, drop_cache))  # (B, H, Tq, T)
    # forward: att = softmax(scores) over the real keys
    dscores = masked_softmax_backward(datt, att)  # (B, H, Tq, T)
    # forward: scores = (q @ k^T) * scale
    dscores *= scale
    dq = dscores @ k  # (B, H, Tq, dh)
    _query_sum_product(dscores, q, out=split_heads(dkv[..., : H * dh], H))  # dk = dscores^T q

    # forward: [k, v] = x @ in_w[D:].T + in_b[D:], split into heads
    dx, d_kv_w, d_kv_b = keys_values_backward(dkv, kv_cache, rows)  # (B, T, D)
    # forward: q = select_queries(x, last) @ in_w[:D].T + in_b[:D]
    dxq, d_q_w, d_q_b = linear_backward(merge_heads(dq), q_cache)  # (B, Tq, D)
    add_query_gradient(dx, dxq, last)
    d_in_w = np.concatenate([d_q_w, d_kv_w])  # (3D, D)
    d_in_b = np.concatenate([d_q_b, d_kv_b])  # (3D,)
    return dx, d_in_w, d_in_b, d_out_w, d_out_b
