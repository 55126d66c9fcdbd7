import numpy as np


def linear_forward(x, W, b):
    out = x @ W.T + b
    return out, (x, W)


def linear_backward(dout, cache):
    x, W = cache
    x2 = x.reshape(-1, x.shape[-1])
    d2 = dout.reshape(-1, dout.shape[-1])
    dx = dout @ W
    dW = d2.T @ x2
    db = d2.sum(axis=0)
    return dx, dW, db
