"""Tied scores, softmax and cross-entropy, one step at a time.

:func:`srsan_np.ops.scoring.softmax_cross_entropy` fuses these steps, because together
their gradient is ``dS = (P - Y) / B``. Taken apart (``h`` (B, D), the table ``E``
(V + 1, D), ``targets`` (B,) in 1..V)::

    scores   = h E[1:]^T                   scores_forward(h, E)            (B, V)
    shifted  = scores - max_v scores       shifted_forward(scores)         (B, V)
    exp      = exp(shifted)                exp_forward(shifted)            (B, V)
    total    = sum_v exp                   sum_forward(exp)                (B, 1)
    logp     = shifted - log(total)        log_probs_forward(shifted, total) (B, V)
    loss     = -(1/B) sum_b logp[b, t_b]   loss_forward(logp, targets)     scalar

Every ``<step>_backward`` takes the upstream gradient of the step's output and the step's
inputs, and returns the gradient of each float input, in the order of the forward's
arguments. Locally the max of ``shifted`` has a gradient (at each row's arg-max); in the
whole chain it cancels, because the softmax does not depend on the shift.
"""

from __future__ import annotations

import numpy as np


def scores_forward(h, E):
    return h @ E[1:].T  # (B, V), row 0 of E (padding) is never a candidate


def scores_backward(dscores, h, E):
    """dh (B, D), dE (V + 1, D) with dE[0] = 0."""
    # >>> solution
    dE = np.zeros_like(E)
    dE[1:] = dscores.T @ h
    return dscores @ E[1:], dE
    # <<< solution


def shifted_forward(scores):
    return scores - scores.max(axis=1, keepdims=True)  # (B, V)


def shifted_backward(dshifted, scores):
    """dscores (B, V): the identity, less the row's sum at its arg-max (the max's path)."""
    # >>> solution
    dscores = dshifted.copy()
    rows = np.arange(scores.shape[0])
    dscores[rows, scores.argmax(axis=1)] -= dshifted.sum(axis=1)
    return dscores
    # <<< solution


def exp_forward(shifted):
    return np.exp(shifted)  # (B, V)


def exp_backward(dexp, shifted):
    """dshifted (B, V)."""
    # >>> solution
    return dexp * np.exp(shifted)
    # <<< solution


def sum_forward(exp):
    return exp.sum(axis=1, keepdims=True)  # (B, 1)


def sum_backward(dtotal, exp):
    """dexp (B, V): a sum forward is a broadcast backward."""
    # >>> solution
    return np.broadcast_to(dtotal, exp.shape).copy()
    # <<< solution


def log_probs_forward(shifted, total):
    return shifted - np.log(total)  # (B, V)


def log_probs_backward(dlogp, shifted, total):
    """dshifted (B, V), dtotal (B, 1)."""
    # >>> solution
    return dlogp.copy(), -dlogp.sum(axis=1, keepdims=True) / total
    # <<< solution


def loss_forward(logp, targets):
    return -logp[np.arange(logp.shape[0]), targets - 1].mean()  # scalar


def loss_backward(dloss, logp, targets):
    """dlogp (B, V): -1/B at each row's target, 0 elsewhere."""
    # >>> solution
    dlogp = np.zeros_like(logp)
    dlogp[np.arange(logp.shape[0]), targets - 1] = -dloss / logp.shape[0]
    return dlogp
    # <<< solution


def softmax_cross_entropy(h, E, targets):
    """The steps in order: the loss and every intermediate, keyed by name."""
    scores = scores_forward(h, E)
    shifted = shifted_forward(scores)
    exp = exp_forward(shifted)
    total = sum_forward(exp)
    logp = log_probs_forward(shifted, total)
    loss = loss_forward(logp, targets)
    return loss, dict(h=h, E=E, targets=targets, scores=scores, shifted=shifted, exp=exp,
                      total=total, logp=logp)


def softmax_cross_entropy_backward(dloss, steps):
    """The steps in reverse: ``dh, dE``; ``shifted`` feeds both ``exp`` and ``logp``."""
    s = steps
    dlogp = loss_backward(dloss, s["logp"], s["targets"])
    dshifted, dtotal = log_probs_backward(dlogp, s["shifted"], s["total"])
    dexp = sum_backward(dtotal, s["exp"])
    dshifted = dshifted + exp_backward(dexp, s["shifted"])
    dscores = shifted_backward(dshifted, s["scores"])
    return scores_backward(dscores, s["h"], s["E"])
