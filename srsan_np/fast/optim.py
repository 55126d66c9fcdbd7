"""Adam, fast: the textbook optimiser (:class:`srsan_np.optim.Adam`) with small arrays
updated on one thread.

Waking Numba's other threads costs a fixed time per kernel call, more than the work of a
small array saves: a layer's twelve arrays are small, and only the embedding table is
large. So arrays below :data:`PARALLEL_FROM` elements get the same update from a serial
kernel; the result is identical (the update is elementwise) and no thread count is changed.
"""

from __future__ import annotations

from numba import njit

from .. import optim
from ..optim import adam_element

__all__ = ["Adam", "PARALLEL_FROM"]

PARALLEL_FROM = 1 << 17  # elements; smaller arrays are updated on the calling thread


@njit(cache=True, error_model="numpy")
def _adam_serial_kernel(p, g, m, v, one_minus_beta1, beta2, one_minus_beta2, weight_decay,
                        step_size, bias2_sqrt, eps):
    """:func:`srsan_np.optim.adam_kernel` on the calling thread."""
    for i in range(p.size):
        p[i], m[i], v[i] = adam_element(p[i], g[i], m[i], v[i], one_minus_beta1, beta2,
                                        one_minus_beta2, weight_decay, step_size,
                                        bias2_sqrt, eps)


class Adam(optim.Adam):
    """:class:`srsan_np.optim.Adam`, its small arrays on one thread."""

    def _kernel(self, p):
        return optim.adam_kernel if p.size >= PARALLEL_FROM else _adam_serial_kernel
