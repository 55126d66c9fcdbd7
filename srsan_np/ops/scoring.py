"""Read-out, tied scoring and softmax cross-entropy: the head of SR-SAN.

Fang (arXiv 2102.01922, Sec. 3.3-3.4): the session vector ``h`` is the encoder output at the
last click; item ``i`` scores ``h . E[i]`` against the same embedding table that encodes the
input (tied weights), over items ``1..V`` only (row 0 of ``E`` is padding, never a
candidate); the loss is the cross-entropy of the softmax over those scores, averaged over the
batch (``nn.CrossEntropyLoss`` with target ``item - 1``). Column ``j`` of the scores is item
``j + 1``.

Speed. With ``V`` in the tens of thousands the head dominates a training step. Its three
matrix products (``S = h E^T``, ``dh = dS E``, ``dE = dS^T h``) go to BLAS, and the softmax
around them makes one pass over the ``(B, V)`` scores, an ``exp`` in place, plus one BLAS
matrix-vector product for the row sums:

- *no max pass.* The softmax is the same for any shift of a row, ``exp(s - c) / sum``; the
  usual shift by the row's max only keeps ``exp`` in range. So the scores are exponentiated
  as they are, and a row whose sum falls outside ``[2^-64, 2^64]`` (a score above about 44,
  or all below about -44: overflow, or terms lost to underflow) is computed again from
  ``h`` with the max shift. Trained SR-SAN scores stay well inside, so this path is for
  safety, and the common path saves a read of the scores.
- *a faster base.* ``e^s = b^(s / ln b)`` for any base ``b``, and the ``1 / ln b`` costs
  nothing folded into ``h`` before the product. NumPy's float32 ``exp2`` is twice as fast as
  its ``exp`` on AVX-512 (0.29 against 0.55 ns per element measured here), but has no AVX2
  version, where ``exp`` is the faster; :func:`_fastest_exp` asks NumPy which it dispatches.
  With the first point: the softmax beyond its product takes 2.2 ms against 3.5 ms with a
  max pass and ``exp`` (100 x 43,188 float32, 2 cores, the two versions timed in turn).
- *both cores.* The ``exp`` runs on row blocks shared among threads (NumPy's ufuncs release
  the GIL), with no Numba kernel on purpose: NumPy's ``exp`` is SIMD-vectorised, while a
  Numba loop gets a scalar ``exp`` here (no SVML); a hand-written polynomial ``exp`` that
  LLVM does vectorise took 2.8 ms on two threads for 100 x 43097, against 2.2 ms for
  NumPy's.

Nothing else touches a ``(B, V)`` array: the probabilities are never normalised in memory
(``P = U / total`` row by row, with ``U`` the exponentiated scores, so the ``1 / total``
and the ``1 / B`` of the mean scale the small ``(B, D)`` operands of the backward products
instead), and the one-hot part of ``dS = (P - Y) / B`` is applied to the ``B`` target rows
of the products' results rather than to ``dS`` (see :func:`softmax_cross_entropy_backward`).
"""

from __future__ import annotations

import math
from concurrent.futures import ThreadPoolExecutor
from typing import NamedTuple

import numba
import numpy as np

__all__ = [
    "ReadoutCache",
    "SoftmaxCrossEntropyCache",
    "readout_forward",
    "readout_backward",
    "scores_forward",
    "softmax_cross_entropy",
    "softmax_cross_entropy_backward",
]


class ReadoutCache(NamedTuple):
    """What :func:`readout_backward` needs."""

    last: np.ndarray  # (B,) int, position of each row's read-out
    shape: tuple  # (B, T, D), shape of the encoder output


