# Solved by a learner, in plain NumPy.
# Exercise 'softmax_ce_steps': fill in every YOUR CODE block, then run
#     srsan-np exercises check <this directory> softmax_ce_steps
# You write: scores_backward, shifted_backward, exp_backward, sum_backward,
# log_probs_backward, loss_backward; the rest is given (keep it, or write your own).
# Read docs/derivations.md, "9. Tied scores and softmax cross-entropy". Your forward may
# return any cache you like: the checker hands it back to your backward.
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
    dh = dscores @ E[1:]
    dE = np.zeros_like(E)
    dE[1:] = dscores.T @ h
    return dh, dE


def shifted_forward(scores):
    return scores - scores.max(axis=1, keepdims=True)  # (B, V)


def shifted_backward(dshifted, scores):
    """dscores (B, V): the identity, less the row's sum at its arg-max (the max's path)."""
    dscores = dshifted.copy()
    winner = scores.argmax(axis=1)
    for b in range(len(winner)):
        dscores[b, winner[b]] -= dshifted[b].sum()
    return dscores


def exp_forward(shifted):
    return np.exp(shifted)  # (B, V)


def exp_backward(dexp, shifted):
    """dshifted (B, V)."""
    return dexp * np.exp(shifted)


def sum_forward(exp):
    return exp.sum(axis=1, keepdims=True)  # (B, 1)


def sum_backward(dtotal, exp):
    """dexp (B, V): a sum forward is a broadcast backward."""
    return dtotal * np.ones_like(exp)


def log_probs_forward(shifted, total):
    return shifted - np.log(total)  # (B, V)


def log_probs_backward(dlogp, shifted, total):
    """dshifted (B, V), dtotal (B, 1)."""
    return dlogp, -dlogp.sum(axis=1, keepdims=True) / total


def loss_forward(logp, targets):
    return -logp[np.arange(logp.shape[0]), targets - 1].mean()  # scalar


def loss_backward(dloss, logp, targets):
    """dlogp (B, V): -1/B at each row's target, 0 elsewhere."""
    B = logp.shape[0]
    dlogp = np.zeros_like(logp)
    dlogp[np.arange(B), targets - 1] = -dloss / B
    return dlogp


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
