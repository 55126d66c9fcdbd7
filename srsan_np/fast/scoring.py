"""The scoring head's softmax cross-entropy, fast: the same loss and gradients as
:func:`srsan_np.ops.scoring.softmax_cross_entropy`, with fewer passes over the ``(B, V)``
scores.

With ``V`` in the tens of thousands the head dominates a training step. Its three matrix
products go to BLAS as in the textbook op, in the other orientation: the scores are held as
``S^T = E h^T`` (V, B), so that ``S^T`` and ``dE = (dS^T) h`` are products of row-major
operands as they lie (BLAS is faster at them than at ``S = h E^T``, whose ``E^T`` is read
across its rows), and ``dh = (dS^T)^T E`` reads ``dS^T`` transposed. What changes beside:

- *no max pass.* The softmax is the same for any shift of a row, ``exp(s - c) / sum``; the
  textbook's shift by the row's max only keeps ``exp`` in range. So the scores are
  exponentiated as they are, and a row whose sum falls outside ``[2^-64, 2^64]`` (a score
  above about 44, or all below about -44: overflow, or terms lost to underflow) is computed
  again from ``h`` with the max shift. Trained SR-SAN scores stay well inside, so this path
  is for safety, and the common path saves a read of the scores.
- *an exp of our own in float32.* NumPy's float32 ``exp`` spends more on its special
  cases than on the arithmetic; :func:`_expf_in_place` is a Numba loop LLVM vectorises
  (a Cody-Waite range reduction, a degree-6 polynomial, and ``2^k`` built from exponent
  bits; within 2 ulp of the exact ``exp``, ``inf``, ``0`` and NaN where they belong: see
  its notes). float64 keeps NumPy's ``exp``, or ``exp2`` where NumPy runs it with the same
  SIMD (``e^s = b^(s / ln b)`` for any base ``b``, and the ``1 / ln b`` costs nothing folded
  into ``h`` before the product; :func:`_fastest_exp` asks NumPy which it dispatches).
- *every core, in blocks.* The products run on blocks of items shared among threads
  (:mod:`srsan_np.fast.threads`, BLAS on one thread each). The forward's block of ``S^T``
  is exponentiated, its column sums taken and its share of ``U E`` (the backward's ``dh``)
  made while it is still in cache; the blocks' sums and shares are added in block order,
  so the results do not depend on the thread count.
- *the table's gradient left to Adam.* ``dE`` is returned as a
  :class:`srsan_np.fast.table.TableGradient`, its parts kept, and made block by block where
  Adam reads it (or whole, by ``np.asarray``).
- *no (B, V) array but the scores.* The probabilities are never normalised in memory
  (``P = U / total`` row by row, with ``U`` the exponentiated scores), so the ``1 / total``
  and the ``1 / B`` of the mean scale the small ``(B, D)`` operands of the backward
  products instead, and the one-hot part of ``dS = (P - Y) / B`` is applied to the ``B``
  target rows of the products' results rather than to ``dS`` (see
  :func:`softmax_cross_entropy_backward`).

docs/derivations.md, section 13, derives each identity; ``tests/test_fast_scoring.py`` holds
this op to the textbook one; docs/performance.md has what each saves.
"""

from __future__ import annotations

import math
from typing import NamedTuple

import numba
import numpy as np
from llvmlite import ir
from numba import types
from numba.extending import intrinsic

from ..ops.scoring import check_loss_inputs
from . import threads
from .table import TableGradient

__all__ = ["SoftmaxCrossEntropyCache", "softmax_cross_entropy", "softmax_cross_entropy_backward"]


class SoftmaxCrossEntropyCache(NamedTuple):
    """What :func:`softmax_cross_entropy_backward` needs."""

    exp_shifted_t: np.ndarray  # (V, B) U^T, U = exp(s - c) unnormalised probabilities (c per row)
    total: np.ndarray  # (B,) sum_v U_v, so that P = U / total
    targets: np.ndarray  # (B,) int, items in 1..V
    h: np.ndarray  # (B, D) session vectors
    E: np.ndarray  # (V + 1, D) embedding table
    U_E: np.ndarray  # (B, D) U E[1:], the dense part of dh before its row scaling

    @property
    def probs(self) -> np.ndarray:
        """(B, V) the softmax over items 1..V (computed on demand, for readers)."""
        return self.exp_shifted_t.T / self.total.astype(self.exp_shifted_t.dtype)[:, None]


