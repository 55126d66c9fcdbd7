"""Inverted dropout (Srivastava et al. 2014), placed exactly where PyTorch's
``TransformerEncoderLayer`` places it: on the attention weights, after the attention block,
inside the feed-forward block and after it.

Training keeps each element with probability ``1 - p`` and scales the survivors by
``1 / (1 - p)`` so the expected output equals the input; evaluation is the identity, so
nothing needs rescaling at test time. The keep mask comes from a caller-supplied
``np.random.Generator``, so a seed fixes it and backward reuses the very same mask.
"""

from __future__ import annotations

from typing import NamedTuple

import numpy as np
from numba import njit

__all__ = ["DropoutCache", "dropout_forward", "dropout_backward"]


class DropoutCache(NamedTuple):
    """What :func:`dropout_backward` needs."""

    keep: np.ndarray | None  # (...) bool, True where kept; None when dropout was the identity
    scale: float  # 1 / (1 - p)


@njit(cache=True)
def _apply_keep_kernel(a, keep, scale):
    # serial: element-wise and memory-bound, threads would not repay their start-up cost
    out = np.empty_like(a)  # (N,)
    for i in range(a.size):
        out[i] = a[i] * scale if keep[i] else 0.0
    return out


def dropout_forward(x: np.ndarray, p: float, rng: np.random.Generator | None):
    """Inverted dropout.

    Parameters
    ----------
    x : np.ndarray, any shape, float32 or float64
    p : float
        Drop probability, ``0 <= p < 1``.
    rng : np.random.Generator or None
        Draws the keep mask. ``None`` (evaluation) or ``p == 0``: the identity.

    Returns
    -------
    out : np.ndarray, ``x.shape``
        In the identity case, ``x`` itself (not a copy), as PyTorch's eval-mode dropout.
    cache : DropoutCache

    Notes
    -----
    ``keep ~ Bernoulli(1 - p)`` element-wise (drawn as ``u >= p`` with ``u ~ U[0, 1)`` in
    float64 whatever the dtype of ``x``, so one seed gives one mask in float32 and float64),
    ``out = x * keep / (1 - p)``, hence ``E[out] = x``.
    """
    if not 0.0 <= p < 1.0:
        raise ValueError(f"dropout_forward: p must satisfy 0 <= p < 1, got {p}")
    if rng is None or p == 0.0:
        return x, DropoutCache(None, 1.0)
    if not isinstance(rng, np.random.Generator):
        raise TypeError(
            f"dropout_forward: rng must be a np.random.Generator or None, got {type(rng).__name__}"
        )
    x = np.ascontiguousarray(x)
    keep = rng.random(x.shape) >= p  # (...) bool
    scale = 1.0 / (1.0 - p)
    out = _apply_keep_kernel(x.reshape(-1), keep.reshape(-1), x.dtype.type(scale))
    return out.reshape(x.shape), DropoutCache(keep, scale)


def dropout_backward(dout: np.ndarray, cache: DropoutCache):
    """Gradient of inverted dropout, reusing the forward mask.

    Parameters
    ----------
    dout : np.ndarray, the shape of the forward input
    cache : DropoutCache

    Returns
    -------
    dx : np.ndarray, ``dout.shape``
        ``dout`` itself (not a copy) when the forward was the identity.

    Notes
    -----
    The forward line ``out = x * keep * scale`` is linear in ``x`` with a diagonal
    Jacobian, so ``dx = dout * keep * scale``: the same kernel as the forward.
    """
    # >>> solution
    keep, scale = cache
    if keep is None:
        return dout
    if dout.shape != keep.shape:
        raise ValueError(f"dropout_backward: dout has shape {dout.shape}, expected {keep.shape}")
    dout = np.ascontiguousarray(dout)
    dx = _apply_keep_kernel(dout.reshape(-1), keep.reshape(-1), dout.dtype.type(scale))
    return dx.reshape(dout.shape)
    # <<< solution
