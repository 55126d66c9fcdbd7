"""Read-out, tied scoring and softmax cross-entropy: the head of SR-SAN.

Fang (arXiv 2102.01922, Sec. 3.3-3.4): the session vector ``h`` is the encoder output at the
last click; item ``i`` scores ``h . E[i]`` against the same embedding table that encodes the
input (tied weights), over items ``1..V`` only (row 0 of ``E`` is padding, never a
candidate); the loss is the cross-entropy of the softmax over those scores, averaged over the
batch (``nn.CrossEntropyLoss`` with target ``item - 1``). Column ``j`` of the scores is item
``j + 1``.

The softmax and the cross-entropy are one op, because their joint gradient is simple,
``dS = (P - Y) / B``, where each alone would divide by probabilities that may underflow
(docs/derivations.md, section 9). The three matrix products, ``S = h E^T``, ``dh = dS E``,
``dE = dS^T h``, go to BLAS through NumPy's ``@``.
"""

from __future__ import annotations

from typing import NamedTuple

import numpy as np

__all__ = [
    "ReadoutCache",
    "SoftmaxCrossEntropyCache",
    "readout_forward",
    "readout_backward",
    "scores_forward",
    "check_loss_inputs",
    "softmax_cross_entropy",
    "softmax_cross_entropy_backward",
]


class ReadoutCache(NamedTuple):
    """What :func:`readout_backward` needs."""

    last: np.ndarray  # (B,) int, position of each row's read-out
    shape: tuple  # (B, T, D), shape of the encoder output


class SoftmaxCrossEntropyCache(NamedTuple):
    """What :func:`softmax_cross_entropy_backward` needs."""

    probs: np.ndarray  # (B, V) the softmax over items 1..V
    targets: np.ndarray  # (B,) int, items in 1..V
    h: np.ndarray  # (B, D) session vectors
    E: np.ndarray  # (V + 1, D) embedding table


def readout_forward(x: np.ndarray, last: np.ndarray):
    """Gather the hidden vector at each session's read-out position.

    Parameters
    ----------
    x : np.ndarray, (B, T, D)
        Encoder output.
    last : np.ndarray, (B,) int, values in ``0..T-1``
        Position to read in each row (the last click; see ``Batch.last``).

    Returns
    -------
    h : np.ndarray, (B, D)
        ``h[b] = x[b, last[b]]`` (a copy).
    cache : ReadoutCache
    """
    if x.ndim != 3 or last.shape != (x.shape[0],):
        raise ValueError(
            f"readout_forward: need x (B, T, D) and last (B,); got x {x.shape}, last {last.shape}"
        )
    if last.dtype.kind not in "iu":
        raise TypeError(f"readout_forward: last must be integers, got {last.dtype}")
    if last.size and (last.min() < 0 or last.max() >= x.shape[1]):
        raise ValueError(
            f"readout_forward: last must lie in 0..{x.shape[1] - 1}, "
            f"got min {last.min()}, max {last.max()}"
        )
    h = x[np.arange(x.shape[0]), last]  # (B, D)
    return h, ReadoutCache(last, x.shape)


def readout_backward(dh: np.ndarray, cache: ReadoutCache):
    """Gradient of the read-out.

    Parameters
    ----------
    dh : np.ndarray, (B, D)
    cache : ReadoutCache

    Returns
    -------
    dx : np.ndarray, (B, T, D)
        ``dh[b]`` at ``(b, last[b])``, zero elsewhere.

    Notes
    -----
    The forward line ``h[b] = x[b, last[b]]`` copies one position per row, so the gradient
    flows back to that position only. Each ``(b, last[b])`` pair is distinct (one per row),
    so a fancy-index assignment ``dx[rows, last] = dh`` cannot drop repeated contributions.
    """
    # >>> solution
    last, shape = cache
    if dh.shape != (shape[0], shape[2]):
        raise ValueError(
            f"readout_backward: dh has shape {dh.shape}, expected {(shape[0], shape[2])}"
        )
    dx = np.zeros(shape, dtype=dh.dtype)  # (B, T, D)
    dx[np.arange(shape[0]), last] = dh
    return dx
    # <<< solution


def _check_head(name, h, E):
    if h.ndim != 2 or E.ndim != 2 or h.shape[1] != E.shape[1] or E.shape[0] < 2 or not len(h):
        raise ValueError(
            f"{name}: need h (B, D) and E (V + 1, D) with B >= 1, V >= 1; "
            f"got h {h.shape}, E {E.shape}"
        )
    if h.dtype != E.dtype or h.dtype.kind != "f":
        raise TypeError(f"{name}: h and E must share one float dtype; got {h.dtype}, {E.dtype}")