def _fastest_exp():
    """``(np.exp2, ln 2)`` where NumPy runs float64 ``exp2`` with the SIMD it runs ``exp``
    with, else ``(np.exp, 1.0)``: the float64 exponential and the log of its base.

    NumPy (2.0 and later) says which compiled version of a ufunc it dispatches to on this
    CPU; ``exp2`` has only an AVX-512 one, ``exp`` has AVX-512 and AVX2 ones.
    """
    try:
        from numpy.lib.introspect import opt_func_info

        info = opt_func_info(func_name="^exp2?$", signature="float64")
        exp, exp2 = (info[name]["dd"]["current"] for name in ("exp", "exp2"))
    except (ImportError, KeyError):
        return np.exp, 1.0
    return (np.exp2, math.log(2.0)) if exp2 == exp else (np.exp, 1.0)


_EXP, _LN_BASE = _fastest_exp()  # float64: e^s = _EXP(s / _LN_BASE)
_SAFE_SUM = (2.0 ** -64, 2.0 ** 64)  # a row sum within these needs no shift by its max


@intrinsic
def _bits_of(typingctx, x):
    """The int32 with the bits of the float32 ``x``."""
    def codegen(context, builder, signature, args):
        return builder.bitcast(args[0], ir.IntType(32))
    return types.int32(types.float32), codegen


@intrinsic
def _float_with_bits(typingctx, bits):
    """The float32 with the low 32 bits of the integer ``bits``."""
    def codegen(context, builder, signature, args):
        low = builder.trunc(args[0], ir.IntType(32)) if bits.bitwidth > 32 else args[0]
        return builder.bitcast(low, ir.FloatType())
    return types.float32(bits), codegen


_F = np.float32
_LOG2E = _F(1.0 / math.log(2.0))
_LN2_HI = _F(math.log(2.0))  # ln 2 = _LN2_HI + _LN2_LO to twice float32's precision
_LN2_LO = _F(math.log(2.0) - float(_LN2_HI))
_ROUND = _F(1.5 * 2.0 ** 23)  # x + _ROUND - _ROUND rounds x to an integer (|x| < 2^22)
_ROUND_BITS = np.int32(np.array(_ROUND).view(np.int32))  # its bits; k's are these + k
_X_MIN, _X_MAX = _F(-104.0), _F(89.0)  # beyond them exp is 0 or inf in float32
# exp(r) on |r| <= ln2/2: minimax in relative error (Lawson's iteration), c0 = c1 = 1
_C2, _C3, _C4, _C5, _C6 = _F(0.4999999), _F(0.1666642), _F(0.041668225), _F(0.008374816), \
    _F(0.0013836848)
_ONE = _F(1.0)


@numba.njit(cache=True, fastmath={"contract"}, inline="always")
def _expf(x):
    """``exp(x)`` for a float32 ``x``, branch-free so that a loop of it vectorises.

    Notes
    -----
    ``exp(x) = 2^k exp(r)`` with ``k = round(x / ln 2)`` and ``r = x - k ln 2``,
    ``|r| <= ln2/2``, ``k ln 2`` subtracted in two parts (Cody and Waite) so that ``r`` is
    exact to float32's precision; ``exp(r)`` by its polynomial in Horner's form, fused
    multiply-adds where the CPU has them (``contract``, the one fast-math flag allowed:
    NaN and inf tests stay). ``2^k`` is built from exponent bits as ``2^k1 2^k2`` with
    ``k1 + k2 = k``, both normal for every ``k`` the clamp to ``[_X_MIN, _X_MAX]`` allows,
    so the product overflows to inf and underflows through the subnormals to 0 as float32
    arithmetic does. A NaN ``x`` passes the clamp (its comparisons are false) and makes
    ``r``, hence the result, NaN. ``tests/test_fast_scoring.py`` bounds the error in ulp.
    """
    if x < _X_MIN:
        x = _X_MIN
    if x > _X_MAX:
        x = _X_MAX
    t = x * _LOG2E + _ROUND
    k = t - _ROUND
    r = x - k * _LN2_HI
    r = r - k * _LN2_LO
    p = ((((_C6 * r + _C5) * r + _C4) * r + _C3) * r + _C2) * r + _ONE
    p = p * r + _ONE
    k_int = _bits_of(t) - _ROUND_BITS
    k1 = k_int >> 1
    k2 = k_int - k1
    return p * _float_with_bits((k1 + 127) << 23) * _float_with_bits((k2 + 127) << 23)


