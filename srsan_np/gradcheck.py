"""Gradient checking: centred finite differences against hand-written backward passes.

The tests and the notebooks share these three functions. The recipe (CS231n,
``gradient_check.py``) is:

1. make the inputs float64 and the dimensions small and mutually distinct;
2. draw a *random* upstream gradient ``dout`` (a constant one can hide errors: for softmax
   the true input gradient is then exactly zero);
3. estimate ``d sum(f(x) * dout) / dx`` by centred differences, one coordinate at a time;
4. compare with the analytic gradient through :func:`rel_error`.

Expected magnitudes in float64 with ``h = 1e-5``: a correct gradient gives a relative error
of about 1e-12 to 1e-8 (kinks such as ReLU at 0 or a max switching branch can make one
coordinate worse); above 1e-6 something is almost certainly wrong; around 1e-2 or more the
formula is wrong. In float32 finite differences are meaningless (the step is lost in
rounding), which is why :func:`numerical_gradient` refuses anything but float64.

Example
-------
>>> rng = np.random.default_rng(0)
>>> x = rng.standard_normal((2, 5, 8))
>>> dout = rng.standard_normal((2, 5, 8))
>>> check_gradient(lambda: np.tanh(x), x, dout, dout * (1 - np.tanh(x) ** 2)) < 1e-8
True
"""

from __future__ import annotations

from typing import Callable

import numpy as np

__all__ = ["rel_error", "numerical_gradient", "richardson_gradient", "check_gradient"]


def rel_error(a, b) -> float:
    """Largest element-wise relative error between two arrays.

    Parameters
    ----------
    a, b : array_like
        Arrays of the same shape (or scalars).

    Returns
    -------
    float
        ``max(|a - b| / max(1e-8, |a| + |b|))``; 0.0 for empty arrays.

    Notes
    -----
    The floor ``1e-8`` in the denominator keeps coordinates where both gradients are
    (numerically) zero from dividing by zero; for them the measure becomes an absolute error
    divided by 1e-8. NaN in either array gives NaN, never a pass.
    """
    a = np.asarray(a, dtype=np.float64)
    b = np.asarray(b, dtype=np.float64)
    if a.shape != b.shape:
        raise ValueError(f"rel_error: shapes differ, a {a.shape} vs b {b.shape}")
    if a.size == 0:
        return 0.0
    return float(np.max(np.abs(a - b) / np.maximum(1e-8, np.abs(a) + np.abs(b))))


def _nudgeable(x):
    """``x`` as a flat view to nudge in place: a float64, writeable, C-contiguous array."""
    if not isinstance(x, np.ndarray) or x.dtype != np.float64:
        raise TypeError(
            "numerical_gradient: x must be a float64 np.ndarray "
            f"(got {type(x).__name__} {getattr(x, 'dtype', '')}); finite differences "
            "need double precision"
        )
    if not x.flags.writeable:
        raise ValueError("numerical_gradient: x must be writeable (it is nudged in place)")
    if not x.flags.c_contiguous:
        raise ValueError("numerical_gradient: x must be C-contiguous (it is nudged in place)")
    return x.reshape(-1)  # a view, since x is contiguous: writing flat[i] nudges x itself


