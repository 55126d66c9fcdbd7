import numpy as np


def layernorm_forward(x, gamma, beta, eps=1e-5):
    mu = x.mean(axis=-1, keepdims=True)
    xc = x - mu
    var = (xc * xc).mean(axis=-1, keepdims=True)
    inv = 1.0 / np.sqrt(var + eps)
    xh = xc * inv
    return xh * gamma + beta, (xh, inv, gamma)


def layernorm_backward(dout, cache):
    xh, inv, gamma = cache
    g = dout * gamma
    dx = inv * (g - g.mean(axis=-1, keepdims=True) - xh * (g * xh).mean(axis=-1, keepdims=True))
    rows = tuple(range(dout.ndim - 1))
    dgamma = (dout * xh).sum(axis=rows)
    dbeta = dout.sum(axis=rows)
    return dx, dgamma, dbeta
