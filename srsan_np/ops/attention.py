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

Every product above is a matrix product: the projections are the shared
:mod:`srsan_np.ops.linear` op, and the per-head products ``q k^T`` and ``A v`` are batched
NumPy ``@`` over ``(B, H)``, all BLAS. What is not a product, the softmax over the real
keys and its backward, is a pair of Numba kernels parallel over the batch axis: each
thread owns its ``b`` and writes nothing outside it, so results do not depend on the
thread count. (Writing the products as Numba loops too, llm.c style, measured 10 to 40
times slower than BLAS for T = 20..70 on these machines.) Dropout sits where PyTorch puts
it, on the attention weights after the softmax and before they multiply the values, and
is the shared :mod:`srsan_np.ops.dropout` op.

Queries at the read-out only. SR-SAN reads one position per session (the last click), so
the last encoder layer needs its output there alone: keys and values from every position,
a query from one. ``last`` selects those query positions (``Tq = 1`` instead of ``T``);
every step above is the same with ``Tq`` query rows, and the input projection is done as
its query third (on the selected rows) and its key/value two thirds (on all rows).

Keys and values once per distinct row. Two things make rows of the key/value projection
redundant, and :func:`key_rows` finds both. With a key mask, a padded key gets weight
exactly 0: its key and value never matter, so they are not projected at all. And when
``x`` is the embedding lookup itself (the first layer, no positions added), ``x[b, t]`` is
a function of the item id alone, so positions with one id share one key and one value:
the model passes the ids, and each distinct id is projected once. Batches are padded to
their longest session, so this is most of the projection's work: on Diginetica-sized
batches about a fifth of the positions are real, and in ``faithful`` mode, which has no
mask, every padding position holds item 0 and so shares one row.
"""

from __future__ import annotations

import math
from typing import Any, NamedTuple

import numpy as np
from numba import njit, prange

from .dropout import dropout_backward, dropout_forward
from .embedding import embedding_backward, embedding_forward
from .linear import linear_backward, linear_forward


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


# ---------------------------------------------------------------------------------------
# Numba kernels: the softmax over the real keys, one (b, h, t) row at a time.
# ---------------------------------------------------------------------------------------


@njit(cache=True, parallel=True)
def _masked_softmax_kernel(scores, key_mask):
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
    for b in prange(B):
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


@njit(cache=True, parallel=True)
def _softmax_backward_kernel(datt, att):
    """Gradient of a row softmax: ``dS[s] = A[s] (dA[s] - sum_r A[r] dA[r])``.

    Masked keys have ``A = 0`` and so get ``dS = 0``; a fully masked row is all 0 and
    passes nothing back. Returns ``dscores`` (B, H, Tq, T).
    """
    B, H, Tq, T = att.shape
    dscores = np.empty_like(att)  # (B, H, Tq, T)
    for b in prange(B):
        for h in range(H):
            for t in range(Tq):
                inner = 0.0
                for s in range(T):
                    inner += att[b, h, t, s] * datt[b, h, t, s]
                for s in range(T):
                    dscores[b, h, t, s] = att[b, h, t, s] * (datt[b, h, t, s] - inner)
    return dscores


# ---------------------------------------------------------------------------------------
# The op: validation, the products (BLAS) and the kernels above.
# ---------------------------------------------------------------------------------------


def _split_heads(a, n_heads):
    """(B, T, D) -> (B, H, T, dh), a view."""
    B, T, D = a.shape
    return a.reshape(B, T, n_heads, D // n_heads).transpose(0, 2, 1, 3)


def _merge_heads(a):
    """(B, H, T, dh) -> (B, T, H * dh), heads side by side."""
    B, H, T, dh = a.shape
    return a.transpose(0, 2, 1, 3).reshape(B, T, H * dh)


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
    a generic loop, and a broadcast multiply into the strided halves costs about 1.2 ns an
    element (measured for (100, 2, 1, 15) and (100, 2, 1, 48) float32: 210-430 us for ``@``,
    170 us for the broadcast, 30 us for the loop). Both branches compute the same sum
    (tested).
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
    distinct ones. (NumPy's ``unique`` took twice as long on the ~400 ids of a batch.)"""
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
    With ``dh = D / H`` and ``q, k, v`` the thirds of ``x W_in^T + b_in`` split into heads,

    .. math:: A_h = \\mathrm{softmax}\\big(q_h k_h^T / \\sqrt{d_h} + M\\big), \\qquad
              \\mathrm{out} = [\\mathrm{drop}(A_1) v_1, \\dots, \\mathrm{drop}(A_H) v_H]
              W_{out}^T + b_{out}

    where ``M`` is ``-inf`` on masked keys. Identical to ``nn.MultiheadAttention`` given
    the same weights and ``key_padding_mask = ~key_mask`` (which would give NaN on a fully
    masked row where this gives 0).
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
    q = _split_heads(q, n_heads)  # (B, H, Tq, dh)
    k = _split_heads(kv[..., :D], n_heads)  # (B, H, T, dh)
    v = _split_heads(kv[..., D:], n_heads)  # (B, H, T, dh)
    scale = x.dtype.type(1.0 / math.sqrt(D // n_heads))

    scores = (q @ k.transpose(0, 1, 3, 2)) * scale  # (B, H, Tq, T)
    att = _masked_softmax_kernel(scores, key_mask)  # (B, H, Tq, T)
    att_drop, drop_cache = dropout_forward(att, p, rng)  # (B, H, Tq, T)
    y = _merge_heads(att_drop @ v)  # (B, Tq, D)
    out, out_cache = linear_forward(y, out_w, out_b)  # (B, Tq, D)

    cache = AttentionCache(
        q_cache, kv_cache, rows, last, q, k, v, att, att_drop, drop_cache, out_cache
    )
    return out, cache


def attention_backward(dout, cache):
    """Multi-head self-attention backward pass.

    Parameters
    ----------
    dout : (B, Tq, D)
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
    q_cache, kv_cache, rows, last, q, k, v, att, att_drop, drop_cache, out_cache = cache
    B, H, Tq, dh = q.shape
    if dout.shape != (B, Tq, H * dh):
        raise ValueError(
            f"attention_backward: dout must have shape {(B, Tq, H * dh)}, got {dout.shape}"
        )
    scale = dout.dtype.type(1.0 / math.sqrt(dh))

    # forward: out = y @ out_w.T + out_b
    dy, d_out_w, d_out_b = linear_backward(dout, out_cache)
    dy = _split_heads(dy, H)  # (B, H, T, dh)
    # forward: y = att_drop @ v
    dkv = np.empty((B, k.shape[2], 2 * H * dh), dtype=dout.dtype)  # (B, T, 2D): [dk, dv]
    datt_drop = dy @ v.transpose(0, 1, 3, 2)  # (B, H, Tq, T)
    _query_sum_product(att_drop, dy, out=_split_heads(dkv[..., H * dh:], H))  # dv = att_drop^T dy
    # forward: att_drop = dropout(att)
    datt = np.ascontiguousarray(dropout_backward(datt_drop, drop_cache))  # (B, H, Tq, T)
    # forward: att = softmax(scores) over the real keys
    dscores = _softmax_backward_kernel(datt, att)  # (B, H, Tq, T)
    # forward: scores = (q @ k^T) * scale
    dscores *= scale
    dq = dscores @ k  # (B, H, Tq, dh)
    _query_sum_product(dscores, q, out=_split_heads(dkv[..., : H * dh], H))  # dk = dscores^T q

    # forward: [k, v] = x @ in_w[D:].T + in_b[D:], split into heads
    dx, d_kv_w, d_kv_b = keys_values_backward(dkv, kv_cache, rows)  # (B, T, D)
    # forward: q = select_queries(x, last) @ in_w[:D].T + in_b[:D]
    dxq, d_q_w, d_q_b = linear_backward(_merge_heads(dq), q_cache)  # (B, Tq, D)
    add_query_gradient(dx, dxq, last)
    d_in_w = np.concatenate([d_q_w, d_kv_w])  # (3D, D)
    d_in_b = np.concatenate([d_q_b, d_kv_b])  # (3D,)
    return dx, d_in_w, d_in_b, d_out_w, d_out_b