def numerical_gradient(f: Callable[[], np.ndarray], x: np.ndarray, dout, h: float = 1e-5,
                       samples: int | None = None, rng: np.random.Generator | None = None):
    """Centred-difference gradient of ``sum(f() * dout)`` with respect to the array ``x``.

    Parameters
    ----------
    f : callable
        Takes no arguments and returns the forward output (any shape, or a scalar loss).
        It must read ``x`` itself (a closure over the same array object): this function
        nudges ``x`` in place, calls ``f``, and restores ``x`` exactly afterwards. ``f``
        must be deterministic: build a seeded generator inside it if it uses dropout.
    x : np.ndarray, float64
        The input or parameter to differentiate with respect to. Modified in place
        during the call, restored bit for bit on return (also on exception).
    dout : array_like
        Upstream gradient, the shape of ``f()`` (use ``1.0`` for a scalar loss).
    h : float
        Step. ``1e-5`` balances truncation error O(h^2) against rounding O(eps / h).
    samples : int or None
        ``None``: every coordinate of ``x`` (cost: ``2 * x.size`` calls of ``f``).
        An int ``k``: only ``k`` coordinates drawn without replacement, for big tensors
        such as an embedding table.
    rng : np.random.Generator or None
        Draws the sampled coordinates; ``None`` means ``np.random.default_rng(0)`` so a
        check is reproducible.

    Returns
    -------
    grad : np.ndarray
        ``samples=None``: float64 array of ``x.shape``.
        ``samples=k``: float64 array ``(k,)``, the estimates at ``index``.
    index : np.ndarray, only when ``samples`` is given
        ``(k,)`` int64 flat indices into ``x`` (compare with ``analytic.ravel()[index]``).

    Notes
    -----
    ``grad[i] = (L(x + h e_i) - L(x - h e_i)) / (2 h)`` with ``L(x) = sum(f(x) * dout)``,
    so ``grad = J^T dout``: exactly what a backward pass returns for upstream ``dout``.
    """
    flat = _nudgeable(x)
    dout = np.asarray(dout, dtype=np.float64)
    index = (np.arange(x.size, dtype=np.int64) if samples is None else
             (rng or np.random.default_rng(0)).choice(x.size, size=min(int(samples), x.size),
                                                      replace=False).astype(np.int64))
    grad = np.empty(index.size, dtype=np.float64)
    for k, i in enumerate(index):
        old = flat[i]
        try:
            flat[i] = old + h
            plus = np.sum(np.asarray(f(), dtype=np.float64) * dout)
            flat[i] = old - h
            minus = np.sum(np.asarray(f(), dtype=np.float64) * dout)
        finally:
            flat[i] = old
        grad[k] = (plus - minus) / (2.0 * h)

    if samples is None:
        return grad.reshape(x.shape)
    return grad, index


def richardson_gradient(f, x, dout, h=2e-4, samples=None, rng=None):
    """Centred differences at ``h`` and ``2h`` combined so that the O(h^2) error cancels.

    ``(4 g(h) - g(2h)) / 3`` has truncation error O(h^4), which allows a step 10 to 20
    times larger than the usual 1e-5 and so that much less rounding noise (about
    ``eps * |f| / h``). Use it where some true gradients are tiny beside the output: a few
    coordinates of an encoder layer's gradients are 1e-5 of the largest (a ReLU unit active
    at a single position), and at the plain step their rounding noise alone (about 1e-10)
    exceeds a relative error of 1e-7. A difference across a kink (ReLU at 0) is meaningless
    at any step: keep pre-activations away from 0 when checking.

    Parameters
    ----------
    f, x, dout, samples
        As in :func:`numerical_gradient`; with ``samples`` both steps use the same
        coordinates and ``(grad, index)`` is returned.
    h : float
        The smaller step.
    rng : numpy.random.Generator or None
        Picks the sampled coordinates (default: seed 0).
    """
    if samples is None:
        return (4 * numerical_gradient(f, x, dout, h) - numerical_gradient(f, x, dout, 2 * h)) / 3
    state = (rng or np.random.default_rng(0)).bit_generator.state
    g1, index = numerical_gradient(f, x, dout, h, samples, _generator(state))
    g2, _ = numerical_gradient(f, x, dout, 2 * h, samples, _generator(state))
    return (4 * g1 - g2) / 3, index


def _generator(state):
    """A generator in the given state, so two calls draw the same coordinates."""
    bit_generator = getattr(np.random, state["bit_generator"])()
    bit_generator.state = state
    return np.random.Generator(bit_generator)


def check_gradient(
    f: Callable[[], np.ndarray],
    x: np.ndarray,
    dout,
    analytic,
    h: float = 1e-5,
    samples: int | None = None,
    rng: np.random.Generator | None = None,
) -> float:
    """Relative error between an analytic gradient and its finite-difference estimate.

    Parameters
    ----------
    f, x, dout, h, samples, rng
        As in :func:`numerical_gradient`.
    analytic : array_like
        The backward pass's gradient with respect to ``x``, shape ``x.shape``.

    Returns
    -------
    float
        :func:`rel_error` over all coordinates (or the sampled ones). Expect 1e-12..1e-8
        in float64 for a correct backward; the tests require < 1e-7.
    """
    analytic = np.asarray(analytic, dtype=np.float64)
    if analytic.shape != x.shape:
        raise ValueError(
            f"check_gradient: analytic gradient has shape {analytic.shape}, x has {x.shape}"
        )
    if samples is None:
        return rel_error(numerical_gradient(f, x, dout, h), analytic)
    numeric, index = numerical_gradient(f, x, dout, h, samples=samples, rng=rng)
    return rel_error(numeric, analytic.reshape(-1)[index])