class SoftmaxCrossEntropyCache(NamedTuple):
    """What :func:`softmax_cross_entropy_backward` needs."""

    exp_shifted: np.ndarray  # (B, V) U = exp(s - c), unnormalised probabilities (c per row)
    total: np.ndarray  # (B,) sum_v U_v, so that P = U / total
    targets: np.ndarray  # (B,) int, items in 1..V
    h: np.ndarray  # (B, D) session vectors
    E: np.ndarray  # (V + 1, D) embedding table

    @property
    def probs(self) -> np.ndarray:
        """(B, V) the softmax over items 1..V (computed on demand, for readers)."""
        return self.exp_shifted / self.total.astype(self.exp_shifted.dtype)[:, None]


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
    so the fancy-index assignment below cannot drop repeated contributions.
    """
    last, shape = cache
    if dh.shape != (shape[0], shape[2]):
        raise ValueError(
            f"readout_backward: dh has shape {dh.shape}, expected {(shape[0], shape[2])}"
        )
    dx = np.zeros(shape, dtype=dh.dtype)  # (B, T, D)
    dx[np.arange(shape[0]), last] = dh
    return dx


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


def _fastest_exp():
    """``(np.exp2, ln 2)`` where NumPy runs ``exp2`` with the SIMD it runs ``exp`` with, else
    ``(np.exp, 1.0)``: an exponential and the log of its base.

    NumPy (2.0 and later) says which compiled version of a ufunc it dispatches to on this
    CPU; ``exp2`` has only an AVX-512 one, ``exp`` has AVX-512 and AVX2 ones.
    """
    try:
        from numpy.lib.introspect import opt_func_info

        info = opt_func_info(func_name="^exp2?$", signature="float32")
        exp, exp2 = (info[name]["ff"]["current"] for name in ("exp", "exp2"))
    except (ImportError, KeyError):
        return np.exp, 1.0
    return (np.exp2, math.log(2.0)) if exp2 == exp else (np.exp, 1.0)


_EXP, _LN_BASE = _fastest_exp()  # e^s = _EXP(s / _LN_BASE)
_SAFE_SUM = (2.0 ** -64, 2.0 ** 64)  # a row sum within these needs no shift by its max


def _exp_rows(lo, hi, scores):
    """Rows ``lo..hi-1`` of ``scores`` (already divided by ``_LN_BASE``) exponentiated in place.

    Overflow and underflow are expected here and handled by the caller (the rows whose sum
    leaves the safe range are computed again), so NumPy is told not to warn.
    """
    with np.errstate(over="ignore", under="ignore"):  # per thread: set in the worker
        _EXP(scores[lo:hi], out=scores[lo:hi])


_pool = None  # worker threads for _for_row_blocks, created on first use


def _for_row_blocks(fn, n_rows, *args):
    """``fn(lo, hi, *args)`` on contiguous row blocks, one per thread, and wait for all.

    NumPy's ufuncs release the GIL, so Python threads run them on all cores; each thread
    owns its rows, so the result is the same whatever the thread count. The count is
    Numba's (``NUMBA_NUM_THREADS`` or ``numba.set_num_threads``), one knob for both.
    Measured on 100 x 43188 float32 scores, 2 cores: the ``exp`` and the row sums take
    1.96 ms beyond the product on one thread, 1.37 ms on two.
    """
    global _pool
    n_threads = max(1, min(numba.get_num_threads(), n_rows))
    if n_threads == 1:
        fn(0, n_rows, *args)
        return
    bounds = np.linspace(0, n_rows, n_threads + 1).astype(int)
    if _pool is None:
        _pool = ThreadPoolExecutor(max_workers=numba.config.NUMBA_NUM_THREADS - 1,
                                   thread_name_prefix="srsan-rows")
    futures = [_pool.submit(fn, bounds[i], bounds[i + 1], *args) for i in range(1, n_threads)]
    fn(bounds[0], bounds[1], *args)  # the calling thread takes the first block
    for future in futures:
        future.result()  # re-raises a worker's exception here


def softmax_cross_entropy(h: np.ndarray, E: np.ndarray, targets: np.ndarray):
    """Fused tied scoring, log-softmax and mean cross-entropy.

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
        Mean cross-entropy over the batch (computed in float64 from the per-row terms).
    cache : SoftmaxCrossEntropyCache
        Holds the ``(B, V)`` unnormalised probabilities and their row sums
        (``cache.probs`` gives the normalised ones).

    Notes
    -----
    ``s = h E[1:]^T`` (B, V); per row, with a shift ``c`` that keeps ``exp`` in range
    (0, or the row's max when the row's sum would leave ``[2^-64, 2^64]``, see the module
    notes): ``log p_v = (s_v - c) - log sum_u exp(s_u - c)``, the same for every ``c``, and
    ``loss = -(1/B) sum_b log p_b,targets[b]-1``. This equals PyTorch's
    ``nn.CrossEntropyLoss()(h @ E[1:].T, targets - 1)``.
    """
    _check_head("softmax_cross_entropy", h, E)
    V = E.shape[0] - 1
    if targets.shape != (h.shape[0],) or targets.dtype.kind not in "iu":
        raise ValueError(
            f"softmax_cross_entropy: targets must be (B,) = ({h.shape[0]},) integers, "
            f"got {targets.dtype} {targets.shape}"
        )
    if targets.size and (targets.min() < 1 or targets.max() > V):
        raise ValueError(
            f"softmax_cross_entropy: targets must lie in 1..V = 1..{V} (0 is padding), "
            f"got min {targets.min()}, max {targets.max()}"
        )
    B = h.shape[0]
    rows = np.arange(B)
    to_base = h.dtype.type(1.0 / _LN_BASE)
    exp_shifted = (h * to_base) @ E[1:].T  # (B, V) s / ln b, turned into U = e^s in place
    target_score = exp_shifted[rows, targets - 1].astype(np.float64) * _LN_BASE  # (B,) s_target
    _for_row_blocks(_exp_rows, B, exp_shifted)
    # The row sums as one BLAS product U 1 rather than a NumPy sum per row block (measured
    # on 100 x 43188 float32: 0.5 ms against 0.9 ms). Like the GEMMs, its rounding is the
    # same from run to run but may differ in the last bit with another OPENBLAS_NUM_THREADS
    # (measured: 1.8e-7 relative).
    ones = np.ones(exp_shifted.shape[1], dtype=h.dtype)
    total = exp_shifted @ ones  # (B,)
    shift = np.zeros(B)  # (B,) c, the shift of each row: U = exp(s - c)
    redo = ~((total >= _SAFE_SUM[0]) & (total <= _SAFE_SUM[1]))  # NaN is redone too
    if redo.any():  # the usual shift by the max, for the rows outside the safe range
        again = (h[redo] * to_base) @ E[1:].T  # (R, V)
        top = again.max(axis=1, keepdims=True)
        again -= top
        _EXP(again, out=again)
        exp_shifted[redo] = again
        total[redo] = again @ ones  # each >= 1, the max's own term
        shift[redo] = top[:, 0].astype(np.float64) * _LN_BASE
    # loss_b = log sum_v e^(s_v) - s_target = log(total_b) + c_b - s_target
    loss = float(np.mean(np.log(total.astype(np.float64)) + shift - target_score))
    return loss, SoftmaxCrossEntropyCache(exp_shifted, total, targets, h, E)


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
    ``dS = dloss * (P - Y) / B`` with ``Y`` the one-hot targets (B, V); then the forward
    line ``S = h E[1:]^T`` gives ``dh = dS E[1:]`` and ``dE[1:] = dS^T h``. Neither ``P``
    nor ``dS`` is formed: with ``P = U / total`` (row ``b`` divided by ``total_b``) and
    ``c_b = dloss / (B total_b)``, the products split into a dense part and a one-hot part,

    ``dh[b]  = c_b (U E[1:])[b]  -  (dloss / B) E[targets[b]]``,
    ``dE[1:] = U^T (c h)         -  (dloss / B) sum_b onehot(targets[b] - 1) h[b]^T``,

    so the row scaling falls on the small ``(B, D)`` operands and the one-hot part touches
    ``B`` rows of the results.
    """
    U, total, targets, h, E = cache
    B = U.shape[0]
    # forward: loss = (1/B) sum_b [log sum_v exp(s_bv) - s_b,target], so
    # dloss/ds_bv = (p_bv - [v == target_b]) / B, times the upstream dloss
    scale = dloss / B
    row_scale = (scale / total.astype(np.float64)).astype(U.dtype)[:, None]  # (B, 1) c_b
    dh = U @ E[1:]  # (B, D), the dense part, then its row scaling and the one-hot part
    dh *= row_scale
    dh -= U.dtype.type(scale) * E[targets]
    dE = np.empty_like(E)  # (V + 1, D)
    dE[0] = 0.0  # padding is never a candidate
    np.matmul(U.T, h * row_scale, out=dE[1:])
    # the one-hot part: rows of repeated targets accumulate (np.subtract.at, not -=)
    np.subtract.at(dE, targets, U.dtype.type(scale) * h)
    return dh, dE
