"""Item embedding: a row lookup in the table ``W`` of shape ``(V + 1, D)``.

Row 0 is the padding id; rows 1..V are the items. SR-SAN ties this table to the output
layer (Fang, arXiv 2102.01922, Eq. 9: scores are dot products with the same embeddings), so
the model adds this gradient to the one from :mod:`srsan_np.ops.scoring`.
"""

from __future__ import annotations

from typing import NamedTuple

import numpy as np
from numba import njit

__all__ = ["EmbeddingCache", "embedding_forward", "embedding_backward"]


class EmbeddingCache(NamedTuple):
    """What :func:`embedding_backward` needs."""

    ids: np.ndarray  # (B, T) int64, the looked-up rows
    n_rows: int  # V + 1, rows of the table


@njit(cache=True)
def _embedding_forward_kernel(ids, W):
    N = ids.size
    D = W.shape[1]
    out = np.empty((N, D), dtype=W.dtype)  # (N, D)
    for n in range(N):
        row = ids[n]
        for d in range(D):
            out[n, d] = W[row, d]
    return out


# >>> solution
@njit(cache=True)
def _embedding_backward_kernel(dout, ids, dW):
    N, D = dout.shape
    # Serial on purpose: the same id occurs many times in a batch (popular items, padding),
    # and two threads adding into one row of dW would race.
    for n in range(N):
        row = ids[n]
        for d in range(D):
            # forward: out[n, d] = W[ids[n], d], so dW[ids[n], d] += dout[n, d]
            dW[row, d] += dout[n, d]
# <<< solution


def embedding_forward(ids: np.ndarray, W: np.ndarray):
    """Look up one row of ``W`` per id.

    Parameters
    ----------
    ids : np.ndarray, (B, T) int (any shape works), values in ``0..V``
    W : np.ndarray, (V + 1, D), float32 or float64

    Returns
    -------
    out : np.ndarray, (B, T, D), dtype of ``W``
    cache : EmbeddingCache

    Notes
    -----
    ``out[b, t, :] = W[ids[b, t], :]``: the product of a one-hot row with ``W``, computed
    as the lookup it is.
    """
    if W.ndim != 2 or W.dtype.kind != "f":
        raise ValueError(
            f"embedding_forward: W must be a float (V + 1, D) table, got {W.dtype} {W.shape}"
        )
    if ids.dtype.kind not in "iu":
        raise TypeError(f"embedding_forward: ids must be integers, got {ids.dtype}")
    if ids.size and (ids.min() < 0 or ids.max() >= W.shape[0]):
        raise ValueError(
            f"embedding_forward: ids must lie in 0..{W.shape[0] - 1} (the rows of W), "
            f"got min {ids.min()}, max {ids.max()}"
        )
    # one integer width for the kernels: one compiled specialisation per float dtype
    ids = np.ascontiguousarray(ids, dtype=np.int64)
    out = _embedding_forward_kernel(ids.reshape(-1), np.ascontiguousarray(W))
    return out.reshape(*ids.shape, W.shape[1]), EmbeddingCache(ids, W.shape[0])


def embedding_backward(dout: np.ndarray, cache: EmbeddingCache, dW: np.ndarray | None = None):
    """Gradient of the lookup with respect to the table.

    Parameters
    ----------
    dout : np.ndarray, (B, T, D)
    cache : EmbeddingCache
    dW : np.ndarray, (V + 1, D), C-contiguous, dtype of ``dout``, or None
        A gradient of the table to add this one into, in place (llm.c's "backward
        accumulates"): the model passes the scoring layer's share of the tied table, so the
        sum costs a pass over the ``B T`` looked-up rows, not over all ``V + 1``. None: a
        fresh zero table.

    Returns
    -------
    dW : np.ndarray, (V + 1, D), dense, dtype of ``dout`` (the argument ``dW`` if given)

    Notes
    -----
    ``dW[v] = sum over positions (b, t) with ids[b, t] == v of dout[b, t]``: repeated ids
    accumulate (a fancy-index assignment ``dW[ids] += dout`` would keep only one of them).
    Rows that no id points at get zero. The padding row 0 is an ordinary row here, as in
    the original's ``nn.Embedding`` without ``padding_idx``: it receives gradient wherever
    padding was looked up.
    """
    # >>> solution
    ids, n_rows = cache
    if dout.shape[:-1] != ids.shape:
        raise ValueError(
            f"embedding_backward: dout has shape {dout.shape}, expected {(*ids.shape, 'D')}"
        )
    if dW is None:
        dW = np.zeros((n_rows, dout.shape[-1]), dtype=dout.dtype)  # (V + 1, D)
    elif (dW.shape != (n_rows, dout.shape[-1]) or dW.dtype != dout.dtype
          or not dW.flags.c_contiguous):
        raise ValueError(
            f"embedding_backward: dW must be a C-contiguous {dout.dtype} array of shape "
            f"{(n_rows, dout.shape[-1])}, got {dW.dtype} {dW.shape}"
        )
    dout2 = np.ascontiguousarray(dout).reshape(-1, dout.shape[-1])  # (N, D)
    _embedding_backward_kernel(dout2, ids.reshape(-1), dW)
    return dW
    # <<< solution
