"""Layer normalisation over the last axis (Ba et al. 2016), with gain and bias.

SR-SAN's encoder is post-LN, as PyTorch's ``TransformerEncoderLayer`` default:
``x = LN1(x + Dropout(Attn(x)))``, ``x = LN2(x + Dropout(FFN(x)))``.
The derivation of the backward follows llm.c's ``doc/layernorm/layernorm.md``; the
steps one at a time are :mod:`srsan_np.exercises.layernorm_steps`.
"""

from __future__ import annotations

from typing import NamedTuple

import numpy as np
from numba import njit

__all__ = ["LayerNormCache", "layernorm_forward", "layernorm_backward"]


class LayerNormCache(NamedTuple):
    """What :func:`layernorm_backward` needs."""

    xhat: np.ndarray  # (N, D) normalised input, N = product of the leading axes
    rstd: np.ndarray  # (N,) 1 / sqrt(var + eps)
    gamma: np.ndarray  # (D,)
    shape: tuple  # shape of x, to restore the leading axes


# >>> solution
# The kernels are plain loops over the rows, on one thread: a layer's rows are few enough
# (B T of them) that waking other threads would cost more than it saves. The gain and bias
# gradients sum over rows, so they are a separate kernel with a fixed summation order.
@njit(cache=True)
def _layernorm_forward_kernel(x, gamma, beta, eps):
    N, D = x.shape
    out = np.empty_like(x)  # (N, D)
    xhat = np.empty_like(x)  # (N, D)
    rstd = np.empty(N, dtype=x.dtype)  # (N,)
    for i in range(N):
        # float64 accumulators (0.0) keep float32 statistics accurate; two passes rather
        # than E[x^2] - E[x]^2, which cancels catastrophically for off-centre rows
        mean = 0.0
        for j in range(D):
            mean += x[i, j]
        mean /= D
        var = 0.0
        for j in range(D):
            diff = x[i, j] - mean
            var += diff * diff
        var /= D  # biased variance, as PyTorch
        r = 1.0 / np.sqrt(var + eps)
        rstd[i] = r
        for j in range(D):
            xh = (x[i, j] - mean) * r
            xhat[i, j] = xh
            out[i, j] = xh * gamma[j] + beta[j]
    return out, xhat, rstd


@njit(cache=True)
def _layernorm_backward_kernel(dout, xhat, rstd, gamma):
    N, D = dout.shape
    dx = np.empty_like(dout)  # (N, D)
    for i in range(N):
        # forward: out = xhat * gamma + beta, so dxhat = dout * gamma.
        # forward: xhat = (x - mean) * rstd, with mean and rstd functions of the row, so
        #   dx = rstd * (dxhat - mean_j(dxhat) - xhat * mean_j(dxhat * xhat)).
        mean_dxhat = 0.0
        mean_dxhat_xhat = 0.0
        for j in range(D):
            dxhat = dout[i, j] * gamma[j]
            mean_dxhat += dxhat
            mean_dxhat_xhat += dxhat * xhat[i, j]
        mean_dxhat /= D
        mean_dxhat_xhat /= D
        for j in range(D):
            dxhat = dout[i, j] * gamma[j]
            dx[i, j] = rstd[i] * (dxhat - mean_dxhat - xhat[i, j] * mean_dxhat_xhat)
    return dx


@njit(cache=True)
def _layernorm_param_grads_kernel(dout, xhat):
    # forward: out = xhat * gamma + beta for every row, so the gain and bias gradients sum
    # over rows. Serial (rows would race on dgamma[j]); float64 accumulators.
    N, D = dout.shape
    dgamma = np.zeros(D, dtype=np.float64)
    dbeta = np.zeros(D, dtype=np.float64)
    for i in range(N):
        for j in range(D):
            dgamma[j] += dout[i, j] * xhat[i, j]
            dbeta[j] += dout[i, j]
    return dgamma.astype(dout.dtype), dbeta.astype(dout.dtype)
# <<< solution


def layernorm_forward(x: np.ndarray, gamma: np.ndarray, beta: np.ndarray, eps: float = 1e-5):
    """Normalise each row over the last axis, then scale and shift.

    Parameters
    ----------
    x : np.ndarray, (..., D), float32 or float64
    gamma : np.ndarray, (D,), same dtype (PyTorch's ``norm.weight``)
    beta : np.ndarray, (D,), same dtype (PyTorch's ``norm.bias``)
    eps : float
        Added to the variance; 1e-5 as PyTorch's default.

    Returns
    -------
    out : np.ndarray, (..., D)
    cache : LayerNormCache

    Notes
    -----
    Per row: ``mean = (1/D) sum_j x_j``, ``var = (1/D) sum_j (x_j - mean)^2`` (biased),
    ``rstd = 1 / sqrt(var + eps)``, ``xhat_j = (x_j - mean) * rstd``,
    ``out_j = xhat_j * gamma_j + beta_j``.
    """
    if x.ndim < 1 or gamma.shape != (x.shape[-1],) or beta.shape != (x.shape[-1],):
        raise ValueError(
            f"layernorm_forward: need x (..., D), gamma (D,), beta (D,); "
            f"got x {x.shape}, gamma {gamma.shape}, beta {beta.shape}"
        )
    if not (x.dtype == gamma.dtype == beta.dtype) or x.dtype.kind != "f":
        raise TypeError(
            "layernorm_forward: x, gamma, beta must share one float dtype; "
            f"got {x.dtype}, {gamma.dtype}, {beta.dtype}"
        )
    # >>> solution
    x2 = np.ascontiguousarray(x).reshape(-1, x.shape[-1])  # (N, D)
    out, xhat, rstd = _layernorm_forward_kernel(
        x2, np.ascontiguousarray(gamma), np.ascontiguousarray(beta), float(eps)
    )
    return out.reshape(x.shape), LayerNormCache(xhat, rstd, gamma, x.shape)
    # <<< solution


def layernorm_backward(dout: np.ndarray, cache: LayerNormCache):
    """Gradients of layer norm.

    Parameters
    ----------
    dout : np.ndarray, (..., D), the shape of the forward input
    cache : LayerNormCache

    Returns
    -------
    dx : np.ndarray, (..., D)
    dgamma : np.ndarray, (D,)
    dbeta : np.ndarray, (D,)

    Notes
    -----
    With ``g_j = dout_j * gamma_j`` (the gradient reaching ``xhat``):
    ``dx_j = rstd * (g_j - mean_k(g_k) - xhat_j * mean_k(g_k * xhat_k))``.
    The two subtracted means are the paths through ``mean`` and through ``rstd``.
    ``dgamma = sum_rows dout * xhat``, ``dbeta = sum_rows dout``.
    """
    # >>> solution
    xhat, rstd, gamma, shape = cache
    if dout.shape != shape:
        raise ValueError(f"layernorm_backward: dout has shape {dout.shape}, expected {shape}")
    dout2 = np.ascontiguousarray(dout).reshape(xhat.shape)  # (N, D)
    dx = _layernorm_backward_kernel(dout2, xhat, rstd, np.ascontiguousarray(gamma))
    dgamma, dbeta = _layernorm_param_grads_kernel(dout2, xhat)
    return dx.reshape(shape), dgamma, dbeta
    # <<< solution