@numba.njit(cache=True, nogil=True, fastmath={"contract"})
def _expf_in_place(x):
    """``x[:] = exp(x)`` for a 1-d float32 ``x``, by :func:`_expf`."""
    for i in range(x.size):
        x[i] = _expf(x[i])


@numba.njit(cache=True, nogil=True)
def _column_sums(block, out):
    """``out[:] = block.sum(axis=0)``, the rows added in order."""
    out[:] = 0.0
    for i in range(block.shape[0]):
        for b in range(block.shape[1]):
            out[b] += block[i, b]


def _exp_in_place(x):
    """``x[:] = b^x`` for a contiguous ``x``, ``b`` the base whose log is :func:`_ln_base`:
    float32 by :func:`_expf` (base e), float64 by NumPy's :data:`_EXP`.

    Overflow and underflow are expected here and handled by the caller (the rows whose sum
    leaves the safe range are computed again), so NumPy is told not to warn.
    """
    if x.dtype == np.float32:
        _expf_in_place(x.reshape(-1))
        return
    with np.errstate(over="ignore", under="ignore"):  # per thread: set in the worker
        _EXP(x, out=x)


def _ln_base(dtype):
    """The log of the base of :func:`_exp_in_place` for ``dtype``."""
    return 1.0 if dtype == np.float32 else _LN_BASE


def _forward_blocks(lo, hi, E1, h_t, exp_t, sums, U_E_parts):
    """Blocks ``lo..hi-1`` of :data:`srsan_np.fast.threads.BLOCK` items: their scores
    ``E1 h_t`` (``h_t`` already divided by the base's log) into ``exp_t`` (V, B),
    exponentiated in place, each block's column sums into its row of ``sums``
    (n_blocks, B), and its share of ``U E1`` into its row of ``U_E_parts`` (n_blocks, B, D).

    A row whose terms overflow gives inf and NaN here, silently: it is computed again (see
    :func:`softmax_cross_entropy`).
    """
    with np.errstate(over="ignore", invalid="ignore"):  # per thread: set in the worker
        for i in range(lo, hi):
            rows = slice(i * threads.BLOCK, (i + 1) * threads.BLOCK)
            block = exp_t[rows]
            np.matmul(E1[rows], h_t, out=block)
            _exp_in_place(block)
            _column_sums(block, sums[i])
            np.matmul(block.T, E1[rows], out=U_E_parts[i])