def scores_forward(h: np.ndarray, E: np.ndarray) -> np.ndarray:
    """Scores of every item for every session (evaluation; training uses the fused loss).

    Parameters
    ----------
    h : np.ndarray, (B, D)
    E : np.ndarray, (V + 1, D)
        The embedding table; row 0 (padding) is left out.

    Returns
    -------
    scores : np.ndarray, (B, V)
        ``scores[b, j] = h[b] . E[j + 1]``: column ``j`` is item ``j + 1``.
    """
    _check_head("scores_forward", h, E)
    return h @ E[1:].T  # (B, V)


def check_loss_inputs(name, h, E, targets):
    """Raise naming the first argument of ``name`` that does not fit (see
    :func:`softmax_cross_entropy`)."""
    _check_head(name, h, E)
    V = E.shape[0] - 1
    if targets.shape != (h.shape[0],) or targets.dtype.kind not in "iu":
        raise ValueError(
            f"{name}: targets must be (B,) = ({h.shape[0]},) integers, "
            f"got {targets.dtype} {targets.shape}"
        )
    if targets.size and (targets.min() < 1 or targets.max() > V):
        raise ValueError(
            f"{name}: targets must lie in 1..V = 1..{V} (0 is padding), "
            f"got min {targets.min()}, max {targets.max()}"
        )


def softmax_cross_entropy(h: np.ndarray, E: np.ndarray, targets: np.ndarray):
    """Fused tied scoring, softmax and mean cross-entropy.

    Parameters
    ----------
    h : np.ndarray, (B, D), float32 or float64
        Session vectors (from :func:`readout_forward`).
    E : np.ndarray, (V + 1, D), same dtype
        The embedding table; candidates are rows ``1..V``.
    targets : np.ndarray, (B,) int, values in ``1..V``
        The next clicked item of each session.

    Returns
    -------
    loss : float
        Mean cross-entropy over the batch.
    cache : SoftmaxCrossEntropyCache
        Holds the ``(B, V)`` probabilities.

    Notes
    -----
    ``S = h E[1:]^T`` (B, V). Per row, with ``m`` the row's largest score,
    ``P_v = exp(S_v - m) / sum_u exp(S_u - m)``: the shift leaves the softmax unchanged
    (it cancels between numerator and denominator) and makes the largest term exp(0) = 1,
    so nothing overflows and the sum is at least 1. The loss of a row is
    ``-log P_target = log sum_u exp(S_u - m) - (S_target - m)``, and
    ``loss = (1/B) sum_b -log P_b,target``. This equals PyTorch's
    ``nn.CrossEntropyLoss()(h @ E[1:].T, targets - 1)``.
    """
    check_loss_inputs("softmax_cross_entropy", h, E, targets)
    # >>> solution
    B = h.shape[0]
    rows = np.arange(B)
    scores = h @ E[1:].T  # (B, V)
    shifted = scores - scores.max(axis=1, keepdims=True)  # (B, V), each row's max is 0
    exp = np.exp(shifted)  # (B, V)
    total = exp.sum(axis=1)  # (B,), each >= 1
    probs = exp / total[:, None]  # (B, V)
    log_p_target = shifted[rows, targets - 1] - np.log(total)  # (B,)
    loss = float(-np.mean(log_p_target.astype(np.float64)))
    return loss, SoftmaxCrossEntropyCache(probs, targets, h, E)
    # <<< solution


def softmax_cross_entropy_backward(dloss: float, cache: SoftmaxCrossEntropyCache):
    """Gradients of the fused loss for the session vectors and the (tied) table.

    Parameters
    ----------
    dloss : float
        Upstream gradient of the scalar loss (1.0 when it is the objective).
    cache : SoftmaxCrossEntropyCache

    Returns
    -------
    dh : np.ndarray, (B, D)
    dE : np.ndarray, (V + 1, D)
        Dense; ``dE[0] = 0`` since the padding row is never scored. The model adds the
        embedding's own gradient to this one (tied weights).

    Notes
    -----
    forward: ``loss = (1/B) sum_b [log sum_v exp(S_bv) - S_b,target]``, so
    ``dloss/dS_bv = (P_bv - [v == target_b]) / B``: ``dS = dloss (P - Y) / B`` with ``Y``
    the one-hot targets. Then the forward line ``S = h E[1:]^T`` gives ``dh = dS E[1:]``
    and ``dE[1:] = dS^T h``.
    """
    # >>> solution
    probs, targets, h, E = cache
    B = probs.shape[0]
    dscores = probs.copy()  # (B, V)
    dscores[np.arange(B), targets - 1] -= 1.0  # P - Y: one target per row, no repeats
    dscores *= probs.dtype.type(dloss / B)
    dh = dscores @ E[1:]  # (B, D)
    dE = np.zeros_like(E)  # (V + 1, D); row 0, padding, is never a candidate
    dE[1:] = dscores.T @ h
    return dh, dE
    # <<< solution
