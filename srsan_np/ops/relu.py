"""ReLU, the non-linearity between the encoder's two feed-forward layers (PyTorch's
``TransformerEncoderLayer`` default activation, used by SR-SAN)."""

from __future__ import annotations

from typing import NamedTuple

import numpy as np
from numba import njit

__all__ = ["ReluCache", "relu_forward", "relu_backward"]


class ReluCache(NamedTuple):
    """What :func:`relu_backward` needs."""

    x: np.ndarray  # (...) the input


# Serial kernels: element-wise and memory-bound, so threads would not repay their start-up
# cost (and their compile time) at the sizes SR-SAN uses.
@njit(cache=True)
def _relu_forward_kernel(x):
    out = np.empty_like(x)  # (N,)
    for i in range(x.size):
        # "x <= 0" rather than "x > 0" so a NaN input propagates instead of becoming 0
        out[i] = 0.0 if x[i] <= 0.0 else x[i]
    return out


# >>> solution
@njit(cache=True)
def _relu_backward_kernel(dout, x):
    dx = np.empty_like(dout)  # (N,)
    for i in range(x.size):
        dx[i] = dout[i] if x[i] > 0.0 else 0.0
    return dx
# <<< solution


def relu_forward(x: np.ndarray):
    """Element-wise ``max(x, 0)``.

    Parameters
    ----------
    x : np.ndarray, any shape, float32 or float64

    Returns
    -------
    out : np.ndarray, ``x.shape``
    cache : ReluCache
    """
    x = np.ascontiguousarray(x)
    return _relu_forward_kernel(x.reshape(-1)).reshape(x.shape), ReluCache(x)


def relu_backward(dout: np.ndarray, cache: ReluCache):
    """Gradient of ReLU.

    Parameters
    ----------
    dout : np.ndarray, ``x.shape``
    cache : ReluCache

    Returns
    -------
    dx : np.ndarray, ``x.shape``

    Notes
    -----
    The forward line ``out = max(x, 0)`` passes the gradient where ``x > 0`` and blocks it
    elsewhere: ``dx = dout * [x > 0]``. At ``x == 0`` we take the subgradient 0, as PyTorch
    does.
    """
    # >>> solution
    (x,) = cache
    if dout.shape != x.shape:
        raise ValueError(f"relu_backward: dout has shape {dout.shape}, expected {x.shape}")
    dout = np.ascontiguousarray(dout)
    return _relu_backward_kernel(dout.reshape(-1), x.reshape(-1)).reshape(x.shape)
    # <<< solution
