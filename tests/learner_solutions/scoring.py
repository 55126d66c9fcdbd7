import numpy as np


def readout_forward(x, last):
    return x[np.arange(len(last)), last], (last, x.shape)


def readout_backward(dh, cache):
    last, shape = cache
    dx = np.zeros(shape, dtype=dh.dtype)
    dx[np.arange(shape[0]), last] = dh
    return dx


def scores_forward(h, E):
    return h @ E[1:].T


def softmax_cross_entropy(h, E, targets):
    scores = h @ E[1:].T
    scores = scores - scores.max(axis=1, keepdims=True)
    probs = np.exp(scores)
    probs /= probs.sum(axis=1, keepdims=True)
    rows = np.arange(len(targets))
    loss = -np.mean(np.log(probs[rows, targets - 1]))
    return float(loss), (probs, targets, h, E)


def softmax_cross_entropy_backward(dloss, cache):
    probs, targets, h, E = cache
    B = len(targets)
    dscores = probs.copy()
    dscores[np.arange(B), targets - 1] -= 1
    dscores *= dloss / B
    dh = dscores @ E[1:]
    dE = np.zeros_like(E)
    dE[1:] = dscores.T @ h
    return dh, dE
