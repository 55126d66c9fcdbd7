# Solved by a learner, in plain NumPy.
# Exercise 'layernorm_steps': fill in every YOUR CODE block, then run
#     srsan-np exercises check <this directory> layernorm_steps
# You write: mean_backward, centred_backward, variance_backward, rstd_backward,
# xhat_backward, affine_backward; the rest is given (keep it, or write your own). Read
# docs/derivations.md, "3. Layer norm". Your forward may return any cache you like: the
# checker hands it back to your backward.
"""Layer norm, one step at a time: each intermediate of the forward and its local gradient.

The fused backward of :mod:`srsan_np.ops.layernorm` is easiest to derive from these
pieces (Karpathy's "backprop ninja" does the same for batch norm). For rows ``x`` (N, D)::

    mean    = (1/D) sum_j x_j              mean_forward(x)              (N, 1)
    centred = x - mean                     centred_forward(x, mean)     (N, D)
    var     = (1/D) sum_j centred_j^2      variance_forward(centred)    (N, 1)
    rstd    = 1 / sqrt(var + eps)          rstd_forward(var)            (N, 1)
    xhat    = centred * rstd               xhat_forward(centred, rstd)  (N, D)
    out     = xhat * gamma + beta          affine_forward(xhat, gamma, beta)

Every ``<step>_backward`` takes the upstream gradient of the step's output and the step's
inputs, and returns the gradient of each input, in the order of the forward's arguments.
The checker tests each step on its own, then the chain: :func:`layernorm_backward` runs
the steps in reverse and adds up what reaches each variable (``x`` feeds both ``mean``
and ``centred``; ``centred`` feeds both ``var`` and ``xhat``).
"""

from __future__ import annotations

import numpy as np

EPS = 1e-5


def mean_forward(x):
    return x.mean(axis=-1, keepdims=True)  # (N, 1)


def mean_backward(dmean, x):
    """dx (N, D): every x_j moves the mean by 1/D."""
    return np.ones_like(x) * dmean / x.shape[-1]


def centred_forward(x, mean):
    return x - mean  # (N, D), the mean broadcast over the row


def centred_backward(dcentred, x, mean):
    """dx (N, D), dmean (N, 1): a broadcast forward is a sum backward."""
    return dcentred, -dcentred.sum(axis=-1, keepdims=True)


def variance_forward(centred):
    return (centred ** 2).mean(axis=-1, keepdims=True)  # (N, 1), biased as PyTorch


def variance_backward(dvar, centred):
    """dcentred (N, D)."""
    return 2 * centred * dvar / centred.shape[-1]


def rstd_forward(var):
    return 1.0 / np.sqrt(var + EPS)  # (N, 1)


def rstd_backward(drstd, var):
    """dvar (N, 1): d (var + eps)^(-1/2) = -1/2 (var + eps)^(-3/2)."""
    return -0.5 * (var + EPS) ** -1.5 * drstd


def xhat_forward(centred, rstd):
    return centred * rstd  # (N, D)


def xhat_backward(dxhat, centred, rstd):
    """dcentred (N, D), drstd (N, 1)."""
    dcentred = dxhat * rstd
    drstd = (dxhat * centred).sum(axis=-1, keepdims=True)
    return dcentred, drstd


def affine_forward(xhat, gamma, beta):
    return xhat * gamma + beta  # (N, D)


def affine_backward(dout, xhat, gamma, beta):
    """dxhat (N, D), dgamma (D,), dbeta (D,): gamma and beta are shared by every row."""
    return dout * gamma, (dout * xhat).sum(axis=0), dout.sum(axis=0)


def layernorm_forward(x, gamma, beta):
    """The steps in order: ``out`` (N, D) and every intermediate, keyed by name."""
    mean = mean_forward(x)
    centred = centred_forward(x, mean)
    var = variance_forward(centred)
    rstd = rstd_forward(var)
    xhat = xhat_forward(centred, rstd)
    out = affine_forward(xhat, gamma, beta)
    return out, dict(x=x, mean=mean, centred=centred, var=var, rstd=rstd, xhat=xhat,
                     gamma=gamma, beta=beta)


def layernorm_backward(dout, steps):
    """The steps in reverse: ``dx, dgamma, dbeta``; a variable used twice sums both."""
    s = steps
    dxhat, dgamma, dbeta = affine_backward(dout, s["xhat"], s["gamma"], s["beta"])
    dcentred, drstd = xhat_backward(dxhat, s["centred"], s["rstd"])
    dvar = rstd_backward(drstd, s["var"])
    dcentred = dcentred + variance_backward(dvar, s["centred"])
    dx, dmean = centred_backward(dcentred, s["x"], s["mean"])
    dx = dx + mean_backward(dmean, s["x"])
    return dx, dgamma, dbeta
