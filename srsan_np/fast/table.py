"""The tied table's gradient, fast: made block by block where it is used, never whole.

The embedding table ``E`` (V + 1, D) receives the largest gradient of a step, from the
scores and from the lookup (docs/derivations.md, section 10)::

    dE[1:] = U^T (c h)                       (V, D) the scores' dense part
             - (dloss / B) onehot(targets)^T h     the scores' one-hot part, B rows
    dE    += the lookup's rows (scatter-add of dx by id)

and it is used once, by Adam, which reads it element by element. :class:`TableGradient`
keeps the parts instead of their sum, and :meth:`TableGradient.block` makes any block of
rows on demand, in cache: :class:`srsan_np.fast.optim.Adam` updates the table block by block
from it, so the ``(V + 1, D)`` gradient never goes to memory and back. ``np.asarray`` (and
every NumPy function) gives the whole array, made with the same blocks, so the two agree
bit for bit.

Each element is made in one order, the textbook's: the dense product, then the one-hot
rows in batch order, then the lookup's rows in position order.
"""

from __future__ import annotations

import numpy as np
from numba import njit

from ..ops.embedding import EmbeddingCache
from ..ops.embedding import embedding_backward as _textbook_embedding_backward
from . import threads

__all__ = ["TableGradient", "embedding_backward"]


@njit(cache=True, nogil=True)
def _add_rows(out, lo, rows, values, start, stop):
    """``out[rows[k] - lo] += values[k]`` for ``k`` in ``start..stop-1``, in that order."""
    for k in range(start, stop):
        r = rows[k] - lo
        for d in range(out.shape[1]):
            out[r, d] += values[k, d]


class TableGradient:
    """``dE`` (V + 1, D) as its parts: ``U^T`` (V, B) and ``c h`` (B, D) for the dense part,
    and rows to add (the one-hot part's, the lookup's).

    Parameters
    ----------
    U_t : (V, B) the unnormalised probabilities, transposed
    h_scaled : (B, D) ``c h``, each session vector times ``c_b = dloss / (B Z_b)``
    targets : (B,) items in 1..V
    onehot : (B, D) ``(dloss / B) h``, subtracted at the targets' rows
    n_rows : V + 1
    """

    def __init__(self, U_t, h_scaled, targets, onehot, n_rows):
        self.U_t, self.h_scaled = U_t, h_scaled
        self.shape = (n_rows, h_scaled.shape[1])
        self.dtype = h_scaled.dtype
        self._parts = [(np.asarray(targets, np.int64), -onehot)]  # (rows, values) to add
        self._sorted = None  # the parts' rows in order, with their values, once made

    ndim = 2

    def __repr__(self):
        return (f"TableGradient(shape={self.shape}, dtype={self.dtype}): the table's gradient "
                f"as its parts; np.asarray gives the array")

    @property
    def size(self):
        return self.shape[0] * self.shape[1]

    def add_rows(self, rows, values):
        """Add ``values[k]`` (N, D) to row ``rows[k]`` (N,), after every part added before:
        the lookup's backward (:func:`embedding_backward`)."""
        if self._sorted is not None:
            raise RuntimeError("TableGradient: rows added after its blocks were made")
        self._parts.append((np.asarray(rows, np.int64).reshape(-1),
                            values.reshape(-1, self.shape[1])))

    def _prepare(self):
        """Every part's rows, sorted by row with each row's additions in the order they
        were added (a stable sort), and their values in that order."""
        if self._sorted is None:
            rows = np.concatenate([rows for rows, _ in self._parts])
            values = np.concatenate([values for _, values in self._parts])
            order = np.argsort(rows, kind="stable")
            self._sorted = rows[order], np.ascontiguousarray(values[order], self.dtype)
        return self._sorted

    def block(self, lo, hi, out):
        """Rows ``lo..hi-1`` of ``dE`` into ``out`` (hi - lo, D)."""
        rows, values = self._prepare()
        first = max(lo, 1)  # row 0, the padding, is no candidate: no dense part
        out[: first - lo] = 0.0
        np.matmul(self.U_t[first - 1:hi - 1], self.h_scaled, out=out[first - lo:])
        start, stop = np.searchsorted(rows, [lo, hi])
        _add_rows(out, lo, rows, values, start, stop)

    def for_blocks(self, fn):
        """``fn(lo, hi, block)`` for every block of :data:`srsan_np.fast.threads.BLOCK` rows,
        on the fast path's threads (:func:`srsan_np.fast.threads.for_row_blocks`);
        ``block`` is rows ``lo..hi-1`` of ``dE``, in a buffer the next block reuses."""
        self._prepare()  # before the threads start: they only read it
        n_rows = self.shape[0]

        def blocks(first, last):
            buffer = np.empty((threads.BLOCK, self.shape[1]), self.dtype)
            for i in range(first, last):
                lo, hi = i * threads.BLOCK, min((i + 1) * threads.BLOCK, n_rows)
                self.block(lo, hi, buffer[: hi - lo])
                fn(lo, hi, buffer[: hi - lo])

        threads.for_row_blocks(blocks, threads.n_blocks(n_rows))

    def __array__(self, dtype=None, copy=None):
        """The whole ``dE``, a new array each call (made from the same blocks as Adam's)."""
        array = np.empty(self.shape, self.dtype)

        def keep(lo, hi, block):
            array[lo:hi] = block
        self.for_blocks(keep)
        return array if dtype is None else array.astype(dtype, copy=False)


def embedding_backward(dout, cache: EmbeddingCache, dW=None):
    """:func:`srsan_np.ops.embedding.embedding_backward`, and into a :class:`TableGradient`
    ``dW`` the lookup's rows are added as one more part (made with the table's blocks)."""
    if isinstance(dW, TableGradient):
        ids, n_rows = cache
        if dout.shape != (*ids.shape, dW.shape[1]) or dW.shape[0] != n_rows:
            raise ValueError(f"embedding_backward: dout has shape {dout.shape}, expected "
                             f"{(*ids.shape, dW.shape[1])} for a table of {dW.shape}")
        dW.add_rows(ids, dout.astype(dW.dtype, copy=False))
        return dW
    return _textbook_embedding_backward(dout, cache, dW)
