"""Adam, fast: the textbook optimiser (:class:`srsan_np.optim.Adam`) with small arrays
updated on one thread, and the embedding table updated block by block from its gradient's
parts.

- *Small arrays on one thread.* Waking Numba's other threads costs a fixed time per kernel
  call, more than the work of a small array saves: a layer's twelve arrays are small. So
  arrays below :data:`PARALLEL_FROM` elements get the same update from a serial kernel.
- *The table from its gradient's blocks.* Given a :class:`srsan_np.fast.table.TableGradient`
  (what the fast scoring returns for the tied table), each block of the table's gradient is
  made in cache and the block's parameters and moments are updated from it at once, the
  blocks shared among the fast path's threads; the gradient never goes to memory and back.

The update is elementwise, so neither changes a bit of the result: each element is updated
by the textbook's :func:`srsan_np.optim.adam_element` from the same gradient, whichever
thread does it, and no thread count is changed.
"""

from __future__ import annotations

from numba import njit

from .. import optim
from ..optim import adam_element
from .table import TableGradient

__all__ = ["Adam", "PARALLEL_FROM"]

PARALLEL_FROM = 1 << 17  # elements; smaller arrays are updated on the calling thread


@njit(cache=True, nogil=True, error_model="numpy")
def _adam_serial_kernel(p, g, m, v, one_minus_beta1, beta2, one_minus_beta2, weight_decay,
                        step_size, bias2_sqrt, eps):
    """:func:`srsan_np.optim.adam_kernel` on the calling thread (the GIL released, so that
    the table's blocks run on several threads)."""
    for i in range(p.size):
        p[i], m[i], v[i] = adam_element(p[i], g[i], m[i], v[i], one_minus_beta1, beta2,
                                        one_minus_beta2, weight_decay, step_size,
                                        bias2_sqrt, eps)


class Adam(optim.Adam):
    """:class:`srsan_np.optim.Adam`, its small arrays on one thread and a
    :class:`~srsan_np.fast.table.TableGradient` taken block by block."""

    def _kernel(self, p):
        return optim.adam_kernel if p.size >= PARALLEL_FROM else _adam_serial_kernel

    def _update(self, p, g, m, v, *scalars):
        if not isinstance(g, TableGradient):
            super()._update(p, g, m, v, *scalars)
            return

        def update(lo, hi, block):  # rows lo..hi-1 of the table and of its moments
            _adam_serial_kernel(p[lo:hi].reshape(-1), block.reshape(-1), m[lo:hi].reshape(-1),
                                v[lo:hi].reshape(-1), *scalars)
        g.for_blocks(update)