def softmax_cross_entropy(h: np.ndarray, E: np.ndarray, targets: np.ndarray):
    """Fused tied scoring, softmax and mean cross-entropy: the arguments and the loss of
    :func:`srsan_np.ops.scoring.softmax_cross_entropy` (the loss taken in float64 from the
    per-row terms).

    The cache holds the unnormalised probabilities transposed, ``U^T`` (V, B), their sums
    and ``U E[1:]`` (B, D), made here while each block of ``U`` is in cache;
    ``cache.probs`` gives the normalised probabilities, (B, V).

    Notes
    -----
    ``s = h E[1:]^T``; per row, with a shift ``c`` that keeps ``exp`` in range (0, or the
    row's max when the row's sum would leave ``[2^-64, 2^64]``, see the module notes):
    ``log p_v = (s_v - c) - log sum_u exp(s_u - c)``, the same for every ``c``.
    """
    check_loss_inputs("softmax_cross_entropy", h, E, targets)
    B = h.shape[0]
    ln_base = _ln_base(h.dtype)
    to_base = h.dtype.type(1.0 / ln_base)
    E1 = E[1:]  # (V, D) the candidates
    # s_target in float64 from its two rows (the products below hold it only in blocks)
    target_score = np.einsum("bd,bd->b", h.astype(np.float64), E[targets].astype(np.float64))
    exp_t = np.empty((E1.shape[0], B), dtype=h.dtype)  # (V, B) S^T / ln b, then U^T = e^S^T
    sums = np.empty((threads.n_blocks(E1.shape[0]), B), dtype=h.dtype)  # each block's column sums
    U_E_parts = np.empty((len(sums), B, E.shape[1]), dtype=h.dtype)  # each block's U E share
    threads.for_row_blocks(_forward_blocks, len(sums), E1, (h * to_base).T, exp_t, sums,
                           U_E_parts)
    total = np.add.reduce(sums, axis=0)  # (B,) the blocks' sums added in order
    U_E = np.add.reduce(U_E_parts, axis=0)  # (B, D) the blocks' shares added in order
    shift = np.zeros(B)  # (B,) c, the shift of each row: U = exp(s - c)
    redo = ~((total >= _SAFE_SUM[0]) & (total <= _SAFE_SUM[1]))  # NaN is redone too
    if redo.any():  # the usual shift by the max, for the rows outside the safe range
        again = E1 @ (h[redo] * to_base).T  # (V, R)
        top = again.max(axis=0)  # (R,)
        again -= top
        _exp_in_place(again)
        exp_t[:, redo] = again
        total[redo] = again.sum(axis=0)  # each >= 1, the max's own term
        U_E[redo] = again.T @ E1
        shift[redo] = top.astype(np.float64) * ln_base
    # loss_b = log sum_v e^(s_v) - s_target = log(total_b) + c_b - s_target
    loss = float(np.mean(np.log(total.astype(np.float64)) + shift - target_score))
    return loss, SoftmaxCrossEntropyCache(exp_t, total, targets, h, E, U_E)


def softmax_cross_entropy_backward(dloss: float, cache: SoftmaxCrossEntropyCache):
    """Gradients of the fused loss, ``(dh (B, D), dE (V + 1, D))``, as
    :func:`srsan_np.ops.scoring.softmax_cross_entropy_backward` returns them; ``dE`` as a
    :class:`srsan_np.fast.table.TableGradient` (``np.asarray(dE)`` is the array).

    Notes
    -----
    The textbook's ``dS = dloss (P - Y) / B``, ``dh = dS E[1:]``, ``dE[1:] = dS^T h``, with
    neither ``P`` nor ``dS`` formed: with ``P = U / total`` (row ``b`` divided by ``total_b``) and
    ``c_b = dloss / (B total_b)``, the products split into a dense part and a one-hot part,

    ``dh[b]  = c_b (U E[1:])[b]  -  (dloss / B) E[targets[b]]``,
    ``dE[1:] = U^T (c h)         -  (dloss / B) sum_b onehot(targets[b] - 1) h[b]^T``,

    so the row scaling falls on the small ``(B, D)`` operands and the one-hot part touches
    ``B`` rows of the results. ``U E[1:]`` comes from the forward; ``dE`` is left as its
    parts.
    """
    U_t, total, targets, h, E, U_E = cache  # U_t (V, B)
    B = U_t.shape[1]
    # forward: loss = (1/B) sum_b [log sum_v exp(s_bv) - s_b,target], so
    # dloss/ds_bv = (p_bv - [v == target_b]) / B, times the upstream dloss
    scale = dloss / B
    row_scale = (scale / total.astype(np.float64)).astype(U_t.dtype)[:, None]  # (B, 1) c_b
    dh = U_E * row_scale  # (B, D) the dense part, row-scaled, then the one-hot part
    dh -= U_t.dtype.type(scale) * E[targets]
    # dE[1:] = U^T (c h), dE[0] = 0 (padding is never a candidate), minus the one-hot rows
    dE = TableGradient(U_t, h * row_scale, targets, U_t.dtype.type(scale) * h, E.shape[0])
    return dh, dE
