"""Linear layer ``out = x W^T + b`` with weights stored ``(out, in)`` as PyTorch does.

SR-SAN uses it for the attention's fused input projection and output projection and for the
two feed-forward layers of the encoder (Fang, arXiv 2102.01922, Sec. 3; Vaswani et al. 2017).
Both passes are matrix products, so they go to BLAS through NumPy's ``@``; leading axes are
flattened first so a ``(B, T, Din)`` input costs one GEMM, not ``B`` of them.
"""

from __future__ import annotations

from typing import NamedTuple

import numpy as np

__all__ = ["LinearCache", "linear_forward", "linear_backward"]


class LinearCache(NamedTuple):
    """What :func:`linear_backward` needs."""

    x: np.ndarray  # (..., Din) the input
    W: np.ndarray  # (Dout, Din)


def linear_forward(x: np.ndarray, W: np.ndarray, b: np.ndarray):
    """Affine map over the last axis.

    Parameters
    ----------
    x : np.ndarray, (..., Din), float32 or float64
    W : np.ndarray, (Dout, Din), same dtype as ``x``
    b : np.ndarray, (Dout,), same dtype as ``x``

    Returns
    -------
    out : np.ndarray, (..., Dout)
    cache : LinearCache

    Notes
    -----
    ``out[n, o] = sum_i x[n, i] W[o, i] + b[o]`` for every row ``n`` of the flattened
    leading axes, i.e. ``out = x W^T + b``.
    """
    if x.ndim < 1 or W.ndim != 2 or b.ndim != 1:
        raise ValueError(
            f"linear_forward: need x (..., Din), W (Dout, Din), b (Dout,); "
            f"got x {x.shape}, W {W.shape}, b {b.shape}"
        )
    if W.shape[1] != x.shape[-1] or b.shape[0] != W.shape[0]:
        raise ValueError(
            f"linear_forward: shapes do not fit: x {x.shape} (Din = {x.shape[-1]}), "
            f"W {W.shape} (expected ({b.shape[0]}, {x.shape[-1]})), b {b.shape}"
        )
    if not (x.dtype == W.dtype == b.dtype) or x.dtype.kind != "f":
        raise TypeError(
            "linear_forward: x, W, b must share one float dtype; "
            f"got {x.dtype}, {W.dtype}, {b.dtype}"
        )
    x2 = x.reshape(-1, x.shape[-1])  # (N, Din)
    out = x2 @ W.T  # (N, Dout)
    out += b
    return out.reshape(*x.shape[:-1], W.shape[0]), LinearCache(x, W)


def linear_backward(dout: np.ndarray, cache: LinearCache):
    """Gradients of the linear layer.

    Parameters
    ----------
    dout : np.ndarray, (..., Dout)
        Upstream gradient, the shape of the forward output.
    cache : LinearCache
        From :func:`linear_forward`.

    Returns
    -------
    dx : np.ndarray, (..., Din)
    dW : np.ndarray, (Dout, Din)
    db : np.ndarray, (Dout,)

    Notes
    -----
    The forward line ``out = x W^T + b`` gives ``dx = dout W``, ``dW = dout^T x`` (summed
    over all rows of the flattened leading axes), ``db = sum_rows dout``.
    """
    # >>> solution
    x, W = cache
    if dout.shape != (*x.shape[:-1], W.shape[0]):
        raise ValueError(
            f"linear_backward: dout has shape {dout.shape}, expected {(*x.shape[:-1], W.shape[0])}"
        )
    dout2 = dout.reshape(-1, W.shape[0])  # (N, Dout)
    x2 = x.reshape(-1, W.shape[1])  # (N, Din)
    dx = (dout2 @ W).reshape(x.shape)  # (..., Din)
    dW = dout2.T @ x2  # (Dout, Din)
    db = dout2.sum(axis=0)  # (Dout,)
    return dx, dW, db
    # <<< solution
